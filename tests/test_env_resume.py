"""Exact resume on MuJoCo and Atari: the simulators' state travels in the checkpoint (axiomrl_utils/env_state.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest

from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils import env_state
from axiomrl_utils.args import parse_args

from conftest import only_run
from test_continuous import assert_same_run, module, tiny_args
from test_resume import assert_same_training, meta_of


def needs(*modules: str) -> None:
    for name in modules:
        pytest.importorskip(name, reason=f"the extra providing {name} is not installed")


def mujoco_env(env_id: str, **kwargs: Any) -> Callable[[], gym.Env]:
    return lambda: gym.make(env_id, **kwargs)


def atari_env(env_id: str, **kwargs: Any) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        from axiomrl_utils.atari import make_atari_env

        return make_atari_env(env_id, **kwargs)

    return thunk


def vector_env(make: Callable[[], gym.Env], seed: int = 5) -> gym.vector.VectorEnv:
    """What the scripts build: same-step autoreset, vector-level episode statistics."""
    envs = gym.vector.SyncVectorEnv([make, make], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    envs.reset(seed=seed)
    return envs


def same(a: Any, b: Any) -> bool:
    """Equal step results, bit for bit; episode wall-clock durations (`t`) aside."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a if k != "t")
    if isinstance(a, (tuple, list)) or (isinstance(a, np.ndarray) and a.dtype == object):  # final_obs: one per env
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


CASES = {
    # a 60-step time limit so that truncations and autoresets happen after the restore
    "HalfCheetah-v5": ("mujoco", mujoco_env("HalfCheetah-v5", max_episode_steps=60)),
    # Ant reads the body positions the last step left in MjData (its x before the step)
    "Ant-v5": ("mujoco", mujoco_env("Ant-v5", max_episode_steps=60)),
    # lives (EpisodicLifeEnv), FIRE after each reset (FireResetEnv), sticky actions, no-op starts
    "ALE/Breakout-v5": ("ale_py", atari_env("ALE/Breakout-v5")),
}


@pytest.mark.parametrize("env_id", list(CASES))
def test_simulator_envs_continue_exactly_after_pickling(env_id: str) -> None:
    """Pickled mid-episode and restored, a vector env steps exactly like one never pickled,
    and pickling leaves the original untouched."""
    extra, make = CASES[env_id]
    needs(extra)
    pickled, reference = vector_env(make), vector_env(make)
    rng = np.random.default_rng(0)
    space = reference.action_space

    def actions() -> np.ndarray:
        if isinstance(space, gym.spaces.MultiDiscrete):
            return rng.integers(0, space.nvec)
        return rng.uniform(space.low, space.high).astype(space.dtype)

    for _ in range(37):
        a = actions()
        assert same(pickled.step(a), reference.step(a))
    blob, reason = env_state.dumps(pickled)
    assert blob is not None, reason
    restored = env_state.loads(blob)
    ended = 0
    for _ in range(150):
        a = actions()
        expected = reference.step(a)
        assert same(restored.step(a), expected) and same(pickled.step(a), expected)
        ended += int(np.any(expected[2] | expected[3]))
    assert ended > 0  # episodes ended (and autoreset) after the restore
    for envs in (pickled, reference, restored):
        envs.close()


class Opaque(gym.Env, gym.utils.EzPickle):
    """An EzPickle env of no known simulator: its state cannot be saved."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        gym.utils.EzPickle.__init__(self)

    def reset(self, *, seed: Any = None, options: Any = None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any):
        return np.zeros(1, np.float32), 0.0, False, False, {}


def test_unknown_ezpickle_envs_stay_unsaved_with_the_reason() -> None:
    envs = gym.vector.SyncVectorEnv([Opaque])
    assert env_state.dumps(envs) == (None, "Opaque does not pickle its state")
    assert ckpt.vector_env_state(envs) == (None, "Opaque does not pickle its state")
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")])
    try:
        assert ckpt.vector_env_state(envs) == (None, "AsyncVectorEnv runs its environments in other processes")
    finally:
        envs.close()


def test_rendering_envs_render_after_a_restore() -> None:
    """The renderer is not pickled: the rebuilt env makes its own and draws the restored game."""
    needs("ale_py")
    reference, pickled = (vector_env(atari_env("ALE/Pong-v5", render_mode="rgb_array")) for _ in range(2))
    for _ in range(50):
        reference.step(np.array([2, 3]))
        pickled.step(np.array([2, 3]))
    restored = env_state.loads(env_state.dumps(pickled)[0])
    for _ in range(5):
        assert same(restored.step(np.array([3, 2])), reference.step(np.array([3, 2])))
    frames = restored.unwrapped.call("render")
    assert frames[0].shape == (210, 160, 3) and same(frames, reference.unwrapped.call("render"))


def test_checkpoint_restores_the_envs_in_place() -> None:
    """`restore_vector_env` swaps the simulators in under the script's own reference."""
    needs("mujoco")
    envs, reference = vector_env(CASES["HalfCheetah-v5"][1]), vector_env(CASES["HalfCheetah-v5"][1])
    for _ in range(10):
        envs.step(np.full((2, 6), 0.5, np.float32))
        reference.step(np.full((2, 6), 0.5, np.float32))
    blob, _ = ckpt.vector_env_state(envs)
    for _ in range(10):
        envs.step(np.full((2, 6), -0.5, np.float32))  # moves on; the restore brings it back
    script_reference = envs
    ckpt.restore_vector_env(envs, blob)
    assert same(script_reference.step(np.zeros((2, 6), np.float32)), reference.step(np.zeros((2, 6), np.float32)))


