"""Statistics over seeds for the leaderboard and the plots: bootstrap confidence intervals, IQM,
the per-(algo, env) aggregate (mean, std, median, IQM and its 95% CI), and the stratified
bootstrap (resampling runs within each task) that `axiomrl_utils.commands.across_tasks` uses.

numpy and scipy are imported inside the functions.
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

DEFAULT_RESAMPLES = 2000
# Groups per vectorized bootstrap call: a few at once beat one by one and all at once (benchmark/README.md).
BOOTSTRAP_CHUNK = 8
CONFIDENCE = 0.95


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

    trim_mean finds the cut points with a two-point `np.partition`, which numpy does several times
    slower than a full sort of rows of tens of seeds (benchmark/README.md). The same values are
    averaged, so the result equals trim_mean's up to summation order.
    """
    import numpy as np

    n = x.shape[axis]
    cut = int(0.25 * n)
    kept = [slice(None)] * x.ndim
    kept[axis] = slice(cut, n - cut)
    return np.sort(x, axis=axis)[tuple(kept)].mean(axis=axis)


def stratified_indices(sizes: Sequence[int], n_resamples: int, seed: int = 0) -> list[Any]:
    """The stratified bootstrap of Agarwal et al. (2021): per task, `n_resamples` rows of run
    indices drawn with replacement from that task's runs, independently of the other tasks.

    `sizes[t]` is the number of runs of task t; returns one (n_resamples, sizes[t]) int array per
    task. The generator is seeded with `seed`, so the same runs always give the same intervals.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=(n_resamples, n)) for n in sizes]


def index_counts(indices: Any, n: int) -> Any:
    """How often each of `n` runs appears in each resample row of `indices`: (rows, n) counts."""
    import numpy as np

    rows = indices.shape[0]
    offsets = indices + n * np.arange(rows)[:, None]  # one bincount for all rows at once
    return np.bincount(offsets.ravel(), minlength=rows * n).reshape(rows, n)


def percentile_interval(samples: Any, axis: int = 0) -> tuple[Any, Any]:
    """The 95% percentile interval of bootstrap `samples` along `axis`."""
    import numpy as np

    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=axis)
    return low, high
