"""Benchmark of the discrete-action family: returns of dqn.py and c51.py, SPS of the Atari scripts.

    python benchmark/discrete_returns.py                 # launch the missing runs (2 at a time), print the table
    python benchmark/discrete_returns.py --no-launch     # just print the table of what has finished
    python benchmark/discrete_returns.py --atari-sps     # also time ppo_atari.py and dqn_atari.py over 50k steps

Runs go to benchmark/runs/discrete/ (git-ignored). A run that was interrupted is resumed, not
restarted; a finished run is never redone. The table follows CleanRL's aggregation: per seed the
mean return of the last 100 training episodes (metadata.json summary.train_return_last100), then
mean ± population std across seeds, beside CleanRL's published numbers. The result is written to
benchmark/results/discrete.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmark"))

from axiomrl_utils.host import pid_alive  # noqa: E402
from spec_runs import phase_sps  # noqa: E402

RUNS = REPO / "benchmark" / "runs" / "discrete"
SPS_RUNS = REPO / "benchmark" / "runs" / "discrete-atari-sps"
RESULT = REPO / "benchmark" / "results" / "discrete.md"

ALGOS = ("dqn", "c51")
ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")
# CleanRL, tag pr-424 (openrlbenchmark): mean ± population std over 3 seeds of each seed's last-100 training return
PUBLISHED = {
    ("dqn", "CartPole-v1"): (488.69, 16.11),
    ("dqn", "Acrobot-v1"): (-91.54, 7.20),
    ("dqn", "MountainCar-v0"): (-194.95, 8.48),
    ("c51", "CartPole-v1"): (481.20, 20.53),
    ("c51", "Acrobot-v1"): (-87.70, 5.52),
    ("c51", "MountainCar-v0"): (-166.38, 27.94),
}
# Atari SPS: 50 000 steps on ALE/Pong-v5 with each script's defaults, except dqn_atari's buffer and
# learning start, scaled down so the 50 000 steps include training (and the buffer fits in RAM).
SPS_STEPS = 50_000
SPS_COMMANDS = {
    "ppo_atari": ["--env-id", "ALE/Pong-v5"],
    "dqn_atari": ["--env-id", "ALE/Pong-v5", "--buffer-size", "50000", "--learning-starts", "10000"],
}


def runs_in(root: Path) -> list[dict]:
    found = []
    if not root.is_dir():
        return found
    for meta_path in sorted(root.glob("*/metadata.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        meta["_dir"] = meta_path.parent
        found.append(meta)
    return found


def find_run(runs: list[dict], algo: str, env_id: str, seed: int, total: int) -> dict | None:
    """The run of this (algo, env, seed, budget): a finished one first, else the newest other one."""
    matches = [m for m in runs if (m["algo"], m["env_id"], m["seed"], m["total_timesteps"]) == (algo, env_id, seed, total)]
    finished = [m for m in matches if m["status"] == "finished"]
    if finished:
        return finished[-1]
    return matches[-1] if matches else None


def command(algo: str, extra: list[str]) -> list[str]:
    return ["nice", "-n", "10", "env", "OMP_NUM_THREADS=1", f"PYTHONPATH={REPO}", sys.executable,
            str(REPO / "axiomrl" / f"{algo}.py"), "--no-progress", *extra]


def others_running(own: list) -> int:
    """Runs under benchmark/runs/ still being trained by a process this launcher did not start."""
    own_pids = {proc.pid for proc, _, _ in own}
    return sum(
        1 for root in (RUNS, SPS_RUNS) for m in runs_in(root)
        if m["status"] == "running" and pid_alive(m.get("pid")) and m["pid"] not in own_pids
    )


def launch(jobs: list[tuple[str, list[str]]], workers: int, log_dir: Path) -> None:
    """Run the (name, command) jobs, `workers` at a time counting runs another launcher left going,
    each logging to log_dir/<time>_<name>.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) + others_running(running) < workers:
            name, cmd = pending.pop(0)
            log = open(log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{name}.log", "w")
            print("launch:", name, flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log, name))
        time.sleep(5)
        for item in list(running):
            proc, log, name = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f"exit {proc.returncode}:", name, flush=True)


