"""axiomrl report / leaderboard / plot over hand-built run directories with known numbers."""

import io
import json
import os
import shlex
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from axiomrl_utils import UsageError
from axiomrl_utils.commands.leaderboard import leaderboard_rows, load_reference
from axiomrl_utils.commands.report import runs_frame
from axiomrl_utils.commands.runs import find_runs, load_runs, run_metric
from axiomrl_utils.commands.stats import DEFAULT_RESAMPLES

from fake_runs import write_run

REPO = Path(__file__).resolve().parents[1]
CLEANRL = REPO / "benchmark" / "reference" / "cleanrl.json"

PPO_CARTPOLE = {1: 480.0, 2: 490.0, 3: 495.0, 4: 500.0, 5: 500.0}
DQN_CARTPOLE = {1: 300.0, 2: 350.0, 3: 400.0}
PPO_CHEETAH = {1: 1500.0, 2: 1600.0}


def _write(root, algo, env_id, seed, value, **kw):
    """A run whose last-100 training mean is `value`, best eval `value + 5`, final eval `value`."""
    train = [(i * 100, value) for i in range(150)]
    evals = {5000: [value + 4.0, value + 6.0], 15000: [value, value]}
    metrics = [{"global_step": s, "iteration": s // 100, "charts/SPS": 1000.0, "losses/value_loss": 1.0 / (1 + s)}
               for s in range(0, 15001, 500)]
    return write_run(root, algo, env_id, seed, train=train, evals=evals, metrics=metrics, **kw)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for seed, v in PPO_CARTPOLE.items():
        _write(root, "ppo", "CartPole-v1", seed, v)
    for seed, v in DQN_CARTPOLE.items():
        _write(root / "sweeps" / "dqn-sweep", "dqn", "CartPole-v1", seed, v, git={"commit": "f" * 40, "is_dirty": True})
    for seed, v in PPO_CHEETAH.items():
        _write(root, "ppo_continuous_action", "HalfCheetah-v5", seed, v)
    # a `running` run whose process is gone: shown as crashed, left out of leaderboards by default
    _write(root, "ppo", "CartPole-v1", 9, 10.0, status="running", pid=_dead_pid())
    _write(root, "ppo", "CartPole-v1", 8, 20.0, status="failed")
    return root


def _json(proc) -> list:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------------------------
# discovery and loading


def test_find_runs_recurses_but_not_into_run_internals(tmp_path):
    run = _write(tmp_path, "ppo", "CartPole-v1", 1, 1.0)
    nested = _write(tmp_path / "sweeps" / "a" / "b", "ppo", "CartPole-v1", 2, 1.0)
    for sub in ("checkpoints", "tensorboard", "videos"):  # never runs, even with a metadata.json
        (run / sub).mkdir(exist_ok=True)
        (run / sub / "metadata.json").write_text("{}")
    assert find_runs([tmp_path]) == sorted([run, nested])
    assert find_runs([run / "metadata.json"]) == [run]


def test_crashed_status(tmp_path):
    dead = _write(tmp_path, "ppo", "CartPole-v1", 1, 1.0, status="running", pid=_dead_pid())
    alive = _write(tmp_path, "ppo", "CartPole-v1", 2, 1.0, status="running", pid=os.getpid())
    elsewhere = _write(tmp_path, "ppo", "CartPole-v1", 3, 1.0, status="running", pid=_dead_pid(),
                       hostname="some-other-host-" + socket.gethostname())
    done = _write(tmp_path, "ppo", "CartPole-v1", 4, 1.0, status="finished", pid=_dead_pid())
    status = {r.path: r.status for r in load_runs([tmp_path])}
    assert status == {dead: "crashed", alive: "running", elsewhere: "running", done: "finished"}
    assert {r.metadata["status"] for r in load_runs([dead])} == {"running"}  # the file is untouched


def test_metric_fallback_when_summary_lacks_it(tmp_path):
    train = [(i, float(i)) for i in range(250)]  # last 100 returns: 150..249
    path = write_run(tmp_path, train=train, evals={10: [1.0, 3.0], 20: [10.0, 20.0], 30: [4.0, 6.0]}, summary=None)
    with open(path / "train_episodes.jsonl", "a") as f:
        f.write('{"global_step": 999, "return": 1e9, "len')  # torn last line of a killed run
    (run,) = load_runs([tmp_path])
    assert run_metric(run, "train") == pytest.approx(np.mean(np.arange(150, 250)))
    assert run_metric(run, "final_eval") == pytest.approx(5.0)
    assert run_metric(run, "best_eval") == pytest.approx(15.0)
    # a summary value, when present, wins without opening the logs
    other = write_run(tmp_path / "b", summary={"train_return_last100": 42.0})
    (run,) = load_runs([other])
    assert run_metric(run, "train") == 42.0


def test_runs_frame(runs_dir):
    frame = runs_frame(load_runs([runs_dir]))
    assert len(frame) == 12
    assert set(frame["status"]) == {"finished", "crashed", "failed"}


# ---------------------------------------------------------------------------------------------
# report


def test_report_rows_and_values(runs_dir, cli):
    rows = _json(cli("report", str(runs_dir), "--format", "json"))
    assert len(rows) == 12
    by_key = {(r["algo"], r["env_id"], r["seed"]): r for r in rows}
    ppo1 = by_key[("ppo", "CartPole-v1", 1)]
    assert ppo1["train_return"] == 480.0
    assert ppo1["best_eval_return"] == 485.0 and ppo1["final_eval_return"] == 480.0
    assert ppo1["status"] == "finished" and ppo1["steps"] == 15000
    assert ppo1["sps"] == pytest.approx(150.0) and ppo1["wall_time_s"] == 100.0
    metadata = json.loads((Path(ppo1["run_dir"]) / "metadata.json").read_text())
    assert ppo1["command"] == "python " + shlex.join(metadata["command"])
    assert shlex.split(ppo1["command"])[1:] == ["axiomrl/ppo.py", "--env-id", "CartPole-v1", "--seed", "1"]
    assert by_key[("dqn", "CartPole-v1", 2)]["git_dirty"] is True  # found under sweeps/
    assert by_key[("ppo", "CartPole-v1", 9)]["status"] == "crashed"


def test_report_formats_parse_back(runs_dir, cli, tmp_path):
    csv_path = tmp_path / "out" / "report.csv"
    proc = cli("report", str(runs_dir), "--format", "csv", "--output", str(csv_path), "--algo", "ppo")
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    frame = pd.read_csv(csv_path)
    assert len(frame) == 7 and set(frame["algo"]) == {"ppo"}
    assert frame.set_index("seed").loc[3, "train_return"] == 495.0

    table = cli("report", str(runs_dir), "--env-id", "Half*")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["algo", "env", "seed", "status"] and len(lines) == 2 + 2
    assert "python axiomrl/ppo_continuous_action.py --env-id HalfCheetah-v5 --seed 1" in table.stdout

    md = cli("report", str(runs_dir), "--format", "markdown", "--status", "crashed").stdout.splitlines()
    assert md[0].startswith("| algo | env |") and md[1].startswith("|---") and len(md) == 3
    assert "| crashed |" in md[2]


def test_python_dash_m_report(runs_dir, python):
    proc = python("-m", "axiomrl_utils.commands.report", str(runs_dir), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(io.StringIO(proc.stdout))) == 12


# ---------------------------------------------------------------------------------------------
# leaderboard


def _scipy_iqm_ci(x):
    res = stats.bootstrap((np.asarray(x),), lambda a, axis: stats.trim_mean(a, 0.25, axis=axis), vectorized=True,
                          n_resamples=DEFAULT_RESAMPLES, confidence_level=0.95, method="percentile",
                          rng=np.random.default_rng(0))
    return res.confidence_interval.low, res.confidence_interval.high


@pytest.mark.parametrize("shape", [(2,), (3,), (7,), (50,), (4, 9), (3, 40, 11)])
def test_bootstrap_iqm_equals_scipy_trim_mean(shape):
    from axiomrl_utils.commands.stats import _iqm

    x = np.random.default_rng(len(shape)).normal(scale=100.0, size=shape)
    for axis in range(-len(shape), 0):
        np.testing.assert_allclose(_iqm(x, axis=axis), stats.trim_mean(x, 0.25, axis=axis), rtol=1e-12, atol=1e-12)


def test_leaderboard_statistics_match_scipy(runs_dir, cli):
    proc = cli("leaderboard", str(runs_dir), "--format", "json")
    rows = _json(proc)
    assert [(r["env_id"], r["rank"], r["algo"]) for r in rows] == [
        ("CartPole-v1", 1, "ppo"), ("CartPole-v1", 2, "dqn"), ("HalfCheetah-v5", 1, "ppo_continuous_action"),
    ]
    for row, values in zip(rows, (PPO_CARTPOLE, DQN_CARTPOLE, PPO_CHEETAH)):
        x = np.array(list(values.values()))
        assert row["seeds"] == len(x)  # the crashed and the failed run are not counted
        assert row["mean"] == pytest.approx(x.mean())
        assert row["std"] == pytest.approx(x.std())
        assert row["median"] == pytest.approx(np.median(x))
        assert row["iqm"] == pytest.approx(stats.trim_mean(x, 0.25))
        low, high = _scipy_iqm_ci(x)
        assert (row["iqm_ci_low"], row["iqm_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert rows[0]["warning"] is None and rows[1]["warning"] == "fewer than 5 seeds"
    assert "fewer than 5 seeds" in proc.stderr and "left out 1 crashed, 1 failed" in proc.stderr
    # reproducible: the same data give the same interval
    assert _json(cli("leaderboard", str(runs_dir), "--format", "json")) == rows


def test_leaderboard_json_is_a_reference(runs_dir, cli, tmp_path):
    saved = tmp_path / "last-release.json"
    proc = cli("leaderboard", str(runs_dir), "--format", "json", "--output", str(saved))
    assert proc.returncode == 0 and f"wrote {saved}" in proc.stderr
    ref = load_reference(saved)
    assert ref.metric == "train" and len(ref.results) == 3
    finished = [r for r in load_runs([runs_dir]) if r.status == "finished"]
    assert {r["verdict"] for r in leaderboard_rows(finished, reference=ref)} == {"pass"}


def test_leaderboard_metrics_and_formats(runs_dir, cli):
    best = {(r["algo"], r["env_id"]): r for r in leaderboard_rows(
        [r for r in load_runs([runs_dir]) if r.status == "finished"], metric="best_eval")}
    assert best[("dqn", "CartPole-v1")]["mean"] == pytest.approx(355.0)
    final = {(r["algo"], r["env_id"]): r for r in leaderboard_rows(
        [r for r in load_runs([runs_dir]) if r.status == "finished"], metric="final_eval")}
    assert final[("dqn", "CartPole-v1")]["mean"] == pytest.approx(350.0)

    csv = cli("leaderboard", str(runs_dir), "--format", "csv", "--metric", "best_eval", "--status", "*")
    assert csv.returncode == 0, csv.stderr
    frame = pd.read_csv(io.StringIO(csv.stdout))
    ppo = frame[(frame.algo == "ppo")].iloc[0]
    assert ppo["seeds"] == 7 and ppo["metric"] == "best_eval"  # --status '*' includes crashed + failed
    table = cli("leaderboard", str(runs_dir), "--format", "markdown")
    assert "| env | rank | algo | seeds | mean ± std |" in table.stdout


def _reference(path: Path, results, aliases=None, metric="train") -> Path:
    path.write_text(json.dumps({"name": "test", "metric": metric, "aliases": aliases or {}, "results": results}))
    return path


def test_reference_regression_check(runs_dir, cli, tmp_path):
    ok = _reference(tmp_path / "ok.json", [
        {"algo": "ppo", "env_id": "CartPole-v1", "mean": 495.0, "std": 5.0},              # threshold 485
        {"algo": "ppo_continuous_action", "env_id": "HalfCheetah-v4", "mean": 1500.0, "std": 100.0},
    ], aliases={"HalfCheetah-v5": "HalfCheetah-v4"})
    proc = cli("leaderboard", str(runs_dir), "--reference", str(ok), "--format", "json")
    rows = {(r["algo"], r["env_id"]): r for r in _json(proc)}
    assert rows[("ppo", "CartPole-v1")]["verdict"] == "pass"
    assert rows[("ppo_continuous_action", "HalfCheetah-v5")]["ref_env_id"] == "HalfCheetah-v4"
    assert rows[("dqn", "CartPole-v1")]["verdict"] == "no reference"  # shown, not judged
    assert "ok: all 2 judged rows" in proc.stderr

    bad = _reference(tmp_path / "bad.json", [
        {"algo": "ppo", "env_id": "CartPole-v1", "mean": 500.0, "std": 1.0},
        {"algo": "dqn", "env_id": "CartPole-v1", "mean": 500.0, "std": 10.0},
        {"algo": "ppo_continuous_action", "env_id": "HalfCheetah-v4", "mean": 1500.0, "std": 100.0},
    ], aliases={"HalfCheetah-v5": "HalfCheetah-v4"})
    proc = cli("leaderboard", str(runs_dir), "--reference", str(bad))
    assert proc.returncode == 1
    assert "regression: 2 of 3 judged rows" in proc.stderr
    assert "ppo on CartPole-v1: IQM" in proc.stderr and "dqn on CartPole-v1: IQM" in proc.stderr
    assert "HalfCheetah" not in proc.stderr.split("regression:")[1]
    assert "regression" in proc.stdout  # the verdict column


def test_shipped_cleanrl_reference():
    ref = load_reference(CLEANRL)
    assert ref.metric == "train" and len(ref.results) == 42
    assert {a for a, _ in ref.results} == {
        "ppo", "dqn", "c51", "ppo_continuous_action", "sac_continuous_action", "td3_continuous_action",
        "ddpg_continuous_action", "ppo_atari", "dqn_atari", "c51_atari",
    }
    entry, env = ref.lookup("ppo", "CartPole-v1")
    assert (entry["mean"], entry["std"], env) == (490.04, 6.12, "CartPole-v1")
    entry, env = ref.lookup("sac_continuous_action", "Hopper-v5")
    assert (entry["mean"], entry["std"], env) == (2310.46, 342.82, "Hopper-v4")
    entry, _ = ref.lookup("c51_atari", "BeamRiderNoFrameskip-v4")
    assert (entry["mean"], entry["std"]) == (9592.90, 2270.15)
    assert ref.lookup("ppo_atari", "ALE/Breakout-v5") is None  # sticky actions: not comparable


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_and_empty_runs_dir(cli, tmp_path):
    missing = cli("report", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and missing.stderr.startswith("error: ")
    assert "Traceback" not in missing.stderr
    empty = cli("leaderboard", str(tmp_path))
    assert empty.returncode == 1 and empty.stderr.startswith("error: no runs under")
    # one of two dirs missing: a warning, and the other is reported
    run = _write(tmp_path / "r", "ppo", "CartPole-v1", 1, 1.0)
    some = cli("report", str(tmp_path / "nope"), str(run.parent), "--format", "json")
    assert len(_json(some)) == 1 and "warning:" in some.stderr


def test_bad_metadata_is_skipped_with_one_warning(tmp_path, cli):
    good = _write(tmp_path, "ppo", "CartPole-v1", 1, 7.0)
    corrupt = _write(tmp_path, "ppo", "CartPole-v1", 2, 1.0)
    (corrupt / "metadata.json").write_text("{not json")
    truncated = _write(tmp_path, "ppo", "CartPole-v1", 3, 1.0)
    text = (truncated / "metadata.json").read_text()
    (truncated / "metadata.json").write_text(text[: len(text) // 2])
    future = _write(tmp_path, "ppo", "CartPole-v1", 4, 1.0, schema_version=99)
    binary = _write(tmp_path, "ppo", "CartPole-v1", 5, 1.0)
    (binary / "metadata.json").write_bytes(b"\xff\xfe\x00garbage")
    proc = cli("report", str(tmp_path), "--format", "json")
    rows = _json(proc)
    assert [r["run_dir"] for r in rows] == [str(good)]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4
    for bad in (corrupt, truncated, future, binary):
        assert sum(str(bad / "metadata.json") in w for w in warnings) == 1
    assert "schema_version 99" in proc.stderr

    (good / "metadata.json").write_text("")  # now nothing can be reported
    proc = cli("report", str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1].startswith("error: none of the 5 run directories")


def test_bad_reference_and_filters(runs_dir, cli, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": [')
    for ref in (broken, tmp_path / "missing.json", _reference(tmp_path / "x.json", [{"algo": "ppo"}])):
        proc = cli("leaderboard", str(runs_dir), "--reference", str(ref))
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.startswith("error: reference file") and proc.stderr.count("\n") == 1, proc.stderr
    mismatch = cli("leaderboard", str(runs_dir), "--reference", str(CLEANRL), "--metric", "best_eval")
    assert mismatch.returncode == 1 and "drop --metric" in mismatch.stderr
    typo = cli("report", str(runs_dir), "--status", "finishd")
    assert typo.returncode == 1 and "is not a status" in typo.stderr
    nothing = cli("report", str(runs_dir), "--algo", "sac")
    assert nothing.returncode == 1 and "none of the 12 runs matches --algo sac" in nothing.stderr


def test_usage_error_in_process(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        find_runs([tmp_path / "nope"])


# ---------------------------------------------------------------------------------------------
# plots


def _assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_plot_png_html_and_per_run(runs_dir, cli, tmp_path):
    out = tmp_path / "plots"
    proc = cli("plot", str(runs_dir), "--output-dir", str(out), "--per-run", "--env-id", "Half*")
    assert proc.returncode == 0, proc.stderr
    _assert_png(out / "HalfCheetah-v5__train.png")
    assert "plotly" in (out / "train.html").read_text().lower()
    per_run = sorted((out / "per_run").glob("*.png"))
    assert len(per_run) == 2
    _assert_png(per_run[0])
    assert {Path(p) for p in proc.stdout.split()} == {out / "HalfCheetah-v5__train.png", out / "train.html", *per_run}

    metric = cli("plot", str(runs_dir), "--output-dir", str(out), "--metric", "losses/value_loss", "--band", "std")
    assert metric.returncode == 0, metric.stderr
    _assert_png(out / "CartPole-v1__losses-value_loss.png")
    html = (out / "losses-value_loss.html").read_text()
    assert "plotly" in html.lower() and html.count("Plotly.newPlot(") == 2  # one figure per env
    unknown = cli("plot", str(runs_dir), "--output-dir", str(out), "--metric", "losses/nope")
    assert unknown.returncode == 1 and "losses/value_loss" in unknown.stderr


def test_plot_without_plotly_skips_html(runs_dir, python, tmp_path):
    code = (
        "import sys; sys.modules['plotly'] = None\n"  # makes `import plotly` fail as when it is not installed
        "from axiomrl_utils.commands.cli import main\n"
        f"sys.exit(main(['plot', {str(runs_dir)!r}, '--output-dir', {str(tmp_path)!r}, '--metric', 'eval']))"
    )
    proc = python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "plotly" in line] == [
        "notice: plotly is not installed, so no HTML plots were written (pip install 'axiomrl[plot]')"
    ]
    _assert_png(tmp_path / "CartPole-v1__eval.png")
    assert not list(tmp_path.glob("*.html"))


def test_plot_aggregation_grid():
    from axiomrl_utils.commands.plot import Curve, aggregate_curves, format_steps

    a = Curve(np.array([0.0, 100.0]), np.array([0.0, 100.0]))
    b = Curve(np.array([50.0, 200.0]), np.array([50.0, 200.0]))
    agg = aggregate_curves([a, b], band="std", points=5)  # grid 0, 50, 100, 150, 200
    np.testing.assert_allclose(agg.grid, [0, 50, 100, 150, 200])
    np.testing.assert_allclose(agg.mean, [0, 50, 100, 150, 200])  # no extrapolation past a seed's range
    assert np.isnan(agg.low[0]) and not np.isnan(agg.low[1])
    assert [format_steps(v) for v in (0, 500, 1e5, 1.5e6, 2e9)] == ["0", "500", "100k", "1.5M", "2B"]
