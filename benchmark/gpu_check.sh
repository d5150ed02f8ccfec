#!/usr/bin/env bash
# One command for a fresh GPU machine with this repository: install what is missing, run the
# CUDA tests (pytest -m gpu), then the GPU speed comparison (benchmark/gpu_speed.py), which writes
# benchmark/results/gpu_check.md (+ .json). Under 6 minutes of wall time: each part has a timeout.
#
#   bash benchmark/gpu_check.sh                       # from the repository root, on the GPU machine
#   bash benchmark/gpu_check.sh --cleanrl ~/cleanrl   # also CleanRL's sac/td3 (a checkout of vwxyzjn/cleanrl)
#   bash benchmark/gpu_check.sh --cpu-dry-run         # here, without a GPU: the same steps on the CPU, tiny runs
#   bash benchmark/gpu_check.sh --skip-tests          # only the speed comparison
#
# Exit status: 0 when the tests passed and the table was written, 1 otherwise (the table is still
# written when the tests fail), 2 when no CUDA torch could be found or installed.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
CLEANRL=""
DRY=0
TESTS=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cleanrl) CLEANRL="$2"; shift 2 ;;
        --cpu-dry-run) DRY=1; shift ;;
        --skip-tests) TESTS=0; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1; see bash benchmark/gpu_check.sh --help" >&2; exit 1 ;;
    esac
done
start=$(date +%s)
say() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }

# 1. torch with CUDA: the one present, else the CUDA wheel from pytorch.org (needs the network)
has_cuda() { "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
if [[ $DRY -eq 0 ]] && ! has_cuda; then
    say "no CUDA torch here; installing the CUDA wheel"
    timeout 150 "$PYTHON" -m pip install -q torch --index-url https://download.pytorch.org/whl/cu124 || true
    if ! has_cuda; then
        echo "error: no CUDA-enabled torch and none could be installed (no GPU, no driver, or no network); run with --cpu-dry-run to check the path on a CPU" >&2
        exit 2
    fi
fi

# 2. this repository and what the tests and the comparison use (MuJoCo, Atari, pytest; SB3 for
#    CleanRL's replay buffer); offline, keep what is installed
if ! "$PYTHON" -c "import axiomrl_utils, tyro, pytest, gymnasium" 2>/dev/null; then
    say "installing axiomrl[mujoco,atari,dev,bench]"
    timeout 120 "$PYTHON" -m pip install -q -e '.[mujoco,atari,dev,bench]' || timeout 60 "$PYTHON" -m pip install -q --no-deps -e . || true
fi
if [[ -n "$CLEANRL" ]] && ! "$PYTHON" -c "import stable_baselines3" 2>/dev/null; then
    timeout 60 "$PYTHON" -m pip install -q 'stable-baselines3>=2.3' || say "no stable-baselines3: CleanRL's sac/td3 will fail to start"
fi
"$PYTHON" -c "import mujoco" 2>/dev/null || timeout 60 "$PYTHON" -m pip install -q 'gymnasium[mujoco]' || say "no MuJoCo: the comparison uses Pendulum-v1"
"$PYTHON" - <<'EOF'
import torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
EOF

# 3. the CUDA tests (on the CPU they are collected and skip)
status=0
if [[ $TESTS -eq 1 ]]; then
    mapfile -t gpu_tests < <(grep -l "mark.gpu" tests/*.py)
    say "pytest -m gpu ${gpu_tests[*]}"
    timeout 170 "$PYTHON" -m pytest -q -m gpu "${gpu_tests[@]}" -p no:cacheprovider || status=1
fi

# 4. the speed comparison, within what is left of the 6 minutes
left=$(( 330 - ($(date +%s) - start) ))
(( left < 60 )) && left=60
speed_args=(--budget-s "$left")
[[ $DRY -eq 1 ]] && speed_args+=(--cpu-dry-run)
[[ -n "$CLEANRL" ]] && speed_args+=(--cleanrl "$CLEANRL")
say "benchmark/gpu_speed.py ${speed_args[*]}"
timeout 345 "$PYTHON" benchmark/gpu_speed.py "${speed_args[@]}" || status=1
say "done (exit $status)"
exit $status
