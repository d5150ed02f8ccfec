"""What a dqn_atari checkpoint costs at real buffer sizes: disk use and save time, with the replay
buffer inside every step file (before: what every checkpoint held until the replay store) and in the
run's replay store (after: stored once, each save writing the chunks its new transitions touched).

For each buffer size it fills a real FrameStackReplayBuffer (4x84x84 uint8 frame stacks, as
dqn_atari.py builds) with Atari-like transitions, then saves it the way a run does at the default
cadence (--checkpoint-every 50 000 steps = 50 000 new transitions, --keep-checkpoints 3):

    python benchmark/checkpoint_scale.py                          # 50k and 200k measured, 1M extrapolated
    python benchmark/checkpoint_scale.py --sizes 50000 200000 1000000   # 1M measured (7+ GB of RAM and disk)

Writes benchmark/results/checkpoint_scale.md and .json. The disk-use figures are what the
checkpoints directory holds once the run is past its third save; "lost per hour" is the save time
times the saves an hour of training makes at the given speeds (--sps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gymnasium as gym  # noqa: E402

from axiomrl_utils import checkpoint as ckpt  # noqa: E402
from axiomrl_utils.replay_buffer import make_replay_buffer  # noqa: E402
from axiomrl_utils.replay_store import ReplayStore  # noqa: E402
from axiomrl_utils.run.checkpoints import CheckpointStore  # noqa: E402

FRAMES = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
CADENCE = 50_000  # RunArgs' --checkpoint-every default: transitions added between saves (one env)
KEEP = 3  # --keep-checkpoints default


class AtariLikeSteps:
    """Frame stacks that shift by one new frame per step, episodes of ~2 000 steps: what the
    buffer's frame deduplication sees in a real run (frame contents do not change save costs)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = self.rng.integers(0, 255, (64, 84, 84), dtype=np.uint8)  # drawing 7 KB per step is slower than the buffer
        self.obs = self.pool[:4][None].copy()
        self.t = 0

    def add_to(self, rb, n: int) -> None:
        for _ in range(n):
            self.t += 1
            nxt = np.empty_like(self.obs)
            nxt[0, :-1] = self.obs[0, 1:]
            nxt[0, -1] = self.pool[self.t % 64]
            end = self.t % 2000 == 0
            rb.add(self.obs, nxt, [self.t % 6], [0.0], [end], [False])
            self.obs = self.pool[self.rng.integers(0, 60) + np.arange(4)][None].copy() if end else nxt


