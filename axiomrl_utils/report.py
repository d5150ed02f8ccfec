"""Finding and reading run directories, and the `axiomrl report` and `axiomrl leaderboard` commands.

Everything here reads the run-directory contract (docs/run-directory.md): a run is a directory
holding a `metadata.json` whose `summary` carries the numbers a report needs, so a report over
thousands of runs opens one small file per run. The jsonl logs are opened only when a summary
value is missing (an older or still-starting run).

Module-level imports are standard library only; numpy and scipy are imported by the leaderboard,
pandas by `runs_frame`. torch is never imported.

    python -m axiomrl_utils.report runs/          # same as `axiomrl report runs/`
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import functools
import inspect
import json
import math
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.jsonl import iter_jsonl, read_json
from axiomrl_utils.output import (
    FORMATS,
    MISSING,
    Column,
    fmt_duration,
    fmt_float,
    fmt_int,
    note,
    render,
    warn,
    write_output,
)

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSIONS = (1,)
STATUSES = ("running", "finished", "failed", "interrupted", "crashed")
# Subdirectories of a run that hold no runs; skipping them keeps discovery to one scandir per run.
NOT_RUNS = frozenset({"checkpoints", "tensorboard", "videos", "plots", "wandb", "__pycache__"})

# --metric name -> (summary key, description)
METRICS: dict[str, tuple[str, str]] = {
    "train": ("train_return_last100", "mean return of the last 100 training episodes"),
    "final_eval": ("eval_return_last", "mean return of the final evaluation"),
    "best_eval": ("eval_return_best", "best mean evaluation return"),
}
MIN_SEEDS = 5
DEFAULT_RESAMPLES = 2000
# Groups per vectorized bootstrap call; 4-8 measured fastest (3.4 ms a group vs 5.0 ms one by one).
BOOTSTRAP_CHUNK = 8
CONFIDENCE = 0.95


# --------------------------------------------------------------------------------------------
# Finding and loading runs


@dataclass(frozen=True)
class Run:
    """One run directory: where it was found, its metadata.json, and its status as shown.

    `status` is the recorded status, except that a `running` run whose process is dead on this
    host is `crashed`; `metadata["status"]` keeps what the run recorded.
    """

    dir: str  # the directory as found (a str: building 10 000 Paths up front costs ~0.1 s)
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
    dirs = [Path(r).parent if Path(r).name == "metadata.json" and Path(r).is_file() else Path(r) for r in roots]
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
        # Plain strings and os.scandir in this loop: pathlib costs ~4x more over 10 000 runs.
        stack = [os.path.normpath(root)]
        while stack:
            directory = stack.pop()
            is_run = False
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        name = entry.name
                        if name == "metadata.json":
                            is_run = True
                        elif name not in NOT_RUNS and name[0] != "." and entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
            except OSError as e:
                warn(f"cannot list {directory} ({e.strerror}); skipped")
                continue
            if is_run:
                found.add(directory)
    return sorted(found)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def effective_status(metadata: dict, hostname: str | None = None) -> str:
    """The status to show: `crashed` for a `running` run whose pid is dead on this host.

    A `running` run on another host cannot be checked and stays `running`. (A pid reused by an
    unrelated process since the crash also reads as alive.)
    """
    status = metadata.get("status")
    if not isinstance(status, str) or not status:
        return "unknown"
    if status == "running":
        pid = metadata.get("pid")
        host = metadata.get("hostname") or (metadata.get("system") or {}).get("hostname")
        if host and host == (hostname or socket.gethostname()) and isinstance(pid, int):
            if not _pid_alive(pid):
                return "crashed"
    return status


def load_run(path: str | os.PathLike, hostname: str | None = None) -> Run:
    """Read one run directory's metadata.json; raises ValueError naming the file if it is unusable."""
    meta_path = os.path.join(path, "metadata.json")
    # Not jsonl.read_json: its pathlib + text decoding cost ~20 us a file, 0.1-0.2 s per 10 000
    # runs; json.loads decodes the UTF-8 bytes itself.
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
    missing = [k for k in ("algo", "env_id") if not metadata.get(k)]
    if missing:
        raise ValueError(f"{meta_path} lacks {' and '.join(missing)}")
    return Run(dir=os.fspath(path), metadata=metadata, status=effective_status(metadata, hostname))


