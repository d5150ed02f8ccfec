"""`axiomrl leaderboard`: one row per (algo, env) aggregated over seeds and ranked by IQM, and the
reference tables (`--reference`) that make it a regression check.

numpy and scipy are imported by the statistics (`axiomrl_utils.commands.stats`); torch never.
"""

from __future__ import annotations

import argparse
import collections
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from axiomrl_utils import UsageError
from axiomrl_utils.commands.output import (
    Column,
    add_output_arguments,
    check_output_target,
    fmt_float,
    note,
    render,
    warn,
    write_output,
)
from axiomrl_utils.commands.runs import (
    METRICS,
    RunRecord,
    add_run_selection_arguments,
    finite_number,
    run_metric,
    selected_runs,
)
from axiomrl_utils.commands.stats import DEFAULT_RESAMPLES, aggregate_groups
from axiomrl_utils.console import MISSING
from axiomrl_utils.jsonl import read_json_input

MIN_SEEDS = 5


@dataclass(frozen=True)
class Reference:
    """A published results table: (algo, env_id) -> {"mean", "std", ...}, plus env id aliases."""

    path: Path
    name: str
    metric: str
    results: dict[tuple[str, str], dict]
    aliases: dict[str, str]  # our env id -> the env id the reference was measured on

    def lookup(self, algo: str, env_id: str) -> tuple[dict, str] | None:
        """The reference entry for (algo, env_id) and the env id it was measured on, if any."""
        for env in (env_id, self.aliases.get(env_id)):
            if env is not None and (algo, env) in self.results:
                return self.results[(algo, env)], env
        return None


def load_reference(path: str | os.PathLike) -> Reference:
    """Read a reference file; UsageError when unusable.

    The format of benchmark/reference/cleanrl.json, or the bare list that
    `axiomrl leaderboard --format json` prints (a previous release's leaderboard as reference).
    """
    path = Path(path)
    fix = "fix it or pass another --reference (e.g. benchmark/reference/cleanrl.json)"
    data = read_json_input(path, "reference file", fix)
    if isinstance(data, list):  # the JSON of `axiomrl leaderboard --format json` is a reference too
        metrics = {row.get("metric", "train") for row in data if isinstance(row, dict)}
        data = {"results": data, "metric": metrics.pop() if len(metrics) == 1 else "train"}
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise UsageError(f"reference file {path} has no 'results' list; {fix}")
    metric = data.get("metric", "train")
    if metric not in METRICS:
        raise UsageError(f"reference file {path} names metric {metric!r}, not one of {', '.join(METRICS)}; {fix}")
    results: dict[tuple[str, str], dict] = {}
    for i, entry in enumerate(data["results"]):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("algo"), str)
            and isinstance(entry.get("env_id"), str)
            and finite_number(entry.get("mean")) is not None
            and finite_number(entry.get("std")) is not None
        )
        if not ok:
            raise UsageError(f"reference file {path}: results[{i}] needs algo, env_id, mean and std; {fix}")
        results[(entry["algo"], entry["env_id"])] = entry
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise UsageError(f"reference file {path}: 'aliases' must map env ids to env ids; {fix}")
    return Reference(path, str(data.get("name") or path.stem), metric, results, aliases)