def _dir_bytes(path: Path) -> int:
    """Bytes on disk, hard links (latest.pt, best.pt) counted once."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def measure(size: int, root: Path, saves: int) -> dict:
    rb = make_replay_buffer(size, FRAMES, gym.spaces.Discrete(6))
    steps = AtariLikeSteps()
    t = time.perf_counter()
    steps.add_to(rb, size)
    fill_s = time.perf_counter() - t
    meta = {ckpt.RESERVED: {"global_step": 0}}

    # before: the whole buffer in each step file
    before_dir = root / "before"
    before_dir.mkdir()
    before_times = []
    for i in range(saves):
        t = time.perf_counter()
        step_file = before_dir / f"step_{i}.pt"
        ckpt.save_atomic({"rb": rb.state_dict(), **meta}, step_file)
        ckpt.link_atomic(step_file, before_dir / "latest.pt")
        ckpt.prune(before_dir, KEEP)
        before_times.append(time.perf_counter() - t)
        if i < saves - 1:
            steps.add_to(rb, min(CADENCE, size))
    before_disk = _dir_bytes(before_dir)
    step_file_bytes = (before_dir / "latest.pt").stat().st_size
    shutil.rmtree(before_dir)

    # after: the replay store, through the CheckpointStore a run uses
    after_dir = root / "after"
    store = ReplayStore(after_dir / "replay")
    checkpoints = CheckpointStore(after_dir, KEEP, store)
    after_times, written = [], []
    for i in range(saves):
        t = time.perf_counter()
        manifest, stats = store.stage("rb", rb)
        checkpoints.write(i, {"rb": manifest, **meta}, {"modules": {}}, False, {})
        after_times.append(time.perf_counter() - t)
        written.append(stats["bytes_written"])
        if i < saves - 1:
            steps.add_to(rb, min(CADENCE, size))
    checkpoints.close()
    after_disk = _dir_bytes(after_dir)
    shutil.rmtree(after_dir)
    return {
        "buffer_size": size,
        "buffer_bytes": int(rb.nbytes),
        "fill_s": round(fill_s, 1),
        "before": {"save_s": before_times, "disk_bytes": before_disk, "step_file_bytes": step_file_bytes},
        # the first store save writes everything once; the steady state is every later one
        "after": {"save_s": after_times, "disk_bytes": after_disk, "bytes_written": written},
    }


def extrapolate(rows: list[dict], size: int) -> dict:
    """A larger buffer from the largest measured one: the buffer, its save and its disk use scale
    with the size; a store save scales with the cadence (the same 50k new transitions)."""
    base = max(rows, key=lambda r: r["buffer_size"])
    k = size / base["buffer_size"]
    steady = base["after"]["save_s"][1:]
    return {
        "buffer_size": size,
        "buffer_bytes": int(base["buffer_bytes"] * k),
        "extrapolated_from": base["buffer_size"],
        "before": {"save_s": [s * k for s in base["before"]["save_s"]], "disk_bytes": int(base["before"]["disk_bytes"] * k),
                   "step_file_bytes": int(base["before"]["step_file_bytes"] * k)},
        "after": {"save_s": [base["after"]["save_s"][0] * k] + steady,
                  "disk_bytes": int(base["buffer_bytes"] * k + (base["after"]["disk_bytes"] - base["buffer_bytes"])),
                  "bytes_written": [int(base["after"]["bytes_written"][0] * k)] + base["after"]["bytes_written"][1:]},
    }


def table(rows: list[dict], sps_values: list[float]) -> str:
    gb = 1e9
    lines = [
        "| buffer | buffer in RAM | disk: before | disk: after | save: before | save: after (steady) | first store save | "
        + " | ".join(f"lost/hour at {s:g} SPS: before / after" for s in sps_values) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(sps_values),
    ]
    for r in rows:
        before_s = float(np.median(r["before"]["save_s"]))
        after_s = float(np.median(r["after"]["save_s"][1:]))
        lost = []
        for sps in sps_values:
            saves_per_hour = sps * 3600 / CADENCE
            lost.append(f"{before_s * saves_per_hour:.0f} s / {after_s * saves_per_hour:.1f} s")
        name = f"{r['buffer_size']:,}" + (" (extrapolated)" if "extrapolated_from" in r else "")
        lines.append(
            f"| {name} | {r['buffer_bytes'] / gb:.2f} GB | {r['before']['disk_bytes'] / gb:.2f} GB | "
            f"{r['after']['disk_bytes'] / gb:.2f} GB | {before_s:.2f} s | {after_s:.2f} s "
            f"({np.median(r['after']['bytes_written'][1:]) / 1e6:.0f} MB written) | {r['after']['save_s'][0]:.2f} s | "
            + " | ".join(lost) + " |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000], help="buffer sizes to measure")
    parser.add_argument("--extrapolate", type=int, nargs="*", default=[1_000_000], help="sizes to extrapolate from the largest measured")
    parser.add_argument("--saves", type=int, default=4, help="saves per size (the first of the store writes the whole buffer)")
    parser.add_argument("--sps", type=float, nargs="+", default=[25.0, 400.0],
                        help="training speeds for the time lost per hour (this CPU's dqn_atari, a GPU's)")
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp dir)")
    parser.add_argument("--output", default=str(REPO / "benchmark" / "results" / "checkpoint_scale.md"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in args.sizes:
            root = Path(tmp) / str(size)
            root.mkdir()
            print(f"measuring {size:,} ...", flush=True)
            rows.append(measure(size, root, args.saves))
    rows += [extrapolate(rows, size) for size in args.extrapolate if size not in args.sizes]
    text = table(rows, args.sps)
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Checkpoint cost at scale: dqn_atari's replay buffer\n\n"
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"`python benchmark/checkpoint_scale.py {' '.join(sys.argv[1:])}`. Saves every {CADENCE:,} transitions, "
        f"{KEEP} step files kept. Before: the buffer inside every step file. After: the replay store.\n\n"
    )
    out.write_text(header + text + "\n")
    out.with_suffix(".json").write_text(json.dumps({"rows": rows, "cadence": CADENCE, "keep": KEEP, "sps": args.sps}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
