"""Benchmark of the value-based shelf (issue 20): pqn.py returns on classic control beside CleanRL's
published numbers, and the Atari scripts (c51_atari, sac_atari, rainbow_atari) at a reduced budget
beside dqn_atari.py and ppo_atari.py timed in the same session on the same machine.

    python benchmark/value_based_returns.py                # launch the missing runs (2 at a time), write the tables
    python benchmark/value_based_returns.py --no-launch    # only write the tables of what has finished
    python benchmark/value_based_returns.py --pqn-steps 200000 --atari-steps 10000   # a smaller budget
    python benchmark/value_based_returns.py --only atari --atari-env ALE/Breakout-v5 --atari-steps 250000 \
        --atari-seeds 1 2 --workers 8 --deadline-min 9           # the learning signal, on a GPU machine

Every run is one process with one torch thread (`OMP_NUM_THREADS=1 nice -n 10`). Runs go to
benchmark/runs/value_based/ (git-ignored); a finished run is never redone. Returns follow CleanRL's
aggregation: per seed the mean return of the last 100 training episodes (metadata.json
summary.train_return_last100), then mean ± population std across seeds. The Atari runs are far too
short to learn Pong (CleanRL trains for 10M steps); their table shows the final evaluation and the mean return of
the last 100 training games beside the game's random-policy score (Mnih et al. 2015, through
benchmark/reference/scores.json), and the steps per second with and without learning. With
`--deadline-min`, runs still going at the deadline are stopped with SIGTERM (checkpoint, status
interrupted; the table shows how far they got, and a later call resumes them). The result is
written to benchmark/results/value_based.md and value_based.json (`--result NAME` for another name).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmark"))

from spec_runs import Spec, SpecRuns, phase_sps  # noqa: E402

from axiomrl_utils.jsonl import write_text_atomic  # noqa: E402

RUNS = REPO / "benchmark" / "runs" / "value_based"
RESULTS = REPO / "benchmark" / "results"
SCORES = REPO / "benchmark" / "reference" / "scores.json"

PQN_ENVS = ("CartPole-v1", "Acrobot-v1")
# CleanRL docs (rl-algorithms/pqn.md): mean ± std over seeds of each seed's last-100 training return, 500k steps
PQN_PUBLISHED = {"CartPole-v1": (495.13, 6.89), "Acrobot-v1": (-95.63, 5.73)}
PQN_PUBLISHED_MINUTES = {"CartPole-v1": 0.83, "Acrobot-v1": 1.36}  # CleanRL's runtime table (its machine, a GPU)

ATARI_ENV = "ALE/Pong-v5"
LEARNING_STARTS = 2500
ATARI_SCRIPTS = ("dqn_atari", "ppo_atari", "c51_atari", "sac_atari", "rainbow_atari")


def atari_flags(algo: str, steps: int) -> tuple[str, ...]:
    """Each script's defaults, except a buffer and learning start scaled down to the budget (off-policy
    scripts) and one evaluation of 2 whole games at the end."""
    flags = ["--eval-every", str(steps), "--eval-episodes", "2", "--checkpoint-every", "0"]
    if algo != "ppo_atari":
        flags += ["--buffer-size", str(steps), "--learning-starts", str(LEARNING_STARTS)]
    return tuple(flags)


def pqn_specs(seeds: list[int], steps: int) -> list[Spec]:
    return [Spec("pqn", env_id, steps, "pqn", tuple(seeds)) for env_id in PQN_ENVS]


def atari_specs(seeds: list[int], steps: int, env_id: str = ATARI_ENV, scripts: tuple[str, ...] = ATARI_SCRIPTS) -> list[Spec]:
    return [Spec(algo, env_id, steps, "atari", tuple(seeds), atari_flags(algo, steps)) for algo in scripts]


def random_score(env_id: str) -> float | None:
    """The game's random-policy score from benchmark/reference/scores.json (None if it has none)."""
    reference = json.loads(SCORES.read_text())
    entry = reference["scores"].get(reference["aliases"].get(env_id, env_id))
    return None if entry is None else entry["random"]


def run_of(runs: SpecRuns, spec: Spec, seed: int, finished_only: bool = True) -> dict | None:
    """The metadata (with `_dir`) of this spec's newest run of `seed` at the spec's budget."""
    found = runs.find_run(spec, seed)
    if found is None:
        return None
    run_dir, meta = found
    if meta.get("total_timesteps") != spec.steps or (finished_only and meta.get("status") != "finished"):
        return None
    return {**meta, "_dir": run_dir}


