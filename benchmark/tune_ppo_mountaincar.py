"""A real `axiomrl tune` search: ppo.py on MountainCar-v0 (where the CleanRL defaults stay at -200),
then the best config retrained over fresh seeds next to the defaults; writes benchmark/results/tune.md.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmark/tune_ppo_mountaincar.py        # ~20 min on 2 busy cores
    PYTHONPATH=. python benchmark/tune_ppo_mountaincar.py --trials 4 --steps 8192 --out /tmp/t  # a quick look

It measures: trials per hour of wall time on this machine (the tuner with --workers W, each trial's
seeds in parallel), and the tuner's overhead per trial: the trial's wall time from claiming it to
recording its score, minus its longest run's process lifetime (the `overhead_s` of report.json).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = "MountainCar-v0"
# The default PPO space (docs/tune.md) narrowed to the region RL Zoo's MountainCar-v0 recipe points at
# (long rollouts over many envs, λ near 1, a small entropy bonus) with the two switches MountainCar
# turns on: observation rescaling fixed on, and value-loss clipping sampled (SB3's PPO has none).
SPACE = {
    "rescale_observation": True,
    "clip_vloss": {"choices": [True, False]},
    "learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
    "num_envs": {"choices": [8, 16]},
    "num_steps": {"choices": [64, 128, 256]},
    "num_minibatches": {"choices": [4, 8, 16]},
    "update_epochs": {"choices": [4, 10]},
    "gamma": {"choices": [0.98, 0.99, 0.995]},
    "gae_lambda": {"choices": [0.95, 0.98, 0.99]},
    "ent_coef": {"low": 1e-4, "high": 0.05, "log": True},
}


def train(argv: list[str], out: Path) -> dict:
    """One ppo.py run to its end in its own directory `out`; its metadata.json."""
    subprocess.run([sys.executable, str(REPO / "axiomrl" / "ppo.py"), *argv, "--output-dir", str(out), "--no-progress"],
                   check=True, cwd=REPO, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    (meta,) = out.glob("*/metadata.json")
    return json.loads(meta.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=16_000, help="steps per run (the reduced budget)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--retrain-seeds", type=int, nargs="+", default=[101, 102, 103])
    p.add_argument("--out", default=str(REPO / "runs" / "bench_tune"))
    p.add_argument("--name", help="the study's name (default: from the settings)")
    p.add_argument("--results", default=str(REPO / "benchmark" / "results" / "tune.md"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = out / "space.json"
    space.write_text(json.dumps(SPACE, indent=2))
    name = args.name or f"ppo-mountaincar-{args.trials}x{args.seeds}-{args.steps}"
    run_args = ["--total-timesteps", str(args.steps), "--eval-every", str(args.steps // 5), "--eval-episodes", "5",
                "--checkpoint-every", str(args.steps // 2), "--no-progress"]
    cmd = [sys.executable, "-m", "axiomrl_utils.tune", "--script", "axiomrl/ppo.py", "--env-ids", ENV, "--trials", str(args.trials),
           "--seeds", str(args.seeds), "--workers", str(args.workers), "--name", name, "--output-dir", str(out),
           "--space", str(space), "--sampler-seed", "0", "--", *run_args]
    started = time.monotonic()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall = time.monotonic() - started
    study_dir = out / "studies" / name
    report = json.loads((study_dir / "report.json").read_text())
    trials = report["trials"]
    overheads = [t["overhead_s"] for t in trials if t["overhead_s"] is not None]
    states = {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "fail")}
    best = next(t for t in trials if t["state"] == "complete")

    # retrain: the best config and the CleanRL defaults over fresh seeds, 2 at a time
    jobs = [("best config", ["--config", str(study_dir / "best_config.yaml"), "--env-id", ENV, "--seed", str(s),
                             "--total-timesteps", str(args.steps), "--eval-episodes", "10"], s) for s in args.retrain_seeds]
    jobs += [("defaults", ["--env-id", ENV, "--seed", str(s), "--total-timesteps", str(args.steps), "--eval-episodes", "10"], s)
             for s in args.retrain_seeds]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        metas = list(pool.map(lambda j: (j[0], j[2], train(j[1], out / "retrain" / f"{j[0].replace(' ', '_')}_seed{j[2]}")), jobs))

    rows = []
    for label in ("best config", "defaults"):
        finals = [m["summary"]["eval_return_last"] for lbl, _, m in metas if lbl == label]
        trains = [m["summary"]["train_return_last100"] for lbl, _, m in metas if lbl == label]
        rows.append(f"| {label} | {', '.join(f'{v:.1f}' for v in finals)} | {statistics.fmean(finals):.1f} | "
                    f"{', '.join(f'{v:.1f}' for v in trains)} |")
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    lines = [
        "# `axiomrl tune`: ppo.py on MountainCar-v0",
        "",
        f"`benchmark/tune_ppo_mountaincar.py`, {time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores "
        f"(shared with other work; load average at the end {os.getloadavg()[0]:.1f}), `--workers {args.workers}`, "
        f"each trial's {args.seeds} seeds in parallel, one thread each.",
        "",
        f"Search: {args.trials} trials x {args.seeds} seeds x {args.steps:,} steps, TPE (seed 0, 10 random startup trials), "
        f"median pruner (5 startup trials, no pruning before step {args.steps // 3:,}) on the evaluations every "
        f"{args.steps // 5:,} steps (5 episodes), objective: mean over seeds of the "
        "final evaluation's mean return, normalised by benchmark/reference/scores.json (-200 -> 0, -166.38 -> 1). "
        "Space: `SPACE` in the script (the default PPO space narrowed to RL Zoo's MountainCar region, `clip_vloss` "
        "sampled, `rescale_observation` fixed on; the space file is in the study directory).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| wall time of the search | {wall / 60:.1f} min |",
        f"| trials | {len(trials)}: {states['complete']} complete, {states['pruned']} pruned, {states['fail']} failed |",
        f"| trials per hour | {len(trials) / (wall / 3600):.1f} |",
        f"| tuner overhead per trial (beyond its runs) | mean {statistics.fmean(overheads):.2f} s, max {max(overheads):.2f} s |",
        f"| best trial | {best['trial']}: score {best['score']:.3f} (normalised) |",
        "",
        f"Best parameters: {params}",
        "",
        f"Retrained over fresh seeds {args.retrain_seeds} at the same {args.steps:,}-step budget (final evaluation: "
        "10 episodes; train: mean of the last 100 training episodes):",
        "",
        "| config | final eval return per seed | mean | train return (last 100) per seed |",
        "|---|---|---:|---|",
        *rows,
        "",
    ]
    Path(args.results).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
