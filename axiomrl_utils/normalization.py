"""Observation/reward normalisation statistics as checkpoint objects, and the frozen evaluation policy.

Scripts such as ppo_continuous_action.py normalise observations and rewards with gymnasium's
per-env `NormalizeObservation` / `NormalizeReward` wrappers. Their running statistics are part of
what the agent learned: a policy evaluated or resumed without them sees different inputs. The
environments themselves cannot always carry them (MuJoCo envs pickle by re-running their
constructor), so `EnvNormalization` reads and writes them as a checkpoint object of its own:

    normalization = EnvNormalization(envs, obs_clip=10.0)
    run.declare_state(normalization=normalization, ...)   # in every checkpoint (hence best.pt), and
                                                          # back into the wrappers by run.restore()
    policy = normalized_policy(agent.act, normalization.state_dict())   # raw obs in, frozen stats
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import numpy as np

if TYPE_CHECKING:
    import torch


def _find_wrapper(env: Any, kind: type) -> Any:
    """The outermost wrapper of type `kind` around `env`, or None."""
    while env is not None:
        if isinstance(env, kind):
            return env
        env = getattr(env, "env", None)
    return None


def _rms_state(rms: Any) -> dict[str, Any]:
    return {"mean": np.array(rms.mean, copy=True), "var": np.array(rms.var, copy=True), "count": float(rms.count)}


def _load_rms(rms: Any, state: dict[str, Any]) -> None:
    rms.mean = np.array(state["mean"], dtype=np.asarray(rms.mean).dtype, copy=True)
    rms.var = np.array(state["var"], dtype=np.asarray(rms.var).dtype, copy=True)
    rms.count = state["count"]


class EnvNormalization:
    """The `obs_rms`/`return_rms` of the normalisation wrappers inside each sub-env of a vector env.

    Holds a reference to the vector env and finds the wrappers on every call, so it stays valid
    after `Run.restore` swaps the pickled environments in. `obs_clip` is the clip applied after
    observation normalisation (a `TransformObservation`, which cannot be inspected), recorded so
    that `normalized_policy` reproduces it.
    """

    def __init__(self, envs: Any, obs_clip: float = 10.0) -> None:
        self.envs = envs
        self.obs_clip = float(obs_clip)
        if not any(self._wrappers(i) != (None, None) for i in range(len(self._sub_envs()))):
            raise ValueError("the vector env has no NormalizeObservation or NormalizeReward wrapper")

    def _sub_envs(self) -> list[Any]:
        return list(self.envs.unwrapped.envs)

    def _wrappers(self, index: int) -> tuple[Any, Any]:
        import gymnasium as gym

        env = self._sub_envs()[index]
        return _find_wrapper(env, gym.wrappers.NormalizeObservation), _find_wrapper(env, gym.wrappers.NormalizeReward)

    def state_dict(self) -> dict[str, Any]:
        """Per sub-env: observation mean/var/count/epsilon and return var/count plus the running discounted return."""
        per_env = []
        for i in range(len(self._sub_envs())):
            obs_wrapper, reward_wrapper = self._wrappers(i)
            entry: dict[str, Any] = {"obs": None, "reward": None}
            if obs_wrapper is not None:
                entry["obs"] = {**_rms_state(obs_wrapper.obs_rms), "epsilon": float(obs_wrapper.epsilon)}
            if reward_wrapper is not None:
                entry["reward"] = {
                    **_rms_state(reward_wrapper.return_rms),
                    "epsilon": float(reward_wrapper.epsilon),
                    "discounted_reward": np.array(reward_wrapper.discounted_reward, copy=True),
                }
            per_env.append(entry)
        return {"obs_clip": self.obs_clip, "envs": per_env}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Write saved statistics back into the wrappers (the number of sub-envs must match)."""
        saved = state["envs"]
        if len(saved) != len(self._sub_envs()):
            raise ValueError(f"the statistics are for {len(saved)} environments, this vector env has {len(self._sub_envs())}")
        self.obs_clip = float(state["obs_clip"])
        for i, entry in enumerate(saved):
            obs_wrapper, reward_wrapper = self._wrappers(i)
            if (obs_wrapper is None) != (entry["obs"] is None) or (reward_wrapper is None) != (entry["reward"] is None):
                raise ValueError("the saved statistics do not match the normalisation wrappers of this vector env")
            if obs_wrapper is not None:
                _load_rms(obs_wrapper.obs_rms, entry["obs"])
            if reward_wrapper is not None:
                _load_rms(reward_wrapper.return_rms, entry["reward"])
                reward_wrapper.discounted_reward = np.array(entry["reward"]["discounted_reward"], copy=True)


