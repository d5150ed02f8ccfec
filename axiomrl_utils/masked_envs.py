"""Partially observable variants of classic-control envs, for recurrent-policy benchmarks.

`CartPoleNoVel-v1` is CartPole-v1 with the cart and pole velocities removed from the observation
(position and angle remain), as sb3-contrib's recurrent-PPO benchmark uses: a feed-forward policy
cannot infer the velocities from one observation, a recurrent one can from a few.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

VELOCITY_FREE_IDS = {"CartPoleNoVel-v1": ("CartPole-v1", (0, 2))}


class MaskVelocity(gym.ObservationWrapper):
    """Keep only the observation entries at `keep` (a Box observation, float32)."""

    def __init__(self, env: gym.Env, keep: tuple[int, ...]) -> None:
        super().__init__(env)
        self.keep = np.asarray(keep)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(space.low[self.keep], space.high[self.keep], dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.keep]


def make_cartpole_no_velocity(**kwargs: Any) -> gym.Env:
    """CartPole without velocities (the entry point of `CartPoleNoVel-v1`)."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    return MaskVelocity(CartPoleEnv(**kwargs), VELOCITY_FREE_IDS["CartPoleNoVel-v1"][1])


def register() -> None:
    """Register the masked ids with gymnasium (idempotent)."""
    if "CartPoleNoVel-v1" not in gym.registry:
        gym.register(
            "CartPoleNoVel-v1",
            entry_point="axiomrl_utils.masked_envs:make_cartpole_no_velocity",
            max_episode_steps=500,
            reward_threshold=475.0,
        )
