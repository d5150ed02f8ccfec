"""`axiomrl compare`: algorithms compared across envs with the statistics of Agarwal et al. (2021):
per algo the aggregate IQM, mean, median and optimality gap of normalised scores with 95%
stratified-bootstrap CIs, and the probability of improvement for every pair of algos.
`--fail-if-worse ALGO` turns it into a statistical gate for CI pipelines.

The statistics live in `axiomrl_utils.commands.across_tasks` (numpy, imported when computing);
normalisation in `axiomrl_utils.commands.normalization_scores`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass, field
from typing import Iterable

from axiomrl_utils import UsageError
from axiomrl_utils.commands.normalization_scores import (
    DEFAULT_REFERENCE_SCORES,
    NORMALIZATIONS,
    check_normalization,
    load_reference_scores,
    normalization_bounds,
    normalize,
)
from axiomrl_utils.commands.output import (
    FORMATS,
    Column,
    add_output_arguments,
    fmt_float,
    note,
    render,
    warn,
    write_output,
)
from axiomrl_utils.commands.runs import METRICS, RunRecord, add_run_selection_arguments, run_metric, selected_runs
from axiomrl_utils.commands.stats import DEFAULT_RESAMPLES
from axiomrl_utils.jsonl import dumps

MIN_RUNS = 2  # per (algo, env): a bootstrap over one run has nothing to resample
# --metric spellings: the hyphenated names and the leaderboard's underscored ones
METRIC_NAMES = {"train": "train", "final-eval": "final_eval", "best-eval": "best_eval",
                "final_eval": "final_eval", "best_eval": "best_eval"}
AGGREGATE_LABELS = {"iqm": "IQM", "mean": "mean", "median": "median", "optimality_gap": "optimality gap"}


@dataclass
class Comparison:
    """What `compare_runs` found: the normalised scores it used, one aggregate row per algo, one
    improvement row per pair, and the bad-input problems (results are partial when there are any)."""

    metric: str
    normalize: str
    scores: dict[str, dict[str, list[float]]]  # algo -> env -> normalised run scores (>= MIN_RUNS)
    common_envs: list[str]  # envs every algo has: the aggregates' tasks
    aggregates: list[dict] = field(default_factory=list)
    improvements: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def improvement(self, algo: str, baseline: str) -> dict | None:
        """The row for P(algo > baseline), oriented that way; None when the pair was not compared."""
        for row in self.improvements:
            if (row["algo"], row["baseline"]) == (algo, baseline):
                return row
            if (row["algo"], row["baseline"]) == (baseline, algo):
                flipped = dict(row, algo=algo, baseline=baseline, probability=1 - row["probability"])
                low, high = row["ci_low"], row["ci_high"]
                flipped["ci_low"], flipped["ci_high"] = (None, None) if low is None else (1 - high, 1 - low)
                return flipped
        return None


def metric_key(name: str) -> str:
    """The METRICS key for a --metric spelling; UsageError naming the choices."""
    if name not in METRIC_NAMES:
        raise UsageError(f"--metric {name} is not a per-run metric; use train, final-eval or best-eval")
    return METRIC_NAMES[name]


def _raw_scores(runs: Iterable[RunRecord], metric: str) -> dict[str, dict[str, list[float]]]:
    raw: dict[str, dict[str, list[float]]] = {}
    without = []
    for run in runs:
        value = run_metric(run, metric)
        if value is None:
            without.append(run.run_id)
        else:
            raw.setdefault(run.algo, {}).setdefault(run.env_id, []).append(value)
    if without:
        warn(f"left out {len(without)} run(s) without a {metric} value yet ({', '.join(without[:3])}{', ...' if len(without) > 3 else ''})")
    return raw


def _listing(names: Iterable[str], limit: int = 6) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def compare_runs(
    runs: Iterable[RunRecord],
    metric: str = "train",
    how: str = "reference",
    reference_path: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Comparison:
    """Normalise the runs' `metric` per env and compare the algos.

    Raises UsageError when nothing at all can be compared; otherwise returns what could be
    computed, with each bad-input problem as one sentence in `problems`.
    """
    from axiomrl_utils.commands.across_tasks import aggregate_metrics, probability_of_improvement

    check_normalization(how)
    raw = _raw_scores(runs, metric)
    if not raw:
        raise UsageError(f"no selected run has a {metric} value yet; pick another --metric or wait for the runs")
    problems: list[str] = []
    reference = load_reference_scores(reference_path or DEFAULT_REFERENCE_SCORES) if how == "reference" else None
    bounds, missing = normalization_bounds(raw, how, reference)
    if missing:
        problems.append(
            f"the reference scores {reference.path} have no random/target score for {_listing(missing)}, so "
            f"{'it is' if len(missing) == 1 else 'they are'} left out; add {'it' if len(missing) == 1 else 'them'} "
            f"to the file (random: benchmark/random_scores.py) or use --normalize minmax"
        )
    scores: dict[str, dict[str, list[float]]] = {}
    too_few = []
    for algo, per_env in sorted(raw.items()):
        for env, values in sorted(per_env.items()):
            if env not in bounds:
                continue
            if len(values) < MIN_RUNS:
                too_few.append(f"{algo} on {env} ({len(values)})")
                continue
            scores.setdefault(algo, {})[env] = [normalize(v, bounds[env]) for v in values]
    if too_few:
        problems.append(
            f"compare needs at least {MIN_RUNS} runs per (algo, env), so these groups are left out: "
            f"{_listing(too_few)}; run more seeds (e.g. axiomrl sweep --num-seeds 5)"
        )
    if not scores:
        raise UsageError(" ".join(problems) or "nothing to compare")

    algos = sorted(scores)
    common = sorted(set.intersection(*(set(per_env) for per_env in scores.values())))
    if len(algos) > 1 and not common:
        problems.append(
            f"{', '.join(algos)} have no env in common ("
            + "; ".join(f"{a}: {_listing(sorted(scores[a]), 3)}" for a in algos)
            + "), so each aggregate is over its own envs and not comparable; select runs of the same env ids"
        )
    elif len(algos) > 1:
        others = sorted({env for per_env in scores.values() for env in per_env} - set(common))
        if others:
            note(f"note: the aggregates use the {len(common)} env(s) every algo has; left out {_listing(others)}")

    comparison = Comparison(metric, how, scores, common)
    for algo in algos:
        envs = common or sorted(scores[algo])
        estimates = aggregate_metrics([scores[algo][e] for e in envs], n_resamples)
        row = {"algo": algo, "envs": len(envs), "runs": sum(len(scores[algo][e]) for e in envs)}
        for name, est in estimates.items():
            row.update({name: est.value, f"{name}_ci_low": est.low, f"{name}_ci_high": est.high})
        comparison.aggregates.append(row)
    # Each pair once, the algo with the higher IQM first, so the table reads P(better > worse).
    by_iqm = [r["algo"] for r in sorted(comparison.aggregates, key=lambda r: (-r["iqm"], r["algo"]))]
    for x, y in itertools.combinations(by_iqm, 2):
        envs = sorted(set(scores[x]) & set(scores[y]))
        if not envs:
            if common or len(algos) > 2:
                problems.append(f"{x} and {y} have no env in common, so their probability of improvement is not computed; "
                                f"run both on the same env ids")
            continue
        est = probability_of_improvement([scores[x][e] for e in envs], [scores[y][e] for e in envs], n_resamples)
        comparison.improvements.append(
            {"algo": x, "baseline": y, "envs": len(envs), "probability": est.value, "ci_low": est.low, "ci_high": est.high}
        )
    comparison.problems = problems
    return comparison


# --------------------------------------------------------------------------------------------
# Output


def _with_ci(value: float | None, low: float | None, high: float | None) -> str:
    if low is None:
        return fmt_float(value)
    return f"{fmt_float(value)} [{fmt_float(low)}, {fmt_float(high)}]"


AGGREGATE_COLUMNS = [
    Column("algo", lambda r: r["algo"]),
    Column("envs", lambda r: str(r["envs"]), "right"),
    Column("runs", lambda r: str(r["runs"]), "right"),
] + [
    Column(f"{label} [95% CI]", lambda r, k=key: _with_ci(r[k], r[f"{k}_ci_low"], r[f"{k}_ci_high"]), "right")
    for key, label in AGGREGATE_LABELS.items()
]
IMPROVEMENT_COLUMNS = [
    Column("P(X > Y) [95% CI]", lambda r: _with_ci(r["probability"], r["ci_low"], r["ci_high"]), "right"),
    Column("X", lambda r: r["algo"]),
    Column("Y", lambda r: r["baseline"]),
    Column("envs", lambda r: str(r["envs"]), "right"),
]


def describe(comparison: Comparison) -> str:
    """One line saying what the numbers are."""
    return (f"{METRICS[comparison.metric][1]}, normalised: {NORMALIZATIONS[comparison.normalize]}; "
            f"95% stratified-bootstrap CIs")


def render_comparison(comparison: Comparison, fmt: str) -> str:
    """The comparison in `fmt`: two tables (table, markdown), tagged rows (csv), one object (json)."""
    if fmt == "json":
        body = {"metric": comparison.metric, "normalize": comparison.normalize, "envs": comparison.common_envs,
                "aggregates": comparison.aggregates, "improvements": comparison.improvements,
                "problems": comparison.problems}
        return dumps(body, indent=2) + "\n"
    if fmt == "csv":
        rows = [{"table": "aggregate", **r} for r in comparison.aggregates]
        rows += [{"table": "improvement", **r} for r in comparison.improvements]
        return render(rows, [], "csv")
    heading = "## " if fmt == "markdown" else ""
    parts = [f"{heading}Aggregates across envs ({describe(comparison)})\n\n",
             render(comparison.aggregates, AGGREGATE_COLUMNS, fmt)]
    if comparison.improvements:
        parts += [f"\n{heading}Probability of improvement: P(X > Y) that a run of X beats a run of Y on an env\n\n",
                  render(comparison.improvements, IMPROVEMENT_COLUMNS, fmt)]
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Command line


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """--normalize, --reference-scores, --bootstrap-resamples (compare, plot --profile)."""
    parser.add_argument(
        "--normalize", default="reference", metavar="HOW",
        help="reference (default): (score - random) / (target - random) with --reference-scores; "
        "minmax: over the selected runs per env; none: raw returns",
    )
    parser.add_argument(
        "--reference-scores", metavar="FILE",
        help="random and target score per env (default: benchmark/reference/scores.json: classic control, "
        "MuJoCo, Atari human-normalised)",
    )
    parser.add_argument("--bootstrap-resamples", type=int, default=DEFAULT_RESAMPLES, metavar="N",
                        help=f"stratified-bootstrap resamples for every interval (default: {DEFAULT_RESAMPLES})")


def check_resamples(n: int) -> None:
    """UsageError when `n` resamples are too few for a 95% interval."""
    if n < 100:
        raise UsageError(f"--bootstrap-resamples {n} is too few for a 95% interval; use 100 or more")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl compare`."""
    add_run_selection_arguments(parser, default_status="finished")
    add_output_arguments(parser)
    parser.add_argument("--metric", default="train", metavar="M",
                        help="per-run score: train (default; mean of the last 100 training episodes), "
                        "final-eval, best-eval")
    add_score_arguments(parser)
    parser.add_argument("--fail-if-worse", metavar="ALGO",
                        help="exit 1 when the whole 95%% CI of P(ALGO > baseline) lies below 0.5 "
                        "(ALGO is statistically worse than the baseline)")
    parser.add_argument("--baseline", metavar="ALGO",
                        help="the algo --fail-if-worse compares against (default: the other algo when there are two)")