def observation_statistics(state: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, var, epsilon) of the observations over all sub-envs of an `EnvNormalization.state_dict()`.

    With one env these are its statistics unchanged; with several, their exact combination (each
    training env normalises with its own, as gymnasium's per-env wrappers do).
    """
    from gymnasium.wrappers.utils import update_mean_var_count_from_moments

    entries = [e["obs"] for e in state["envs"] if e["obs"] is not None]
    if not entries:
        raise ValueError("the statistics hold no observation normalisation")
    mean, var, count = (np.asarray(entries[0][k], dtype=np.float64) for k in ("mean", "var", "count"))
    for entry in entries[1:]:
        mean, var, count = update_mean_var_count_from_moments(mean, var, count, entry["mean"], entry["var"], entry["count"])
    return mean, var, entries[0]["epsilon"]


@functools.cache
def _normalized_policy_type() -> type:
    """The NormalizedPolicy nn.Module class, defined on first use so that importing this module does not import torch."""
    import torch
    from torch import nn

    class NormalizedPolicy(nn.Module):
        """`policy(clip((obs - mean) / sqrt(var + epsilon)))`, with mean and var as buffers."""

        def __init__(self, policy: nn.Module, mean: torch.Tensor, var: torch.Tensor, epsilon: float, clip: Optional[float]) -> None:
            super().__init__()
            self.policy = policy
            self.register_buffer("obs_mean", mean)
            self.register_buffer("obs_var", var)
            self.epsilon = float(epsilon)
            self.clip = None if clip is None else float(clip)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            # float64 like gymnasium's RunningMeanStd, so the agent sees bit-for-bit its training inputs
            x = (obs.to(torch.float64) - self.obs_mean) / torch.sqrt(self.obs_var + self.epsilon)
            if self.clip is not None:
                x = x.clamp(-self.clip, self.clip)
            return self.policy(x.to(obs.dtype))

    return NormalizedPolicy


def normalized_policy(
    policy: Callable[[Any], Any],
    mean: Any,
    var: Any = None,
    epsilon: float = 1e-8,
    clip: Optional[float] = None,
) -> "torch.nn.Module":
    """`policy` on raw observations, normalised (and clipped) with frozen statistics: one nn.Module
    holding the statistics as float64 buffers, so `.to(device)` moves them and `axiomrl export`
    bakes them into the exported file. Nothing is updated: this is what the agent saw in training.

    Two ways to give the statistics:

    - `normalized_policy(policy, state)` with an `EnvNormalization.state_dict()` (e.g. the
      checkpoint's `normalization` entry): mean, var and epsilon of its observation statistics
      (combined over the sub-envs) and its `obs_clip`;
    - `normalized_policy(policy, mean, var, epsilon=1e-8, clip=None)` with arrays or tensors, e.g.
      a `NormalizeObservation` wrapper's `obs_rms.mean` / `obs_rms.var` saved in the checkpoint.

    Computes `policy(clip((obs - mean) / sqrt(var + epsilon), -clip, clip))`, which is what
    `gymnasium.wrappers.NormalizeObservation` followed by an optional clip does. Scripts that
    normalise observations return this from `load_policy` and evaluate with it.
    """
    import torch

    from axiomrl_utils.policy import policy_module

    if var is None:  # an EnvNormalization.state_dict()
        if not isinstance(mean, Mapping):
            raise TypeError("normalized_policy takes an EnvNormalization.state_dict(), or mean and var")
        state = mean
        mean, var, epsilon = observation_statistics(state)
        clip = float(state["obs_clip"])

    def as_tensor(x: Any) -> "torch.Tensor":
        return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64).clone()

    return _normalized_policy_type()(policy_module(policy), as_tensor(mean), as_tensor(var), epsilon, clip)
