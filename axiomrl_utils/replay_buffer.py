"""The replay buffers shared by every off-policy script (dqn, c51, dqn_atari, sac, td3, ddpg).

Numpy ring buffers with one column per vector-env sub-environment. Scripts build one with
`make_replay_buffer`, which picks how observations are stored from the observation space:

    rb = make_replay_buffer(args.buffer_size, envs.single_observation_space, envs.single_action_space,
                            num_envs=args.num_envs, device=device, save_contents=args.save_buffer)
    rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)   # after every envs.step
    data = rb.sample(args.batch_size)          # torch tensors on `device`
    run.declare_state(..., rb=rb)              # the buffer is part of every checkpoint and
                                               # comes back bit for bit with run.restore()

The classes differ only in how they store observations, and give back exactly what was added:

- `ReplayBuffer`: observations and next observations in plain arrays (vector observations). It is
  also the base of the others: the ring, actions/rewards/terminations, sampling, checkpointing.
  Built directly it always stores plain arrays, also for images (several times the memory of
  the variants below): build buffers with `make_replay_buffer`.
- `ObservationStoreReplayBuffer`: each observation stored once (uint8 images, by default).
- `FrameStackReplayBuffer`: each frame of (K, H, W) frame stacks stored once (Atari).

`PrioritizedReplayBuffer` wraps any of them: proportional prioritized replay on a numpy `SumTree`
(batched updates and lookups, no per-sample loop), importance-sampling weights and optional
n-step returns (rainbow_atari.py, `dqn.py --prioritized`).

What every one guarantees:

- `next_obs` passed to `add` is the TRUE next observation: for an env whose episode ended in this
  step, the final observation from `infos["final_obs"]` (vector envs reset in the same step). Only
  terminations are stored as "done": a truncated transition keeps its real final observation, so
  the TD target bootstraps from it.
- `sample` draws indices from the global numpy RNG (`np.random`), which checkpoints save and
  restore, so a resumed run samples exactly what an uninterrupted one would.
- `state_dict()` holds the filled part of the arrays as torch tensors that share the buffer's
  memory (saving a large buffer does not copy it in RAM first); `load_state_dict()` restores it
  exactly. The format (`STATE_FORMAT`, the keys) is the one the single-class buffer wrote, so older
  checkpoints still load. With `save_contents=False` (`--no-save-buffer`) checkpoints carry only a
  marker and a resume starts from an empty buffer, saying so once.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import numpy as np

from axiomrl_utils import UsageError

if TYPE_CHECKING:
    import torch

STATE_FORMAT = 1


class ReplayBufferSamples(NamedTuple):
    """A sampled batch. Observations keep the observation space's dtype (uint8 images stay uint8);
    actions have shape (batch, *action_space.shape) in the action space's dtype (int64 for Discrete);
    terminations and rewards are float32 of shape (batch,)."""

    observations: "torch.Tensor"
    actions: "torch.Tensor"
    next_observations: "torch.Tensor"
    terminations: "torch.Tensor"
    rewards: "torch.Tensor"


def _is_image(space: Any) -> bool:
    return np.dtype(space.dtype) == np.uint8 and len(space.shape) >= 2


def _stacks_frames(shape: tuple, slots: int) -> bool:
    """(K, H, W) observations with K >= 2 are stored frame by frame (a ring of more than K slots)."""
    return len(shape) >= 3 and shape[0] >= 2 and slots > shape[0]


def transition_bytes(observation_space: Any, action_space: Any, memory_efficient: Optional[bool] = None, slots: int = 10**9) -> int:
    """Bytes one stored transition takes (observations, action, reward, termination, bookkeeping),
    not counting the side stores (whole observations at episode boundaries)."""
    storage = _storage_class(observation_space, memory_efficient, slots)
    shape = tuple(observation_space.shape)
    obs = int(np.prod(shape)) * np.dtype(observation_space.dtype).itemsize
    act = int(np.prod(action_space.shape)) * np.dtype(action_space.dtype).itemsize
    common = act + 4 + 1
    if storage is ReplayBuffer:
        return 2 * obs + common
    if storage is FrameStackReplayBuffer:
        return obs // shape[0] + 2 + 8 + 8 + common  # newest frame, chain, chain_key, next_index
    return obs + 8 + common  # observation, next_index


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _available_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_replay_buffer(
    buffer_size: int,
    batch_size: int,
    num_envs: int = 1,
    observation_space: Any = None,
    action_space: Any = None,
) -> None:
    """Reject a buffer that cannot work, before the run starts (UsageError: problem; fix).

    The buffer must hold at least one batch and one transition per env; with the spaces given, it
    must also fit in this machine's physical memory (a warning when it exceeds what is free now).
    """
    if buffer_size <= 0 or batch_size <= 0:
        raise UsageError(
            f"--buffer-size ({buffer_size}) and --batch-size ({batch_size}) must be positive; pass values above 0"
        )
    if buffer_size < batch_size:
        raise UsageError(
            f"--buffer-size {buffer_size} is smaller than --batch-size {batch_size}; "
            f"pass a buffer of at least {batch_size} transitions or a smaller batch"
        )
    if buffer_size < num_envs:
        raise UsageError(
            f"--buffer-size {buffer_size} is smaller than --num-envs {num_envs}; pass a buffer of at least {num_envs} transitions"
        )
    if observation_space is None or action_space is None:
        return
    need = (buffer_size // num_envs) * num_envs * transition_bytes(observation_space, action_space, slots=buffer_size // num_envs)
    total, free = _physical_memory(), _available_memory()
    if total is not None and need > total:
        raise UsageError(
            f"a replay buffer of {buffer_size:,} transitions needs {need / 1e9:.1f} GB but this machine has "
            f"{total / 1e9:.1f} GB of memory; pass a smaller --buffer-size"
        )
    if free is not None and need > free:
        warnings.warn(
            f"the replay buffer will need {need / 1e9:.1f} GB once full but only {free / 1e9:.1f} GB are free now",
            stacklevel=2,
        )


class _ObsPool:
    """A growable store of whole observations with a free list (indices stay valid until released)."""

    def __init__(self, shape: tuple, dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self.data = np.zeros((0,) + shape, dtype=dtype)
        self.free: list[int] = []

    def put(self, obs: np.ndarray) -> int:
        if not self.free:
            old = len(self.data)
            new = max(4, 2 * old)
            grown = np.zeros((new,) + self.shape, dtype=self.dtype)
            grown[:old] = self.data
            self.data = grown
            self.free = list(range(new - 1, old - 1, -1))  # pop() hands out the lowest index first
        k = self.free.pop()
        self.data[k] = obs
        return k

    def release(self, indices: np.ndarray) -> None:
        self.free.extend(int(k) for k in indices if k >= 0)

    def __len__(self) -> int:
        """Entries in use."""
        return len(self.data) - len(self.free)


class ReplayBuffer:
    """Ring buffer of transitions from `num_envs` parallel environments, with observations and next
    observations in two plain arrays: the storage for vector observations.

    It owns what every storage shares: the ring (`capacity // num_envs` slots per env, `pos`,
    `full`), the actions, rewards and terminations, `add`, `sample` and the checkpoint format. A
    subclass changes only how observations are kept, through the hooks under "observation storage".
    `save_contents=False` keeps the contents out of checkpoints (`--no-save-buffer`).
    """

    memory_efficient = False  # the storage, as the checkpoint layout records it
    frame_stacked = False
    observations: Optional[np.ndarray] = None
    next_observations: Optional[np.ndarray] = None
    _whole: tuple[str, ...] = ()  # arrays not indexed by slot: checkpoints hold them whole

    def __init__(
        self,
        capacity: int,
        observation_space: Any,
        action_space: Any,
        num_envs: int = 1,
        device: Any = "cpu",
        save_contents: bool = True,
    ) -> None:
        if num_envs <= 0 or capacity < num_envs:
            raise ValueError(f"a replay buffer needs capacity >= num_envs >= 1 (got capacity {capacity}, num_envs {num_envs})")
        self.capacity, self.num_envs, self.device = capacity, num_envs, device
        self.slots = capacity // num_envs
        self.obs_shape = tuple(observation_space.shape)
        self.obs_dtype = np.dtype(observation_space.dtype)
        self.action_shape = tuple(action_space.shape)
        self.action_dtype = np.dtype(action_space.dtype)
        self.save_contents = save_contents

        shape = (self.slots, num_envs)
        self.actions = np.zeros(shape + self.action_shape, dtype=self.action_dtype)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminations = np.zeros(shape, dtype=bool)
        self._allocate(shape)
        self.pos, self.full = 0, False
        self.adds = 0  # add() calls ever made: what a checkpoint's replay store compares against

    # ------------------------------------------------------------------ observation storage
    def _allocate(self, shape: tuple) -> None:
        """Create the observation arrays for `shape` = (slots, num_envs)."""
        self.observations = np.zeros(shape + self.obs_shape, dtype=self.obs_dtype)
        self.next_observations = np.zeros_like(self.observations)

    def _store(self, p: int, obs: np.ndarray, next_obs: np.ndarray, terminations: np.ndarray, truncations: np.ndarray) -> None:
        """Keep slot p's observations (an episode ended in this step where `terminations | truncations`)."""
        self.observations[p] = obs
        self.next_observations[p] = next_obs

    def _sample_slots(self, batch_size: int) -> np.ndarray:
        """The slots of a batch, drawn from the global numpy RNG."""
        return np.random.randint(0, self._filled, size=batch_size)

    def _observation_pairs(self, slot: np.ndarray, env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(observations, next observations) of the (slot, env) pairs."""
        return self.observations[slot, env], self.next_observations[slot, env]

    def _observation_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that hold observations, by their names in the state dict."""
        return {"observations": self.observations, "next_observations": self.next_observations}

    def _pools(self) -> dict[str, _ObsPool]:
        """Growable stores among those arrays, saved with their free lists as `<name>_free`."""
        return {}

    def _clear(self) -> None:
        """Reset the bookkeeping that `pos = 0` alone does not (before a load)."""

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        """Number of transitions stored (all envs)."""
        return (self.slots if self.full else self.pos) * self.num_envs

    @property
    def _filled(self) -> int:
        return self.slots if self.full else self.pos

    def _arrays(self) -> dict[str, np.ndarray]:
        """Every array the buffer holds, by name."""
        return {"actions": self.actions, "rewards": self.rewards, "terminations": self.terminations,
                **self._observation_arrays()}

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays (allocated, whether filled or not)."""
        return int(sum(a.nbytes for a in self._arrays().values()))

    # ------------------------------------------------------------------ add / sample
    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
    ) -> None:
        """Store one vector-env step: arrays with a leading dimension of `num_envs`.

        `next_obs` must be the true next observation (the final one for envs whose episode ended).
        Terminations stop the bootstrap; truncations do not (they only mark an episode boundary).
        """
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        expected = (self.num_envs,) + self.obs_shape
        if obs.shape != expected or next_obs.shape != expected:
            raise ValueError(f"add() expects observations of shape {expected}, got {obs.shape} and {next_obs.shape}")
        terminations = np.asarray(terminations, dtype=bool).reshape(self.num_envs)
        truncations = np.asarray(truncations, dtype=bool).reshape(self.num_envs)
        p = self.pos
        self._store(p, obs, next_obs, terminations, truncations)
        self.actions[p] = np.asarray(actions).reshape((self.num_envs,) + self.action_shape)
        self.rewards[p] = np.asarray(rewards).reshape(self.num_envs)
        self.terminations[p] = terminations
        self.pos = (p + 1) % self.slots
        self.full = self.full or self.pos == 0
        self.adds += 1

    def sample(self, batch_size: int) -> ReplayBufferSamples:
        """A batch drawn uniformly (with replacement) with the global numpy RNG, as torch tensors on `device`."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        slot = self._sample_slots(batch_size)
        env = np.random.randint(0, self.num_envs, size=batch_size)
        return self._gather(slot, env)

    def _to_device(self, x: np.ndarray) -> "torch.Tensor":
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def _gather(self, slot: np.ndarray, env: np.ndarray) -> ReplayBufferSamples:
        """The transitions at the (slot, env) pairs, as torch tensors on `device`."""
        obs, next_obs = self._observation_pairs(slot, env)
        to = self._to_device
        return ReplayBufferSamples(
            observations=to(obs),
            actions=to(self.actions[slot, env]),
            next_observations=to(next_obs),
            terminations=to(self.terminations[slot, env].astype(np.float32)),
            rewards=to(self.rewards[slot, env]),
        )

    def _unsampleable_slots(self) -> np.ndarray:
        """Filled slots that `sample` never draws (none here; see FrameStackReplayBuffer)."""
        return np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ checkpointing
    def ring_array_names(self) -> set[str]:
        """The state dict's arrays indexed by slot: an `add` writes only its own slot and the one
        before it there (the replay store rewrites just those rows of a checkpoint)."""
        return {name for name in self._arrays() if name not in self._whole and name not in self._pools()}

    def _layout(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "num_envs": self.num_envs,
            "memory_efficient": self.memory_efficient,
            "frame_stacked": self.frame_stacked,
            "obs_shape": list(self.obs_shape),
            "obs_dtype": self.obs_dtype.str,
            "action_shape": list(self.action_shape),
            "action_dtype": self.action_dtype.str,
        }

    def state_dict(self) -> dict[str, Any]:
        """The buffer as torch tensors sharing its memory (only the filled slots), plus its layout.

        With `save_contents=False`, only the layout and a `contents_saved: False` marker.
        """
        import torch

        state: dict[str, Any] = {"format": STATE_FORMAT, **self._layout(), "contents_saved": self.save_contents}
        if not self.save_contents:
            return state
        n = self._filled
        arrays = {name: a if name in self._whole else a[:n] for name, a in self._arrays().items()}
        for name, pool in self._pools().items():
            arrays[f"{name}_free"] = np.array(pool.free, dtype=np.int64)
        state.update({name: torch.from_numpy(a) for name, a in arrays.items()})
        state.update(pos=self.pos, full=self.full, adds=self.adds)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved; a buffer saved without contents leaves this one empty.

        The saved layout (capacity, envs, storage, shapes, dtypes) must be this buffer's."""
        layout = self._layout()
        saved_layout = {k: state.get(k, False if k == "frame_stacked" else None) for k in layout}  # key added later
        if saved_layout != layout:
            diff = ", ".join(f"{k}: saved {saved_layout[k]!r}, now {layout[k]!r}" for k in layout if saved_layout[k] != layout[k])
            raise ValueError(f"the saved replay buffer does not fit this one ({diff})")
        self.pos, self.full, self.adds = 0, False, 0
        self._clear()
        if not state["contents_saved"]:
            why = state.get("contents_missing") or "the checkpoint holds no replay buffer (it was saved with --no-save-buffer)"
            print(f"note: {why}; training continues from an empty buffer", flush=True)
            return
        pools = self._pools()
        for name, array in self._arrays().items():
            if name in pools:
                continue
            saved = state[name].numpy()
            array[: len(saved)] = saved
        for name, pool in pools.items():
            pool.data, pool.free = state[name].numpy().copy(), state[f"{name}_free"].tolist()
        self.pos, self.full = int(state["pos"]), bool(state["full"])
        self.adds = int(state.get("adds", 0))  # older checkpoints: the next store save writes everything


class ObservationStoreReplayBuffer(ReplayBuffer):
    """Each observation stored once: the default for uint8 images.

    The next observation of slot i is the observation of slot i+1 of the same env, except where that
    does not hold (the episode ended, or the next `add` did not continue from it); there, the real
    next observation is kept in a small side store (`next_index` points into it). The newest
    transition's next observation is held in `pending` until the following `add`. Where the
    observations themselves live is the hook a subclass replaces (`_allocate_obs`, `_store_obs`,
    `_obs_arrays`, `_observations`).
    """

    memory_efficient = True
    _whole = ("pending", "side")

    def _allocate(self, shape: tuple) -> None:
        # next_index -1: the next observation is slot+1's observation (`pending` for the newest
        # slot); k >= 0: it is side[k] (the episode ended, or the next add did not continue from it).
        self.next_index = np.full(shape, -1, dtype=np.int64)
        self.pending = np.zeros((self.num_envs,) + self.obs_shape, dtype=self.obs_dtype)
        self.side = _ObsPool(self.obs_shape, self.obs_dtype)
        self._allocate_obs(shape)

    def _allocate_obs(self, shape: tuple) -> None:
        self.observations = np.zeros(shape + self.obs_shape, dtype=self.obs_dtype)

    def _store(self, p: int, obs: np.ndarray, next_obs: np.ndarray, terminations: np.ndarray, truncations: np.ndarray) -> None:
        newest = (p - 1) % self.slots
        if len(self):
            for e in np.flatnonzero(self.next_index[newest] < 0):
                if not np.array_equal(obs[e], self.pending[e]):
                    self.next_index[newest, e] = self.side.put(self.pending[e])
        # slot p is overwritten now: release what only it referenced
        self.side.release(self.next_index[p])
        self.next_index[p] = -1
        for e in np.flatnonzero(terminations | truncations):
            self.next_index[p, e] = self.side.put(next_obs[e])
        self.pending[:] = next_obs
        self._store_obs(p, obs)

    def _store_obs(self, p: int, obs: np.ndarray) -> None:
        self.observations[p] = obs

    def _observations(self, slot: np.ndarray, env: np.ndarray) -> np.ndarray:
        return self.observations[slot, env]

    def _observation_pairs(self, slot: np.ndarray, env: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        obs = self._observations(slot, env)
        k = self.next_index[slot, env]
        side = k >= 0
        newest = ~side & (slot == (self.pos - 1) % self.slots)
        follows = ~side & ~newest
        next_obs = np.empty_like(obs)
        if follows.any():
            next_obs[follows] = self._observations((slot[follows] + 1) % self.slots, env[follows])
        if side.any():
            next_obs[side] = self.side.data[k[side]]
        if newest.any():
            next_obs[newest] = self.pending[env[newest]]
        return obs, next_obs

    def _observation_arrays(self) -> dict[str, np.ndarray]:
        return {"next_index": self.next_index, "pending": self.pending, "side": self.side.data, **self._obs_arrays()}

    def _obs_arrays(self) -> dict[str, np.ndarray]:
        return {"observations": self.observations}

    def _pools(self) -> dict[str, _ObsPool]:
        return {"side": self.side}

    def _clear(self) -> None:
        self.next_index[:] = -1
        self.side = _ObsPool(self.obs_shape, self.obs_dtype)


class FrameStackReplayBuffer(ObservationStoreReplayBuffer):
    """Frame stacks (K, H, W), such as Atari's 4x84x84, stored frame by frame: each frame once.

    Consecutive stacks share K-1 frames, so each slot keeps only its newest frame, and a whole
    observation (a keyframe) only where a stack does not continue the previous one (after a reset).
    The check is on the data (obs[:-1] equals the previous obs[1:]), so any observation comes back
    exactly. The K-1 oldest slots of a full ring, whose older frames were just overwritten, are not
    sampled. Next observations are kept as in `ObservationStoreReplayBuffer`.
    """

    frame_stacked = True
    _whole = ("pending", "side", "keyframes", "last_obs")

    def _allocate_obs(self, shape: tuple) -> None:
        if not _stacks_frames(self.obs_shape, self.slots):
            raise ValueError(
                f"frame-stack storage needs (K, H, W) observations with K >= 2 and more than K slots per env "
                f"(got shape {self.obs_shape}, {self.slots} slots)"
            )
        # `chain` counts how many of an observation's older frames are the newest frames of the slots
        # before it (capped at K-1); the rest come from the whole observation that started the chain,
        # kept in `keyframes` (after a reset, or whenever an observation does not continue the previous one).
        self.frames = np.zeros(shape + self.obs_shape[1:], dtype=self.obs_dtype)
        self.chain = np.zeros(shape, dtype=np.int16)
        self.chain_key = np.full(shape, -1, dtype=np.int64)
        self.keyframes = _ObsPool(self.obs_shape, self.obs_dtype)
        self.last_obs = np.zeros((self.num_envs,) + self.obs_shape, dtype=self.obs_dtype)

    def _store_obs(self, p: int, obs: np.ndarray) -> None:
        # a chain's keyframe belongs to its first slot; the slots after it that still use it
        # are the oldest ones once that slot is overwritten, and sample() skips them
        newest = (p - 1) % self.slots
        self.keyframes.release(self.chain_key[p][self.chain[p] == 0])
        last = self.obs_shape[0] - 1
        for e in range(self.num_envs):
            if len(self) and np.array_equal(obs[e][:-1], self.last_obs[e][1:]):
                self.chain[p, e] = min(int(self.chain[newest, e]) + 1, last)
                self.chain_key[p, e] = self.chain_key[newest, e] if self.chain[p, e] < last else -1
            else:
                self.chain[p, e] = 0
                self.chain_key[p, e] = self.keyframes.put(obs[e])
        self.frames[p] = obs[:, -1]
        self.last_obs[:] = obs

    def _observations(self, slot: np.ndarray, env: np.ndarray) -> np.ndarray:
        """Rebuild the observations of (slot, env) pairs from the stored frames and keyframes."""
        k_frames = self.obs_shape[0]
        out = np.empty((len(slot),) + self.obs_shape, dtype=self.obs_dtype)
        chain, key = self.chain[slot, env], self.chain_key[slot, env]
        for k in range(k_frames):
            back = k_frames - 1 - k  # frame k is the newest frame of the slot `back` steps earlier ...
            out[:, k] = self.frames[(slot - back) % self.slots, env]
            older = back > chain  # ... unless that is before the chain started: then the keyframe has it
            if older.any():
                out[older, k] = self.keyframes.data[key[older], k + chain[older]]
        return out

    def _sample_slots(self, batch_size: int) -> np.ndarray:
        if not self.full:
            return super()._sample_slots(batch_size)
        # the K-1 oldest slots may need frames that were just overwritten: skip them
        skip = self.obs_shape[0] - 1
        return (self.pos + skip + np.random.randint(0, self.slots - skip, size=batch_size)) % self.slots

    def _unsampleable_slots(self) -> np.ndarray:
        if not self.full:
            return np.zeros(0, dtype=np.int64)
        return (self.pos + np.arange(self.obs_shape[0] - 1)) % self.slots

    def _obs_arrays(self) -> dict[str, np.ndarray]:
        return {"frames": self.frames, "chain": self.chain, "chain_key": self.chain_key,
                "keyframes": self.keyframes.data, "last_obs": self.last_obs}

    def _pools(self) -> dict[str, _ObsPool]:
        return {**super()._pools(), "keyframes": self.keyframes}

    def _clear(self) -> None:
        super()._clear()
        self.chain_key[:] = -1
        self.keyframes = _ObsPool(self.obs_shape, self.obs_dtype)


def _storage_class(observation_space: Any, memory_efficient: Optional[bool], slots: int) -> type[ReplayBuffer]:
    if memory_efficient is None:
        memory_efficient = _is_image(observation_space)
    if not memory_efficient:
        return ReplayBuffer
    if _stacks_frames(tuple(observation_space.shape), slots):
        return FrameStackReplayBuffer
    return ObservationStoreReplayBuffer


def make_replay_buffer(
    capacity: int,
    observation_space: Any,
    action_space: Any,
    num_envs: int = 1,
    device: Any = "cpu",
    memory_efficient: Optional[bool] = None,
    save_contents: bool = True,
) -> ReplayBuffer:
    """The replay buffer for these spaces: what every script builds.

    Observations are stored once (`memory_efficient`, by default for uint8 observations with at least
    2 dimensions, i.e. images): frame by frame for (K, H, W) stacks with K >= 2 in a ring of more than
    K slots per env (`FrameStackReplayBuffer`), whole otherwise (`ObservationStoreReplayBuffer`).
    Anything else, or `memory_efficient=False`, gets plain arrays (`ReplayBuffer`).
    """
    cls = _storage_class(observation_space, memory_efficient, capacity // max(num_envs, 1))
    return cls(capacity, observation_space, action_space, num_envs=num_envs, device=device, save_contents=save_contents)


class SumTree:
    """Sums of non-negative priorities over `capacity` leaves, in one float64 array.

    Node 1 is the root, node i has children 2i and 2i+1, and the leaves are nodes `size ...
    size + capacity - 1` (`size`: capacity rounded up to a power of two). Every internal node is
    always recomputed as the sum of its two children, never adjusted by a difference, so the tree
    holds no rounding drift and equals a fresh build from its leaves. `update` and `find` take
    whole batches: one numpy operation per level, no loop over the batch.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.depth = max(0, (capacity - 1).bit_length())
        self.size = 1 << self.depth
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def leaves(self) -> np.ndarray:
        """The priorities, one per leaf (a view)."""
        return self.tree[self.size : self.size + self.capacity]

    def total(self) -> float:
        return float(self.tree[1])

    def update(self, indices: np.ndarray, values: Any) -> None:
        """Set the leaves `indices` to `values` (a repeated index keeps its last value) and their ancestors' sums."""
        node = np.asarray(indices, dtype=np.int64).reshape(-1) + self.size
        self.tree[node] = values
        if len(node) == 1:  # one leaf (an add with one env): numpy's per-call cost would be most of the time
            i, tree = int(node[0]), self.tree
            while i > 1:
                i >>= 1
                tree[i] = tree[2 * i] + tree[2 * i + 1]
            return
        for _ in range(self.depth):
            # a parent listed twice gets the same sum twice: its children are final by now
            node >>= 1
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """For each value v in [0, total), the leaf i whose interval [sum(p[:i]), sum(p[:i+1])) holds v.

        A leaf of priority 0 is never returned while the total is positive, also when rounding
        puts v at or past the end of a subtree.
        """
        value = np.array(prefix_sums, dtype=np.float64)
        node = np.ones(len(value), dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.tree[left]
            go_right = (left_sum <= 0) | ((value >= left_sum) & (self.tree[left + 1] > 0))
            value -= left_sum * go_right
            node = left + go_right
        return node - self.size


class PrioritizedSamples(NamedTuple):
    """A prioritized batch: the transitions (with `n_step` returns), the discount each one's
    bootstrap takes (gamma**m for an m-step return), the importance-sampling weights, and the
    buffer indices that `update_priorities` takes back."""

    observations: "torch.Tensor"
    actions: "torch.Tensor"
    next_observations: "torch.Tensor"
    terminations: "torch.Tensor"
    rewards: "torch.Tensor"
    discounts: "torch.Tensor"
    weights: "torch.Tensor"
    indices: np.ndarray


class PrioritizedReplayBuffer:
    """Proportional prioritized replay (Schaul et al. 2016) over any storage variant, with optional
    n-step returns: what rainbow_atari.py and `dqn.py --prioritized` use.

        rb = PrioritizedReplayBuffer(make_replay_buffer(...), alpha=0.5, n_step=3, gamma=0.99)
        rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)
        data = rb.sample(batch_size, beta)                # data.weights, data.indices, data.discounts
        rb.update_priorities(data.indices, td_errors)     # |td| + eps, to the power alpha

    Transition i (slot, env; index slot * num_envs + env) is drawn with probability p_i / sum(p),
    p_i = (|td_i| + eps) ** alpha; a new transition gets the largest priority seen so far. The
    batch is stratified: one draw in each of `batch_size` equal segments of the total, as CleanRL's
    rainbow_atari.py. Weights are (N * P(i)) ** -beta divided by the batch's largest (CleanRL's
    normalisation), N the transitions stored. Slots the storage cannot sample (the oldest frames of
    a full frame-stack ring) keep priority 0.

    n-step returns are built at sampling time from the one-step transitions stored (so the
    memory-efficient storages keep each frame once): up to n transitions of the same env,
    stopping after an episode end (termination or truncation) or at the newest transition;
    `terminations` is 1 when a termination was reached, `next_observations` is the observation
    after the last transition used, and `discounts` is gamma ** (transitions used).

    The checkpoint (`state_dict`) is the storage's, plus the sum tree, the episode ends and the
    largest priority, so a resumed run samples exactly what an uninterrupted one would.
    """

    def __init__(self, storage: ReplayBuffer, alpha: float, eps: float = 1e-6, n_step: int = 1, gamma: float = 0.99) -> None:
        if not 0 <= alpha <= 1 or n_step < 1 or eps < 0:
            raise ValueError(f"prioritized replay needs 0 <= alpha <= 1, eps >= 0 and n_step >= 1 (got {alpha}, {eps}, {n_step})")
        self.storage, self.alpha, self.eps, self.n_step, self.gamma = storage, alpha, eps, n_step, gamma
        self.tree = SumTree(storage.slots * storage.num_envs)
        self.episode_ends = np.zeros((storage.slots, storage.num_envs), dtype=bool)
        self.max_priority = 1.0

    def __len__(self) -> int:
        return len(self.storage)

    @property
    def num_envs(self) -> int:
        return self.storage.num_envs

    @property
    def slots(self) -> int:
        return self.storage.slots

    @property
    def pos(self) -> int:
        return self.storage.pos

    @property
    def adds(self) -> int:
        return self.storage.adds

    @property
    def save_contents(self) -> bool:
        return self.storage.save_contents

    def ring_array_names(self) -> set[str]:
        """The storage's slot-indexed arrays and the episode ends (the sum tree is held whole)."""
        return self.storage.ring_array_names() | {"episode_ends"}

    @property
    def nbytes(self) -> int:
        return self.storage.nbytes + self.tree.tree.nbytes + self.episode_ends.nbytes

    def _block_unsampleable(self) -> None:
        slots = self.storage._unsampleable_slots()
        if len(slots):
            n = self.num_envs
            self.tree.update((slots[:, None] * n + np.arange(n)).ravel(), 0.0)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminations: np.ndarray,
        truncations: np.ndarray,
    ) -> None:
        """Store one vector-env step (as `ReplayBuffer.add`) with the largest priority so far."""
        p, n = self.storage.pos, self.num_envs
        self.storage.add(obs, next_obs, actions, rewards, terminations, truncations)
        ends = np.asarray(terminations, dtype=bool).reshape(n) | np.asarray(truncations, dtype=bool).reshape(n)
        self.episode_ends[p] = ends
        self.tree.update(p * n + np.arange(n), self.max_priority**self.alpha)
        self._block_unsampleable()

    def sample(self, batch_size: int, beta: float) -> PrioritizedSamples:
        """A stratified batch drawn by priority with the global numpy RNG, with its IS weights."""
        total = self.tree.total()
        if len(self) == 0 or total <= 0:
            raise ValueError("cannot sample from an empty replay buffer")
        targets = (np.arange(batch_size) + np.random.uniform(size=batch_size)) * (total / batch_size)
        indices = self.tree.find(np.minimum(targets, np.nextafter(total, 0)))
        slot, env = np.divmod(indices, self.num_envs)
        probs = self.tree.tree[indices + self.tree.size] / total
        weights = (len(self) * probs) ** -beta
        weights = (weights / weights.max()).astype(np.float32)
        one_step = self.storage._gather(slot, env)
        to = self.storage._to_device
        if self.n_step == 1:
            rewards, terminations, next_observations = one_step.rewards, one_step.terminations, one_step.next_observations
            discounts = to(np.full(batch_size, self.gamma, dtype=np.float32))
        else:
            reward, discount, last, done = self._n_step_returns(slot, env)
            rewards, terminations, discounts = to(reward), to(done.astype(np.float32)), to(discount)
            next_observations = to(self.storage._observation_pairs(last, env)[1])
        return PrioritizedSamples(
            observations=one_step.observations,
            actions=one_step.actions,
            next_observations=next_observations,
            terminations=terminations,
            rewards=rewards,
            discounts=discounts,
            weights=to(weights),
            indices=indices,
        )

    def _n_step_returns(self, slot: np.ndarray, env: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(discounted reward sum, gamma ** steps used, last slot used, terminated) of each sampled transition."""
        st = self.storage
        ahead = (st.pos - 1 - slot) % st.slots  # transitions stored after this one in its env's column
        reward = np.zeros(len(slot), dtype=np.float64)
        discount = np.ones(len(slot), dtype=np.float64)
        last, done = slot.copy(), np.zeros(len(slot), dtype=bool)
        going = np.ones(len(slot), dtype=bool)
        for k in range(self.n_step):
            use = going & (k <= ahead)
            s = (slot + k) % st.slots
            reward += np.where(use, discount * st.rewards[s, env], 0.0)
            discount = np.where(use, discount * self.gamma, discount)
            last = np.where(use, s, last)
            done |= use & st.terminations[s, env]
            going = use & ~self.episode_ends[s, env]
        return reward.astype(np.float32), discount.astype(np.float32), last, done

    def update_priorities(self, indices: np.ndarray, priorities: Any) -> None:
        """New priorities for sampled transitions: (|priority| + eps) ** alpha (e.g. |TD error|)."""
        priorities = np.abs(np.asarray(priorities, dtype=np.float64).reshape(-1)) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices, priorities**self.alpha)
        self._block_unsampleable()

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """The storage's state dict plus the sum tree, episode ends, largest priority and settings
        (flat, so tools that read a checkpoint's plain buffer also read this one)."""
        import torch

        state = self.storage.state_dict()
        state["prioritized"] = {"alpha": self.alpha, "eps": self.eps, "n_step": self.n_step, "gamma": self.gamma}
        if state["contents_saved"]:
            state.update(
                priority_tree=torch.from_numpy(self.tree.tree),
                episode_ends=torch.from_numpy(self.episode_ends[: self.storage._filled]),
                max_priority=self.max_priority,
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` saved (the same settings and storage layout are required)."""
        settings = {"alpha": self.alpha, "eps": self.eps, "n_step": self.n_step, "gamma": self.gamma}
        if state.get("prioritized") != settings:
            raise ValueError(f"the saved replay buffer is not a prioritized one with {settings} (saved: {state.get('prioritized')})")
        self.storage.load_state_dict(state)
        self.tree.tree[:] = 0
        self.episode_ends[:] = False
        self.max_priority = 1.0
        if state["contents_saved"]:
            self.tree.tree[:] = state["priority_tree"].numpy()
            ends = state["episode_ends"].numpy()
            self.episode_ends[: len(ends)] = ends
            self.max_priority = float(state["max_priority"])
