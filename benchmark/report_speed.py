"""How fast is `axiomrl report` / `axiomrl leaderboard` over 10 000 runs, and `axiomrl --version`?

Creates synthetic run directories (metadata.json per docs/run-directory.md, empty jsonl logs, a
checkpoints/ directory) in a temporary directory, then times each command in a fresh subprocess
(wall time, median of --repeats, after one warm-up run so the page cache is warm for all), prints
a table and writes benchmark/results/report_speed.md.

    python benchmark/report_speed.py                 # 10 000 runs, 3 repeats
    python benchmark/report_speed.py --runs 2000     # quicker

Layout: 10 algos x 20 envs x 50 seeds, half of them nested in runs/sweeps/<name>/; 92% finished,
4% running with a dead pid on this host (shown as crashed), 2% failed, 2% interrupted. The
running ones have no summary values yet, so their reports fall back to their (empty) jsonl logs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # fake_runs: hand-built run directories

from fake_runs import write_run  # noqa: E402

ALGOS = ["ppo", "dqn", "c51", "ppo_continuous_action", "sac_continuous_action", "td3_continuous_action",
         "ddpg_continuous_action", "ppo_atari", "dqn_atari", "c51_atari"]
TARGETS = {"report": 3.0, "leaderboard": 3.0, "--version": 0.3}


def make_runs(root: Path, n: int) -> None:
    """Write `n` synthetic run directories under `root`."""
    envs = [f"Env{i}-v1" for i in range(20)]
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    for i in range(n):
        algo = ALGOS[i % len(ALGOS)]
        env_id = envs[(i // len(ALGOS)) % len(envs)]
        seed = i // (len(ALGOS) * len(envs))
        where = root if i % 2 == 0 else root / "sweeps" / f"sweep{i % 7}"
        ret = 100.0 + (i % 97) + seed * 0.5
        status = {0: "running", 1: "running", 2: "failed", 3: "interrupted"}.get(i % 50, "finished")
        running = status == "running"
        summary = {
            "train_return_last100": None if running else ret,
            "train_episodes_in_mean": 0 if running else 100,
            "eval_return_last": None if running else ret + 1,
            "eval_return_best": None if running else ret + 2,
            "eval_step_best": None if running else 500_000,
            "sps": 850.0,
        }
        metrics = [{"global_step": 500_000, "iteration": 976, "time": 1.7e9, "wall_time": 588.2, "charts/SPS": 850.0,
                    "charts/learning_rate": 1e-4, "losses/value_loss": 1.0, "losses/policy_loss": -0.01,
                    "losses/entropy": 0.5, "losses/approx_kl": 0.01, "losses/clipfrac": 0.1,
                    "losses/explained_variance": 0.9}]
        write_run(where, algo, env_id, seed, metrics=metrics, summary=summary, status=status, index=i,
                  total_timesteps=500_000, wall_time_s=588.2, pid=dead_pid.pid if running else None)


def time_command(args: list[str], repeats: int, base: list[str] | None = None) -> tuple[float, float]:
    """Median wall time and median CPU time (user + sys) of `axiomrl ARGS` in a fresh interpreter,
    after one untimed warm-up. CPU time is the steadier figure when other jobs share the cores."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = (base or [sys.executable, "-m", "axiomrl_utils.commands.cli"]) + args
    walls, cpus = [], []
    for i in range(repeats + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
        if i:  # the first run warms the page cache and the bytecode cache
            walls.append(elapsed)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "benchmark" / "results" / "report_speed.md"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="axiomrl-report-speed-") as tmp:
        runs = Path(tmp) / "runs"
        start = time.perf_counter()
        make_runs(runs, args.runs)
        created = time.perf_counter() - start
        print(f"created {args.runs} run directories in {created:.1f} s", file=sys.stderr)
        results = [
            ("--version", ["--version"]),
            ("report", ["report", str(runs)]),
            ("report --format csv", ["report", str(runs), "--format", "csv"]),
            ("leaderboard", ["leaderboard", str(runs)]),
            ("leaderboard --status '*' --format json", ["leaderboard", str(runs), "--status", "*", "--format", "json"]),
        ]
        load_before = os.getloadavg()
        baseline, _ = time_command([], args.repeats, base=[sys.executable, "-c", "pass"])
        timings = [(name, time_command(cmd, args.repeats)) for name, cmd in results]
        load_after = os.getloadavg()

    lines = [
        "# `axiomrl` report speed",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmark/report_speed.py"
        f"{'' if args.runs == 10_000 else f' --runs {args.runs}'}`: "
        f"{args.runs} synthetic run directories, wall time of a fresh `python -m axiomrl_utils.commands.cli` process, "
        f"median of {args.repeats} after one warm-up (warm page cache); output to /dev/null.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU threads shared with other work, "
        f"Python {platform.python_version()}; load average {load_before[0]:.2f} before and {load_after[0]:.2f} after "
        f"the timings (1-minute), and a bare `python -c pass` took {baseline:.2f} s: on a busy machine every figure "
        f"below is inflated.",
        "",
        "| command | runs | wall time (s) | CPU time (s) | target (s) | wall time vs target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, (seconds, cpu) in timings:
        target = TARGETS.get(name.split(" --")[0] if not name.startswith("--") else name)
        verdict = "" if target is None else ("ok" if seconds <= target else "over target")
        runs_cell = "-" if name == "--version" else str(args.runs)
        lines.append(f"| `axiomrl {name}` | {runs_cell} | {seconds:.2f} | {cpu:.2f} | {'-' if target is None else target} | {verdict} |")
    lines += [
        "",
        f"Layout: 10 algos x 20 envs x {max(1, args.runs // 200)} seeds (up to 200 leaderboard rows, a 2000-resample",
        "bootstrap each), half nested under `sweeps/<name>/`; 92% finished, 4% running with a dead pid (shown as",
        "crashed; their summary is empty, so their returns are looked up in their jsonl logs), 2% failed,",
        "2% interrupted. `leaderboard` counts the finished runs; `--status '*'` all of them.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
