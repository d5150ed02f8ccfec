"""Checking an env id before a run starts: is it known, is its extra installed, does the script fit?

Each check fails with a `UsageError` sentence that names the problem and the fix, before any run
directory exists.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
import sys
from typing import Any, Literal, Optional, Sequence

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


def env_options(args: Any) -> tuple[str, dict[str, Any], list[str]]:
    """(env id, gym.make keyword arguments, modules to import) of a script's Args.

    Args of scripts written before --env-kwargs/--env-module simply have none of them.
    """
    return args.env_id, dict(getattr(args, "env_kwargs", None) or {}), list(getattr(args, "env_module", None) or [])


def registered_id(env_id: str, modules: Sequence[str] = ()) -> str:
    """The registry id behind `env_id`, after importing what registers it.

    Imports each of `modules` (--env-module) and, for gymnasium's `module:EnvId` form, the module
    before the colon; returns the bare id. UsageError when a module does not import or the id is
    still unknown afterwards.
    """
    import gymnasium as gym

    from axiomrl_utils import masked_envs

    masked_envs.register()
    module = None
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
    for name in list(modules) + ([module] if module else []):
        before = set(gym.registry)
        try:
            importlib.import_module(name)
        except Exception as e:
            flag = "--env-module" if name != module else "the env id's module prefix"
            raise UsageError(
                f"module {name!r} ({flag}) cannot be imported ({type(e).__name__}: {e}); install the package "
                "that provides it or put its directory on PYTHONPATH"
            ) from None
        if name == module and env_id not in gym.registry:
            added = sorted(set(gym.registry) - before)
            listed = f"it registered {', '.join(added)}" if added else "it registered no environment"
            raise UsageError(f"module {module!r} does not register {env_id!r} ({listed}); check the id after the colon")
    if _is_atari(env_id):
        register_atari()
    return env_id


# env id -> how require_env found an MLP script must adapt its observations (for metadata.json)
_FLATTENED: dict[str, str] = {}


def observation_adapter(env_id: str) -> Optional[str]:
    """The observation wrapper `require_env` found this process's runs on `env_id` need, if any."""
    return _FLATTENED.get(env_id)


def require_env(
    env: Any,
    script: str,
    action_space: Literal["discrete", "continuous"],
    observation: Optional[Literal["vector", "image"]] = "vector",
) -> Any:
    """Check that the env exists, its extra is installed, and its spaces suit `script`.

    `env`: the script's Args (env_id, env_kwargs, env_module) or a bare env id.
    `action_space="continuous"` also requires finite bounds (the scripts scale actions to them).
    `observation`: what the script's network takes (see `require_observation`); None skips that check.
    Returns the env's `(observation_space, action_space)`.
    """
    import gymnasium as gym
    import numpy as np

    env_id, env_kwargs, modules = (env, {}, []) if isinstance(env, str) else env_options(env)
    shown_id = env_id
    env_id = registered_id(env_id, modules)
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}?" if close else "see `gymnasium.pprint_registry()` for the ids"
        if ":" not in shown_id and not modules:
            hint += "; for your own env, pass `--env-id your.module:YourEnv-v0` or `--env-module your.module`"
        raise UsageError(f"unknown environment id {env_id!r}; {hint}")
    entry_point = str(gym.spec(env_id).entry_point)
    if "mujoco" in entry_point and importlib.util.find_spec("mujoco") is None:
        raise UsageError(f"{env_id} is a MuJoCo environment; install it with `pip install 'axiomrl[mujoco]'`")
    made = make_registered(shown_id, env_id, env_kwargs)
    spaces = (made.observation_space, made.action_space)
    made.close()
    if getattr(env, "rescale_observation", False):
        obs_space = spaces[0]
        if not (isinstance(obs_space, gym.spaces.Box) and np.all(np.isfinite(obs_space.low)) and np.all(np.isfinite(obs_space.high))):
            raise UsageError(
                f"--rescale-observation needs observations with finite bounds but {shown_id} has {obs_space}; "
                "drop the flag (or normalise with a wrapper of your own)"
            )
    if observation == "vector" and needs_flattening(spaces[0]):
        flat = _float32(gym.spaces.flatten_space(spaces[0]))
        if shown_id not in _FLATTENED:
            print(f"note: {script} flattens {shown_id}'s {spaces[0]} observations into {flat} (gymnasium's FlattenObservation)", file=sys.stderr, flush=True)
        _FLATTENED[shown_id] = f"FlattenObservation: {spaces[0]} -> {flat}"
        spaces = (flat, spaces[1])
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
            ("use ppo_atari_lstm.py for a recurrent policy on Atari games" if "lstm" in script
             else "use ppo_atari.py or dqn_atari.py for Atari games")
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