# ------------------------------------------------------------------------- paused and resumed runs
@pytest.mark.parametrize("script", ["sac_continuous_action", "ppo_continuous_action"])
def test_mujoco_run_resumes_exactly(tmp_path: Path, script: str) -> None:
    """HalfCheetah's 1000-step episodes are in progress at the pause: they continue, so the run
    equals one never paused (logs, evaluation, parameters, normalisation statistics)."""
    needs("mujoco")
    mod = module(script)
    half = 256 if script == "ppo_continuous_action" else 150  # two PPO rollouts; SAC learns from step 100
    args = tiny_args(script, tmp_path / "straight", env_id="HalfCheetah-v5", total_timesteps=2 * half,
                     eval_every=2 * half, eval_episodes=1, checkpoint_every=half)
    mod.main(args)
    paused = dataclasses.replace(args, output_dir=str(tmp_path / "paused"), pause_at_step=half)
    mod.main(paused)
    run_dir = only_run(tmp_path / "paused")
    assert ckpt.load(run_dir / "checkpoints" / "latest.pt")["_axiomrl"]["envs"] is not None
    mod.main(dataclasses.replace(paused, resume=str(run_dir), pause_at_step=None))
    meta = meta_of(run_dir)
    assert meta["status"] == "finished" and meta["resumes"][0]["envs_restored"] is True
    assert_same_run(only_run(tmp_path / "straight"), run_dir)


ATARI = {
    "dqn_atari": (dict(total_timesteps=300, buffer_size=200, learning_starts=100, batch_size=16,
                       target_network_frequency=50, checkpoint_every=150), 150,
                  ("q_network", "target_network", "optimizer", "rb")),
    "ppo_atari": (dict(total_timesteps=256, num_envs=2, num_steps=64, checkpoint_every=128), 128, ("agent", "optimizer")),
    # the LSTM's memory of the games in progress comes back with them
    "ppo_atari_lstm": (dict(total_timesteps=256, num_envs=2, num_steps=64, num_minibatches=2, checkpoint_every=128), 128,
                       ("agent", "optimizer")),
}


@pytest.mark.parametrize("script", list(ATARI))
def test_atari_run_resumes_exactly(tmp_path: Path, script: str, capsys: pytest.CaptureFixture) -> None:
    """Pong games in progress at the pause continue from the shell's `--resume RUN`, as if never paused."""
    needs("ale_py", "cv2")
    mod = module(script)
    overrides, pause, keys = ATARI[script]
    args = mod.Args(env_id="ALE/Pong-v5", eval_every=0, progress=False, **overrides)
    mod.main(dataclasses.replace(args, output_dir=str(tmp_path / "straight")))
    mod.main(dataclasses.replace(args, output_dir=str(tmp_path / "paused"), pause_at_step=pause))
    run_dir = only_run(tmp_path / "paused")
    capsys.readouterr()
    mod.main(parse_args(mod.Args, mod.__file__, ["--resume", str(run_dir), "--pause-at-step", "None"]))
    assert "restart from a reset" not in capsys.readouterr().out
    meta = meta_of(run_dir)
    assert meta["status"] == "finished" and meta["resumes"][0]["envs_restored"] is True
    assert_same_training(only_run(tmp_path / "straight"), run_dir, keys)


def test_a_vector_recorder_checkpoint_resumes_into_per_env_recorders() -> None:
    """dqn.py and c51.py moved from gymnasium's vector RecordEpisodeStatistics to one recorder per env:
    envs pickled in the old layout restore into the new one with each env's running episode sums,
    so the episodes that were under way end with the returns and lengths the old layout reports."""
    make = lambda: gym.make("CartPole-v1")  # noqa: E731
    old = vector_env(make, seed=3)
    actions = np.random.default_rng(0).integers(0, 2, size=(400, 2))
    for a in actions[:7]:
        old.step(a)
    blob, reason = ckpt.vector_env_state(old)
    assert blob is not None, reason

    recorded = lambda: gym.wrappers.RecordEpisodeStatistics(make())  # noqa: E731
    new = gym.vector.SyncVectorEnv([recorded, recorded], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    new.reset(seed=99)  # another state, which the restore replaces
    ckpt.restore_vector_env(new, blob)
    assert [e.episode_lengths for e in new.envs] == [7, 7]

    ended = 0
    for a in actions[7:]:
        old_obs, _, _, _, old_infos = old.step(a)
        new_obs, _, _, _, new_infos = new.step(a)
        assert np.array_equal(old_obs, new_obs)
        assert ("_episode" in old_infos) == ("final_info" in new_infos)
        if "_episode" in old_infos:
            new_episode = new_infos["final_info"]["episode"]
            for i in np.flatnonzero(old_infos["_episode"]):
                assert new_infos["final_info"]["_episode"][i]
                assert new_episode["r"][i] == old_infos["episode"]["r"][i] and new_episode["l"][i] == old_infos["episode"]["l"][i]
                ended += 1
    assert ended >= 4  # the two episodes under way at the save, and later ones

    # a layout the restore cannot carry over is refused in one sentence, as before
    plain = gym.vector.SyncVectorEnv([make, make], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    with pytest.raises(ckpt.CheckpointError, match="this script builds a SyncVectorEnv"):
        ckpt.restore_vector_env(plain, blob)
