#!/usr/bin/env bash
# Run HERE, before the GPU machine's call: the GPU machine has no network, so this puts into one
# ignored folder everything benchmark/gpu_check.sh needs there that its image lacks: the wheels
# of the packages missing from it (for `pytest -m gpu` and benchmark/gpu_speed.py), at the
# versions installed here, and CleanRL's scripts for the comparison. Then it prints the folder's
# size, what travels in all, and the device call to make.
#
#   bash benchmark/gpu_bundle.sh                        # CleanRL from $CLEANRL_SRC or the workplace mirror
#   bash benchmark/gpu_bundle.sh --cleanrl ~/cleanrl    # a CleanRL checkout (or bare clone) of your own
#   bash benchmark/gpu_bundle.sh --no-cleanrl           # wheels only: the comparison runs without CleanRL
#   bash benchmark/gpu_bundle.sh --python-version 3.11  # wheels for another Python (a dry run on this machine)
#   bash benchmark/gpu_bundle.sh --dest DIR             # default .gpu_bundle (ignored by git)
#
# The GPU machine's image (Python 3.12, torch 2.11 with CUDA, numpy, pytest, pandas, scipy, ...)
# lacks these; each was checked against the image's package list. Their other requirements
# (numpy, cloudpickle, typing-extensions, absl-py, etils, imageio, packaging, pillow) are in it.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
DEST=.gpu_bundle
PYVER=3.12
CLEANRL_SRC="${CLEANRL_SRC:-/work/.mirror/vwxyzjn+cleanrl/repo}"
WITH_CLEANRL=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cleanrl) CLEANRL_SRC="$2"; shift 2 ;;
        --no-cleanrl) WITH_CLEANRL=0; shift ;;
        --python-version) PYVER="$2"; shift 2 ;;
        --dest) DEST="$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1; see bash benchmark/gpu_bundle.sh --help" >&2; exit 1 ;;
    esac
done
fail() { echo "error: $*" >&2; exit 1; }

# what the image lacks, and why it is needed there
PACKAGES=(
    gymnasium farama-notifications              # every script and test
    tyro docstring-parser typeguard             # every script's command line
    ale-py                                      # the ppo_atari gpu test (ALE/Pong-v5) and comparison (Breakout)
    mujoco mujoco-core glfw pyopengl            # HalfCheetah-v4 in the comparison (mujoco-studio, the viewer, is not imported)
)

# versions: the ones installed here, so that there runs what the tests here ran with
pins=()
for name in "${PACKAGES[@]}"; do
    version=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) \
        || fail "$name is not installed for $PYTHON here, so there is no version to pin; pip install -e '.[mujoco,atari]' first"
    pins+=("$name==$version")
done

tmp="$DEST.partial"
rm -rf "$tmp"
mkdir -p "$tmp/wheels"
trap 'rm -rf "$tmp"' EXIT

if [[ $WITH_CLEANRL -eq 1 ]]; then
    [[ -e "$CLEANRL_SRC" ]] || fail "no CleanRL at $CLEANRL_SRC; pass --cleanrl PATH (a checkout or bare clone of github.com/vwxyzjn/cleanrl) or --no-cleanrl"
    mkdir -p "$tmp/cleanrl"
    if [[ -d "$CLEANRL_SRC/cleanrl" ]]; then
        cp -r "$CLEANRL_SRC/cleanrl" "$CLEANRL_SRC/cleanrl_utils" "$tmp/cleanrl/"
    else  # a bare clone: its HEAD
        git --git-dir "$CLEANRL_SRC" archive HEAD cleanrl cleanrl_utils | tar -x -C "$tmp/cleanrl" \
            || fail "$CLEANRL_SRC is neither a CleanRL checkout nor a bare clone of one; pass --cleanrl PATH"
    fi
    git -C "$CLEANRL_SRC" rev-parse HEAD > "$tmp/cleanrl/COMMIT" 2>/dev/null || rm -f "$tmp/cleanrl/COMMIT"
    # older CleanRL took its replay buffer from stable-baselines3; fe8d8a0 has its own
    if grep -qsE "^\s*(from|import) stable_baselines3" "$tmp"/cleanrl/cleanrl/{sac,td3}_continuous_action.py "$tmp/cleanrl/cleanrl_utils/buffers.py"; then
        sb3=$("$PYTHON" -c "import importlib.metadata as m; print(m.version('stable-baselines3'))" 2>/dev/null) \
            || fail "this CleanRL imports stable_baselines3, which is not installed here; pip install -e '.[bench]' first"
        pins+=("stable-baselines3==$sb3")
    fi
fi

# cp$PYVER x86-64 wheels; pip matches manylinux_2_N exactly, so name every N a wheel may carry
platforms=()
for tag in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
           manylinux_2_31 manylinux_2_34 manylinux_2_35; do
    platforms+=(--platform "${tag}_x86_64")
done
echo "downloading ${pins[*]} (cp${PYVER/./}, x86-64)"
if ! log=$("$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${platforms[@]}" -d "$tmp/wheels" "${pins[@]}" 2>&1); then
    echo "$log" | tail -5 >&2
    fail "pip could not download every wheel above (no network here, or no cp${PYVER/./} x86-64 wheel of that version); see pip's last lines"
fi

# requirements of the bundled wheels that the bundle does not hold: the image must have them
"$PYTHON" - "$tmp/wheels" "$PYVER" <<'EOF'
import re, sys, zipfile
from pathlib import Path

wheels, pyver = Path(sys.argv[1]), sys.argv[2]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
bundled = {norm(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
env = {"python_version": pyver, "python_full_version": pyver + ".0", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "extra": ""}
try:
    from packaging.markers import Marker
except ImportError:
    Marker = None
outside = set()
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    for line in meta.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req, _, marker = line[len("Requires-Dist:"):].partition(";")
        if "extra" in marker or (marker.strip() and Marker and not Marker(marker).evaluate(env)):
            continue
        name = norm(re.match(r"\s*([A-Za-z0-9_.-]+)", req).group(1))
        if name not in bundled:
            outside.add(name)
print("the GPU machine must already have:", ", ".join(sorted(outside - {"mujoco-studio"})),
      "(mujoco-studio, the viewer, is left out on purpose)" if "mujoco-studio" in outside else "")
EOF

rm -rf "$DEST"
mv "$tmp" "$DEST"
trap - EXIT

bundle_bytes=$(du -sb "$DEST" | cut -f1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
mib() { echo "$(( ($1 + 1048575) / 1048576 )) MiB"; }
echo
ls -1 "$DEST/wheels"
echo "bundle $DEST: $(mib "$bundle_bytes"); the working tree that travels with it: $(mib "$tree_bytes"); in all $(mib $((bundle_bytes + tree_bytes))) of the 64 MiB a call may carry"
(( bundle_bytes + tree_bytes < 60 * 1048576 )) || fail "what would travel is over 60 MiB; remove large untracked files first"
git check-ignore -q "$DEST" 2>/dev/null \
    || echo "warning: $DEST is not a folder of this repository that git ignores: the device call can carry only such a folder (the default .gpu_bundle is one)" >&2
cleanrl_arg=""
[[ -d "$DEST/cleanrl" ]] && cleanrl_arg=" --cleanrl $DEST/cleanrl"
echo
echo "the device call (from this repository's root; about 6 minutes once the machine is up):"
echo "  run(command=\"bash benchmark/gpu_check.sh --bundle $DEST$cleanrl_arg\", carry=[\"$DEST\"], timeout_s=420)"
echo "then copy its files here: cp <files_at>/gpu_check.md <files_at>/gpu_check.json benchmark/results/"