def load_runs(roots: Sequence[str | os.PathLike]) -> list[Run]:
    """All readable runs under `roots` (see `find_runs`), in path order.

    A metadata.json that is corrupt, truncated or of an unknown schema_version is skipped with one
    warning naming the file. Raises UsageError when no run could be read at all.
    """
    paths = _find_run_dirs(roots)
    _train_return_last100.cache_clear()  # a fresh load reads fresh logs (notebooks load again)
    _eval_means.cache_clear()
    hostname = socket.gethostname()
    runs: list[Run] = []
    # Sequential on purpose: JSON parsing holds the GIL, and a thread pool measured 2-3x slower
    # than this loop on 10 000 warm metadata files (1.2-1.6 s vs 0.5 s).
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
    runs: Iterable[Run],
    algos: Sequence[str] | None = None,
    env_ids: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
) -> list[Run]:
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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rows(run_dir: str, name: str) -> Iterable[dict]:
    """The objects of a run's jsonl log; lines that parse to something else are ignored."""
    return (row for row in iter_jsonl(os.path.join(run_dir, name)) if isinstance(row, dict))


@functools.lru_cache(maxsize=4096)
def _train_return_last100(run_dir: str) -> float | None:
    returns = [
        r
        for r in (_number(row.get("return")) for row in _rows(run_dir, "train_episodes.jsonl"))
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
        step, ret = row.get("global_step"), _number(row.get("return"))
        if isinstance(step, int) and ret is not None:
            acc = sums.setdefault(step, [0.0, 0])
            acc[0] += ret
            acc[1] += 1
    return tuple((step, total / count) for step, (total, count) in sorted(sums.items()))


def run_metric(run: Run, metric: str) -> float | None:
    """A run's value of `metric` (a key of METRICS), None when the run has none yet.

    Taken from `summary` in metadata.json; only when the summary lacks it is it computed from the
    run's train_episodes.jsonl / eval_episodes.jsonl with the same definition.
    """
    summary_key = METRICS[metric][0]
    value = _number(run.summary.get(summary_key))
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


def reproduce_command(metadata: dict) -> str | None:
    """`python` + the run's first argv, shell-quoted; None when the metadata has no command."""
    command = metadata.get("command")
    if not isinstance(command, list) or not command:
        return None
    return "python " + shlex.join(str(c) for c in command)


def report_row(run: Run) -> dict:
    """The flat report row of one run (raw values; None where unknown)."""
    md = run.metadata
    git = md.get("git") if isinstance(md.get("git"), dict) else {}
    steps = md.get("total_steps")
    wall = _number(md.get("wall_time_s"))
    sps = _number(run.summary.get("sps"))
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


def report_rows(runs: Iterable[Run]) -> list[dict]:
    """Report rows for `runs`, sorted by env, algo, seed."""
    return sorted((report_row(r) for r in runs), key=_sort_key)


def runs_frame(runs: Iterable[Run]) -> "pd.DataFrame":
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


# --------------------------------------------------------------------------------------------
# Leaderboard


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
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"reference file {path} does not exist; {fix}") from None
    except OSError as e:
        raise UsageError(f"reference file {path} cannot be read ({e.strerror}); {fix}") from None
    except ValueError as e:
        raise UsageError(f"reference file {e}; {fix}") from None
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
            and _number(entry.get("mean")) is not None
            and _number(entry.get("std")) is not None
        )
        if not ok:
            raise UsageError(f"reference file {path}: results[{i}] needs algo, env_id, mean and std; {fix}")
        results[(entry["algo"], entry["env_id"])] = entry
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise UsageError(f"reference file {path}: 'aliases' must map env ids to env ids; {fix}")
    return Reference(path, str(data.get("name") or path.stem), metric, results, aliases)


def bootstrap_ci(
    data: Any, statistic: Any, n_resamples: int = DEFAULT_RESAMPLES, axis: int = -1, batch: int | None = None
) -> tuple[Any, Any]:
    """95% percentile-bootstrap interval of `statistic(data, axis)` with `scipy.stats.bootstrap`.

    `statistic` must be vectorized (take `axis`); other axes of `data` are independent samples.
    The generator is seeded with 0 on every call, so the same data give the same interval.
    """
    import numpy as np
    from scipy import stats

    # scipy >= 1.15 takes `rng`; older versions only `random_state`.
    seed_arg = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
    result = stats.bootstrap(
        (data,), statistic, axis=axis, vectorized=True, n_resamples=n_resamples, batch=batch,
        confidence_level=CONFIDENCE, method="percentile", **{seed_arg: np.random.default_rng(0)},
    )
    return result.confidence_interval.low, result.confidence_interval.high


