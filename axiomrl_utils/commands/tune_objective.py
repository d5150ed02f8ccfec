"""The objective of `axiomrl tune`: each run's metric, normalised per env, aggregated across envs
and seeds into a trial's score (with a confidence interval over seeds), and the same score on
the runs' progress so far, for pruning.

Per run the metric is `eval` (the final evaluation's mean return), `best_eval`, `train` (the mean
of the last 100 training returns), as `axiomrl leaderboard` defines them
(`axiomrl_utils.commands.runs`), or any key of the runs' metrics.jsonl (`losses/value_loss`, ...).
Per env a score s maps to (s - low) / (high - low) with the reference scores of
benchmark/reference/scores.json or user-given bounds (`axiomrl_utils.commands.normalization_scores`),
and the trial's score is the IQM, mean or median across envs of Agarwal et al. (2021), with the
stratified-bootstrap interval (`axiomrl_utils.commands.across_tasks`). numpy is imported inside.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.commands.runs import METRICS, finite_number

# --metric name -> the runs.METRICS key that defines it
NAMED_METRICS = {"eval": "final_eval", "best_eval": "best_eval", "train": "train"}
AGGREGATES = ("mean", "median", "iqm")
EVAL_KEY = "eval/return_mean"


@dataclass(frozen=True)
class Objective:
    """How a trial is scored; `bounds` maps env id -> (low, high), empty for raw values."""

    metric: str
    direction: str  # maximize | minimize
    aggregate: str
    bounds: Mapping[str, tuple[float, float]]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Objective":
        return cls(data["metric"], data["direction"], data["aggregate"], {k: tuple(v) for k, v in (data.get("bounds") or {}).items()})

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "aggregate": self.aggregate,
                "bounds": {k: list(v) for k, v in self.bounds.items()}}

    def normalised(self, env_id: str, value: float) -> float:
        from axiomrl_utils.commands.normalization_scores import normalize

        return normalize(value, self.bounds[env_id]) if env_id in self.bounds else value

    def tasks(self, values: Mapping[str, Sequence[float]]) -> list[Any]:
        """One array of normalised run scores per env, in env order."""
        import numpy as np

        return [np.array([self.normalised(env, v) for v in vs], dtype=float) for env, vs in values.items()]

    def score(self, values: Mapping[str, Sequence[float]], n_resamples: int = 2000) -> tuple[float, Optional[float], Optional[float]]:
        """(score, CI low, CI high) of a trial from its runs' values per env: the aggregate of the
        normalised scores with its 95% stratified-bootstrap interval (None with one run per env)."""
        from axiomrl_utils.commands.across_tasks import aggregate_metrics

        estimate = aggregate_metrics(self.tasks(values), n_resamples)[self.aggregate]
        return estimate.value, estimate.low, estimate.high

    def point(self, values: Mapping[str, Sequence[float]]) -> float:
        """The score without an interval (the pruning reports)."""
        from axiomrl_utils.commands.across_tasks import aggregate_values

        return float(aggregate_values([t[None, :] for t in self.tasks(values)])[self.aggregate][0])


def check_metric(metric: str) -> None:
    if metric not in NAMED_METRICS and "/" not in metric:
        raise UsageError(f"--metric {metric} is not a metric; use eval, best_eval, train, or a metrics.jsonl key "
                         "such as losses/value_loss")


def default_direction(metric: str) -> str:
    """Returns are maximised; a loss (losses/*) is minimised; other keys are maximised unless told."""
    return "minimize" if metric.startswith("losses/") else "maximize"


def parse_bounds(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """`--bounds ENV=LOW:HIGH` (repeatable) as env id -> (low, high); UsageError when malformed."""
    out = {}
    for item in items:
        env, _, pair = item.partition("=")
        low, _, high = pair.partition(":")
        lo, hi = _float(low), _float(high)
        if not env or lo is None or hi is None or lo == hi:
            raise UsageError(f"--bounds {item} is not ENV=LOW:HIGH with two different numbers; e.g. --bounds MountainCar-v0=-200:-110")
        out[env] = (lo, hi)
    return out


def _float(text: str) -> Optional[float]:
    try:
        return finite_number(float(text))
    except ValueError:
        return None


def resolve_bounds(env_ids: Sequence[str], normalize: str, given: Mapping[str, tuple[float, float]],
                   reference_path: Optional[str]) -> dict[str, tuple[float, float]]:
    """Per env the (low, high) of the normalisation: given bounds first, then the reference file.

    `normalize`: `reference` (every env needs bounds), `none` (raw values), or `auto` (reference
    when every env has bounds, raw for one env without, refused for several envs without).
    """
    from axiomrl_utils.commands.normalization_scores import DEFAULT_REFERENCE_SCORES, load_reference_scores

    if normalize == "none":
        if given:
            raise UsageError("--bounds and --normalize none contradict each other; drop one")
        return {}
    reference = None
    path = reference_path or (DEFAULT_REFERENCE_SCORES if DEFAULT_REFERENCE_SCORES.is_file() else None)
    if path is not None:
        reference = load_reference_scores(path)
    bounds: dict[str, tuple[float, float]] = {}
    missing = []
    for env in env_ids:
        found = given.get(env) or (reference.lookup(env) if reference else None)
        if found is None:
            missing.append(env)
        else:
            bounds[env] = (float(found[0]), float(found[1]))
    unknown = sorted(set(given) - set(env_ids))
    if unknown:
        raise UsageError(f"--bounds names {', '.join(unknown)}, which is not among --env-ids; give bounds for the tuned envs")
    if missing and (normalize == "reference" or len(env_ids) > 1):
        raise UsageError(f"no reference score for {', '.join(missing)} (in {path or 'no reference file'}); pass "
                         f"--bounds {missing[0]}=LOW:HIGH for each, or --normalize none to aggregate raw values")
    return bounds if not missing else {}


# ---------------------------------------------------------------------------------- per run


def final_value(run_dir: Path, metric: str) -> Optional[float]:
    """The run's value of the metric at its end, None when it has none."""
    from axiomrl_utils.commands.runs import load_run, run_metric

    if metric in NAMED_METRICS:
        try:
            return run_metric(load_run(run_dir), NAMED_METRICS[metric])
        except ValueError:
            return None
    last = None
    for _, value in _LogTail(run_dir / "metrics.jsonl").rows(metric):
        last = value
    return last


class _LogTail:
    """The complete lines appended to a jsonl file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def new_lines(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()  # a line still being written
        out = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out.append(row)
        return out

    def rows(self, key: str) -> list[tuple[int, float]]:
        return [(row["global_step"], v) for row in self.new_lines()
                if isinstance(row.get("global_step"), int) and (v := finite_number(row.get(key))) is not None]


class RunProgress:
    """A run's metric as it trains, in buckets of `every` steps: a value at step s counts for bucket
    floor(s / every) * every, so runs whose evaluations fall a few steps apart share buckets."""

    def __init__(self, slot: Path, metric: str, every: int) -> None:
        self.slot, self.metric, self.every = slot, metric, max(1, int(every))
        self.run_dir: Optional[Path] = None
        self.reset()

    def reset(self) -> None:
        self.values: dict[int, float] = {}
        self.reached = -1  # the last bucket with a value
        self.tail: Optional[_LogTail] = None
        self.recent: collections.deque = collections.deque(maxlen=100)
        self.best: Optional[float] = None

    def poll(self) -> None:
        from axiomrl_utils.commands.sweep_backends import run_dirs_in

        dirs = run_dirs_in(self.slot)
        if not dirs:
            return
        if dirs[-1] != self.run_dir:  # a new run directory (the first, or a fresh restart)
            self.run_dir = dirs[-1]
            self.reset()
        if self.tail is None:
            name = "train_episodes.jsonl" if self.metric == "train" else "metrics.jsonl"
            self.tail = _LogTail(self.run_dir / name)
        if self.metric == "train":
            points = []
            for step, ret in self.tail.rows("return"):
                self.recent.append(ret)
                points.append((step, sum(self.recent) / len(self.recent)))
        else:
            points = self.tail.rows(EVAL_KEY if self.metric in NAMED_METRICS else self.metric)
        for step, value in points:
            if self.metric == "best_eval":
                self.best = value = value if self.best is None else max(self.best, value)
            bucket = step // self.every * self.every
            self.values[bucket] = value
            self.reached = max(self.reached, bucket)

    def value_at(self, bucket: int) -> Optional[float]:
        """The newest value in a bucket at or before `bucket`."""
        known = [b for b in self.values if b <= bucket]
        return self.values[max(known)] if known else None


def common_bucket(progress: Sequence[RunProgress], done: Sequence[bool]) -> Optional[int]:
    """The newest bucket every run has completed: a live run has completed the buckets before the
    one it is writing to (whose value may still change), a run that ended all of them. Reporting
    only completed buckets makes a trial's reported value independent of when the tuner looked."""
    live = [p.reached - 1 for p, d in zip(progress, done) if not d]
    reached = [p.reached for p in progress if p.reached >= 0]
    if not reached:
        return None
    bucket = min(live) if live else max(reached)
    return bucket if bucket >= 0 else None


def metric_description(metric: str) -> str:
    if metric in NAMED_METRICS:
        return METRICS[NAMED_METRICS[metric]][1]
    return f"the last value of {metric} in metrics.jsonl"
