"""Run directories as the `axiomrl` command reads them: finding, loading and selecting runs, and
each run's numbers (the metric fallbacks from its jsonl logs).

Everything here reads the run-directory contract (docs/run-directory.md): a run is a directory
holding a `metadata.json` whose `summary` carries the numbers a report needs, so a report over
thousands of runs opens one small file per run. The jsonl logs are opened only when a summary
value is missing (an older or still-starting run). Only the standard library is imported.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.commands.output import note, warn
from axiomrl_utils.host import run_process_alive
from axiomrl_utils.jsonl import iter_jsonl
from axiomrl_utils.rundir import METADATA_FILE, metadata_problem

SCHEMA_VERSIONS = (1,)
STATUSES = ("running", "finished", "failed", "interrupted", "pruned", "crashed")
# Subdirectories of a run that hold no runs; skipping them keeps discovery to one scandir per run.
NOT_RUNS = frozenset({"checkpoints", "tensorboard", "videos", "plots", "wandb", "__pycache__"})

# --metric name -> (summary key, description)
METRICS: dict[str, tuple[str, str]] = {
    "train": ("train_return_last100", "mean return of the last 100 training episodes"),
    "final_eval": ("eval_return_last", "mean return of the final evaluation"),
    "best_eval": ("eval_return_best", "best mean evaluation return"),
}


# --------------------------------------------------------------------------------------------
# Finding and loading runs


@dataclass(frozen=True)
class RunRecord:
    """One run directory: where it was found, its metadata.json, and its status as shown.

    `status` is the recorded status, except that a `running` run whose process is dead on this
    host is `crashed`; `metadata["status"]` keeps what the run recorded.
    """

    dir: str  # the directory as found (a str: Paths for every run up front cost a sweep's report time)
    metadata: dict = field(repr=False)
    status: str

    @functools.cached_property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def algo(self) -> str:
        return str(self.metadata.get("algo"))

    @property
    def env_id(self) -> str:
        return str(self.metadata.get("env_id"))

    @property
    def seed(self) -> int | None:
        return self.metadata.get("seed")

    @property
    def run_id(self) -> str:
        return str(self.metadata.get("run_id") or os.path.basename(self.dir))

    @property
    def summary(self) -> dict:
        summary = self.metadata.get("summary")
        return summary if isinstance(summary, dict) else {}


def find_runs(roots: Sequence[str | os.PathLike]) -> list[Path]:
    """Run directories (directories holding a metadata.json) under `roots`, sorted by path.

    Searches recursively (sweeps nest runs as `runs/sweeps/<name>/...`) but never inside
    checkpoints/, tensorboard/, videos/ or plots/, and does not follow symlinked directories
    below a root. A missing root gets a warning; raises UsageError when no root exists.
    """
    return [Path(p) for p in _find_run_dirs(roots)]


def _find_run_dirs(roots: Sequence[str | os.PathLike]) -> list[str]:
    """`find_runs` as plain strings."""
    dirs = [Path(r).parent if Path(r).name == METADATA_FILE and Path(r).is_file() else Path(r) for r in roots]
    missing = [d for d in dirs if not d.is_dir()]
    if len(missing) == len(dirs):
        names = ", ".join(map(str, missing)) or "(none)"
        raise UsageError(
            f"runs directory {names} does not exist; pass the directory your runs were written to "
            f"(the scripts' --output-dir, 'runs' by default)"
        )
    found: set[str] = set()  # a set: overlapping roots (runs, runs/sweeps) list a run once
    for root in dirs:
        if root in missing:
            warn(f"{root} does not exist or is not a directory; skipped")
            continue
        # Plain strings and os.scandir in this loop: pathlib costs several times more over 10 000 runs
        # (benchmark/report_speed.py).
        stack = [os.path.normpath(root)]
        while stack:
            directory = stack.pop()
            is_run = False
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        name = entry.name
                        if name == METADATA_FILE:
                            is_run = True
                        elif name not in NOT_RUNS and name[0] != "." and entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
            except OSError as e:
                warn(f"cannot list {directory} ({e.strerror}); skipped")
                continue
            if is_run:
                found.add(directory)
    return sorted(found)


def effective_status(metadata: dict, hostname: str | None = None) -> str:
    """The status to show: `crashed` for a `running` run whose pid is dead on this host.

    A `running` run on another host cannot be checked and stays `running`. (A pid reused by an
    unrelated process since the crash also reads as alive.)
    """
    status = metadata.get("status")
    if not isinstance(status, str) or not status:
        return "unknown"
    if status == "running" and run_process_alive(metadata, hostname) is False:
        return "crashed"
    return status


def load_run(path: str | os.PathLike, hostname: str | None = None) -> RunRecord:
    """Read one run directory's metadata.json; raises ValueError naming the file if it is unusable."""
    meta_path = os.path.join(path, METADATA_FILE)
    # Not jsonl.read_json: its pathlib + text decoding add up over 10 000 runs (benchmark/README.md);
    # json.loads decodes the UTF-8 bytes itself.
    try:
        with open(meta_path, "rb") as f:
            metadata = json.loads(f.read())
    except OSError as e:
        raise ValueError(f"{meta_path} cannot be read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except ValueError as e:  # bytes that are not UTF-8
        raise ValueError(f"{meta_path} is not valid JSON ({e})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{meta_path} is not a JSON object")
    version = metadata.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        raise ValueError(
            f"{meta_path} has schema_version {version!r}, which this axiomrl does not read "
            f"(it reads {', '.join(map(str, SCHEMA_VERSIONS))}); upgrade axiomrl"
        )
    problem = metadata_problem(metadata)
    if problem:
        raise ValueError(f"{meta_path} {problem}")
    return RunRecord(dir=os.fspath(path), metadata=metadata, status=effective_status(metadata, hostname))


def load_runs(roots: Sequence[str | os.PathLike]) -> list[RunRecord]:
    """All readable runs under `roots` (see `find_runs`), in path order.

    A metadata.json that is corrupt, truncated or of an unknown schema_version is skipped with one
    warning naming the file. Raises UsageError when no run could be read at all.
    """
    paths = _find_run_dirs(roots)
    _train_return_last100.cache_clear()  # a fresh load reads fresh logs (notebooks load again)
    _eval_means.cache_clear()
    hostname = socket.gethostname()
    runs: list[RunRecord] = []
    # Sequential on purpose: JSON parsing holds the GIL, and a thread pool measured slower than
    # this loop on 10 000 warm metadata files.
    for path in paths:
        try:
            runs.append(load_run(path, hostname))
        except ValueError as e:
            warn(f"skipped a run: {e}")
    if not runs:
        where = ", ".join(str(r) for r in roots)
        if paths:
            raise UsageError(f"none of the {len(paths)} run directories under {where} could be read; see the warnings above")
        raise UsageError(
            f"no runs under {where} (no directory there holds a metadata.json); train one, e.g. "
            f"`python axiomrl/ppo.py`, or pass the directory your runs were written to"
        )
    return runs


def _matches(value: Any, patterns: Sequence[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(str(value), p) for p in patterns)


def select_runs(
    runs: Iterable[RunRecord],
    algos: Sequence[str] | None = None,
    env_ids: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
) -> list[RunRecord]:
    """The runs whose algo, env_id and (shown) status match any of the given glob patterns.

    None or an empty list means "any". Patterns are fnmatch globs: `'ALE/*'`, `'*'`.
    """
    return [
        r
        for r in runs
        if _matches(r.algo, algos) and _matches(r.env_id, env_ids) and _matches(r.status, statuses)
    ]


# --------------------------------------------------------------------------------------------
# Per-run numbers


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rows(run_dir: str, name: str) -> Iterable[dict]:
    """The objects of a run's jsonl log (`iter_jsonl` warns about and skips any other line)."""
    return iter_jsonl(os.path.join(run_dir, name))


@functools.lru_cache(maxsize=4096)
def _train_return_last100(run_dir: str) -> float | None:
    returns = [
        r
        for r in (finite_number(row.get("return")) for row in _rows(run_dir, "train_episodes.jsonl"))
        if r is not None
    ]
    tail = returns[-100:]
    return sum(tail) / len(tail) if tail else None


@functools.lru_cache(maxsize=4096)
def _eval_means(run_dir: str) -> tuple[tuple[int, float], ...]:
    """(global_step, mean return) per training-time evaluation, in step order."""
    sums: dict[int, list[float]] = {}
    for row in _rows(run_dir, "eval_episodes.jsonl"):
        if row.get("tag", "train") not in ("train", None):  # `axiomrl eval` rows are not training
            continue
        step, ret = row.get("global_step"), finite_number(row.get("return"))
        if isinstance(step, int) and ret is not None:
            acc = sums.setdefault(step, [0.0, 0])
            acc[0] += ret
            acc[1] += 1
    return tuple((step, total / count) for step, (total, count) in sorted(sums.items()))


def run_metric(run: RunRecord, metric: str) -> float | None:
    """A run's value of `metric` (a key of METRICS), None when the run has none yet.

    Taken from `summary` in metadata.json; only when the summary lacks it is it computed from the
    run's train_episodes.jsonl / eval_episodes.jsonl with the same definition.
    """
    summary_key = METRICS[metric][0]
    value = finite_number(run.summary.get(summary_key))
    if value is not None:
        return value
    if metric == "train":
        return _train_return_last100(run.dir)
    means = _eval_means(run.dir)
    if not means:
        return None
    if metric == "final_eval":
        return means[-1][1]
    return max(m for _, m in means)


# --------------------------------------------------------------------------------------------
# Selecting runs on the command line (report, leaderboard, plot)


def add_run_selection_arguments(parser: argparse.ArgumentParser, default_status: str | None = None) -> None:
    """RUNS_DIR ... and the --algo/--env-id/--status filters shared by report, leaderboard, plot."""
    parser.add_argument(
        "runs_dirs", nargs="*", default=["runs"], metavar="RUNS_DIR",
        help="directories searched recursively for runs (default: runs)",
    )
    parser.add_argument("--algo", action="append", metavar="A", help="only this algo (repeatable; globs work)")
    parser.add_argument("--env-id", action="append", metavar="E", help="only this env id (repeatable; globs work, e.g. 'ALE/*')")
    status_default = f" (default: {default_status}; '*' for all)" if default_status else " (default: all)"
    parser.add_argument(
        "--status", action="append", metavar="S",
        help=f"only runs with this status: {', '.join(STATUSES)} (repeatable){status_default}",
    )


def selected_runs(args: argparse.Namespace, default_status: str | None = None) -> list[RunRecord]:
    """Load the runs under args.runs_dirs and apply the filters; UsageError when none is left."""
    for status in args.status or []:
        if not any(ch in status for ch in "*?[") and status not in STATUSES + ("unknown",):
            raise UsageError(f"--status {status} is not a status; use one of {', '.join(STATUSES)} or '*'")
    runs = load_runs(args.runs_dirs)
    statuses = args.status or ([default_status] if default_status else None)
    chosen = select_runs(runs, args.algo, args.env_id, statuses)
    if not chosen:
        filters = []
        for name, values in (("--algo", args.algo), ("--env-id", args.env_id), ("--status", statuses)):
            filters += [f"{name} {v}" for v in values or []]
        have = sorted({f"{r.algo}/{r.env_id}/{r.status}" for r in runs})
        shown = ", ".join(have[:8]) + (", ..." if len(have) > 8 else "")
        raise UsageError(
            f"none of the {len(runs)} runs matches {' '.join(filters)} (algo/env/status present: {shown}); "
            f"change the filters"
        )
    if default_status and not args.status:
        others: dict[str, int] = {}
        for r in select_runs(runs, args.algo, args.env_id):
            if r.status != default_status:
                others[r.status] = others.get(r.status, 0) + 1
        if others:
            detail = ", ".join(f"{n} {s}" for s, n in sorted(others.items()))
            note(f"note: counting only {default_status} runs; left out {detail} (--status '*' includes them)")
    return chosen