def aggregate(values: Sequence[float], n_resamples: int = DEFAULT_RESAMPLES) -> dict:
    """Mean, population std, median, IQM and its 95% percentile-bootstrap CI over seeds.

    IQM is `scipy.stats.trim_mean(x, 0.25)`; the CI comes from `scipy.stats.bootstrap` over the
    seeds with a fixed generator (seed 0), so the same values always give the same interval.
    Within one (algo, env) group the stratified bootstrap of rliable is exactly this plain
    bootstrap. The CI is None with fewer than 2 values.
    """
    return aggregate_groups([values], n_resamples)[0]


def aggregate_groups(groups: Sequence[Sequence[float]], n_resamples: int = DEFAULT_RESAMPLES) -> list[dict]:
    """`aggregate` of each group, faster for many groups.

    Groups of equal size are bootstrapped BOOTSTRAP_CHUNK at a time in one vectorized scipy call.
    scipy draws the same resample indices for every row of such a call as for a group alone, so
    each interval equals the one-group result up to floating-point rounding (~1e-16).
    """
    import numpy as np
    from scipy import stats

    arrays = [np.asarray(g, dtype=float) for g in groups]
    out = [
        {
            "seeds": int(x.size),
            "mean": float(np.mean(x)),
            "std": float(np.std(x)),  # ddof=0, as in CleanRL's published tables
            "median": float(np.median(x)),
            "iqm": float(stats.trim_mean(x, 0.25)),
            "iqm_ci_low": None,
            "iqm_ci_high": None,
        }
        for x in arrays
    ]
    by_size: dict[int, list[int]] = {}
    for i, x in enumerate(arrays):
        if x.size >= 2:
            by_size.setdefault(x.size, []).append(i)
    for members in by_size.values():
        for start in range(0, len(members), BOOTSTRAP_CHUNK):
            chunk = members[start : start + BOOTSTRAP_CHUNK]
            low, high = bootstrap_ci(np.vstack([arrays[i] for i in chunk]), _iqm, n_resamples)
            for i, lo, hi in zip(chunk, low, high):
                out[i]["iqm_ci_low"], out[i]["iqm_ci_high"] = float(lo), float(hi)
    return out


def _iqm(x: Any, axis: int = -1) -> Any:
    """`scipy.stats.trim_mean(x, 0.25, axis=axis)`, for the bootstrap's thousands of resamples.

    trim_mean finds the cut points with a two-point `np.partition`, which numpy does ~7x slower
    than a full sort of rows of tens of seeds (0.45 s of a 10 000-run leaderboard). The same values
    are averaged, so the result equals trim_mean's up to summation order (~1e-16).
    """
    import numpy as np

    n = x.shape[axis]
    cut = int(0.25 * n)
    kept = [slice(None)] * x.ndim
    kept[axis] = slice(cut, n - cut)
    return np.sort(x, axis=axis)[tuple(kept)].mean(axis=axis)


def leaderboard_rows(
    runs: Iterable[Run],
    metric: str = "train",
    reference: Reference | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> list[dict]:
    """One row per (env, algo) with `aggregate` statistics, ranked by IQM within each env.

    Runs without a value for `metric` are left out (with one warning). With a reference, each
    row gets ref_mean, ref_std, ref_threshold (mean - 2 std) and a verdict: `pass`,
    `regression` (IQM below the threshold) or `no reference`.
    """
    groups: dict[tuple[str, str], list[tuple[Run, float]]] = {}
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
# Commands


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


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")


def selected_runs(args: argparse.Namespace, default_status: str | None = None) -> list[Run]:
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


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl report`."""
    add_run_selection_arguments(parser)
    _add_output_arguments(parser)


def run_report(args: argparse.Namespace) -> int:
    """`axiomrl report`: one row per run. Exit 0, or UsageError when no run could be reported."""
    rows = report_rows(selected_runs(args))
    write_output(render(rows, REPORT_COLUMNS, args.format), args.output)
    return 0


def add_leaderboard_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl leaderboard`."""
    add_run_selection_arguments(parser, default_status="finished")
    _add_output_arguments(parser)
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


def run_leaderboard(args: argparse.Namespace) -> int:
    """`axiomrl leaderboard`: exit 1 when a judged row regresses, else 0."""
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


if __name__ == "__main__":
    from axiomrl_utils.cli import main

    sys.exit(main(["report", *sys.argv[1:]]))
