"""Checking an env id before a run starts: is it known, is its extra installed, does the script fit?

Each check fails with a `UsageError` sentence that names the problem and the fix, before any run
directory exists.
"""

from __future__ import annotations

import difflib
import importlib.util
from typing import Any, Literal, Optional

from axiomrl_utils import UsageError


def _is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or env_id.endswith(("NoFrameskip-v4", "NoFrameskip-v0", "Deterministic-v4"))


def register_atari() -> None:
    """Register ALE's environments with gymnasium, or say which extra to install."""
    if importlib.util.find_spec("ale_py") is None:
        raise UsageError("Atari environments need ale-py; install it with `pip install 'axiomrl[atari]'`")
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)


def require_env(
    env_id: str,
    script: str,
    action_space: Literal["discrete", "continuous"],
    observation: Optional[Literal["vector", "image"]] = "vector",
) -> Any:
    """Check that `env_id` exists, its extra is installed, and its spaces suit `script`.

    `action_space="continuous"` also requires finite bounds (the scripts scale actions to them).
    `observation`: what the script's network takes (see `require_observation`); None skips that check.
    Returns the env's `(observation_space, action_space)`.
    """
    import gymnasium as gym

    if _is_atari(env_id):
        register_atari()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "see `gymnasium.pprint_registry()` for the ids"
        raise UsageError(f"unknown environment id {env_id!r}; {hint}")
    entry_point = str(gym.spec(env_id).entry_point)
    if "mujoco" in entry_point and importlib.util.find_spec("mujoco") is None:
        raise UsageError(f"{env_id} is a MuJoCo environment; install it with `pip install 'axiomrl[mujoco]'`")
    try:
        env = gym.make(env_id)
    except Exception as e:
        raise UsageError(f"{env_id} cannot be created ({type(e).__name__}: {e}); check its extra with `axiomrl doctor`") from None
    spaces = (env.observation_space, env.action_space)
    env.close()
    space = spaces[1]
    if action_space == "discrete" and not isinstance(space, gym.spaces.Discrete):
        raise UsageError(
            f"{script} needs a discrete action space but {env_id} has {space}; "
            "use a continuous-action script such as ppo_continuous_action.py"
        )
    if action_space == "continuous":
        if not isinstance(space, gym.spaces.Box):
            raise UsageError(
                f"{script} needs a continuous (Box) action space but {env_id} has {space}; "
                "use a discrete-action script such as ppo.py or dqn.py"
            )
        import numpy as np

        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise UsageError(
                f"{script} scales actions to the action bounds but {env_id}'s action space {space} is unbounded; "
                "wrap the env with gymnasium.wrappers.RescaleAction or use an env with finite bounds"
            )
    if observation is not None:
        require_observation(spaces[0], env_id, script, observation, action_space)
    return spaces


def require_observation(
    space: Any, env_id: str, script: str, kind: Literal["vector", "image"], action_space: Literal["discrete", "continuous"]
) -> None:
    """The observations must be what the script's network takes: a flat Box (`vector`, the MLP
    scripts) or a Box of frames (`image`, the CNN scripts); a sentence naming the script to use otherwise."""
    import gymnasium as gym

    ndim = len(space.shape) if isinstance(space, gym.spaces.Box) else None
    if kind == "vector" and ndim == 1 or kind == "image" and ndim in (2, 3):
        return
    if ndim in (2, 3):
        fix = (
            "use ppo_atari.py or dqn_atari.py for Atari games"
            if action_space == "discrete"
            else "no AxiomRL script learns continuous actions from images; pick an env with vector observations"
        )
        raise UsageError(f"{script} feeds flat vector observations to an MLP but {env_id} has image observations {space}; {fix}")
    if ndim == 1:
        raise UsageError(
            f"{script} takes game screens but {env_id} has vector observations {space}; use "
            + ("ppo.py or dqn.py" if action_space == "discrete" else "ppo_continuous_action.py or sac_continuous_action.py")
            + " for it"
        )
    raise UsageError(
        f"{script} takes Box {'vector' if kind == 'vector' else 'image'} observations but {env_id} has {space} observations, "
        "which no AxiomRL script takes; pick an env with Box vector observations such as CartPole-v1 or Pendulum-v1"
    )