def needs_flattening(space: Any) -> bool:
    """Whether an MLP script flattens these observations (Dict, Tuple, Discrete, MultiDiscrete, MultiBinary)."""
    import gymnasium as gym

    return isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary))


def make_registered(shown_id: str, env_id: str, env_kwargs: dict[str, Any], render_mode: Optional[str] = None) -> Any:
    """gym.make(env_id, render_mode, **env_kwargs), its failures as one sentence each."""
    import gymnasium as gym

    try:
        # render_mode only when asked for: gymnasium hands render_mode=None to constructors that may not take it
        return gym.make(env_id, **env_kwargs, **({"render_mode": render_mode} if render_mode is not None else {}))
    except TypeError as e:
        if env_kwargs and "keyword argument" in str(e):
            accepted = _accepted_kwargs(env_id)
            hint = f"it accepts {', '.join(accepted)}" if accepted else "it accepts none"
            bad = re.search(r"keyword argument '([^']+)'", str(e))
            what = f"the keyword argument {bad.group(1)!r}" if bad else f"--env-kwargs ({e})"
            raise UsageError(f"{shown_id} does not accept {what}; {hint} (and gym.make takes max_episode_steps)") from None
        raise UsageError(f"{shown_id} cannot be created ({type(e).__name__}: {e})") from None
    except Exception as e:
        raise UsageError(f"{shown_id} cannot be created ({type(e).__name__}: {e}); check its extra with `axiomrl doctor`") from None


def _accepted_kwargs(env_id: str) -> list[str]:
    """The keyword arguments an env's entry point takes, for the error sentence (empty when unknown)."""
    import gymnasium as gym

    entry_point = gym.spec(env_id).entry_point
    try:
        if isinstance(entry_point, str):
            module, name = entry_point.split(":")
            entry_point = getattr(importlib.import_module(module), name)
        params = inspect.signature(entry_point).parameters.values()
    except (ValueError, TypeError, AttributeError, ImportError):
        return []
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "render_mode")]


def create_env(args: Any, render_mode: Optional[str] = None) -> Any:
    """The env an MLP script trains and evaluates on: `gym.make` with --env-kwargs, after importing
    --env-module and a `module:EnvId` prefix; Dict/Tuple/Discrete observations flattened with
    gymnasium's FlattenObservation (`require_env` has checked the rest before the run started)."""
    import gymnasium as gym

    import numpy as np

    shown_id, env_kwargs, modules = env_options(args)
    env = make_registered(shown_id, registered_id(shown_id, modules), env_kwargs, render_mode)
    if needs_flattening(env.observation_space):
        env = gym.wrappers.FlattenObservation(env)
        # one-hot parts flatten to float64; the networks take float32
        env = gym.wrappers.TransformObservation(env, lambda o: o.astype(np.float32), _float32(env.observation_space))
    if getattr(args, "rescale_observation", False):
        center, inverse_half_range = rescale_constants(env.observation_space)
        env = gym.wrappers.TransformObservation(
            env, lambda o: (o.astype(np.float32) - center) * inverse_half_range, gym.spaces.Box(-1, 1, env.observation_space.shape, np.float32)
        )
    return env


def rescale_constants(space: Any) -> tuple[Any, Any]:
    """(center, 1 / half range) of a bounded Box, as float32: `(obs - center) * inverse` lies in [-1, 1].

    Two float32 operations that torch repeats bit for bit, so an exported policy can take the raw
    observation (`axiomrl_utils.policy.rescaled_policy`) and act exactly as in training.
    """
    import numpy as np

    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    return ((low + high) / 2).astype(np.float32), (2 / (high - low)).astype(np.float32)


def _float32(space: Any) -> Any:
    import gymnasium as gym
    import numpy as np

    return gym.spaces.Box(space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
