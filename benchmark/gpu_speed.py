"""The GPU speed comparison of benchmark/gpu_check.sh: each script eager vs --compile/--cudagraphs (and CleanRL).

    python benchmark/gpu_speed.py                       # on a CUDA machine; writes benchmark/results/gpu_check.md
    python benchmark/gpu_speed.py --cleanrl ~/cleanrl   # also CleanRL's sac/td3 at the same settings
    python benchmark/gpu_speed.py --cpu-dry-run         # the same code path on the CPU, tiny steps, no --cudagraphs

Every configuration runs once, one after the other, under a per-run timeout and a total time budget
(what is left over is listed as skipped). Two figures per run: whole-process SPS (steps / wall
seconds, compilation included: what a short run sees) and steady SPS (steps / seconds between two
metrics.jsonl rows well after learning started: what a long run sees). Ours run with run
management on (checkpoints, metrics, TensorBoard) and evaluation off; CleanRL has no steady figure
(it keeps no per-row wall time we can read).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from axiomrl_utils.jsonl import write_text_atomic  # noqa: E402


def has_flag(script: str, flag: str) -> bool:
    proc = subprocess.run([sys.executable, str(REPO / "axiomrl" / script), "--help"], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    return flag in proc.stdout


def steady_sps(metrics: Path, from_step: int) -> Optional[float]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "wall_time" in r]
    later = [r for r in rows if r["global_step"] >= from_step]
    if len(later) < 2:
        return None
    a, b = later[0], later[-1]
    return (b["global_step"] - a["global_step"]) / max(b["wall_time"] - a["wall_time"], 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cleanrl", help="path of a checkout of github.com/vwxyzjn/cleanrl (optional)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the same path on the CPU with tiny steps, without --cudagraphs")
    parser.add_argument("--budget-s", type=float, default=210, help="total seconds for all runs; the rest is skipped")
    parser.add_argument("--run-timeout-s", type=float, default=150)
    parser.add_argument("--output", help="default: benchmark/results/gpu_check.md (a dry run: a temp file)")
    opts = parser.parse_args()
    deadline = time.monotonic() + opts.budget_s  # from the start: the --help probes below count too
    if opts.output is None:
        results_dir = Path(tempfile.mkdtemp(prefix="gpu_check_dry_run_")) if opts.cpu_dry_run else REPO / "benchmark" / "results"
        opts.output = str(results_dir / "gpu_check.md")

    dry = opts.cpu_dry_run
    try:
        import mujoco  # noqa: F401

        mujoco_env = "HalfCheetah-v4"
    except ImportError:
        mujoco_env = "Pendulum-v1"
    learning_starts, total = (100, 400) if dry else (1000, 4000)
    steady_from = learning_starts + (100 if dry else 1000)  # past the first updates (compilation, capture)
    off_policy = ["--env-id", mujoco_env, "--learning-starts", str(learning_starts), "--total-timesteps", str(total)]
    device = [] if dry else ["--cuda"]
    fast = ["--compile"] if dry else ["--compile", "--cudagraphs"]

    # (label, command, steps, steady_from): the most telling runs first, in case the budget runs out
    runs: list[tuple[str, list[str], int, Optional[int]]] = []
    for name in ("sac", "td3"):
        script = str(REPO / "axiomrl" / f"{name}_continuous_action.py")
        runs.append((f"{name} eager", [script, *off_policy, *device], total, steady_from))
        runs.append((f"{name} {' '.join(fast)}", [script, *off_policy, *device, *fast], total, steady_from))
    ppo_steps = 4096 if dry else 20480
    if has_flag("ppo_continuous_action.py", "--cudagraphs"):
        script = str(REPO / "axiomrl" / "ppo_continuous_action.py")
        flags = ["--env-id", mujoco_env, "--total-timesteps", str(ppo_steps), *device]
        runs.append(("ppo_continuous_action eager", [script, *flags], ppo_steps, ppo_steps // 2))
        runs.append((f"ppo_continuous_action {' '.join(fast)}", [script, *flags, *fast], ppo_steps, ppo_steps // 2))
    if has_flag("ppo_atari.py", "--cudagraphs"):
        script = str(REPO / "axiomrl" / "ppo_atari.py")
        flags = ["--env-id", "BreakoutNoFrameskip-v4", "--total-timesteps", str(4096 if dry else 40960), *device]
        steps = 4096 if dry else 40960
        runs.append(("ppo_atari eager", [script, *flags], steps, steps // 2))
        runs.append((f"ppo_atari {' '.join(fast)}", [script, *flags, *fast], steps, steps // 2))
    cleanrl_dir = Path(tempfile.mkdtemp(prefix="gpu_speed_cleanrl_"))
    if opts.cleanrl:  # patched for gymnasium 1.x by speed_families.py, in a temp copy
        sys.path.insert(0, str(REPO / "benchmark"))
        from speed_families import FAMILIES, prepare_cleanrl

        prepare_cleanrl(Path(opts.cleanrl).expanduser(), cleanrl_dir, [FAMILIES["sac"], FAMILIES["td3"]])
        for name in ("sac", "td3"):
            script = str(cleanrl_dir / "cleanrl" / f"{name}_continuous_action.py")
            runs.append((f"CleanRL {name}", [script, *off_policy, *(["--no-cuda"] if dry else [])], total, None))
    if not dry:  # --compile alone last: the least telling
        for name in ("sac", "td3"):
            script = str(REPO / "axiomrl" / f"{name}_continuous_action.py")
            runs.append((f"{name} --compile", [script, *off_policy, *device, "--compile"], total, steady_from))

    results = []
    with tempfile.TemporaryDirectory(prefix="gpu_speed_") as tmp:
        for i, (label, command, steps, from_step) in enumerate(runs):
            left = deadline - time.monotonic()
            if left < 15:
                results.append({"run": label, "status": "skipped (time budget)"})
                continue
            out = Path(tmp) / f"run{i}"
            ours = command[0].startswith(str(REPO / "axiomrl"))
            args = [sys.executable, *command] + (["--eval-every", "0", "--no-progress", "--output-dir", str(out)] if ours else [])
            env = {**os.environ, "PYTHONPATH": str(REPO if ours else cleanrl_dir)}
            start = time.perf_counter()
            try:
                proc = subprocess.run(args, cwd=out.parent, env=env, capture_output=True, text=True,
                                      timeout=min(opts.run_timeout_s, left))
            except subprocess.TimeoutExpired:
                results.append({"run": label, "status": f"timeout after {min(opts.run_timeout_s, left):.0f} s"})
                print(f"{label}: timeout", flush=True)
                continue
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
                results.append({"run": label, "status": f"failed: {tail}"})
                print(f"{label}: failed\n{proc.stderr[-3000:]}", flush=True)
                continue
            steady = None
            if ours and from_step is not None:
                metrics = next(out.glob("*/metrics.jsonl"), None)
                steady = steady_sps(metrics, from_step) if metrics else None
            results.append({"run": label, "status": "ok", "wall_s": wall, "sps": steps / wall, "steady_sps": steady})
            print(f"{label}: {wall:.1f} s, {steps / wall:.0f} SPS whole, steady {steady or float('nan'):.0f} SPS", flush=True)

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    lines = [
        "# GPU check: eager vs --compile/--cudagraphs" + (" (CPU DRY RUN: not a GPU measurement)" if dry else ""),
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; GPU: {gpu}; torch {torch.__version__}; off-policy: {mujoco_env}, "
        f"learning starts {learning_starts}, {total} steps, steady SPS from step {steady_from}; ours with evaluation off, "
        "default checkpointing and logging on.",
        "",
        "| run | status | wall s | SPS (whole process) | steady SPS |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        if r["status"] == "ok":
            steady = f"{r['steady_sps']:.0f}" if r["steady_sps"] else "-"
            lines.append(f"| {r['run']} | ok | {r['wall_s']:.1f} | {r['sps']:.0f} | {steady} |")
        else:
            lines.append(f"| {r['run']} | {r['status']} | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    output = Path(opts.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output, text)
    write_text_atomic(output.with_suffix(".json"), json.dumps({"dry_run": dry, "gpu": gpu, "results": results}, indent=1))


if __name__ == "__main__":
    main()
