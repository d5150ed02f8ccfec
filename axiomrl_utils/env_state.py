"""Pickling a vector env together with the state of the simulators inside it.

cloudpickle saves a classic-control env whole: its state is plain Python and numpy. Envs built on
`gymnasium.utils.EzPickle` (MuJoCo, ALE, Box2D) pickle as their constructor arguments instead, so a
plain pickle brings back a fresh env and silently loses the episode in progress. For the simulators
known here, `dumps` saves what those envs keep outside Python:

- gymnasium's `MujocoEnv`: `mj_getState(mjSTATE_INTEGRATION)`, the state MuJoCo documents as enough
  for `mj_step` to continue identically, plus the fixed-size quantities the last step left in
  `MjData` (body positions, contact forces, ...), which some envs read between steps (Ant reads its
  position before stepping). Contacts and constraint rows are not saved: the next step recomputes them.
- ale_py's `AtariEnv`: `cloneState(include_rng=True)`: the emulator, its frame counters and the
  sticky-action RNG.

Such an env is rebuilt from its constructor arguments, gets its Python attributes back (`np_random`
included, which AtariPreprocessing's no-op starts draw from), then its simulator state. Wrappers and
the vector env pickle as usual, with their counters. Any other EzPickle env is reported as not
restorable, with the reason, rather than restored wrongly.
"""

from __future__ import annotations

import sys
from typing import Any, Optional


class _MuJoCo:
    """gymnasium.envs.mujoco.MujocoEnv (all MuJoCo envs of gymnasium, v4 and v5)."""

    module, name = "gymnasium.envs.mujoco.mujoco_env", "MujocoEnv"
    handles = ("model", "data", "mujoco_renderer")  # rebuilt by the constructor, never pickled

    @staticmethod
    def capture(env: Any) -> dict[str, Any]:
        import mujoco
        import numpy as np

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        integration = np.empty(mujoco.mj_stateSize(env.model, spec))
        mujoco.mj_getState(env.model, env.data, integration, spec)
        # `_all_fields` lists MjData's fixed-size buffer (not the per-step contact arena); plugin
        # fields hold pointers into this process
        fields = {}
        for name in getattr(env.data, "_all_fields", ()):
            value = getattr(env.data, name, None)
            if isinstance(value, np.ndarray) and value.size and not name.startswith("plugin"):
                fields[name] = value.copy()
        return {"integration": integration, "fields": fields}

    @staticmethod
    def apply(env: Any, state: dict[str, Any]) -> None:
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        expected = mujoco.mj_stateSize(env.model, spec)
        if state["integration"].size != expected:
            raise ValueError(
                f"the checkpoint's MuJoCo state holds {state['integration'].size} numbers where MuJoCo "
                f"{mujoco.__version__} expects {expected}; resume with the MuJoCo version that wrote it"
            )
        for name, value in state["fields"].items():
            field = getattr(env.data, name, None)
            if field is not None and field.shape == value.shape:
                field[...] = value
        mujoco.mj_setState(env.model, env.data, state["integration"], spec)


class _Ale:
    """ale_py.env.AtariEnv (every ALE game)."""

    module, name = "ale_py.env", "AtariEnv"
    handles = ("ale",)

    @staticmethod
    def capture(env: Any) -> Any:
        return env.ale.cloneState(include_rng=True)

    @staticmethod
    def apply(env: Any, state: Any) -> None:
        env.ale.restoreState(state)


SIMULATORS = {"mujoco": _MuJoCo, "ale": _Ale}


def _known_bases() -> list[tuple[type, str]]:
    """(base class, simulator key) for the simulator modules already imported: an env of a module
    never imported cannot be inside the vector env, so nothing heavy is imported here."""
    found = []
    for key, simulator in SIMULATORS.items():
        base = getattr(sys.modules.get(simulator.module), simulator.name, None)
        if base is not None:
            found.append((base, key))
    return found


def _simulator_of(env: Any, bases: list[tuple[type, str]]) -> Optional[str]:
    for base, key in bases:
        if isinstance(env, base):
            return key
    return None


def unsaved_reason(envs: Any) -> str:
    """Why `dumps` cannot save this vector env's state faithfully, or "" when it can."""
    import gymnasium as gym

    base = envs.unwrapped
    sub_envs = getattr(base, "envs", None)
    if sub_envs is None:
        return f"{type(base).__name__} runs its environments in other processes"
    bases = _known_bases()
    for env in sub_envs:
        inner = env.unwrapped
        name = type(inner).__name__
        if _simulator_of(inner, bases) is not None:
            if not hasattr(inner, "_ezpickle_args"):
                return f"{name} does not record its constructor arguments (EzPickle.__init__ is not called)"
        elif isinstance(inner, gym.utils.EzPickle):
            return f"{name} does not pickle its state"
    return ""


def _rebuild(cls: type, args: tuple, kwargs: dict) -> Any:
    return cls(*args, **kwargs)


def _set_state(env: Any, state: tuple[str, dict[str, Any], Any]) -> Any:
    key, attributes, simulator_state = state
    vars(env).update(attributes)
    SIMULATORS[key].apply(env, simulator_state)
    return env


def _uniform_box(low: Any, high: Any, shape: tuple, dtype: Any) -> Any:
    import gymnasium as gym

    return gym.spaces.Box(low, high, shape, dtype)


def _set_space_rng(space: Any, rng: Any) -> Any:
    space._np_random = rng
    return space


def _pickler_class() -> type:
    import cloudpickle
    import gymnasium as gym

    class EnvPickler(cloudpickle.CloudPickler):
        """cloudpickle, with simulator envs reduced to (constructor arguments, attributes, simulator
        state) and boxes with one bound for every entry (Atari frames: 0..255) to those bounds."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._bases = _known_bases()

        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is gym.spaces.Box:
                return self._box(obj)
            key = _simulator_of(obj, self._bases) if self._bases else None
            if key is None:
                return super().reducer_override(obj)
            simulator = SIMULATORS[key]
            attributes = {k: v for k, v in vars(obj).items() if k not in simulator.handles}
            # the state goes through state_setter, so it may refer back to the env itself
            return (
                _rebuild,
                (type(obj), obj._ezpickle_args, obj._ezpickle_kwargs),
                (key, attributes, simulator.capture(obj)),
                None,
                None,
                _set_state,
            )

        def _box(self, box: Any) -> Any:
            # every frame-shaped Box (per env, per wrapper, batched by the vector env) would otherwise
            # store four arrays the size of an observation
            low, high = box.low, box.high
            if not low.size or (low != low.flat[0]).any() or (high != high.flat[0]).any():
                return NotImplemented
            return _uniform_box, (low.flat[0], high.flat[0], box.shape, box.dtype), box._np_random, None, None, _set_space_rng

    return EnvPickler


def dumps(envs: Any) -> tuple[Optional[bytes], str]:
    """Pickle a vector env with its sub-environments' full state: (blob, "") or (None, reason)."""
    import io

    reason = unsaved_reason(envs)
    if reason:
        return None, reason
    buffer = io.BytesIO()
    try:
        _pickler_class()(buffer, protocol=5).dump(envs)
    except Exception as e:  # a wrapper holding a file, a renderer, a socket ...
        return None, f"pickling failed ({type(e).__name__}: {e})"
    return buffer.getvalue(), ""


def loads(blob: bytes) -> Any:
    """The vector env `dumps` saved, its simulators rebuilt and set to the saved state."""
    import pickle

    return pickle.loads(blob)
