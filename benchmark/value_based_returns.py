"""Benchmark of the value-based shelf (issue 20): pqn.py returns on classic control beside CleanRL's
published numbers, and the Atari scripts (c51_atari, sac_atari, rainbow_atari) at a reduced budget
beside dqn_atari.py and ppo_atari.py timed in the same session on the same machine.

    python benchmark/value_based_returns.py                # launch the missing runs (2 at a time), write the tables
    python benchmark/value_based_returns.py --no-launch    # only write the tables of what has finished
    python benchmark/value_based_returns.py --pqn-steps 200000 --atari-steps 10000   # a smaller budget

Every run is one process with one torch thread (`OMP_NUM_THREADS=1 nice -n 10`). Runs go to
benchmark/runs/value_based/ (git-ignored); a finished run is never redone. Returns follow CleanRL's
aggregation: per seed the mean return of the last 100 training episodes (metadata.json
summary.train_return_last100), then mean ± population std across seeds. The Atari runs are far too
short to learn Pong (CleanRL trains for 10M steps); their table shows the final evaluation beside
Pong's random-policy score, and the steps per second with and without learning. The result is
written to benchmark/results/value_based.md and value_based.json.
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
RUNS = REPO / "benchmark" / "runs" / "value_based"
RESULT = REPO / "benchmark" / "results" / "value_based"

PQN_ENVS = ("CartPole-v1", "Acrobot-v1")
# CleanRL docs (rl-algorithms/pqn.md): mean ± std over seeds of each seed's last-100 training return, 500k steps
PQN_PUBLISHED = {"CartPole-v1": (495.13, 6.89), "Acrobot-v1": (-95.63, 5.73)}
PQN_PUBLISHED_MINUTES = {"CartPole-v1": 0.83, "Acrobot-v1": 1.36}  # CleanRL's runtime table (its machine, a GPU)

ATARI_ENV = "ALE/Pong-v5"
PONG_RANDOM = -20.7  # Pong's random-policy score (Mnih et al. 2015; benchmark/reference/scores.json)
LEARNING_STARTS = 2500
ATARI_SCRIPTS = ("dqn_atari", "ppo_atari", "c51_atari", "sac_atari", "rainbow_atari")


def atari_flags(algo: str, steps: int) -> list[str]:
    """Each script's defaults, except a buffer and learning start scaled down to the budget (off-policy
    scripts) and one evaluation of 2 whole games at the end."""
    flags = ["--env-id", ATARI_ENV, "--total-timesteps", str(steps), "--eval-every", str(steps), "--eval-episodes", "2",
             "--checkpoint-every", "0"]
    if algo != "ppo_atari":
        flags += ["--buffer-size", str(steps), "--learning-starts", str(LEARNING_STARTS)]
    return flags


def runs_in(root: Path) -> list[dict]:
    found = []
    for meta_path in sorted(root.glob("*/*/metadata.json")) if root.is_dir() else []:
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        meta["_dir"] = meta_path.parent
        found.append(meta)
    return found


def finished(runs: list[dict], algo: str, env_id: str, seed: int, total: int) -> dict | None:
    for meta in reversed(runs):
        if (meta["algo"], meta["env_id"], meta["seed"], meta["total_timesteps"], meta["status"]) == (
            algo, env_id, seed, total, "finished"
        ):
            return meta
    return None


def command(algo: str, out: Path, extra: list[str]) -> list[str]:
    return ["nice", "-n", "10", "env", "OMP_NUM_THREADS=1", f"PYTHONPATH={REPO}", sys.executable,
            str(REPO / "axiomrl" / f"{algo}.py"), "--no-progress", "--output-dir", str(out), *extra]


def launch(jobs: list[tuple[str, list[str]]], workers: int) -> None:
    logs = RUNS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < workers:
            name, cmd = pending.pop(0)
            log = open(logs / f"{time.strftime('%Y%m%d-%H%M%S')}_{name}.log", "w")
            print("launch:", name, flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log, name))
        time.sleep(2)
        for item in list(running):
            proc, log, name = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f"exit {proc.returncode}:", name, flush=True)


def phase_sps(run_dir: Path, start: int, end: int) -> float | None:
    """Steps per wall-clock second between the metrics rows nearest to `start` and `end`."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if start <= r["global_step"] <= end]
    if len(rows) < 2 or rows[-1]["wall_time"] <= rows[0]["wall_time"]:
        return None
    return (rows[-1]["global_step"] - rows[0]["global_step"]) / (rows[-1]["wall_time"] - rows[0]["wall_time"])


def pqn_rows(runs: list[dict], seeds: list[int], total: int) -> list[dict]:
    rows = []
    for env_id in PQN_ENVS:
        metas = [m for m in (finished(runs, "pqn", env_id, s, total) for s in seeds) if m]
        values = [m["summary"]["train_return_last100"] for m in metas]
        rows.append({
            "env_id": env_id, "steps": total, "seeds": [m["seed"] for m in metas], "per_seed": values,
            "mean": float(np.mean(values)) if values else None, "std": float(np.std(values)) if values else None,
            "eval_last": [m["latest_metrics"].get("eval/return_mean") for m in metas],
            "minutes": [m["wall_time_s"] / 60 for m in metas], "sps": [m["summary"]["sps"] for m in metas],
            "published": PQN_PUBLISHED[env_id], "published_minutes": PQN_PUBLISHED_MINUTES[env_id],
        })
    return rows