def pqn_rows(runs: SpecRuns, seeds: list[int], total: int) -> list[dict]:
    rows = []
    for spec in pqn_specs(seeds, total):
        env_id = spec.env_id
        metas = [m for m in (run_of(runs, spec, s) for s in seeds) if m]
        values = [m["summary"]["train_return_last100"] for m in metas]
        rows.append({
            "env_id": env_id, "steps": total, "seeds": [m["seed"] for m in metas], "per_seed": values,
            "mean": float(np.mean(values)) if values else None, "std": float(np.std(values)) if values else None,
            "eval_last": [m["latest_metrics"].get("eval/return_mean") for m in metas],
            "minutes": [m["wall_time_s"] / 60 for m in metas], "sps": [m["summary"]["sps"] for m in metas],
            "published": PQN_PUBLISHED[env_id], "published_minutes": PQN_PUBLISHED_MINUTES[env_id],
        })
    return rows


def atari_rows(runs: SpecRuns, seeds: list[int], total: int, env_id: str = ATARI_ENV, scripts: tuple[str, ...] = ATARI_SCRIPTS) -> list[dict]:
    rows = []
    for spec in atari_specs(seeds, total, env_id, scripts):
        algo = spec.script
        for seed in seeds:
            # a run stopped early (SIGTERM: checkpoint, status interrupted) still gives its speed
            meta = run_of(runs, spec, seed, finished_only=False)
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


def write_tables(pqn: list[dict], atari: list[dict], env_id: str = ATARI_ENV, result: Path = RESULTS / "value_based") -> str:
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
    random = random_score(env_id)
    lines += [
        "",
        f"## Atari scripts on {env_id}, reduced budget",
        "",
        f"Each script's defaults, except (off-policy scripts) a buffer of the run's length and learning from step "
        f"{LEARNING_STARTS:,}; one evaluation of 2 whole games at the end. The game's random-policy score is "
        f"{fmt(random)} (Mnih et al. 2015). A run marked (interrupted) was stopped with SIGTERM (checkpoint, then exit) "
        "at the CPU budget or --deadline-min; its SPS are over the steps it did, and it has no final evaluation.",
        "",
        "| script | seed | steps done | final eval return | last-100 training games | random policy | SPS whole run | SPS acting only (before learning) | SPS while learning | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in atari:
        stopped = "" if r["status"] == "finished" else f" ({r['status']})"
        lines.append(
            f"| {r['algo']}.py | {r['seed']} | {r['steps']:,}{stopped} | {fmt(r['eval_return'])} | {fmt(r['train_return_last100'])} | "
            f"{fmt(random)} | {r['sps_whole_run']:.0f} | {fmt(r['sps_acting_only'], 0)} | {fmt(r['sps_learning'], 0)} | {r['minutes']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    result.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(result.with_suffix(".json"), json.dumps({"pqn": pqn, "atari": atari, "atari_env": env_id}, indent=2) + "\n")
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
    parser.add_argument("--atari-env", default=ATARI_ENV, help="the game of the Atari part")
    parser.add_argument("--atari-scripts", nargs="+", default=list(ATARI_SCRIPTS), choices=ATARI_SCRIPTS)
    parser.add_argument("--deadline-min", type=float, help="stop (SIGTERM: checkpoint, then exit) runs still going after this many minutes")
    parser.add_argument("--stagger-s", type=float, default=20, help="seconds between two run starts (each writes its metadata)")
    parser.add_argument("--runs-dir", type=Path, default=RUNS, help="where the runs go (found again by later calls)")
    parser.add_argument("--result", default="value_based", help="the result files: a name in benchmark/results/, or a path (no suffix)")
    opts = parser.parse_args()
    if random_score(opts.atari_env) is None and opts.only != "pqn":
        parser.error(f"{opts.atari_env} has no random-policy score in {SCORES.relative_to(REPO)}; pick one of its Atari games")

    runs = SpecRuns(opts.runs_dir.resolve())
    scripts = tuple(opts.atari_scripts)
    if not opts.no_launch:
        specs = ([] if opts.only == "atari" else pqn_specs(opts.seeds, opts.pqn_steps)) + (
            [] if opts.only == "pqn" else atari_specs(opts.atari_seeds, opts.atari_steps, opts.atari_env, scripts))
        deadline = None if opts.deadline_min is None else time.monotonic() + 60 * opts.deadline_min
        runs.launch(runs.missing(specs), opts.workers, deadline=deadline, stagger_s=opts.stagger_s)

    result = RESULTS / opts.result if len(Path(opts.result).parts) == 1 else Path(opts.result)
    text = write_tables(
        pqn_rows(runs, opts.seeds, opts.pqn_steps),
        atari_rows(runs, opts.atari_seeds, opts.atari_steps, opts.atari_env, scripts),
        opts.atari_env, result,
    )
    write_text_atomic(result.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
