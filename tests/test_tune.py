"""`axiomrl tune`: real Optuna studies of tiny ppo.py runs on CartPole.

The command runs in-process (`cli.main`) or as `python -m axiomrl_utils.tune` (the kill -9 test);
its workers and every run are real processes writing real run directories.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from axiomrl_utils import UsageError
from axiomrl_utils.commands import cli
from axiomrl_utils.jsonl import read_json

from conftest import REPO, run_script, script_env, tree_snapshot

pytest.importorskip("optuna")

TINY = ["--total-timesteps", "512", "--num-envs", "2", "--num-steps", "64", "--eval-every", "256", "--eval-episodes", "2",
        "--checkpoint-every", "128", "--no-progress"]
SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "num_minibatches": {"choices": [1, 2, 4]}}
CARTPOLE = (24.96, 490.04)  # benchmark/reference/scores.json: random, target


@pytest.fixture(autouse=True)
def _children_find_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def space_file(tmp_path: Path, space: dict[str, Any] = SPACE, name: str = "space.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(space))
    return str(path)


def tune(tmp_path: Path, *argv: str, run_args: list[str] = TINY) -> int:
    return cli.main(["tune", "--script", "axiomrl/ppo.py", "--output-dir", str(tmp_path / "runs"), *argv, "--", *run_args])


def trials(study_dir: Path) -> list[Any]:
    import optuna

    from axiomrl_utils.commands.tune_worker import storage

    return optuna.load_study(study_name=study_dir.name, storage=storage(study_dir)).get_trials()


def run_dirs(study_dir: Path, number: int) -> list[Path]:
    return sorted(p.parent for p in (study_dir / "trials" / f"{number:04d}").glob("*/*/metadata.json"))


def test_a_study_on_two_workers_finishes_its_trials_and_writes_a_best_config_the_scripts_take(tmp_path: Path, capsys) -> None:
    """4 trials on 2 worker processes sharing one journal: 4 distinct trials, every run started once,
    both workers used, scores equal the normalised eval returns, a ranked table, plots, and a best
    config that ppo.py --config trains from."""
    assert tune(tmp_path, "--name", "s", "--trials", "4", "--seeds", "1", "--workers", "2", "--space", space_file(tmp_path),
                "--sampler-seed", "3") == 0
    out = capsys.readouterr().out
    study_dir = tmp_path / "runs" / "studies" / "s"
    done = trials(study_dir)
    assert [t.number for t in done] == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in done)
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == 4  # the workers sample apart
    workers = set()
    for t in done:
        (run_dir,) = run_dirs(study_dir, t.number)  # one run, never started twice
        log = (study_dir / "trials" / f"{t.number:04d}" / "logs" / "ppo__CartPole-v1__seed1.log").read_text()
        assert log.count("=== sweep attempt") == 1
        meta = read_json(run_dir / "metadata.json")
        assert meta["status"] == "finished" and meta["resumes"] == []
        expected = (meta["summary"]["eval_return_last"] - CARTPOLE[0]) / (CARTPOLE[1] - CARTPOLE[0])
        assert t.value == pytest.approx(expected)
        assert read_json(run_dir / "config.yaml")["learning_rate"] == pytest.approx(t.params["learning_rate"])
        workers.add(read_json(study_dir / "trials" / f"{t.number:04d}" / "trial.json")["worker"]["worker"])
    assert workers == {0, 1}
    assert "rank" in out and "best: trial" in out and "[tune] trial 3" in out
    for name in ("report.md", "report.json", "history.png", "history.html", "importance.png", "importance.html", "study.json"):
        assert (study_dir / name).stat().st_size > 0, name
    best = max(done, key=lambda t: t.value)
    config = read_json(study_dir / "best_config.yaml")
    assert config["learning_rate"] == pytest.approx(best.params["learning_rate"]) and "output_dir" not in config and "seed" not in config
    proc = run_script("ppo.py", "--config", str(study_dir / "best_config.yaml"), "--seed", "9", "--total-timesteps", "128",
                      "--output-dir", str(tmp_path / "retrain"))
    assert proc.returncode == 0, proc.stderr
    (retrained,) = (tmp_path / "retrain").iterdir()
    assert read_json(retrained / "config.yaml")["learning_rate"] == pytest.approx(best.params["learning_rate"])

    before = tree_snapshot(study_dir / "trials")
    assert cli.main(["tune", "--name", "s", "--output-dir", str(tmp_path / "runs"), "--report"]) == 0
    assert "best: trial" in capsys.readouterr().out and tree_snapshot(study_dir / "trials") == before
    assert cli.main(["tune", "--name", "s", "--output-dir", str(tmp_path / "runs")]) == 0  # rerun: nothing left to do
    assert len(trials(study_dir)) == 4 and tree_snapshot(study_dir / "trials") == before


def test_kill_9_mid_study_then_rerun_resumes_the_running_trial_from_its_checkpoint(tmp_path: Path) -> None:
    """SIGKILL to the tune process while trial 0 trains: its worker and run stop (the run checkpoints);
    the rerun resumes that run with --resume (a `resumes` entry), and the study ends with its 2 trials."""
    out = tmp_path / "runs"
    argv = [sys.executable, "-m", "axiomrl_utils.tune", "--script", "axiomrl/ppo.py", "--name", "k", "--output-dir", str(out),
            "--trials", "2", "--seeds", "1", "--space", space_file(tmp_path), "--sampler-seed", "1", "--",
            "--total-timesteps", "6144", "--num-envs", "2", "--num-steps", "64", "--eval-every", "2048", "--eval-episodes", "2",
            "--checkpoint-every", "256", "--no-progress"]
    proc = subprocess.Popen(argv, cwd=REPO, env=script_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    slot = out / "studies" / "k" / "trials" / "0000" / "ppo__CartPole-v1__seed1"
    deadline = time.monotonic() + 180
    while not list(slot.glob("*/checkpoints/step_*.pt")):
        assert time.monotonic() < deadline and proc.poll() is None, "trial 0 never checkpointed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = [p for p in slot.iterdir() if (p / "metadata.json").exists()]
    deadline = time.monotonic() + 120
    while read_json(run_dir / "metadata.json")["status"] == "running":  # the worker's death reaches the run
        assert time.monotonic() < deadline, "the run went on training after its tuner died"
        time.sleep(0.2)
    stopped = read_json(run_dir / "metadata.json")
    assert stopped["status"] == "interrupted" and stopped["total_steps"] < 6144
    assert [t.state.name for t in trials(out / "studies" / "k")] == ["RUNNING"]

    assert cli.main(["tune", "--name", "k", "--output-dir", str(out)]) == 0
    study_dir = out / "studies" / "k"
    done = trials(study_dir)
    assert [t.number for t in done] == [0, 1] and all(t.state.name == "COMPLETE" for t in done)
    assert run_dirs(study_dir, 0) == [run_dir]  # resumed in place, not restarted
    meta = read_json(run_dir / "metadata.json")
    assert meta["status"] == "finished" and len(meta["resumes"]) == 1
    assert meta["resumes"][0]["from_step"] == stopped["total_steps"]
    assert len(run_dirs(study_dir, 1)) == 1
    assert read_json(study_dir / "trials" / "0000" / "trial.json")["resumed"] is True


def test_the_pruner_stops_a_hopeless_trial_and_its_runs_end_pruned(tmp_path: Path, capsys) -> None:
    """Objective on a crafted metric (the logged learning rate): once a trial with lr 0.01 finished,
    a trial with lr 1e-9 is hopeless at its first report; its run ends `pruned` and keeps its files."""
    space = space_file(tmp_path, {"learning_rate": {"choices": [0.01, 1e-9]}})
    run_args = ["--total-timesteps", "3072", "--num-envs", "2", "--num-steps", "64", "--eval-every", "0",
                "--checkpoint-every", "512", "--no-progress"]
    assert tune(tmp_path, "--name", "p", "--trials", "3", "--seeds", "1", "--space", space, "--metric", "charts/learning_rate",
                "--pruner", "median", "--pruner-startup-trials", "1", "--pruner-warmup-steps", "0", "--sampler", "random", "--sampler-seed", "2",
                run_args=run_args) == 0
    study_dir = tmp_path / "runs" / "studies" / "p"
    done = trials(study_dir)
    first_good = min(t.number for t in done if t.params["learning_rate"] == 0.01)
    hopeless = [t for t in done if t.params["learning_rate"] == 1e-9 and t.number > first_good]
    assert hopeless, [t.params for t in done]  # the sampler seed gives one
    for t in done:
        assert t.state.name == ("PRUNED" if t in hopeless else "COMPLETE")
    for t in hopeless:
        (run_dir,) = run_dirs(study_dir, t.number)
        meta = read_json(run_dir / "metadata.json")
        assert meta["status"] == "pruned" and "pruned by axiomrl tune" in meta["stop_reason"]
        assert meta["total_steps"] < 3072 and (run_dir / "checkpoints" / "latest.pt").exists()
        assert not (run_dir / "stop-request.json").exists()
    assert "pruned at step" in capsys.readouterr().out
    assert cli.main(["report", str(study_dir), "--status", "pruned"]) == 0


@pytest.mark.skipif(__import__("importlib").util.find_spec("ray") is None, reason="needs the ray extra")
def test_the_ray_backend_runs_each_trial_once_on_a_local_cluster(tmp_path: Path) -> None:
    assert tune(tmp_path, "--name", "r", "--trials", "2", "--seeds", "1", "--workers", "2", "--backend", "ray",
                "--space", space_file(tmp_path)) == 0
    study_dir = tmp_path / "runs" / "studies" / "r"
    done = trials(study_dir)
    assert [t.number for t in done] == [0, 1] and all(t.state.name == "COMPLETE" for t in done)
    for t in done:
        (run_dir,) = run_dirs(study_dir, t.number)
        assert read_json(run_dir / "metadata.json")["status"] == "finished"


def test_normalised_multi_env_aggregation_by_hand() -> None:
    from axiomrl_utils.commands.tune_objective import Objective, parse_bounds, resolve_bounds

    bounds = {"A": (0.0, 100.0), "B": (-200.0, -100.0), "C": (0.0, 10.0)}
    values = {"A": [50.0, 70.0], "B": [-150.0, -120.0], "C": [1.0, 3.0]}
    # normalised: A 0.5 0.7 (mean 0.6), B 0.5 0.8 (0.65), C 0.1 0.3 (0.2)
    assert Objective("eval", "maximize", "mean", bounds).point(values) == pytest.approx((0.6 + 0.65 + 0.2) / 3)
    assert Objective("eval", "maximize", "median", bounds).point(values) == pytest.approx(0.6)
    # IQM pools the 6 run scores 0.1 0.3 0.5 0.5 0.7 0.8 and averages the middle half (cut 1 each side)
    assert Objective("eval", "maximize", "iqm", bounds).point(values) == pytest.approx((0.3 + 0.5 + 0.5 + 0.7) / 4)
    score, low, high = Objective("eval", "maximize", "mean", bounds).score(values)
    assert score == pytest.approx(0.4833333) and low <= score <= high
    assert Objective("eval", "maximize", "mean", {}).point({"A": [1.0, 3.0]}) == 2.0  # raw
    resolved = resolve_bounds(["CartPole-v1", "X-v0"], "auto", parse_bounds(["X-v0=-5:5"]), None)
    assert resolved == {"CartPole-v1": CARTPOLE, "X-v0": (-5.0, 5.0)}


def test_the_trial_score_of_two_envs_and_two_seeds_is_the_iqm_of_their_normalised_returns(tmp_path: Path) -> None:
    assert tune(tmp_path, "--name", "m", "--trials", "1", "--seeds", "2", "--env-ids", "CartPole-v1", "Acrobot-v1",
                "--aggregate", "iqm", "--bounds", "Acrobot-v1=-500:0", "--space", space_file(tmp_path)) == 0
    study_dir = tmp_path / "runs" / "studies" / "m"
    (trial,) = trials(study_dir)
    scores = []
    for run_dir in run_dirs(study_dir, 0):
        meta = read_json(run_dir / "metadata.json")
        low, high = CARTPOLE if meta["env_id"] == "CartPole-v1" else (-500.0, 0.0)
        scores.append((meta["summary"]["eval_return_last"] - low) / (high - low))
    scores.sort()
    assert len(scores) == 4 and trial.value == pytest.approx((scores[1] + scores[2]) / 2)


# ---------------------------------------------------------------------------------- bad input


def _bad(tmp_path: Path, argv: list[str], match: str) -> None:
    before = tree_snapshot(tmp_path)
    with pytest.raises(UsageError, match=match) as e:
        cli.main(["tune", "--output-dir", str(tmp_path / "runs"), *argv])
    assert "\n" not in str(e.value)
    assert tree_snapshot(tmp_path) == before and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, match", [
    (["--script", "axiomrl/nosuch.py"], "no such script"),
    (["--script", "axiomrl/ppo.py", "--seeds", "0"], "--seeds must be at least 1"),
    (["--script", "axiomrl/ppo.py", "--trials", "0"], "--trials must be at least 1"),
    (["--script", "axiomrl/ppo.py", "fast"], "unexpected argument 'fast'"),
    (["--script", "axiomrl/ppo.py", "--", "--seed", "3"], "sets --seed for each run itself"),
    (["--script", "axiomrl/ppo.py", "--", "--eval-every", "0"], "needs evaluations"),
    (["--script", "axiomrl/ppo.py", "--", "--learning-rate", "0.1"], "both in the search space and after --"),
    (["--script", "axiomrl/ppo.py", "--metric", "losses/nope"], "not a key ppo.py logs"),
    (["--script", "axiomrl/ppo.py", "--env-ids", "CartPole-v1", "X-v9", "--", "--total-timesteps", "512"], "no reference score for X-v9"),
])
def test_bad_options_are_one_sentence_and_create_nothing(tmp_path: Path, argv: list[str], match: str) -> None:
    _bad(tmp_path, argv, match)


def test_an_unknown_env_is_refused_before_anything_exists(tmp_path: Path) -> None:
    _bad(tmp_path, ["--script", "axiomrl/ppo.py", "--env-ids", "CartPol-v1", "--normalize", "none"], "unknown environment id 'CartPol-v1'")


@pytest.mark.parametrize("text, match", [
    ("learning_rate: {low: 0.1", "does not parse"),
    ('{"learnin_rate": {"low": 0.001, "high": 0.1}}', "names 'learnin_rate', which the script has no field for"),
    ('{"learning_rate": {"low": 0.1, "high": 0.01}}', "empty range"),
    ('{"num_minibatches": {"choices": []}}', "empty list of choices"),
    ('{"num_minibatches": {"choices": [3, 4]}}', "num_minibatches = 3, which the script refuses"),
    ('{"gamma": {"low": 0.9, "high": 1.5}}', "gamma = 1.5, which the script refuses"),
    ('{"seed": {"choices": [1, 2]}}', "the tuner sets for every run itself"),
    ('{"num_steps": {"choices": [64, 1024]}}', "num_steps = 1024, which the script refuses"),
])
def test_a_bad_space_file_is_one_sentence_and_creates_nothing(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "space.yaml").write_text(text)
    run_args = [a for a in TINY if a not in ("--num-steps", "64")]  # num_steps 128: one rollout of 256 steps
    _bad(tmp_path, ["--script", "axiomrl/ppo.py", "--space", str(tmp_path / "space.yaml"), "--", *run_args], match)


def test_missing_extras_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optuna" else real(name, *a))
    _bad(tmp_path, ["--script", "axiomrl/ppo.py"], r"needs optuna; install it with `pip install 'axiomrl\[tune\]'`")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    _bad(tmp_path, ["--script", "axiomrl/ppo.py", "--backend", "ray"], r"needs ray; install it with `pip install 'axiomrl\[ray\]'`")


def test_a_study_name_is_not_reused_for_another_script_space_or_objective(tmp_path: Path) -> None:
    assert tune(tmp_path, "--name", "n", "--trials", "1", "--seeds", "1", "--space", space_file(tmp_path),
                run_args=["--total-timesteps", "128", "--num-envs", "2", "--num-steps", "64", "--eval-every", "128",
                          "--eval-episodes", "1", "--no-progress"]) == 0
    root = tmp_path / "runs"
    before = tree_snapshot(root)
    other_space = space_file(tmp_path, {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}, "other.json")
    for argv, match in ((["--script", "axiomrl/dqn.py"], "different script"),
                        (["--space", other_space], "different space"),
                        (["--metric", "train"], "different objective")):
        with pytest.raises(UsageError, match=match):
            cli.main(["tune", "--name", "n", "--output-dir", str(root), *argv])
        assert tree_snapshot(root) == before


def test_the_default_space_drops_what_the_script_would_refuse_at_this_budget() -> None:
    """ppo.py with a 512-step budget and 4 envs: rollouts of more than 128 steps are left out, every
    combination left passes check_args, and the sampled flags parse back to the same values."""
    import dataclasses
    import itertools

    from axiomrl import ppo
    from axiomrl_utils.args import parse_args
    from axiomrl_utils.checks import check_args
    from axiomrl_utils.commands.tune_space import default_space, fit_space, param_flags, resolve_space

    base = parse_args(ppo.Args, ppo.__file__, ["--total-timesteps", "512", "--num-envs", "4"])
    space = fit_space(resolve_space(default_space(ppo.Args), ppo.Args, "the default space"), base, True, "the default space")
    assert max(space["num_steps"]["choices"]) == 128 and "num_minibatches" in space
    for steps, minibatches in itertools.product(space["num_steps"]["choices"], space["num_minibatches"]["choices"]):
        check_args(dataclasses.replace(base, num_steps=steps, num_minibatches=minibatches))
    params = {"learning_rate": 3e-4, "num_steps": 64, "norm_adv": False, "target_kl": None, "rescale_observation": True}
    parsed = parse_args(ppo.Args, ppo.__file__, param_flags(params, ppo.Args))
    assert {k: getattr(parsed, k) for k in params} == params
