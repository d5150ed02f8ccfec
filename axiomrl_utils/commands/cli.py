"""The `axiomrl` command line: its subcommands (COMMANDS: report, leaderboard, compare, sweep, tune, plot, doctor,
eval, export, pack, unpack), the top-level parser, and the dispatch to the subcommand's module.

`python -m axiomrl_utils.commands` and `python -m axiomrl_utils.commands.cli` are `axiomrl`. Each
subcommand lives in its own module, imported only when that subcommand runs, so `axiomrl --version`
and `axiomrl --help` import nothing heavy. Adding a subcommand is one entry in
COMMANDS pointing at two functions of its module:

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int            # the exit status

Bad input raises `axiomrl_utils.UsageError` (exit 1, one `error: ...` line, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from dataclasses import dataclass
from typing import Sequence

from axiomrl_utils import __version__


@dataclass(frozen=True)
class Command:
    module: str  # imported only when this subcommand is chosen
    help: str
    add_arguments: str = "add_arguments"
    run: str = "run"


COMMANDS: dict[str, Command] = {
    "report": Command(
        "axiomrl_utils.commands.report",
        "one row per run: status, steps, returns, wall time, SPS, git commit, reproduce command",
    ),
    "leaderboard": Command(
        "axiomrl_utils.commands.leaderboard",
        "one row per (algo, env): seeds, mean ± std, median, IQM with 95% bootstrap CI; "
        "--reference makes it a regression check",
    ),
    "compare": Command(
        "axiomrl_utils.commands.compare",
        "algos across envs (Agarwal et al. 2021): IQM, mean, median, optimality gap with stratified-bootstrap "
        "CIs, probability of improvement per pair; --fail-if-worse makes it a statistical gate",
    ),
    "sweep": Command(
        "axiomrl_utils.commands.sweep",
        "run scripts over several envs x seeds in parallel (local processes, Ray or Slurm), rerunnable, "
        "ending with the leaderboard of the runs (same as python -m axiomrl_utils.benchmark)",
    ),
    "tune": Command(
        "axiomrl_utils.commands.tune",
        "search a script's hyperparameters with Optuna: multi-seed, multi-env, pruned, resumable trials on local "
        "processes or Ray, ending with a ranked table, the best config and plots (same as python -m axiomrl_utils.tune)",
    ),
    "plot": Command("axiomrl_utils.commands.plot", "learning curves per env (PNG, and HTML with plotly)"),
    "doctor": Command("axiomrl_utils.commands.doctor", "check that this machine can train: versions, extras, output dir"),
    "eval": Command(
        "axiomrl_utils.commands.evaluate",
        "play a checkpoint's deterministic policy again; prints mean ± std return and length, "
        "appends the episodes to the run's eval_episodes.jsonl (tag manual); --record DIR writes every step "
        "as a Minari dataset or parquet table",
    ),
    "export": Command(
        "axiomrl_utils.commands.export",
        "write a checkpoint's policy as a standalone TorchScript or ONNX file (observation batch -> actions), "
        "or its replay buffer as a Minari dataset (--replay-buffer DIR)",
    ),
    "pack": Command("axiomrl_utils.commands.pack", "zip a run directory to share it", "add_pack_arguments", "run_pack"),
    "unpack": Command(
        "axiomrl_utils.commands.pack", "unpack a zip written by `axiomrl pack` into a runs directory",
        "add_unpack_arguments", "run_unpack",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only `command`'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(
        prog="axiomrl",
        description="Inspect AxiomRL runs: reports, leaderboards, learning curves, environment checks; "
        "run seed sweeps and hyperparameter searches; evaluate, export and share trained runs.",
        epilog="`axiomrl COMMAND --help` lists a command's options. "
        "Docs: docs/reports.md, docs/sweeps.md, docs/tune.md, docs/eval-export-share.md",
    )
    parser.add_argument("--version", action="version", version=f"axiomrl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sub = subparsers.add_parser(name, help=spec.help.replace("%", "%%"), description=spec.help)
        if name == command:
            getattr(importlib.import_module(spec.module), spec.add_arguments)(sub)
    return parser


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    # Library warnings (e.g. a damaged jsonl line) read like our own: one line, no source excerpt.
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `axiomrl` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first bare word is the subcommand (the top level has no options taking values).
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    warnings.showwarning = _one_line_warnings
    spec = COMMANDS[args.command]
    return int(getattr(importlib.import_module(spec.module), spec.run)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
