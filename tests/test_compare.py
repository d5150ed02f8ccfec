"""`axiomrl compare` and `axiomrl plot --profile`: the statistics of Agarwal et al. (2021) checked
against their definitions on fixed scores, and the command over hand-built run directories."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from axiomrl_utils import UsageError
from axiomrl_utils.commands.across_tasks import (
    aggregate_metrics,
    performance_profile,
    probability_of_improvement,
    profile_taus,
)
from axiomrl_utils.commands.normalization_scores import DEFAULT_REFERENCE_SCORES, load_reference_scores

from fake_runs import write_run

# runs x tasks, as rliable takes them; fixed numbers, not random draws
X = np.array([[0.9, 0.2, 1.4, 0.5], [1.1, 0.3, 1.2, 0.45], [0.7, 0.1, 1.5, 0.6], [1.0, 0.35, 0.9, 0.55],
              [0.95, 0.25, 1.3, 0.2]])
Y = np.array([[0.8, 0.3, 1.0, 0.5], [0.6, 0.2, 1.1, 0.4], [0.9, 0.15, 0.95, 0.5], [0.7, 0.25, 1.2, 0.3]])


def tasks(matrix):
    return list(matrix.T)


def test_aggregates_match_the_paper_definitions():
    est = aggregate_metrics(tasks(X))
    assert est["iqm"].value == pytest.approx(stats.trim_mean(X.ravel(), 0.25))  # middle 50% of run-task scores
    assert est["mean"].value == pytest.approx(X.mean(axis=0).mean())  # rliable: mean of per-task means
    assert est["median"].value == pytest.approx(np.median(X.mean(axis=0)))  # median of per-task means
    assert est["optimality_gap"].value == pytest.approx(np.mean(np.maximum(1 - X, 0)))  # gamma = 1
    assert est["optimality_gap"].value == pytest.approx(1 - np.minimum(X, 1).mean())  # rliable's form
    for e in est.values():
        assert e.low <= e.value <= e.high and e.low < e.high


def test_bootstrap_resamples_runs_within_each_task():
    # Every run of task 0 scores 0, every run of task 1 scores 1: a stratified bootstrap keeps each
    # task's runs in their task, so every resample's mean is exactly 0.5 (pooling would vary).
    est = aggregate_metrics([np.zeros(5), np.ones(5)])
    assert (est["mean"].low, est["mean"].high) == (0.5, 0.5)
    # one task: the interval of the IQM is the percentile bootstrap of trim_mean over its runs
    runs = np.array([0.1, 0.4, 0.45, 0.5, 0.9, 1.0])
    est = aggregate_metrics([runs], n_resamples=4000)["iqm"]
    idx = np.random.default_rng(0).integers(0, runs.size, size=(4000, runs.size))
    expected = np.percentile(stats.trim_mean(runs[idx], 0.25, axis=1), [2.5, 97.5])
    assert (est.low, est.high) == pytest.approx(tuple(expected))


def test_probability_of_improvement_definition():
    est = probability_of_improvement(tasks(X), tasks(Y))
    u = [stats.mannwhitneyu(X[:, t], Y[:, t]).statistic / (len(X) * len(Y)) for t in range(X.shape[1])]
    assert est.value == pytest.approx(np.mean(u))
    assert est.low < est.value < est.high
    assert probability_of_improvement(tasks(Y), tasks(X)).value == pytest.approx(1 - est.value)


def test_probability_of_improvement_identical_and_dominated():
    same = probability_of_improvement(tasks(X), tasks(X))
    assert same.value == 0.5 and same.low < 0.5 < same.high
    better = probability_of_improvement(tasks(X + 10), tasks(X))
    assert (better.value, better.low, better.high) == (1.0, 1.0, 1.0)
    worse = probability_of_improvement(tasks(X), tasks(X + 10))
    assert (worse.value, worse.low, worse.high) == (0.0, 0.0, 0.0)


def test_performance_profile_is_monotone_and_counts_scores_above_tau():
    taus = profile_taus([tasks(X), tasks(Y)], points=41)
    assert taus[0] <= 0 and taus[-1] >= X.max()
    p = performance_profile(tasks(X), taus)
    assert np.all(np.diff(p.fraction) <= 0) and np.all(np.diff(p.low) <= 1e-12) and np.all(np.diff(p.high) <= 1e-12)
    assert np.all(p.low <= p.fraction + 1e-12) and np.all(p.fraction <= p.high + 1e-12)
    tau = taus[20]
    assert p.fraction[20] == pytest.approx(np.mean([(X[:, t] > tau).mean() for t in range(X.shape[1])]))
    assert p.fraction[0] == 1.0 and p.fraction[-1] == 0.0


def test_shipped_reference_scores_cover_the_benchmark_envs():
    ref = load_reference_scores(DEFAULT_REFERENCE_SCORES)
    for env in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5",
                "InvertedPendulum-v5", "ALE/Pong-v5", "BreakoutNoFrameskip-v4"):
        assert ref.lookup(env) is not None, env
    assert ref.lookup("ALE/Pong-v5") == (-20.7, 14.6)  # human-normalised Atari


# ---------------------------------------------------------------------------------------------
# the command over run directories


def _run(root, algo, env_id, seed, value):
    return write_run(root, algo, env_id, seed, train=[(i * 100, value) for i in range(20)])


CARTPOLE = {"ppo": [480.0, 490.0, 500.0, 470.0], "dqn": [300.0, 420.0, 350.0, 400.0]}
ACROBOT = {"ppo": [-90.0, -85.0, -100.0, -95.0], "dqn": [-120.0, -110.0, -88.0, -130.0]}


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for table, env in ((CARTPOLE, "CartPole-v1"), (ACROBOT, "Acrobot-v1")):
        for algo, values in table.items():
            for seed, v in enumerate(values):
                _run(root, algo, env, seed, v)
    return root


def cli(*args):
    return subprocess.run([sys.executable, "-m", "axiomrl_utils.commands.cli", *map(str, args)],
                          capture_output=True, text=True)


def _normalised(table, env):
    random, target = load_reference_scores(DEFAULT_REFERENCE_SCORES).lookup(env)
    return {a: (np.array(v) - random) / (target - random) for a, v in table.items()}


def test_compare_json_numbers(runs_dir):
    proc = cli("compare", runs_dir, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cart, acro = _normalised(CARTPOLE, "CartPole-v1"), _normalised(ACROBOT, "Acrobot-v1")
    rows = {r["algo"]: r for r in out["aggregates"]}
    for algo in ("ppo", "dqn"):
        assert rows[algo]["envs"] == 2 and rows[algo]["runs"] == 8
        assert rows[algo]["iqm"] == pytest.approx(stats.trim_mean(np.concatenate([cart[algo], acro[algo]]), 0.25))
        assert rows[algo]["median"] == pytest.approx(np.median([cart[algo].mean(), acro[algo].mean()]))
    [pair] = out["improvements"]
    assert (pair["algo"], pair["baseline"]) == ("ppo", "dqn")  # the higher IQM first
    expected = np.mean([stats.mannwhitneyu(t["ppo"], t["dqn"]).statistic / 16 for t in (cart, acro)])
    assert pair["probability"] == pytest.approx(expected)
    assert out["problems"] == []


def test_compare_minmax_and_none(runs_dir):
    out = json.loads(cli("compare", runs_dir, "--normalize", "none", "--format", "json").stdout)
    ppo = next(r for r in out["aggregates"] if r["algo"] == "ppo")
    assert ppo["mean"] == pytest.approx(np.mean([np.mean(CARTPOLE["ppo"]), np.mean(ACROBOT["ppo"])]))
    out = json.loads(cli("compare", runs_dir, "--normalize", "minmax", "--format", "json").stdout)
    dqn = next(r for r in out["aggregates"] if r["algo"] == "dqn")
    cart = (np.array(CARTPOLE["dqn"]) - 300) / 200
    acro = (np.array(ACROBOT["dqn"]) + 130) / 45
    assert dqn["mean"] == pytest.approx(np.mean([cart.mean(), acro.mean()]))


def test_compare_table_and_csv(runs_dir):
    proc = cli("compare", runs_dir)
    assert proc.returncode == 0
    assert "IQM [95% CI]" in proc.stdout and "P(X > Y) [95% CI]" in proc.stdout
    rows = cli("compare", runs_dir, "--format", "csv").stdout.splitlines()
    assert rows[0].startswith("table,algo") and sum(r.startswith("aggregate,") for r in rows) == 2
    assert sum(r.startswith("improvement,") for r in rows) == 1


def test_fail_if_worse_gates_on_the_interval(runs_dir):
    proc = cli("compare", runs_dir, "--fail-if-worse", "dqn")
    assert proc.returncode == 1 and "worse: P(dqn > ppo)" in proc.stderr
    proc = cli("compare", runs_dir, "--fail-if-worse", "ppo", "--baseline", "dqn")
    assert proc.returncode == 0 and "P(ppo > dqn)" in proc.stderr


def test_fail_if_worse_passes_when_equal(tmp_path):
    for algo in ("a", "b"):
        for seed, v in enumerate([400.0, 450.0, 300.0]):
            _run(tmp_path, algo, "CartPole-v1", seed, v)
    proc = cli("compare", tmp_path, "--fail-if-worse", "a", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["improvements"][0]["probability"] == 0.5


def test_fail_if_worse_needs_a_baseline_among_three(runs_dir, tmp_path):
    for seed, v in enumerate([400.0, 410.0]):
        _run(tmp_path, "c51", "CartPole-v1", seed, v)
    proc = cli("compare", runs_dir, tmp_path, "--fail-if-worse", "dqn")
    assert proc.returncode == 1 and "needs --baseline" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_input_one_sentence_and_partial_results(runs_dir, tmp_path):
    # a group with one run: left out, named, the rest reported, exit 1
    _run(tmp_path, "c51", "CartPole-v1", 0, 400.0)
    proc = cli("compare", runs_dir, tmp_path, "--format", "json")
    assert proc.returncode == 1
    assert "c51 on CartPole-v1 (1)" in proc.stderr and "run more seeds" in proc.stderr
    assert {r["algo"] for r in json.loads(proc.stdout)["aggregates"]} == {"ppo", "dqn"}
    # an env the reference file lacks: named, with the fix; others still compared
    other = tmp_path / "other"
    for algo in ("ppo", "dqn"):
        for seed in range(2):
            _run(other, algo, "MyEnv-v0", seed, 1.0 + seed)
    proc = cli("compare", runs_dir, other)
    assert proc.returncode == 1 and "MyEnv-v0" in proc.stderr and "--normalize minmax" in proc.stderr
    assert "ppo" in proc.stdout
    # unknown normalisation: one sentence, nothing computed
    proc = cli("compare", runs_dir, "--normalize", "zscore")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "--normalize zscore is not a normalisation; use one of reference, minmax, none" in proc.stderr


def test_no_env_in_common(tmp_path):
    for seed in range(2):
        _run(tmp_path, "ppo", "CartPole-v1", seed, 400.0 + seed)
        _run(tmp_path, "dqn", "Acrobot-v1", seed, -100.0 - seed)
    proc = cli("compare", tmp_path, "--format", "json")
    assert proc.returncode == 1 and "have no env in common" in proc.stderr
    assert len(json.loads(proc.stdout)["aggregates"]) == 2  # each over its own env, said to be not comparable


def test_nothing_comparable_is_a_usage_error(tmp_path):
    from axiomrl_utils.commands.compare import compare_runs
    from axiomrl_utils.commands.runs import load_runs

    _run(tmp_path, "ppo", "CartPole-v1", 0, 400.0)
    with pytest.raises(UsageError, match="at least 2 runs"):
        compare_runs(load_runs([tmp_path]))


def test_compare_help_is_lazy(python):
    probe = ("import sys\nfrom axiomrl_utils.commands.cli import main\ntry:\n    main(['compare', '--help'])\n"
             "except SystemExit:\n    pass\n"
             "print('LOADED=' + ','.join(m for m in ('numpy', 'scipy', 'pandas', 'matplotlib', 'plotly') if m in sys.modules), file=sys.stderr)")
    proc = python("-c", probe)
    assert "usage: axiomrl compare" in proc.stdout and "LOADED=\n" in proc.stderr + "\n"


def test_plot_profile_writes_png_and_html(runs_dir, tmp_path):
    proc = cli("plot", runs_dir, "--profile", "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["aggregates.png", "profile.html", "profile.png"]
    assert (tmp_path / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "profile.html").read_text()
    assert "Performance profile" in html and "Aggregate metrics" in html
    proc = cli("plot", runs_dir, "--profile", "--metric", "eval", "--output-dir", tmp_path)
    assert proc.returncode == 1 and "train, final-eval or best-eval" in proc.stderr
