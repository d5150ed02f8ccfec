"""`axiomrl_utils.commands.across_tasks` against rliable itself (Agarwal et al. 2021).

rliable does not import beside pandas 3 (its `arch` dependency fails in pandas' `deprecate_kwarg`),
so CI installs it with --no-deps into a directory of its own, with a pandas 2 (.ci/run), and names
that directory in AXIOMRL_RLIABLE_PATH. rliable runs in a subprocess with only that directory on
PYTHONPATH; our functions run here. Point estimates must be equal; intervals come from different
bootstrap draws (rliable: arch over numpy's global generator), so they must only be close.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from axiomrl_utils.commands.across_tasks import (
    AGGREGATES,
    aggregate_metrics,
    performance_profile,
    probability_of_improvement,
)

RLIABLE_PATH = os.environ.get("AXIOMRL_RLIABLE_PATH", "")
RESAMPLES = 2000
RUNS = {"a": 10, "b": 7, "c": 5}  # rliable takes one runs x tasks matrix per algorithm
TASKS = 4
PAIRS = [("a", "b"), ("b", "c"), ("c", "a")]  # P(X > Y) point estimates; the first also its CI
POINT_TOL = 1e-9
# Interval tolerances, from the largest differences seen over data seeds 1-10 and 2021 at 2000
# resamples each side: aggregate bounds differed by at most 0.004 and P(X > Y) bounds by 0.0125,
# about the Monte Carlo error of a 2.5% / 97.5% percentile of 2000 draws; the tolerances leave over
# 2x that, and stay below the 0.08-0.10 by which a bootstrap pooling runs across tasks (not
# stratified) misses each algorithm's bounds on these scores.
# A profile is a mean of run fractions, so its resamples lie on a grid of 1 / (runs x tasks) and a
# percentile moves a whole step when the draws shift it past one: seen at most 1 step, allowed 2.
AGGREGATE_CI_TOL = 0.015
IMPROVEMENT_CI_TOL = 0.03
PROFILE_CI_STEPS = 2

RLIABLE_SCRIPT = r"""
import json, sys
import numpy as np
from rliable import library as rly, metrics

inp = json.load(sys.stdin)
scores = {k: np.array(v) for k, v in inp["scores"].items()}
taus = np.array(inp["taus"])
reps = inp["reps"]


def aggregates(s):
    return np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s), metrics.aggregate_median(s),
                     metrics.aggregate_optimality_gap(s)])


np.random.seed(0)  # arch draws rliable's resamples from numpy's global generator
point, ci = rly.get_interval_estimates(scores, aggregates, reps=reps)
profile, profile_ci = rly.create_performance_profile(scores, taus, reps=reps)
improvement = {f"{x},{y}": float(metrics.probability_of_improvement(scores[x], scores[y])) for x, y in inp["pairs"]}
x, y = inp["pairs"][0]  # rliable's P(X > Y) bootstrap runs mannwhitneyu per task and resample: slow
_, improvement_ci = rly.get_interval_estimates({"pair": [scores[x], scores[y]]}, metrics.probability_of_improvement,
                                               reps=reps)
