"""Continuous-control benchmark: returns on Pendulum-v1 / InvertedPendulum-v5 and SPS on HalfCheetah-v5.

Rerunnable: it launches only the runs that are missing (a run that stopped early is resumed),
at most --workers at a time, each `nice`d with one torch thread, then prints the tables and
writes benchmark/results/continuous.md.

    python benchmark/continuous_returns.py                 # launch what is missing, then report
    python benchmark/continuous_returns.py --report-only   # just the tables from what exists
    python benchmark/continuous_returns.py --only sac_continuous_action --workers 1
    python benchmark/continuous_returns.py --kind returns --env-ids Pendulum-v1   # one part first

Returns are CleanRL's aggregation: per seed the mean of the last 100 training episodes
(metadata.json summary.train_return_last100), then mean ± population std across seeds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from axiomrl_utils.jsonl import read_jsonl, write_text_atomic  # noqa: E402
from spec_runs import Spec, SpecRuns  # noqa: E402

OUT = REPO / "benchmark" / "runs" / "continuous"
RUNS = SpecRuns(OUT)
find_run, missing, launch = RUNS.find_run, RUNS.missing, RUNS.launch
RESULT = REPO / "benchmark" / "results" / "continuous.md"
SPS_STEPS = 20_000
SPS_LEARNING_STARTS = 5_000  # off-policy scripts train for the last 15 000 of the 20 000 steps


RETURN_SPECS = [
    Spec("sac_continuous_action", "Pendulum-v1", 30_000, "returns"),
    # TD3's default learning_starts (25 000) would leave 5 000 learning steps out of 30 000 on Pendulum.
    Spec("td3_continuous_action", "Pendulum-v1", 30_000, "returns", extra=("--learning-starts", "5000")),
    # SAC runs at ~10-20 SPS on this shared 2-core machine, so the off-policy InvertedPendulum runs
    # get 50 000 steps (evaluated every 10 000); TD3 starts learning at RL Zoo's 10 000 instead of 25 000.
    Spec("sac_continuous_action", "InvertedPendulum-v5", 50_000, "returns", extra=("--eval-every", "10000")),
    Spec("td3_continuous_action", "InvertedPendulum-v5", 50_000, "returns",
         extra=("--eval-every", "10000", "--learning-starts", "10000")),
    Spec("ppo_continuous_action", "InvertedPendulum-v5", 100_000, "returns"),
]
SPS_SPECS = [
    Spec("ppo_continuous_action", "HalfCheetah-v5", SPS_STEPS, "sps", seeds=(1,), extra=("--eval-every", "0")),
    *[
        Spec(script, "HalfCheetah-v5", SPS_STEPS, "sps", seeds=(1,),
             extra=("--eval-every", "0", "--learning-starts", str(SPS_LEARNING_STARTS)))
        for script in ("sac_continuous_action", "td3_continuous_action", "ddpg_continuous_action")
    ],
]

# Published numbers beside ours (see /work/shared/reference/published-results.md): CleanRL
# (last-100 training episodes, 1M steps, v4 envs) and RL Zoo (deterministic eval of one run).
REFERENCE = {
    ("sac_continuous_action", "Pendulum-v1"): "RL Zoo SAC -157 @20k",
    ("td3_continuous_action", "Pendulum-v1"): "RL Zoo TD3 -152 @20k",
    ("sac_continuous_action", "InvertedPendulum-v5"): "CleanRL 909.37 ± 55.66 @1M (v4)",
    ("td3_continuous_action", "InvertedPendulum-v5"): "CleanRL 968.99 ± 25.80 @1M (v4)",
    ("ppo_continuous_action", "InvertedPendulum-v5"): "CleanRL 963.09 ± 22.20 @1M (v4)",
}
REFERENCE_SPS = {
    "ppo_continuous_action": "~650 (CleanRL, HalfCheetah 1M in 25.4 min)",
    "sac_continuous_action": "~95-103 (CleanRL)",
    "td3_continuous_action": "~183-206 (CleanRL)",
    "ddpg_continuous_action": "n/a",
}


def load_during(spec: Spec, seed: int) -> str:
    load = RUNS.load_during(spec, seed)
    return "-" if load is None else f"{load:.1f}"


def training_phase_sps(run_dir: Path, learning_starts: int) -> float | None:
    """Steps per wall second between the first logged step past learning_starts and the last one."""
    rows = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["global_step"] > learning_starts]
    if len(rows) < 2:
        return None
    return (rows[-1]["global_step"] - rows[0]["global_step"]) / (rows[-1]["wall_time"] - rows[0]["wall_time"])


def returns_table() -> list[str]:
    lines = [
        "| script | env | steps | seeds | return (last 100 train episodes, mean ± std over seeds) | per seed | best eval (mean over seeds) | SPS | reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in RETURN_SPECS:
        per_seed, evals, sps, done, steps_done = [], [], [], 0, set()
        for seed in spec.seeds:
            found = find_run(spec, seed)
            if found is None:
                continue
            summary = found[1].get("summary") or {}
            if found[1].get("status") != "finished" or summary.get("train_return_last100") is None:
                continue
            done += 1
            steps_done.add(found[1]["total_steps"])
            per_seed.append(summary["train_return_last100"])
            if summary.get("eval_return_best") is not None:
                evals.append(summary["eval_return_best"])
            if summary.get("sps"):
                sps.append(summary["sps"])
        cell = f"{np.mean(per_seed):.2f} ± {np.std(per_seed):.2f}" if per_seed else "not run"
        seeds_cell = ", ".join(f"{x:.1f}" for x in per_seed) or "-"
        eval_cell = f"{np.mean(evals):.2f}" if evals else "-"
        sps_cell = f"{np.mean(sps):.0f}" if sps else "-"
        extra = f" ({' '.join(spec.extra)})" if spec.extra else ""
        # PPO stops at a whole number of rollouts (48 x 2048 = 98,304 of 100,000)
        steps_cell = f"{spec.steps:,}" if steps_done in (set(), {spec.steps}) else f"{', '.join(f'{n:,}' for n in sorted(steps_done))}"
        lines.append(
            f"| {spec.script}{extra} | {spec.env_id} | {steps_cell} | {done}/{len(spec.seeds)} | {cell} | {seeds_cell} | "
            f"{eval_cell} | {sps_cell} | {REFERENCE.get((spec.script, spec.env_id), '')} |"
        )
    return lines


def sps_table() -> list[str]:
    lines = [
        "| script | env | steps | learning_starts | SPS overall | SPS while training | load avg during run | CleanRL reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in SPS_SPECS:
        found = find_run(spec, spec.seeds[0])
        off_policy = spec.script != "ppo_continuous_action"
        starts = SPS_LEARNING_STARTS if off_policy else None
        if found is None or found[1].get("status") != "finished":
            lines.append(f"| {spec.script} | {spec.env_id} | {spec.steps:,} | {starts or '-'} | not run | | | {REFERENCE_SPS[spec.script]} |")
            continue
        run_dir, meta = found
        overall = meta["summary"]["sps"]
        training = training_phase_sps(run_dir, starts or 0)
        lines.append(
            f"| {spec.script} | {spec.env_id} | {spec.steps:,} | {starts or '-'} | {overall:.0f} | "
            f"{training:.0f} | {load_during(spec, spec.seeds[0])} | {REFERENCE_SPS[spec.script]} |"
        )
    return lines


def code_version() -> str:
    """The commit the launcher (and the scripts it starts) come from: git, or a COMMIT file in an export."""
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = REPO / "COMMIT"
        return commit.read_text().strip()[:7] if commit.exists() else "unknown"


def report() -> str:
    cpu = os.cpu_count()
    text = "\n".join(
        [
            "# Continuous-control benchmark",
            "",
            f"Generated by `python benchmark/continuous_returns.py` ({time.strftime('%Y-%m-%d')}); runs in "
            "`benchmark/runs/continuous/` (git-ignored). Machine: "
            f"{cpu}-core CPU shared with other jobs, each run `nice -n 10` with OMP_NUM_THREADS=1, at most 2 at once. "
            f"Code: commit {code_version()}.",
            "",
            "## Returns",
            "",
            "Per seed: mean return of the last 100 training episodes (CleanRL's aggregation, "
            "`metadata.json` `summary.train_return_last100`); then mean ± population std across seeds. "
            "Best eval: the best deterministic 10-episode evaluation of each seed (every 50 000 steps and at the end), "
            "averaged over seeds. References: CleanRL ran 1M steps on v4 envs (out of reach here); RL Zoo numbers are single runs "
            "evaluated deterministically, so their ± is not comparable.",
            "",
            *returns_table(),
            "",
            "## Speed (HalfCheetah-v5, 20 000 steps, seed 1, evaluation off)",
            "",
            f"Off-policy scripts use `--learning-starts {SPS_LEARNING_STARTS}`, so they update the networks at every step "
            f"of the last {SPS_STEPS - SPS_LEARNING_STARTS:,}; 'SPS while training' is measured over that phase only "
            "(from metrics.jsonl wall_time). The CleanRL figures are from their 1M-step runs on other hardware.",
            "",
            *sps_table(),
            "",
        ]
    )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--only", nargs="*", default=None, help="scripts to launch (default all)")
    parser.add_argument("--env-ids", nargs="*", default=None, help="envs to launch (default all)")
    parser.add_argument("--kind", choices=["returns", "sps", "all"], default="all", help="which part to launch")
    parser.add_argument("--report-only", action="store_true", help="launch nothing; print the tables")
    opts = parser.parse_args()
    if not opts.report_only:
        specs = {"returns": RETURN_SPECS, "sps": SPS_SPECS, "all": RETURN_SPECS + SPS_SPECS}[opts.kind]
        if opts.only:
            specs = [s for s in specs if s.script in opts.only]
        if opts.env_ids:
            specs = [s for s in specs if s.env_id in opts.env_ids]
        launch(missing(specs), opts.workers)
    text = report()
    print(text)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULT, text)


if __name__ == "__main__":
    main()
