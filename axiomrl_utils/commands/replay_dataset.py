"""`axiomrl export RUN --replay-buffer DIR`: an off-policy run's saved replay buffer as a Minari dataset.

    run = open_run("runs/dqn__CartPole-v1__seed1__...", checkpoint="latest")
    rb = saved_replay_buffer(run)                        # the ReplayBuffer the checkpoint holds, rebuilt
    episodes, notes = buffer_episodes(rb)                # its transitions, oldest first, regrouped into episodes

Transitions are regrouped per environment column in the order they were added. A buffer stores
terminations but not truncations, so an episode also ends where a transition's next observation is
not the observation stored after it (a reset happened: a time limit, or a resume). The metadata says
which episodes are incomplete: the oldest of a full ring lost its start, the newest is cut where the
buffer ends (marked truncated). numpy here; torch and minari inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from axiomrl_utils import UsageError, __version__
from axiomrl_utils.commands.dataset import Episode, check_spaces, check_target, require_data_extra, write_dataset
from axiomrl_utils.commands.trained_run import LoadedRun
from axiomrl_utils.replay_buffer import FrameStackReplayBuffer, ObservationStoreReplayBuffer, ReplayBuffer
from axiomrl_utils.replay_store import is_manifest, resolve_state

BUFFER_KEYS = {"format", "capacity", "num_envs", "contents_saved", "obs_shape", "action_shape"}


def find_buffer_state(run: LoadedRun) -> tuple[str, dict[str, Any]]:
    """(name, state dict) of the replay buffer in the checkpoint, or UsageError naming why there is none usable."""
    found = [(k, v) for k, v in run.payload.items() if is_manifest(v) or (isinstance(v, dict) and BUFFER_KEYS <= set(v))]
    if not found:
        raise UsageError(
            f"{run.checkpoint_name} holds no replay buffer ({run.metadata['algo']} is not an off-policy script "
            "that saves one); export the buffer of a dqn, c51, dqn_atari, sac, td3 or ddpg run"
        )
    name, state = found[0]
    if is_manifest(state):
        state = resolve_state(state, run.checkpoint.parent, run.checkpoint_name)
    if state.get("contents_missing"):
        raise UsageError(f"{state['contents_missing']}; export the buffer from checkpoints/latest.pt (--checkpoint latest)")
    if not state["contents_saved"]:
        raise UsageError(
            f"{run.checkpoint_name} was saved without its replay buffer's contents (--no-save-buffer); "
            "export a run trained with --save-buffer (the default)"
        )
    return name, state


def buffer_from_state(state: dict[str, Any]) -> ReplayBuffer:
    """The buffer a state dict describes, rebuilt with the storage class that saved it and loaded."""
    cls = FrameStackReplayBuffer if state.get("frame_stacked") else ObservationStoreReplayBuffer if state["memory_efficient"] else ReplayBuffer
    # the buffer only reads .shape and .dtype of the spaces
    obs_space = SimpleNamespace(shape=tuple(state["obs_shape"]), dtype=np.dtype(state["obs_dtype"]))
    action_space = SimpleNamespace(shape=tuple(state["action_shape"]), dtype=np.dtype(state["action_dtype"]))
    rb = cls(state["capacity"], obs_space, action_space, num_envs=state["num_envs"])
    rb.load_state_dict(state)
    return rb


def saved_replay_buffer(run: LoadedRun) -> ReplayBuffer:
    """The replay buffer in the run's checkpoint (UsageError when there is none with contents)."""
    return buffer_from_state(find_buffer_state(run)[1])


def chronological_slots(rb: ReplayBuffer) -> np.ndarray:
    """The ring's filled slots, oldest first (a frame-stack ring's K-1 oldest cannot be rebuilt: left out)."""
    if not rb.full:
        return np.arange(rb.pos)
    order = (rb.pos + np.arange(rb.slots)) % rb.slots
    return order[rb.obs_shape[0] - 1 :] if rb.frame_stacked else order