print(json.dumps({
    "aggregates": {k: {"point": point[k].tolist(), "low": ci[k][0].tolist(), "high": ci[k][1].tolist()} for k in scores},
    "profile": {k: {"point": profile[k].tolist(), "low": profile_ci[k][0].tolist(), "high": profile_ci[k][1].tolist()}
                for k in scores},
    "improvement": improvement,
    "improvement_ci": np.ravel(improvement_ci["pair"]).tolist(),
}))
"""


def synthetic_scores(seed: int = 2021) -> dict[str, np.ndarray]:
    """Normalised scores, runs x tasks. Tasks lie far apart and runs close to their task's level, so a
    bootstrap that pooled runs across tasks would give visibly wider intervals. Some scores exceed 1
    (the optimality gap clips them); rounding to 0.01 makes runs of two algorithms tie on a task
    (P(X > Y) counts a tie 1/2)."""
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.1, 1.2, size=TASKS)
    return {
        k: np.round(levels + rng.normal(0, 0.05) + 0.4 * (rng.beta(2, 2, size=(n, TASKS)) - 0.5), 2)
        for k, n in RUNS.items()
    }


def columns(matrix: np.ndarray) -> list[np.ndarray]:
    return list(matrix.T)


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    s = synthetic_scores()
    assert max(m.max() for m in s.values()) > 1
    assert any(np.intersect1d(s[x][:, t], s[y][:, t]).size for x, y in PAIRS for t in range(TASKS))
    return s


@pytest.fixture(scope="module")
def taus(scores) -> np.ndarray:
    # a regular grid plus some scores themselves: a run scoring exactly tau is not above it
    return np.union1d(np.linspace(0.0, 1.4, 15), scores["a"][:3, 0])


@pytest.fixture(scope="module")
def rliable(scores, taus) -> dict:
    if not RLIABLE_PATH:
        pytest.skip("AXIOMRL_RLIABLE_PATH is not set (rliable does not import beside pandas 3; .ci/run installs it apart)")
    env = {**os.environ, "PYTHONPATH": RLIABLE_PATH}
    probe = subprocess.run([sys.executable, "-c", "from rliable import library, metrics"], capture_output=True, text=True,
                           env=env, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        # the variable says it was installed there (CI): a broken install is a failure, not a skip
        pytest.fail(f"rliable does not import from AXIOMRL_RLIABLE_PATH={RLIABLE_PATH}: {last}")
    payload = {"scores": {k: v.tolist() for k, v in scores.items()}, "taus": taus.tolist(), "reps": RESAMPLES,
               "pairs": PAIRS}
    proc = subprocess.run([sys.executable, "-c", RLIABLE_SCRIPT], input=json.dumps(payload), capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_point_estimates_equal_rliable(scores, taus, rliable):
    for algo, matrix in scores.items():
        ours = aggregate_metrics(columns(matrix), n_resamples=RESAMPLES)
        theirs = dict(zip(AGGREGATES, rliable["aggregates"][algo]["point"]))
        for name in AGGREGATES:
            assert ours[name].value == pytest.approx(theirs[name], abs=POINT_TOL), (algo, name)
        profile = performance_profile(columns(matrix), taus, n_resamples=RESAMPLES)
        np.testing.assert_allclose(profile.fraction, rliable["profile"][algo]["point"], rtol=0, atol=POINT_TOL)
    for x, y in PAIRS:
        ours = probability_of_improvement(columns(scores[x]), columns(scores[y]), n_resamples=RESAMPLES)
        assert ours.value == pytest.approx(rliable["improvement"][f"{x},{y}"], abs=POINT_TOL), (x, y)


def test_intervals_close_to_rliable(scores, taus, rliable):
    for algo, matrix in scores.items():
        ours = aggregate_metrics(columns(matrix), n_resamples=RESAMPLES)
        theirs = rliable["aggregates"][algo]
        for i, name in enumerate(AGGREGATES):
            assert ours[name].low == pytest.approx(theirs["low"][i], abs=AGGREGATE_CI_TOL), (algo, name)
            assert ours[name].high == pytest.approx(theirs["high"][i], abs=AGGREGATE_CI_TOL), (algo, name)
        profile = performance_profile(columns(matrix), taus, n_resamples=RESAMPLES)
        step = 1 / matrix.size
        np.testing.assert_allclose(profile.low, rliable["profile"][algo]["low"], rtol=0, atol=PROFILE_CI_STEPS * step + 1e-9)
        np.testing.assert_allclose(profile.high, rliable["profile"][algo]["high"], rtol=0, atol=PROFILE_CI_STEPS * step + 1e-9)
    x, y = PAIRS[0]
    ours = probability_of_improvement(columns(scores[x]), columns(scores[y]), n_resamples=RESAMPLES)
    low, high = rliable["improvement_ci"]
    assert ours.low == pytest.approx(low, abs=IMPROVEMENT_CI_TOL)
    assert ours.high == pytest.approx(high, abs=IMPROVEMENT_CI_TOL)