def returns_table(seeds: list[int], total: int) -> tuple[str, bool]:
    runs = runs_in(RUNS)
    lines = [
        f"| env | algo | ours ({len(seeds)} seeds) | CleanRL published | per seed | minutes per run (SPS) |",
        "|---|---|---|---|---|---|",
    ]
    complete = True
    for env_id in ENVS:
        for algo in ALGOS:
            values, minutes, sps = [], [], []
            for seed in seeds:
                meta = find_run(runs, algo, env_id, seed, total)
                if meta is None or meta["status"] != "finished":
                    continue
                values.append(meta["summary"]["train_return_last100"])
                minutes.append(meta["wall_time_s"] / 60)
                sps.append(meta["summary"]["sps"])
            complete &= len(values) == len(seeds)
            mean, std = PUBLISHED[(algo, env_id)]
            ours = f"{np.mean(values):.2f}" + (f" ± {np.std(values):.2f}" if len(values) > 1 else "") if values else "—"
            if values and len(values) < len(seeds):
                ours += f" ({len(values)} of {len(seeds)} seeds)"
            per_seed = ", ".join(f"{v:.1f}" for v in values)
            timing = f"{np.mean(minutes):.1f} ({np.mean(sps):.0f})" if values else "—"
            lines.append(f"| {env_id} | {algo}.py | {ours} | {mean:.2f} ± {std:.2f} | {per_seed} | {timing} |")
    return "\n".join(lines), complete


def sps_table() -> str:
    """SPS of the Atari runs over the whole run (to the last metrics line, before the final
    checkpoint), and for dqn_atari separately before and after learning starts."""
    runs = runs_in(SPS_RUNS)
    lines = [
        "| script | env | steps | SPS (whole run) | SPS acting only | SPS while training | settings (besides the defaults) |",
        "|---|---|---|---|---|---|---|",
    ]
    for algo, extra in SPS_COMMANDS.items():
        done = [m for m in runs if m["algo"] == algo and m["status"] == "finished"]
        settings = " ".join(extra[2:]) or "none"
        if not done:
            lines.append(f"| {algo}.py | {extra[1]} | {SPS_STEPS:,} | — | — | — | not measured yet |")
            continue
        meta = done[-1]
        sps = meta["latest_metrics"].get("charts/SPS") or meta["summary"]["sps"]
        acting = training = "—"
        if "--learning-starts" in extra:
            starts = int(extra[extra.index("--learning-starts") + 1])
            before, after = phase_sps(meta["_dir"], 0, starts), phase_sps(meta["_dir"], starts, meta["total_steps"])
            acting, training = (f"{v:.0f}" if v else "—" for v in (before, after))
        else:
            training = f"{sps:.0f}"
        lines.append(
            f"| {algo}.py | {meta['env_id']} | {meta['total_steps']:,} | {sps:.0f} | {acting} | {training} | {settings} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--total-timesteps", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS), help="which scripts to launch runs of")
    parser.add_argument("--no-launch", action="store_true", help="only print the table of finished runs")
    parser.add_argument("--atari-sps", action="store_true", help="also measure ppo_atari/dqn_atari SPS over 50k steps")
    opts = parser.parse_args()

    if not opts.no_launch:
        jobs = []
        if opts.atari_sps:
            sps_runs = runs_in(SPS_RUNS)
            for algo, extra in SPS_COMMANDS.items():
                if not any(m["algo"] == algo and m["status"] == "finished" for m in sps_runs):
                    jobs.append((f"{algo}_sps", command(algo, [*extra, "--total-timesteps", str(SPS_STEPS), "--eval-every", "0",
                                               "--checkpoint-every", "0", "--output-dir", str(SPS_RUNS)])))
        runs = runs_in(RUNS)
        for seed in opts.seeds:
            for env_id in ENVS:
                for algo in opts.algos:
                    meta = find_run(runs, algo, env_id, seed, opts.total_timesteps)
                    if meta is not None and meta["status"] == "finished":
                        continue
                    if meta is not None and meta["status"] == "running" and pid_alive(meta.get("pid")):
                        continue  # another launcher is on it
                    name = f"{algo}_{env_id}_seed{seed}"
                    if meta is not None and meta.get("latest_checkpoint_path"):
                        jobs.append((name, command(algo, ["--resume", str(meta["_dir"])])))
                    else:
                        jobs.append((name, command(algo, ["--env-id", env_id, "--seed", str(seed), "--total-timesteps",
                                                          str(opts.total_timesteps), "--output-dir", str(RUNS)])))
        launch(jobs, opts.workers, RUNS.parent / "logs")

    table, complete = returns_table(opts.seeds, opts.total_timesteps)
    sps = sps_table()
    print(table)
    print()
    print(sps)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    header = RESULT.read_text().split("<!-- generated -->")[0] if RESULT.exists() else "# Discrete-action benchmark\n\n"
    RESULT.write_text(
        header + "<!-- generated -->\n"
        f"## Returns, {opts.total_timesteps:,} steps\n\n{table}\n\n"
        f"{'' if complete else 'Some runs are still missing; rerun the script to complete the table.' + chr(10) + chr(10)}"
        f"## Atari SPS ({SPS_STEPS:,} steps, ALE/Pong-v5)\n\n{sps}\n"
    )


if __name__ == "__main__":
    main()