def buffer_episodes(rb: ReplayBuffer) -> tuple[list[Episode], dict[str, Any]]:
    """The buffer's transitions, oldest first per env column, regrouped into episodes; and notes for the metadata."""
    slots = chronological_slots(rb)
    episodes: list[Episode] = []
    start_unknown, cut_at_end = [], []
    for env in range(rb.num_envs):
        if len(slots) == 0:
            continue
        # the buffer's own reader gives back each (observation, next observation) pair exactly
        obs, next_obs = rb._observation_pairs(slots, np.full(len(slots), env))
        actions, rewards = rb.actions[slots, env], rb.rewards[slots, env]
        terminated = rb.terminations[slots, env].astype(bool)
        resets = np.array([not np.array_equal(next_obs[t], obs[t + 1]) for t in range(len(slots) - 1)] + [True], dtype=bool)
        ends = np.flatnonzero(terminated | resets)
        begin = 0
        for end in ends:
            truncated = np.zeros(end + 1 - begin, dtype=bool)
            truncated[-1] = not terminated[end]
            if rb.full and begin == 0:
                start_unknown.append(len(episodes))
            if end == len(slots) - 1 and not terminated[end]:
                cut_at_end.append(len(episodes))
            episodes.append(
                Episode(
                    observations=np.concatenate([obs[begin : end + 1], next_obs[end : end + 1]]),
                    actions=actions[begin : end + 1],
                    rewards=rewards[begin : end + 1].astype(np.float64),
                    terminations=terminated[begin : end + 1],
                    truncations=truncated,
                )
            )
            begin = end + 1
    notes = {
        "episode_boundaries": (
            "terminations are stored by the buffer; truncations are not, so an episode also ends (truncated) "
            "where a transition's next observation differs from the observation stored after it (a reset)"
        ),
        "episodes_missing_their_start": start_unknown,  # the ring overwrote their first steps
        "episodes_cut_at_buffer_end": cut_at_end,  # still running when the checkpoint was saved: marked truncated
        "frame_stack_slots_left_out": int(rb.slots - len(slots)) * rb.num_envs if rb.full else 0,
    }
    return episodes, notes


def export_replay_buffer(run: LoadedRun, target: Path) -> dict[str, Any]:
    """Write the checkpoint's replay buffer to the new directory `target` as a Minari dataset."""
    require_data_extra("minari")
    target = check_target(target)
    name, state = find_buffer_state(run)
    envs = run.make_envs(1)
    try:
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        check_spaces(obs_space, action_space, "minari")
        rb = buffer_from_state(state)
        episodes, notes = buffer_episodes(rb)
        if not episodes:
            raise UsageError(f"the replay buffer in {run.checkpoint_name} is empty; export a later checkpoint")
        git = run.metadata.get("git") or {}
        meta = {
            "kind": "replay_buffer",
            "axiomrl_version": __version__,
            "run_id": run.metadata.get("run_id", run.dir.name),
            "run_dir": str(run.dir),
            "algo": run.metadata["algo"],
            "checkpoint": run.checkpoint_name,
            "global_step": run.step,
            "env_id": run.metadata["env_id"],
            "run_seed": run.metadata.get("seed"),
            "buffer": {k: state[k] for k in ("capacity", "num_envs", "memory_efficient", "obs_shape", "obs_dtype") if k in state},
            "buffer_entry": name,
            "transitions": int(sum(len(e) for e in episodes)),
            "order": "per env column, oldest transition first",
            "rewards": "as the training envs gave them (e.g. Atari: clipped, a lost life terminates)",
            "code_permalink": git.get("commit") if isinstance(git, dict) else None,
            **notes,
        }
        sizes = write_dataset(
            target, episodes, obs_space, action_space, envs.envs[0], meta, "minari",
            description=f"the replay buffer of {run.metadata['algo']} on {run.metadata['env_id']} at step {run.step} "
            f"({meta['transitions']} transitions), exported by axiomrl export --replay-buffer",
        )
    finally:
        envs.close()
    return {"path": target, "episodes": len(episodes), "transitions": meta["transitions"], "size_bytes": sizes["minari"]}