def _gate(comparison: Comparison, algo: str, baseline: str | None) -> int:
    """Exit status of --fail-if-worse: 1 when P(algo > baseline)'s CI lies entirely below 0.5."""
    algos = sorted(comparison.scores)
    if algo not in algos:
        raise UsageError(f"--fail-if-worse {algo} names no compared algo ({', '.join(algos)}); pass one of them")
    if baseline is None:
        others = [a for a in algos if a != algo]
        if len(others) != 1:
            raise UsageError(f"--fail-if-worse {algo} needs --baseline: {len(algos)} algos are compared "
                             f"({', '.join(algos)}); name the one to beat")
        baseline = others[0]
    if baseline not in algos or baseline == algo:
        raise UsageError(f"--baseline {baseline} is not another compared algo ({', '.join(algos)}); pass one of them")
    row = comparison.improvement(algo, baseline)
    if row is None:
        raise UsageError(f"{algo} and {baseline} share no env with {MIN_RUNS}+ runs each, so nothing can be judged; "
                         f"run both on the same env ids")
    text = (f"P({algo} > {baseline}) = {_with_ci(row['probability'], row['ci_low'], row['ci_high'])} "
            f"over {row['envs']} env(s)")
    if row["ci_high"] is not None and row["ci_high"] < 0.5:
        note(f"worse: {text}; the whole 95% CI lies below 0.5")
        return 1
    verdict = "better" if row["ci_low"] is not None and row["ci_low"] > 0.5 else "not worse"
    note(f"{verdict}: {text}")
    return 0


def run(args: argparse.Namespace) -> int:
    """`axiomrl compare`: exit 1 on a bad input (after printing what could be computed) or when
    --fail-if-worse's algo is statistically worse than the baseline; else 0."""
    metric = metric_key(args.metric)
    check_normalization(args.normalize)
    check_resamples(args.bootstrap_resamples)
    if args.format not in FORMATS:  # argparse checks it; kept for callers building a Namespace
        raise UsageError(f"--format {args.format} is not one of {', '.join(FORMATS)}")
    runs = selected_runs(args, default_status="finished")
    comparison = compare_runs(runs, metric, args.normalize, args.reference_scores, args.bootstrap_resamples)
    write_output(render_comparison(comparison, args.format), args.output)
    status = _gate(comparison, args.fail_if_worse, args.baseline) if args.fail_if_worse else 0
    for problem in comparison.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if comparison.problems else status
