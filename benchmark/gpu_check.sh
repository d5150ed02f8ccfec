#!/usr/bin/env bash
# One command for a GPU machine with this repository: set up what is missing, run the CUDA tests
# (pytest -m gpu), then the GPU speed comparison (benchmark/gpu_speed.py), which writes
# benchmark/results/gpu_check.md (+ .json). Under 6 minutes of wall time: each part has a timeout.
#
#   bash benchmark/gpu_check.sh --bundle .gpu_bundle   # offline, from what benchmark/gpu_bundle.sh put there
#                                                      # (the default when .gpu_bundle exists; CleanRL from it too)
#   bash benchmark/gpu_check.sh                        # no bundle: pip installs what is missing (needs the network)
#   bash benchmark/gpu_check.sh --cleanrl ~/cleanrl    # also CleanRL's sac/td3 (a checkout of vwxyzjn/cleanrl)
#   bash benchmark/gpu_check.sh --cpu-dry-run          # without a GPU: the same steps on the CPU, tiny runs
#   bash benchmark/gpu_check.sh --skip-tests           # only the speed comparison
#   bash benchmark/gpu_check.sh --atari-learning 8     # instead: issue 20's Atari learning runs for 8 minutes
#
# With $OUT set (the device tool's folder of files to return), the table (.md, .json), this
# output (gpu_check.log) and the tests' report (pytest_gpu.xml) are also written there.
# Exit status: 0 when the tests passed and the table was written, 1 otherwise (the table is still
# written when the tests fail), 2 when no CUDA torch is found or a package is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
CLEANRL=""
BUNDLE=""
DRY=0
TESTS=1
ATARI_MIN=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) BUNDLE="$2"; shift 2 ;;
        --cleanrl) CLEANRL="$2"; shift 2 ;;
        --cpu-dry-run) DRY=1; shift ;;
        --skip-tests) TESTS=0; shift ;;
        --atari-learning) ATARI_MIN="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1; see bash benchmark/gpu_check.sh --help" >&2; exit 1 ;;
    esac
done
OUT="${OUT:-}"
if [[ -n "$OUT" ]]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu_check.log") 2>&1
fi
start=$(date +%s)
say() { echo "[gpu_check $(( $(date +%s) - start ))s] $*"; }
# the bundle by default only where it is needed: its wheels are for the GPU machine's Python
if [[ -z "$BUNDLE" && -d .gpu_bundle/wheels ]] && ! "$PYTHON" -c "import gymnasium, tyro, ale_py" 2>/dev/null; then
    BUNDLE=.gpu_bundle
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this repository, not pip-installed in a bundle run

if [[ -n "$BUNDLE" ]]; then
    # 1. offline: a virtual environment on top of $PYTHON's packages (torch with CUDA) holding the
    #    bundle's wheels. Not PYTHONPATH alone: the tests start scripts with PYTHONPATH set to the
    #    repository, and those must see the wheels too; a venv's python (sys.executable) always does.
    compgen -G "$BUNDLE/wheels/*.whl" > /dev/null \
        || { echo "error: $BUNDLE/wheels holds no wheels; run bash benchmark/gpu_bundle.sh here first and carry $BUNDLE" >&2; exit 2; }
    [[ -z "$CLEANRL" && -d "$BUNDLE/cleanrl/cleanrl" ]] && CLEANRL="$BUNDLE/cleanrl"
    venv="${GPU_CHECK_VENV:-${TMPDIR:-/tmp}/axiomrl_gpu_check_venv}"
    rm -rf "$venv"
    if "$PYTHON" -m venv --without-pip "$venv"; then
        site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
        # the base's site directories after the venv's own (addsitedir also runs their .pth files)
        "$PYTHON" - "$site/_axiomrl_base_site.pth" <<'EOF'
import site, sys
dirs = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
with open(sys.argv[1], "w") as f:
    f.write(f"import site; list(map(site.addsitedir, {dirs!r}))\n")  # exec'd in a function: no comprehension
