"""Statistics across tasks (envs) of Agarwal et al. (2021), "Deep RL at the Edge of the Statistical
Precipice", as the rliable library defines them, on numpy (rliable itself does not import beside
pandas 3): aggregate IQM, mean, median and optimality gap, the probability of improvement, and
performance profiles, each with a 95% stratified-bootstrap confidence interval.

An algorithm's scores are one 1-D array of normalised per-run scores per task (`Tasks`). rliable
takes a runs x tasks matrix; here tasks may hold different numbers of runs, and with equal
numbers every value equals rliable's:

- IQM: `scipy.stats.trim_mean(all run-task scores, 0.25)` (the mean of the middle 50%);
- mean / median: mean / median over tasks of each task's mean score;
- optimality gap: mean over all run-task scores of max(1 - score, 0) (gamma = 1);
- P(X > Y): mean over tasks of U / (n_x n_y), U the Mann-Whitney statistic (ties count 1/2);
- performance profile at tau: mean over tasks of the fraction of runs scoring more than tau.

Intervals: stratified bootstrap (runs resampled with replacement within each task, tasks
independently; for P(X > Y) the runs of X and Y independently), percentile method, generator
seeded with 0. numpy is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from axiomrl_utils.commands.stats import DEFAULT_RESAMPLES, _iqm, index_counts, percentile_interval, stratified_indices

if TYPE_CHECKING:
    import numpy as np

Tasks = Sequence["np.ndarray"]  # one 1-D array of run scores per task
AGGREGATES = ("iqm", "mean", "median", "optimality_gap")


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% confidence interval (None without an interval)."""

    value: float
    low: float | None
    high: float | None


def _as_arrays(tasks: Tasks) -> list["np.ndarray"]:
    import numpy as np

    return [np.asarray(t, dtype=float).ravel() for t in tasks]


def aggregate_values(blocks: Sequence["np.ndarray"]) -> dict[str, "np.ndarray"]:
    """The four aggregates of each sample: `blocks[t]` is (samples, runs of task t).

    One sample (a single row) is the point estimate; bootstrap resamples are many rows.
    """
    import numpy as np

    pooled = np.concatenate(blocks, axis=1)
    task_means = np.stack([b.mean(axis=1) for b in blocks], axis=1)
    return {
        "iqm": _iqm(pooled, axis=1),
        "mean": task_means.mean(axis=1),
        "median": np.median(task_means, axis=1),
        "optimality_gap": np.maximum(1.0 - pooled, 0.0).mean(axis=1),
    }


def aggregate_metrics(tasks: Tasks, n_resamples: int = DEFAULT_RESAMPLES) -> dict[str, Estimate]:
    """IQM, mean, median and optimality gap over `tasks`, each with its stratified-bootstrap CI.

    No interval when every task has a single run (nothing to resample).
    """
    arrays = _as_arrays(tasks)
    point = aggregate_values([a[None, :] for a in arrays])
    if all(a.size < 2 for a in arrays):
        return {k: Estimate(float(point[k][0]), None, None) for k in AGGREGATES}
    indices = stratified_indices([a.size for a in arrays], n_resamples)
    resampled = aggregate_values([a[idx] for a, idx in zip(arrays, indices)])
    out = {}
    for k in AGGREGATES:
        low, high = percentile_interval(resampled[k])
        out[k] = Estimate(float(point[k][0]), float(low), float(high))
    return out


def _comparisons(x: "np.ndarray", y: "np.ndarray") -> "np.ndarray":
    """[x_i > y_j] + 1/2 [x_i == y_j] for every pair: the Mann-Whitney U kernel."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def probability_of_improvement(x_tasks: Tasks, y_tasks: Tasks, n_resamples: int = DEFAULT_RESAMPLES) -> Estimate:
    """P(X > Y): the probability that a run of X beats a run of Y on a task, averaged over tasks.

    `x_tasks[t]` and `y_tasks[t]` are the same task. The CI resamples the runs of X and of Y
    independently within each task. A resample's U only needs how often each run was drawn:
    U = counts_x @ kernel @ counts_y, so no resampled values are ranked.
    """
    import numpy as np

    xs, ys = _as_arrays(x_tasks), _as_arrays(y_tasks)
    if len(xs) != len(ys) or not xs:
        raise ValueError("x_tasks and y_tasks must hold the same tasks, at least one")
    kernels = [_comparisons(x, y) for x, y in zip(xs, ys)]
    point = float(np.mean([k.mean() for k in kernels]))
    if all(x.size < 2 and y.size < 2 for x, y in zip(xs, ys)):
        return Estimate(point, None, None)
    # Seeds 0 and 1: X's and Y's resamples must be independent even when their shapes match.
    x_idx = stratified_indices([x.size for x in xs], n_resamples, seed=0)
    y_idx = stratified_indices([y.size for y in ys], n_resamples, seed=1)
    per_task = [
        np.einsum("bi,ij,bj->b", index_counts(xi, k.shape[0]), k, index_counts(yi, k.shape[1]), optimize=True)
        / k.size
        for k, xi, yi in zip(kernels, x_idx, y_idx)
    ]
    low, high = percentile_interval(np.mean(per_task, axis=0))
    return Estimate(point, float(low), float(high))


@dataclass(frozen=True)
class Profile:
    """A performance profile: at each threshold tau, the fraction of runs scoring above tau
    (averaged over tasks), and its 95% CI band."""

    taus: "np.ndarray"
    fraction: "np.ndarray"
    low: "np.ndarray"
    high: "np.ndarray"


def profile_taus(all_tasks: Sequence[Tasks], points: int = 101) -> "np.ndarray":
    """A common threshold grid for several algorithms' profiles: from the lowest score (at most 0)
    to the highest (at least 1), so normalised scores show the 0 (random) and 1 (target) marks."""
    import numpy as np

    values = np.concatenate([a for tasks in all_tasks for a in _as_arrays(tasks)])
    return np.linspace(min(0.0, float(values.min())), max(1.0, float(values.max())), points)


def performance_profile(tasks: Tasks, taus: "np.ndarray", n_resamples: int = DEFAULT_RESAMPLES) -> Profile:
    """The score distribution of Agarwal et al.: for each tau, the mean over tasks of the fraction
    of runs with score > tau, with a stratified-bootstrap 95% band (non-increasing in tau)."""
    import numpy as np

    arrays = _as_arrays(tasks)
    above = [(a[:, None] > taus[None, :]).astype(float) for a in arrays]  # runs x taus, per task
    fraction = np.mean([m.mean(axis=0) for m in above], axis=0)
    if all(a.size < 2 for a in arrays):
        return Profile(taus, fraction, fraction.copy(), fraction.copy())
    indices = stratified_indices([a.size for a in arrays], n_resamples)
    resampled = np.mean([index_counts(idx, a.size) @ m / a.size for a, idx, m in zip(arrays, indices, above)], axis=0)
    low, high = percentile_interval(resampled)
    return Profile(taus, fraction, low, high)
