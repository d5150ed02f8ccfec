"""Observation/reward normalisation statistics as checkpoint objects, and the frozen evaluation policy.

Scripts such as ppo_continuous_action.py normalise observations and rewards with gymnasium's
per-env `NormalizeObservation` / `NormalizeReward` wrappers. Their running statistics are part of
what the agent learned: a policy evaluated or resumed without them sees different inputs. The
environments themselves cannot always carry them (MuJoCo envs pickle by re-running their
constructor), so `EnvNormalization` reads and writes them as a checkpoint object of its own:

    normalization = EnvNormalization(envs, obs_clip=10.0)
    run.save(global_step, normalization=normalization, ...)      # in every checkpoint, hence best.pt
    run.restore(normalization=normalization, ...)                # back into the wrappers on --resume
    policy = normalized_policy(agent.act, normalization.state_dict())   # raw obs in, frozen stats
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np


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


def normalized_policy(policy: Callable[[Any], Any], state: dict[str, Any]) -> Callable[[Any], Any]:
    """`policy` on raw observations, normalised and clipped with the frozen statistics in `state`.

    This is what the agent saw in training, `(obs - mean) / sqrt(var + epsilon)` clipped to
    ±obs_clip, without updating anything: the policy for `run.evaluate`, `axiomrl eval` and export.
    """
    import torch

    mean, var, epsilon = observation_statistics(state)
    mean_t = torch.as_tensor(mean, dtype=torch.float64)
    std_t = torch.sqrt(torch.as_tensor(var, dtype=torch.float64) + epsilon)
    clip = float(state["obs_clip"])

    def normalized(obs: "torch.Tensor") -> "torch.Tensor":
        x = (obs.to(torch.float64) - mean_t.to(obs.device)) / std_t.to(obs.device)
        return policy(x.clamp(-clip, clip).to(torch.float32))

    return normalized
