"""Sweep launcher speed: 4 equal ppo.py runs with 1 worker vs 2 workers, and the launcher's own cost.

    PYTHONPATH=. nice -n 10 python benchmark/sweep_speed.py            # ~5 min on 2 cores
    PYTHONPATH=. python benchmark/sweep_speed.py --steps 2000 --order 1 2   # a quick look

Each measurement is a real `python -m axiomrl_utils.benchmark` sweep (CartPole-v1, 4 seeds) in a
temp directory. The worker counts run in the order given (default 1 2 2 1, so a drift in machine
load hits both alike) and the table shows the mean per worker count. Columns:

- wall: the whole sweep, from the command's start to its exit;
- check: from the start until the first run starts (the --dry-run check of the pair, launcher start);
- report: from the end of the last run (the session's `ended_at_utc`) to the command's exit: the
  leaderboard (importing scipy, the bootstrap) and the report files, once per sweep;
- runs: sum of the runs' process wall times (python start + imports + training), as sweep.json records;
- overhead/run: (wall - check - report - runs / workers) / runs-per-worker, i.e. what the launcher
  adds per run beyond the processes it waits for (spawning, polling, sweep.json writes);
- runs in parallel: runs / (wall - check - report), the mean number of runs the launcher kept going (its
  ideal is the worker count); a speed-up below it means each run got slower when it had company
  (a busy machine), not that the launcher left a worker idle;
- speed-up: wall(1 worker) / wall(this row).

Every run gets the same thread count (`--cpus-per-run 1` by default) so the runs are equal and the
speed-up measures the launcher's parallelism; `--cpus-per-run 0` keeps the launcher's default.

Writes benchmark/results/sweep_speed.md (sweep_speed_default_threads.md with --cpus-per-run 0), with
the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmark" / "results"
SEEDS = 4


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one_sweep(workers: int, steps: int, out: Path, name: str, cpus_per_run: int | None) -> dict:
    cmd = [sys.executable, "-m", "axiomrl_utils.benchmark", "--env-ids", "CartPole-v1", "--command", "python axiomrl/ppo.py",
           "--num-seeds", str(SEEDS), "--workers", str(workers), "--output-dir", str(out), "--name", name,
           *(["--cpus-per-run", str(cpus_per_run)] if cpus_per_run else []),
           "--", "--total-timesteps", str(steps), "--eval-every", "0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_epoch, start = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the sweep failed ({proc.returncode}): {proc.stderr.strip()}")
    sweep = json.loads((out / "sweeps" / name / "sweep.json").read_text())
    runs = sweep["runs"]
    first_start = min(dt.datetime.fromisoformat(r["started_at_utc"]).timestamp() for r in runs)
    durations = [r["duration_s"] for r in runs]
    train = [json.loads((out / "sweeps" / name / r["run_dir"] / "metadata.json").read_text())["wall_time_s"] for r in runs]
    check = first_start - start_epoch
    report = start_epoch + wall - dt.datetime.fromisoformat(sweep["sessions"][-1]["ended_at_utc"]).timestamp()
    per_worker = SEEDS / workers
    launched = wall - check - report  # from the first run's start to the last run's end
    return {
        "workers": workers, "wall": wall, "check": check, "report": report, "runs": sum(durations), "train": sum(train),
        "overhead_per_run": (launched - sum(durations) / workers) / per_worker,
        "parallel": sum(durations) / launched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="total timesteps of each run (default: 20000)")
    parser.add_argument("--order", type=int, nargs="+", default=[1, 2, 2, 1], help="worker counts, in order (default: 1 2 2 1)")
    parser.add_argument("--cpus-per-run", type=int, default=1,
                        help="threads of every run, the same for all rows so the runs are equal (default: 1; "
                        "0 = the launcher's default, max(1, cores // workers))")
    parser.add_argument("--note", default="", help="a line for the result file, e.g. what else the machine was running")
    args = parser.parse_args()

    load_before = load()
    results: dict[int, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="sweep_speed_") as tmp:
        for i, workers in enumerate(args.order):
            r = one_sweep(workers, args.steps, Path(tmp), f"w{workers}_{i}", args.cpus_per_run)
            results.setdefault(workers, []).append(r)
            print(f"workers={workers}: wall {r['wall']:.1f}s, check {r['check']:.1f}s, report {r['report']:.1f}s, runs {r['runs']:.1f}s, "
                  f"overhead/run {r['overhead_per_run']:.2f}s, in parallel {r['parallel']:.2f} (load {load()})", flush=True)
    load_after = load()

    base = statistics.fmean(r["wall"] for r in results[min(results)])
    header = ("| workers | wall (s) | check (s) | report (s) | runs' process time (s) | of which training (s) "
              "| launcher overhead per run (s) | runs in parallel | speed-up |")
    lines = [header, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workers, rs in sorted(results.items()):
        mean = {k: statistics.fmean(r[k] for r in rs) for k in ("wall", "check", "report", "runs", "train", "overhead_per_run", "parallel")}
        lines.append(f"| {workers} | {mean['wall']:.1f} | {mean['check']:.1f} | {mean['report']:.1f} | {mean['runs']:.1f} | {mean['train']:.1f} "
                     f"| {mean['overhead_per_run']:.2f} | {mean['parallel']:.2f} | {base / mean['wall']:.2f}x |")
    table = "\n".join(lines)
    threads = (f"every run has OMP_NUM_THREADS={args.cpus_per_run} (--cpus-per-run), in both rows" if args.cpus_per_run
               else "the launcher's default OMP_NUM_THREADS = max(1, cores // workers): 2 with 1 worker, 1 with 2 workers")
    print(table)
    text = f"""# Sweep launcher speed

`PYTHONPATH=. nice -n 10 python benchmark/sweep_speed.py --steps {args.steps} --order {' '.join(map(str, args.order))} --cpus-per-run {args.cpus_per_run}`

{SEEDS} equal runs of `python axiomrl/ppo.py --env-id CartPole-v1 --total-timesteps {args.steps} --eval-every 0`
through `python -m axiomrl_utils.benchmark` (local backend), mean of {len(args.order) // len(results)} sweep(s) per row,
run in the order {' '.join(map(str, args.order))}.

{table}

- wall: the whole sweep command; check: until the first run starts (launcher start + the `--dry-run` check of the pair);
  report: after the last run ends (the leaderboard and the report files, once per sweep); runs' process time: sum over runs of their process wall time (interpreter start, imports, training), of which
  training: the runs' own `wall_time_s`; launcher overhead per run: (wall - check - report - runs' time / workers) / runs per
  worker; runs in parallel: runs' time / (wall - check - report), the mean number of runs going at once.
- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};
  shared with other work: load average (1, 5, 15 min) {load_before} before, {load_after} after.
- Threads: {threads}.
""" + (f"- Note: {args.note}\n" if args.note else "")
    result = RESULTS / ("sweep_speed.md" if args.cpus_per_run else "sweep_speed_default_threads.md")
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(text)
    print(f"wrote {result}")


if __name__ == "__main__":
    main()
