"""`axiomrl report`: one row per run (status, steps, returns, wall time, SPS, git commit, the command
that reproduces it), as a table, Markdown, CSV, JSON or a pandas DataFrame (`runs_frame`).

Runs are found and read by `axiomrl_utils.commands.runs`. Module-level imports are standard
library only; pandas is imported by `runs_frame`, torch never.

    python -m axiomrl_utils.commands.report runs/          # same as `axiomrl report runs/`
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
import sys
from typing import TYPE_CHECKING, Iterable

from axiomrl_utils.commands.output import (
    Column,
    add_output_arguments,
    check_output_target,
    fmt_float,
    fmt_int,
    render,
    write_output,
)
from axiomrl_utils.commands.runs import RunRecord, add_run_selection_arguments, finite_number, run_metric, selected_runs
from axiomrl_utils.console import MISSING, fmt_duration

if TYPE_CHECKING:
    import pandas as pd


LONG_COMMAND = 120  # characters; past this a reader takes `--config <run>/config.yaml` over the argv


def reproduce_command(metadata: dict) -> str | None:
    """`python` + the run's first argv, shell-quoted; for a long argv, the script with `--config`
    on the run's config.yaml (every argument it ran with). None when the metadata has no command."""
    command = metadata.get("command")
    if not isinstance(command, list) or not command:
        return None
    line = "python " + shlex.join(str(c) for c in command)
    run_dir = metadata.get("output_dir")
    if len(line) > LONG_COMMAND and isinstance(run_dir, str) and run_dir:
        return "python " + shlex.join([str(command[0]), "--config", str(Path(run_dir) / "config.yaml")])
    return line


def report_row(run: RunRecord) -> dict:
    """The flat report row of one run (raw values; None where unknown)."""
    md = run.metadata
    git = md.get("git") if isinstance(md.get("git"), dict) else {}
    steps = md.get("total_steps")
    wall = finite_number(md.get("wall_time_s"))
    sps = finite_number(run.summary.get("sps"))
    if sps is None and isinstance(steps, int) and wall:
        sps = steps / wall
    return {
        "algo": run.algo,
        "env_id": run.env_id,
        "seed": run.seed,
        "status": run.status,
        "steps": steps,
        "total_timesteps": md.get("total_timesteps"),
        "train_return": run_metric(run, "train"),
        "best_eval_return": run_metric(run, "best_eval"),
        "final_eval_return": run_metric(run, "final_eval"),
        "wall_time_s": wall,
        "sps": sps,
        "git_commit": git.get("commit"),
        "git_dirty": git.get("is_dirty"),
        "created_at_utc": md.get("created_at_utc"),
        "run_id": run.run_id,
        "run_dir": run.dir,
        "command": reproduce_command(md),
    }


def _sort_key(row: dict) -> tuple:
    seed = row.get("seed")
    return (row["env_id"], row["algo"], (0, seed) if isinstance(seed, int) else (1, 0), row["run_id"])


def report_rows(runs: Iterable[RunRecord]) -> list[dict]:
    """Report rows for `runs`, sorted by env, algo, seed."""
    return sorted((report_row(r) for r in runs), key=_sort_key)


def runs_frame(runs: Iterable[RunRecord]) -> "pd.DataFrame":
    """The report rows as a pandas DataFrame (one row per run), for notebooks and scripts."""
    import pandas as pd

    return pd.DataFrame(report_rows(runs))


def _git_cell(row: dict) -> str:
    commit = row.get("git_commit")
    if not commit:
        return MISSING
    return str(commit)[:7] + ("+dirty" if row.get("git_dirty") else "")


REPORT_COLUMNS = [
    Column("algo", lambda r: r["algo"]),
    Column("env", lambda r: r["env_id"]),
    Column("seed", lambda r: MISSING if r["seed"] is None else str(r["seed"]), "right"),
    Column("status", lambda r: r["status"]),
    Column("steps", lambda r: fmt_int(r["steps"]), "right"),
    Column("train_return", lambda r: fmt_float(r["train_return"]), "right"),
    Column("best_eval", lambda r: fmt_float(r["best_eval_return"]), "right"),
    Column("wall_time", lambda r: fmt_duration(r["wall_time_s"]), "right"),
    Column("sps", lambda r: fmt_float(r["sps"], 0), "right"),
    Column("git", _git_cell),
    Column("run_dir", lambda r: r["run_dir"]),
    Column("reproduce", lambda r: r["command"] or MISSING),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl report`."""
    add_run_selection_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument(
        "--html", nargs="?", const="", metavar="FILE",
        help="also write one self-contained HTML page (leaderboard, compare table, learning curves, performance "
        "profiles, every run) to FILE (default: <first RUNS_DIR>/report.html); opens offline",
    )


def run(args: argparse.Namespace) -> int:
    """`axiomrl report`: one row per run. Exit 0, or UsageError when no run could be reported."""
    if args.output not in (None, "-"):
        check_output_target(args.output)  # before anything is written, the HTML page included
    runs = selected_runs(args)
    rows = report_rows(runs)
    if args.html is not None:
        from pathlib import Path

        from axiomrl_utils.commands.html_report import write_html_report

        target = check_output_target(args.html or Path(args.runs_dirs[0]) / "report.html", "--html")
        page = write_html_report(runs, rows, target, f"AxiomRL report: {', '.join(args.runs_dirs)}")
        print(f"wrote {page}", file=sys.stderr)
    write_output(render(rows, REPORT_COLUMNS, args.format), args.output)
    return 0


if __name__ == "__main__":
    from axiomrl_utils.commands.cli import main

    sys.exit(main(["report", *sys.argv[1:]]))
