"""dqn.py and c51.py on the run contract: tiny real CartPole runs, exact resume, truncation, bad input."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl import c51, dqn
from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import parse_args
from axiomrl_utils.jsonl import read_jsonl

from conftest import logged_eval_returns, only_run, reevaluate, run_script, strip_wall_clock

SCRIPTS = {"dqn": dqn, "c51": c51}
LOSS = {"dqn": "losses/td_loss", "c51": "losses/loss"}
TINY = dict(
    total_timesteps=1200,
    learning_starts=200,
    buffer_size=1000,
    batch_size=32,
    target_network_frequency=100,
    eval_every=300,
    eval_episodes=3,
    checkpoint_every=300,
    keep_checkpoints=2,
    progress=False,
)


def tiny_args(module: ModuleType, output_dir: Path, **overrides):
    return module.Args(output_dir=str(output_dir), **{**TINY, **overrides})


@pytest.fixture(scope="module", params=["dqn", "c51"])
def tiny_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param)
    SCRIPTS[request.param].main(tiny_args(SCRIPTS[request.param], out))
    return request.param, only_run(out)


def test_run_contract(tiny_run: tuple[str, Path]) -> None:
    algo, run_dir = tiny_run
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert run_dir.name.startswith(f"{algo}__CartPole-v1__seed1__")
    assert meta["algo"] == algo and meta["status"] == "finished" and meta["total_steps"] == 1200
    episodes = read_jsonl(run_dir / "train_episodes.jsonl")
    assert meta["total_episodes"] == len(episodes) > 0
    assert meta["summary"]["train_return_last100"] == pytest.approx(np.mean([e["return"] for e in episodes][-100:]))
    # every env step belongs to a logged episode or to the one still running (same-step autoreset)
    envs = pickle.loads(ckpt.load(run_dir / "checkpoints" / "latest.pt")["_axiomrl"]["envs"])
    assert sum(e["length"] for e in episodes) + int(envs.envs[0].episode_lengths) == 1200  # its per-env recorder

    metrics = read_jsonl(run_dir / "metrics.jsonl")
    steps = [row["global_step"] for row in metrics]
    assert steps == list(range(100, 1201, 100))  # every 100 steps (evaluations fall on them here)
    assert all("charts/epsilon" in row and "charts/SPS" in row for row in metrics)
    assert metrics[0]["charts/epsilon"] == pytest.approx(1 - 0.95 * 99 / 600)  # linear over half the steps
    trained = [row for row in metrics if LOSS[algo] in row]
    assert trained and trained[0]["global_step"] == 300 and np.isfinite(trained[-1][LOSS[algo]])
    assert sum("eval/return_mean" in row for row in metrics) == 4

    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    assert [row["step"] for row in index] == [300, 600, 900, 1200]
    # the buffer is in every checkpoint and its size is reported: 1000 slots of CartPole transitions at most
    per_transition = 4 * 4 * 2 + 8 + 4 + 1  # obs, next obs, action, reward, termination
    assert [row["resume_state"]["modules"]["rb"] for row in index] == [min(s, 1000) * per_transition for s in (300, 600, 900, 1200)]
    assert {"q_network", "target_network", "optimizer"} <= set(index[-1]["resume_state"]["modules"])


def test_best_checkpoint_replays_its_evaluation(tiny_run: tuple[str, Path]) -> None:
    algo, run_dir = tiny_run
    meta = json.loads((run_dir / "metadata.json").read_text())
    logged = logged_eval_returns(run_dir, meta["best_checkpoint"]["step"])
    assert logged and reevaluate(SCRIPTS[algo], run_dir, "checkpoints/best.pt") == logged


def test_tensorboard_tags(tiny_run: tuple[str, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    algo, run_dir = tiny_run
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {LOSS[algo], "losses/q_values", "charts/epsilon", "charts/SPS", "charts/episodic_return", "eval/return_mean"} <= tags


def _final_state(run_dir: Path) -> dict:
    return ckpt.load(run_dir / "checkpoints" / "latest.pt")


def _assert_same_state(a: dict, b: dict) -> None:
    for name in ("q_network", "target_network"):
        assert a[name].keys() == b[name].keys()
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name
    for k, v in a["optimizer"]["state"].items():
        assert all(torch.equal(v[s], b["optimizer"]["state"][k][s]) for s in v)
    for k, v in a["rb"].items():
        assert torch.equal(v, b["rb"][k]) if isinstance(v, torch.Tensor) else v == b["rb"][k], k


@pytest.mark.parametrize("algo", ["dqn", "c51"])
def test_resume_equals_uninterrupted(tmp_path: Path, algo: str) -> None:
    """600 steps, pause, --resume to 1200 == 1200 straight: same logs (minus wall clock), same weights,
    optimizer and replay buffer. Epsilon, target network and step counter come back with the checkpoint."""
    module = SCRIPTS[algo]
    module.main(tiny_args(module, tmp_path / "straight"))
    module.main(tiny_args(module, tmp_path / "paused", pause_at_step=600))
    paused = only_run(tmp_path / "paused")
    meta = json.loads((paused / "metadata.json").read_text())
    assert meta["status"] == "interrupted" and meta["total_steps"] == 600
    module.main(parse_args(module.Args, module.__file__, ["--resume", str(paused), "--pause-at-step", "None"]))
    straight = only_run(tmp_path / "straight")
    meta = json.loads((paused / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["resumes"][0]["from_step"] == 600 and meta["resumes"][0]["envs_restored"]
    for name in ("metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl"):
        a, b = read_jsonl(straight / name), read_jsonl(paused / name)
        assert a and strip_wall_clock(a) == strip_wall_clock(b), name
    _assert_same_state(_final_state(straight), _final_state(paused))


def test_without_saved_buffer_a_resume_starts_empty_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dqn.main(tiny_args(dqn, tmp_path, save_buffer=False, pause_at_step=600))
    run_dir = only_run(tmp_path)
    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    assert index[-1]["resume_state"]["modules"]["rb"] == 0
    capsys.readouterr()
    dqn.main(parse_args(dqn.Args, dqn.__file__, ["--resume", str(run_dir), "--pause-at-step", "None"]))
    assert capsys.readouterr().out.count("holds no replay buffer") == 1
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished"
    rb = _final_state(run_dir)["rb"]
    assert not rb["contents_saved"]
    # the run went on learning from the refilled buffer: losses logged after the resume
    assert any(dqn_row.get("losses/td_loss") is not None for dqn_row in read_jsonl(run_dir / "metrics.jsonl") if dqn_row["global_step"] > 600)


def test_truncated_transitions_bootstrap_from_their_final_observation(tmp_path: Path) -> None:
    """With a 20-step time limit, the buffer in the checkpoint holds every episode end with its true
    final observation (CartPole's dynamics replayed from the stored observation and action give it),
    marked terminated exactly when the pole fell or the cart left, and not terminated when truncated."""
    from gymnasium.envs.classic_control import CartPoleEnv

    gym.register("AxiomTestShortCartPole-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv", max_episode_steps=20)
    dqn.main(tiny_args(dqn, tmp_path, env_id="AxiomTestShortCartPole-v0", total_timesteps=600, eval_every=0, checkpoint_every=0))
    run_dir = only_run(tmp_path)
    rb = _final_state(run_dir)["rb"]
    obs, next_obs = rb["observations"][:, 0].numpy(), rb["next_observations"][:, 0].numpy()
    actions, term = rb["actions"][:, 0].numpy(), rb["terminations"][:, 0].numpy()
    ends = [i for i in range(599) if not np.array_equal(next_obs[i], obs[i + 1])]  # the next stored obs is a reset
    episodes = read_jsonl(run_dir / "train_episodes.jsonl")
    assert len(ends) == sum(1 for e in episodes if e["global_step"] < 600)
    sim = CartPoleEnv()
    sim.reset(seed=0)
    truncated = 0
    for i in ends:
        sim.state, sim.steps_beyond_terminated = obs[i].astype(np.float64), None
        final, _, fell, _, _ = sim.step(int(actions[i]))
        assert np.allclose(next_obs[i], final, atol=1e-5)
        assert bool(term[i]) == fell
        if not fell:
            truncated += 1
            assert next(e["length"] for e in episodes if e["global_step"] == i + 1) == 20
    assert truncated > 0, "a random CartPole policy should reach the 20-step limit now and then"


@pytest.mark.parametrize(
    "algo, overrides, message",
    [
        ("dqn", {"env_id": "Pendulum-v1"}, "dqn.py needs a discrete action space but Pendulum-v1"),
        ("c51", {"env_id": "MountainCarContinuous-v0"}, "c51.py needs a discrete action space but MountainCarContinuous-v0"),
        ("dqn", {"buffer_size": 64, "batch_size": 128}, "--buffer-size 64 is smaller than --batch-size 128"),
        ("c51", {"buffer_size": 64, "batch_size": 128}, "--buffer-size 64 is smaller than --batch-size 128"),
        ("c51", {"v_min": 10.0, "v_max": -10.0}, "--v-min < --v-max"),
        ("dqn", {"tau": 1.5}, "--tau must be in (0, 1]"),
        ("dqn", {"exploration_fraction": 0.0}, "--exploration-fraction must be positive"),
    ],
)
def test_bad_input_is_one_sentence_and_creates_nothing(tmp_path: Path, algo: str, overrides: dict, message: str) -> None:
    out = tmp_path / "runs"
    module = SCRIPTS[algo]
    with pytest.raises(UsageError) as err:
        module.main(tiny_args(module, out, **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_bad_input_from_the_shell(tmp_path: Path) -> None:
    proc = run_script("dqn.py", "--env-id", "Pendulum-v1", "--output-dir", str(tmp_path))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dqn.py needs a discrete action space but Pendulum-v1")
    proc = run_script("c51.py", "--buffer-size", "10", "--output-dir", str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "error: --buffer-size 10 is smaller than --batch-size 128; pass a buffer of at least 128 transitions or a smaller batch"
    ]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("algo", ["dqn", "c51"])
def test_help_documents_every_field(algo: str) -> None:
    proc = run_script(f"{algo}.py", "--help")
    assert proc.returncode == 0
    for field in dataclasses.fields(SCRIPTS[algo].Args):
        assert "--" + field.name.replace("_", "-") in proc.stdout, field.name
    assert "checkpoints include the replay buffer" in proc.stdout
