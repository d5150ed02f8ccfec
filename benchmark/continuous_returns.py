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
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from axiomrl_utils.jsonl import read_jsonl, write_text_atomic  # noqa: E402
from axiomrl_utils.host import pid_alive  # noqa: E402

OUT = REPO / "benchmark" / "runs" / "continuous"
RESULT = REPO / "benchmark" / "results" / "continuous.md"
SEEDS = (1, 2, 3)
SPS_STEPS = 20_000
SPS_LEARNING_STARTS = 5_000  # off-policy scripts train for the last 15 000 of the 20 000 steps


@dataclass(frozen=True)
class Spec:
    script: str
    env_id: str
    steps: int
    kind: str  # "returns" or "sps"
    seeds: tuple[int, ...] = SEEDS
    extra: tuple[str, ...] = field(default=())


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


def spec_dir(spec: Spec) -> Path:
    return OUT / spec.kind


def find_run(spec: Spec, seed: int) -> tuple[Path, dict] | None:
    """The newest run of this spec and seed in its output directory, with its metadata."""
    root = spec_dir(spec)
    if not root.is_dir():
        return None
    found = []
    for run_dir in root.iterdir():
        try:
            meta = json.loads((run_dir / "metadata.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("algo") == spec.script and meta.get("env_id") == spec.env_id and meta.get("seed") == seed:
            found.append((meta.get("created_at_utc", ""), run_dir, meta))
    if not found:
        return None
    _, run_dir, meta = max(found)
    return run_dir, meta


def command(spec: Spec, seed: int) -> list[str]:
    """The training command of one seed: resume a stopped run, else start a new one."""
    base = ["nice", "-n", "10", sys.executable, str(REPO / "axiomrl" / f"{spec.script}.py")]
    existing = find_run(spec, seed)
    if existing is not None and existing[1].get("latest_checkpoint_path"):
        return base + ["--resume", str(existing[0]), "--no-progress"]
    return base + [
        "--env-id", spec.env_id, "--seed", str(seed), "--total-timesteps", str(spec.steps),
        "--output-dir", str(spec_dir(spec)), "--no-progress", *spec.extra,
    ]


def needs_run(spec: Spec, seed: int) -> bool:
    """No finished run of this seed, and none in progress (by this launcher or another one)."""
    existing = find_run(spec, seed)
    if existing is None:
        return True
    meta = existing[1]
    running = meta.get("status") == "running" and pid_alive(meta.get("pid"))
    return meta.get("status") != "finished" and not running


def missing(specs: list[Spec]) -> list[tuple[Spec, int]]:
    return [
        (spec, seed)
        for spec in specs
        if (REPO / "axiomrl" / f"{spec.script}.py").exists()
        for seed in spec.seeds
        if needs_run(spec, seed)
    ]


def running_elsewhere(own: set[int]) -> int:
    """Benchmark runs alive under OUT that this launcher did not start (another launcher's)."""
    count = 0
    for meta_file in OUT.glob("*/*/metadata.json"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("status") == "running" and meta.get("pid") not in own and pid_alive(meta.get("pid")):
            count += 1
    return count


def launch(todo: list[tuple[Spec, int]], workers: int) -> None:
    """Run `todo`, keeping at most `workers` benchmark runs alive, counting other launchers' runs.

    The machine's load average is sampled during each run and written next to its log, since
    SPS on a shared machine means little without it.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    OUT.mkdir(parents=True, exist_ok=True)
    queue, active = list(todo), []
    while queue or active:
        while queue and len(active) + running_elsewhere({a[0].pid for a in active}) < workers:
            spec, seed = queue.pop(0)
            if not needs_run(spec, seed):  # another launcher took it meanwhile
                continue
            spec_dir(spec).mkdir(parents=True, exist_ok=True)
            stem = spec_dir(spec) / f"{spec.script}__{spec.env_id}__seed{seed}"
            log = open(stem.with_suffix(".log"), "a")
            cmd = command(spec, seed)
            print(f"launch: {' '.join(cmd[3:])}", flush=True)
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=spec_dir(spec))
            active.append((proc, log, spec, seed, stem, []))
            time.sleep(20)  # let it write its metadata before counting runs again
        time.sleep(5)
        for item in list(active):
            proc, log, spec, seed, stem, loads = item
            loads.append(os.getloadavg()[0])
            if proc.poll() is not None:
                log.close()
                active.remove(item)
                write_text_atomic(
                    Path(f"{stem}.load.json"),
                    json.dumps({"load_mean": float(np.mean(loads)), "load_max": float(np.max(loads)), "samples": len(loads)}),
                )
                print(f"done ({proc.returncode}): {spec.script} {spec.env_id} seed{seed}", flush=True)


def load_during(spec: Spec, seed: int) -> str:
    try:
        load = json.loads(Path(f"{spec_dir(spec) / f'{spec.script}__{spec.env_id}__seed{seed}'}.load.json").read_text())
    except (OSError, ValueError):
        return "-"
    return f"{load['load_mean']:.1f}"


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
