"""sac/td3/ddpg_continuous_action.py at a git commit vs the working tree: whole-process speed, alternating pairs.

    OMP_NUM_THREADS=1 python benchmark/speed_offpolicy.py --before HEAD --scripts sac td3 ddpg --pairs 3
    python benchmark/speed_offpolicy.py --before e7ee1d3 --scripts sac --extra-after --compile   # a flag's effect

Each pair runs the `--before` commit's script (from `git show`, next to this checkout's axiomrl_utils)
and then the working tree's, same seed and flags: HalfCheetah-v4, evaluation off, default
checkpointing on. Reported per script: SPS = steps / whole-process wall seconds and CPU SPS = steps /
CPU seconds (user + system of the process: what a quiet machine would show, roughly), each the median
of the pairs, and after/before. Writes benchmark/results/speed_offpolicy.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from axiomrl_utils.jsonl import write_text_atomic  # noqa: E402


def run_once(script: Path, args: list[str], output_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one training process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *args, "--output-dir", str(output_dir)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{script} failed:\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="HEAD", help="git commit of the 'before' scripts")
    parser.add_argument("--scripts", nargs="+", default=["sac", "td3", "ddpg"], choices=["sac", "td3", "ddpg"])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--env-id", default="HalfCheetah-v4")
    parser.add_argument("--total-timesteps", type=int, default=8000)
    parser.add_argument("--learning-starts", type=int, default=5000)
    parser.add_argument("--extra-after", nargs=argparse.REMAINDER, default=[], help="flags only the 'after' runs get (last)")
    parser.add_argument("--output", default=str(REPO / "benchmark" / "results" / "speed_offpolicy.md"))
    opts = parser.parse_args()

    flags = ["--env-id", opts.env_id, "--total-timesteps", str(opts.total_timesteps), "--learning-starts",
             str(opts.learning_starts), "--eval-every", "0", "--no-progress", "--seed", "1"]
    rev = subprocess.run(["git", "rev-parse", "--short", opts.before], cwd=REPO, capture_output=True, text=True)
    before_name = rev.stdout.strip() or opts.before  # a name that keeps its meaning after later commits
    rows = []
    with tempfile.TemporaryDirectory(prefix="speed_offpolicy_") as tmp:
        tmp_path = Path(tmp)
        for name in opts.scripts:
            file = f"{name}_continuous_action.py"
            before = tmp_path / "before" / file
            before.parent.mkdir(exist_ok=True)
            before.write_text(subprocess.run(["git", "show", f"{opts.before}:axiomrl/{file}"], cwd=REPO, check=True,
                                             capture_output=True, text=True).stdout)
            after = REPO / "axiomrl" / file
            times: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
            for i in range(opts.pairs):
                for side, script, extra in (("before", before, []), ("after", after, opts.extra_after)):
                    wall, cpu = run_once(script, flags + extra, tmp_path / f"runs_{name}_{side}_{i}")
                    times[side].append((wall, cpu))
                    print(f"{name} pair {i + 1} {side}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            steps = opts.total_timesteps
            med = {side: (statistics.median(steps / w for w, _ in t), statistics.median(steps / c for _, c in t))
                   for side, t in times.items()}
            rows.append({"script": file, "before_sps": med["before"][0], "after_sps": med["after"][0],
                         "before_cpu_sps": med["before"][1], "after_cpu_sps": med["after"][1],
                         "speedup": med["after"][0] / med["before"][0], "cpu_speedup": med["after"][1] / med["before"][1],
                         "runs": {k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in times.items()}})

    lines = [
        f"# sac/td3/ddpg: {before_name} vs working tree",
        "",
        f"{opts.env_id}, {opts.total_timesteps} steps, learning starts {opts.learning_starts}, evaluation off, default "
        f"checkpointing, seed 1, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, {opts.pairs} alternating pairs, "
        f"medians; after-only flags: {' '.join(opts.extra_after) or 'none'}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average at the end {os.getloadavg()[0]:.1f}.",
        "",
        "| script | SPS before | SPS after | after / before | CPU SPS before | CPU SPS after | after / before (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['script']} | {r['before_sps']:.0f} | {r['after_sps']:.0f} | **{r['speedup']:.2f}** | "
                     f"{r['before_cpu_sps']:.0f} | {r['after_cpu_sps']:.0f} | {r['cpu_speedup']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(opts.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    write_text_atomic(out.with_suffix(".json"), json.dumps({"before": before_name, "flags": flags, "extra_after": opts.extra_after, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