EOF
        new_python="$venv/bin/python"
    else  # no venv module: a .pth file in $PYTHON's own site-packages names the folder of wheels
        site="$venv/site"
        mkdir -p "$site"
        base=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_path('purelib'))")
        echo "$(cd "$site" && pwd)" > "$base/axiomrl_gpu_check.pth" \
            || { echo "error: $PYTHON has no venv module and its $base cannot be written; set PYTHON to a Python 3 with one" >&2; exit 2; }
        say "no venv module: added $base/axiomrl_gpu_check.pth (remove it when done)"
        new_python="$PYTHON"
    fi
    say "installing $(ls "$BUNDLE"/wheels/*.whl | wc -l) wheels from $BUNDLE offline into $venv"
    if ! "$PYTHON" -m pip --version > /dev/null 2>&1; then  # no pip: a wheel is a zip laid out as site-packages
        for wheel in "$BUNDLE"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$wheel" "$site"; done
    else
        PIP_NO_INDEX=1 "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
            --upgrade --target "$site" "$BUNDLE"/wheels/*.whl
    fi || { echo "error: the wheels in $BUNDLE/wheels did not install into $venv (pip's message above); rebuild them with bash benchmark/gpu_bundle.sh for this machine's Python" >&2; exit 2; }
    PYTHON="$new_python"
else
    # 1. torch with CUDA: the one present, else the CUDA wheel from pytorch.org (needs the network)
    has_cuda() { "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
    if [[ $DRY -eq 0 ]] && ! has_cuda; then
        say "no CUDA torch here; installing the CUDA wheel"
        timeout 150 "$PYTHON" -m pip install -q torch --index-url https://download.pytorch.org/whl/cu124 || true
    fi
    # 2. this repository and what the tests and the comparison use (MuJoCo, Atari, pytest; SB3 for
    #    older CleanRL's replay buffer); offline, keep what is installed
    if ! "$PYTHON" -c "import axiomrl_utils, tyro, pytest, gymnasium" 2>/dev/null; then
        say "installing axiomrl[mujoco,atari,dev,bench]"
        timeout 120 "$PYTHON" -m pip install -q -e '.[mujoco,atari,dev,bench]' || timeout 60 "$PYTHON" -m pip install -q --no-deps -e . || true
    fi
    "$PYTHON" -c "import mujoco" 2>/dev/null || timeout 60 "$PYTHON" -m pip install -q 'gymnasium[mujoco]' || true
fi

# everything the tests and the comparison import, checked once: one sentence naming what is missing
"$PYTHON" - "$DRY" "$CLEANRL" "$BUNDLE" <<'EOF' || exit 2
import importlib, sys
from pathlib import Path

dry, cleanrl, bundle = sys.argv[1] == "1", sys.argv[2], sys.argv[3]
needed = ["torch", "numpy", "gymnasium", "tyro", "pytest", "yaml", "filelock", "pandas", "rich", "scipy", "tensorboard",
          "ale_py", "cv2", "axiomrl_utils"]
try:
    import mujoco  # noqa: F401
except Exception:
    if bundle:  # the bundle has it: not loading is a fault
        needed.append("mujoco")
    else:
        print("no MuJoCo: the comparison uses Pendulum-v1")
buffers = Path(cleanrl, "cleanrl_utils", "buffers.py")
if cleanrl and (not buffers.exists() or "import stable_baselines3" in buffers.read_text()
                or "from stable_baselines3" in buffers.read_text()):
    needed.append("stable_baselines3")
missing = []
for name in needed:
    try:
        importlib.import_module(name)
    except Exception as e:  # an extension that does not load is as missing as an absent one
        missing.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
if missing:
    sys.exit(f"error: {sys.executable} cannot import {', '.join(missing)}; add the package(s) to benchmark/gpu_bundle.sh, "
             "run it here and carry the bundle again (or pip install them where there is a network)")
import torch

if not dry and not torch.cuda.is_available():
    sys.exit(f"error: torch {torch.__version__} sees no CUDA GPU (torch.version.cuda={torch.version.cuda}); run this on a "
             "GPU machine, or with --cpu-dry-run to check the path on a CPU")
versions = {n: getattr(sys.modules.get(n), "__version__", "-") for n in ("torch", "numpy", "gymnasium", "tyro", "ale_py", "mujoco")}
print(f"python {sys.version.split()[0]} ({sys.executable}) | " + " | ".join(f"{k} {v}" for k, v in versions.items()),
      f"| CUDA {torch.version.cuda} |", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
EOF

# 3'. --atari-learning: the value-based shelf's Atari scripts (issue 20), two seeds each, all at once
#     on the GPU machine's cores and its GPU, stopped at the deadline (each saves a checkpoint); the
#     table compares the last 100 training games with the game's random-policy score
if [[ -n "$ATARI_MIN" ]]; then
    steps=250000
    [[ $DRY -eq 1 ]] && steps=3000
    result=benchmark/results/value_based_atari_gpu
    runs_dir=benchmark/runs/value_based
    if [[ $DRY -eq 1 ]]; then  # a path check, not a result: runs and table in a temp folder
        runs_dir="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_dry_run_XXXXXX")"
        result="$runs_dir/value_based_atari_dry_run"
    fi
    say "benchmark/value_based_returns.py: 5 Atari scripts x 2 seeds on ALE/Breakout-v5, $steps steps, stopped after $ATARI_MIN min"
    status=0
    PATH="$(dirname "$PYTHON"):$PATH" timeout $(( ${ATARI_MIN%.*} * 60 + 240 )) "$PYTHON" benchmark/value_based_returns.py --only atari \
        --atari-env ALE/Breakout-v5 --atari-steps "$steps" --atari-seeds 1 2 --workers 10 --stagger-s 2 \
        --deadline-min "$ATARI_MIN" --runs-dir "$runs_dir" --result "$result" || status=1
    if [[ -n "$OUT" ]]; then
        cp "$result.md" "$result.json" "$OUT/" 2>/dev/null || true
        tail -n 3 "$runs_dir"/atari/*.log > "$OUT/atari_runs_tail.log" 2>/dev/null || true
    fi
    say "done (exit $status)"
    exit $status
fi

# 3. the CUDA tests (on the CPU they are collected and skip); SIGINT at the limit lets pytest report
status=0
if [[ $TESTS -eq 1 ]]; then
    mapfile -t gpu_tests < <(grep -l "mark.gpu" tests/*.py)
    report=()
    [[ -n "$OUT" ]] && report=(--junitxml "$OUT/pytest_gpu.xml")
    say "pytest -m gpu ${gpu_tests[*]}"
    timeout -s INT -k 15 170 "$PYTHON" -m pytest -q -m gpu "${gpu_tests[@]}" -p no:cacheprovider "${report[@]}" || status=1
fi

# 4. the speed comparison, within what is left of the 6 minutes
left=$(( 330 - ($(date +%s) - start) ))
(( left < 60 )) && left=60
results=benchmark/results/gpu_check.md
[[ $DRY -eq 1 ]] && results="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_dry_run_XXXXXX")/gpu_check.md"
speed_args=(--budget-s "$left" --output "$results")
[[ $DRY -eq 1 ]] && speed_args+=(--cpu-dry-run)
[[ -n "$CLEANRL" ]] && speed_args+=(--cleanrl "$CLEANRL")
say "benchmark/gpu_speed.py ${speed_args[*]}"
timeout $(( left + 30 )) "$PYTHON" benchmark/gpu_speed.py "${speed_args[@]}" || status=1
if [[ -n "$OUT" && -f "$results" ]]; then
    cp "$results" "${results%.md}.json" "$OUT/" 2>/dev/null || true
    say "copied $results (+ .json) to $OUT"
fi
say "done (exit $status)"
exit $status