def atari_rows(runs: list[dict], seeds: list[int], total: int) -> list[dict]:
    rows = []
    for algo in ATARI_SCRIPTS:
        for seed in seeds:
            # a run stopped early (SIGTERM: checkpoint, status interrupted) still gives its speed
            meta = finished(runs, algo, ATARI_ENV, seed, total) or next(
                (m for m in reversed(runs) if (m["algo"], m["env_id"], m["seed"], m["total_timesteps"]) == (algo, ATARI_ENV, seed, total)),
                None)
            if meta is None:
                continue
            learning = algo != "ppo_atari"
            rows.append({
                "algo": algo, "seed": seed, "steps": meta["total_steps"], "status": meta["status"],
                "eval_return": meta["latest_metrics"].get("eval/return_mean"),
                "train_return_last100": meta["summary"].get("train_return_last100"),
                "sps_whole_run": meta["summary"]["sps"],
                "sps_acting_only": phase_sps(meta["_dir"], 0, LEARNING_STARTS) if learning else None,
                "sps_learning": phase_sps(meta["_dir"], LEARNING_STARTS + 100, meta["total_steps"]) if learning else meta["summary"]["sps"],
                "minutes": meta["wall_time_s"] / 60,
            })
    return rows


def fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def write_tables(pqn: list[dict], atari: list[dict]) -> str:
    lines = [
        "# Value-based shelf (issue 20): measured on this machine",
        "",
        f"Written by `benchmark/value_based_returns.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        "one torch thread per run, at most 2 runs at once, on a 2-core machine shared with other work "
        "(so wall-clock figures are upper bounds).",
        "",
        "## pqn.py, classic control (CleanRL's defaults)",
        "",
        "| env | steps | ours: last-100 train return, mean ± std | per seed | final eval (10 episodes) per seed | CleanRL published | minutes per run (SPS) | CleanRL minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in pqn:
        ours = f"{r['mean']:.2f} ± {r['std']:.2f} ({len(r['per_seed'])} seeds)" if r["per_seed"] else "—"
        timing = f"{np.mean(r['minutes']):.1f} ({np.mean(r['sps']):.0f})" if r["minutes"] else "—"
        lines.append(
            f"| {r['env_id']} | {r['steps']:,} | {ours} | {', '.join(fmt(v) for v in r['per_seed'])} | "
            f"{', '.join(fmt(v) for v in r['eval_last'])} | {r['published'][0]:.2f} ± {r['published'][1]:.2f} | {timing} | "
            f"{r['published_minutes']:.2f} |"
        )
    lines += [
        "",
        f"## Atari scripts on {ATARI_ENV}, reduced budget",
        "",
        f"Each script's defaults, except (off-policy scripts) a buffer of the run's length and learning from step "
        f"{LEARNING_STARTS:,}; one evaluation of 2 whole games at the end. Pong's random-policy score is {PONG_RANDOM}. "
        "The budget is far too small for a learning signal on Pong (CleanRL trains it for 10M steps): this table "
        "measures speed. A run marked (interrupted) was stopped with SIGTERM (checkpoint, then exit) to stay within "
        "the CPU budget; its SPS are over the steps it did, and it has no final evaluation.",
        "",
        "| script | seed | steps done | final eval return | SPS whole run | SPS acting only (before learning) | SPS while learning | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in atari:
        stopped = "" if r["status"] == "finished" else f" ({r['status']})"
        lines.append(
            f"| {r['algo']}.py | {r['seed']} | {r['steps']:,}{stopped} | {fmt(r['eval_return'])} | {r['sps_whole_run']:.0f} | "
            f"{fmt(r['sps_acting_only'], 0)} | {fmt(r['sps_learning'], 0)} | {r['minutes']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.with_suffix(".json").write_text(json.dumps({"pqn": pqn, "atari": atari}, indent=2) + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--atari-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--pqn-steps", type=int, default=500_000)
    parser.add_argument("--atari-steps", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("pqn", "atari"), help="launch only this part")
    parser.add_argument("--no-launch", action="store_true", help="only write the tables of finished runs")
    opts = parser.parse_args()

    if not opts.no_launch:
        runs, jobs = runs_in(RUNS), []
        if opts.only != "atari":
            for seed in opts.seeds:
                for env_id in PQN_ENVS:
                    if not finished(runs, "pqn", env_id, seed, opts.pqn_steps):
                        jobs.append((f"pqn_{env_id}_{seed}", command("pqn", RUNS / "pqn", ["--env-id", env_id, "--seed", str(seed),
                                                                        "--total-timesteps", str(opts.pqn_steps)])))
        if opts.only != "pqn":
            for seed in opts.atari_seeds:
                for algo in ATARI_SCRIPTS:
                    if not finished(runs, algo, ATARI_ENV, seed, opts.atari_steps):
                        jobs.append((f"{algo}_{seed}", command(algo, RUNS / "atari", ["--seed", str(seed),
                                                                *atari_flags(algo, opts.atari_steps)])))
        launch(jobs, opts.workers)

    runs = runs_in(RUNS)
    text = write_tables(pqn_rows(runs, opts.seeds, opts.pqn_steps), atari_rows(runs, opts.atari_seeds, opts.atari_steps))
    RESULT.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
