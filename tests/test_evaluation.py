"""Evaluation episodes: batched through the policy, yet each exactly the episode its seed gives alone."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl_utils.evaluation import eval_seeds, make_eval_envs, run_episodes


def _alone(env_id: str, policy, seed: int) -> tuple[float, int]:
    """One episode on a plain gym env, one observation at a time."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        action = policy(torch.as_tensor(obs[None], dtype=torch.float32)).numpy()[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        total, length, done = total + float(reward), length + 1, terminated or truncated
    env.close()
    return total, length


def _cartpole_policy(x: torch.Tensor) -> torch.Tensor:
    # balances through the time limit from most starts and falls early from some: lengths differ by seed
    return (x[:, 2] + 0.3 * x[:, 3] + 0.4 * x[:, 1] > 0.01).long()


def _pendulum_policy(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(-2.0 * x[:, 2:3] - 0.5 * x[:, 1:2], -2.0, 2.0)


@pytest.mark.parametrize("env_id,policy", [("CartPole-v1", _cartpole_policy), ("Pendulum-v1", _pendulum_policy)])
def test_batched_episodes_equal_episodes_played_alone(env_id: str, policy) -> None:
    seeds = eval_seeds(7, 6)
    envs = make_eval_envs([lambda: gym.make(env_id) for _ in seeds])
    for _ in range(2):  # the same envs again, as every evaluation of a run reuses them
        episodes = run_episodes(policy, envs, seeds)
        assert [e["seed"] for e in episodes] == seeds
        alone = [_alone(env_id, policy, s) for s in seeds]
        assert [(e["return"], e["length"]) for e in episodes] == pytest.approx(alone)
    if env_id == "CartPole-v1":
        assert len({e["length"] for e in episodes}) > 1, "the test needs episodes of different lengths"
    envs.close()


def test_max_steps_cuts_every_episode() -> None:
    envs = make_eval_envs([lambda: gym.make("CartPole-v1") for _ in range(3)])
    episodes = run_episodes(lambda x: torch.zeros(len(x), dtype=torch.long) + (x[:, 2] > 0).long(), envs, [1, 2, 3], max_steps=5)
    assert [e["length"] for e in episodes] == [5, 5, 5]
    assert np.all([e["return"] == 5.0 for e in episodes])