def leaderboard_rows(
    runs: Iterable[RunRecord],
    metric: str = "train",
    reference: Reference | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> list[dict]:
    """One row per (env, algo) with `aggregate` statistics, ranked by IQM within each env.

    Runs without a value for `metric` are left out (with one warning). With a reference, each
    row gets ref_mean, ref_std, ref_threshold (mean - 2 std) and a verdict: `pass`,
    `regression` (IQM below the threshold) or `no reference`.
    """
    groups: dict[tuple[str, str], list[tuple[RunRecord, float]]] = {}
    without = []
    for run in runs:
        value = run_metric(run, metric)
        if value is None:
            without.append(run)
        else:
            groups.setdefault((run.env_id, run.algo), []).append((run, value))
    if without:
        sample = ", ".join(r.run_id for r in without[:3]) + (", ..." if len(without) > 3 else "")
        warn(f"left out {len(without)} run{'s' if len(without) != 1 else ''} without a {metric} value yet ({sample})")

    keys = sorted(groups)
    stats_per_group = aggregate_groups([[v for _, v in groups[k]] for k in keys], n_resamples)
    rows = []
    for (env_id, algo), group_stats in zip(keys, stats_per_group):
        seeds = [r.seed for r, _ in groups[(env_id, algo)]]
        dupes = sorted(s for s, n in collections.Counter(seeds).items() if n > 1 and s is not None)
        if dupes:
            warn(f"{algo} on {env_id} has several runs for seed(s) {dupes}; each run counts as a sample")
        row = {"env_id": env_id, "rank": None, "algo": algo, "metric": metric}
        row.update(group_stats)
        row["warning"] = f"fewer than {MIN_SEEDS} seeds" if row["seeds"] < MIN_SEEDS else None
        if reference is not None:
            found = reference.lookup(algo, env_id)
            if found is None:
                row.update(ref_env_id=None, ref_mean=None, ref_std=None, ref_threshold=None, verdict="no reference")
            else:
                entry, ref_env = found
                threshold = float(entry["mean"]) - 2 * float(entry["std"])
                row.update(
                    ref_env_id=ref_env,
                    ref_mean=float(entry["mean"]),
                    ref_std=float(entry["std"]),
                    ref_threshold=threshold,
                    verdict="pass" if row["iqm"] >= threshold else "regression",
                )
        rows.append(row)

    for row in rows:  # competition ranking: equal IQMs share a rank
        row["rank"] = 1 + sum(1 for o in rows if o["env_id"] == row["env_id"] and o["iqm"] > row["iqm"])
    rows.sort(key=lambda r: (r["env_id"], r["rank"], r["algo"]))
    return rows


def _ci_cell(row: dict) -> str:
    if row["iqm_ci_low"] is None:
        return fmt_float(row["iqm"])
    return f"{fmt_float(row['iqm'])} [{fmt_float(row['iqm_ci_low'])}, {fmt_float(row['iqm_ci_high'])}]"


LEADERBOARD_COLUMNS = [
    Column("env", lambda r: r["env_id"]),
    Column("rank", lambda r: str(r["rank"]), "right"),
    Column("algo", lambda r: r["algo"]),
    Column("seeds", lambda r: str(r["seeds"]), "right"),
    Column("mean ± std", lambda r: f"{fmt_float(r['mean'])} ± {fmt_float(r['std'])}", "right"),
    Column("median", lambda r: fmt_float(r["median"]), "right"),
    Column("IQM [95% CI]", _ci_cell, "right"),
]
REFERENCE_COLUMNS = [
    Column(
        "reference",
        lambda r: MISSING if r["ref_mean"] is None else f"{fmt_float(r['ref_mean'])} ± {fmt_float(r['ref_std'])}",
        "right",
    ),
    Column("threshold", lambda r: fmt_float(r["ref_threshold"]), "right"),
    Column("verdict", lambda r: r["verdict"]),
]
NOTE_COLUMN = Column("note", lambda r: r["warning"] or "")


# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl leaderboard`."""
    add_run_selection_arguments(parser, default_status="finished")
    add_output_arguments(parser)
    parser.add_argument(
        "--metric", choices=list(METRICS), default=None,
        help="per-run number to aggregate: train = " + METRICS["train"][1] + " (default; CleanRL's tables), "
        "final_eval = " + METRICS["final_eval"][1] + ", best_eval = " + METRICS["best_eval"][1],
    )
    parser.add_argument(
        "--reference", metavar="FILE",
        help="judge each row against a reference table (e.g. benchmark/reference/cleanrl.json); "
        "exit 1 when an IQM falls below reference mean - 2 std",
    )
    parser.add_argument(
        "--bootstrap-resamples", type=int, default=DEFAULT_RESAMPLES, metavar="N",
        help=f"bootstrap resamples for the IQM confidence interval (default: {DEFAULT_RESAMPLES})",
    )


def run(args: argparse.Namespace) -> int:
    """`axiomrl leaderboard`: exit 1 when a judged row regresses, else 0."""
    if args.output not in (None, "-"):
        check_output_target(args.output)  # refused before the bootstrap runs
    reference = load_reference(args.reference) if args.reference else None
    metric = args.metric or (reference.metric if reference else "train")
    if reference is not None and metric != reference.metric:
        raise UsageError(
            f"{reference.path} holds {reference.metric!r} numbers but --metric is {metric!r}; "
            f"drop --metric or use a reference measured with {metric!r}"
        )
    if args.bootstrap_resamples < 100:
        raise UsageError(f"--bootstrap-resamples {args.bootstrap_resamples} is too few for a 95% interval; use 100 or more")
    runs = selected_runs(args, default_status="finished")
    rows = leaderboard_rows(runs, metric, reference, args.bootstrap_resamples)
    if not rows:
        raise UsageError(f"none of the {len(runs)} selected runs has a {metric} value yet; pick another --metric or wait")

    columns = LEADERBOARD_COLUMNS + (REFERENCE_COLUMNS if reference else []) + [NOTE_COLUMN]
    write_output(render(rows, columns, args.format), args.output)

    few = [r for r in rows if r["warning"]]
    if few:
        listed = ", ".join(f"{r['algo']}/{r['env_id']} ({r['seeds']})" for r in few[:5])
        rows_rest = "1 row rests" if len(few) == 1 else f"{len(few)} rows rest"
        warn(f"{rows_rest} on fewer than {MIN_SEEDS} seeds, so the IQM and CI are rough: {listed}"
             + (", ..." if len(few) > 5 else ""))
    if reference is None:
        return 0
    judged = [r for r in rows if r["verdict"] != "no reference"]
    failed = [r for r in judged if r["verdict"] == "regression"]
    if not judged:
        warn(f"no row has a reference in {reference.path}; nothing was judged")
        return 0
    if failed:
        lines = [
            f"  {r['algo']} on {r['env_id']}: IQM {fmt_float(r['iqm'])} < {fmt_float(r['ref_threshold'])} "
            f"(reference {fmt_float(r['ref_mean'])} ± {fmt_float(r['ref_std'])} on {r['ref_env_id']})"
            for r in failed
        ]
        note(f"regression: {len(failed)} of {len(judged)} judged rows fall below reference mean - 2 std:\n" + "\n".join(lines))
        return 1
    note(f"ok: all {len(judged)} judged rows reach reference mean - 2 std ({len(rows) - len(judged)} without reference)")
    return 0
