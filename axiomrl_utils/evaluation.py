"""Evaluation: run a policy for N episodes on separate, fixed-seed environments, in parallel.

The episodes run side by side in one vector env so the policy sees one batch per step (an
evaluation of 10 episodes costs about as much as one episode). Each episode uses its own fixed
seed, the same at every evaluation, so evaluations along a run are comparable, and nothing here
draws from the global RNGs, so evaluating never changes what the agent learns.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

EVAL_SEED_OFFSET = 100_000  # far from the training seeds (seed .. seed + num_envs - 1)


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The environment seeds of a run's evaluation episodes."""
    return [seed + EVAL_SEED_OFFSET + i for i in range(episodes)]


def make_eval_envs(env_fns: list[Callable[[], Any]]) -> Any:
    """A SyncVectorEnv over the evaluation environments (`run_episodes` resets it and steps its `envs`)."""
    import gymnasium as gym

    return gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def run_episodes(
    policy: Callable[[Any], Any],
    envs: Any,
    seeds: list[int],
    device: Any = "cpu",
    video_path: Optional[Path] = None,
    max_steps: int = 1_000_000,
    recorder: Optional[Any] = None,
) -> list[dict[str, Any]]:
    """Play one episode per sub-environment of `envs` (a SyncVectorEnv) and return [{return, length, seed}, ...].

    `policy` maps a float32 observation batch (a torch tensor on `device`) to an action batch.
    A recurrent policy (one with `initial_state(batch_size)`, see `initial_state`) is called as
    `policy(obs, *state) -> (actions, *state)`, each episode starting from the initial state.
    Returns are the raw rewards the evaluation envs give (no training-time normalisation or clipping).
    With `video_path`, the first environment (created with render_mode="rgb_array") is recorded.
    With `recorder` (`axiomrl eval --record`), `recorder.reset(obs, infos)` sees the reset and
    `recorder.step(i, action, reward, terminated, truncated, info, next_obs)` every step of episode i.
    """
    import torch

    if video_path is not None:
        # rgb_array frames need no display; without this SDL prints "error: XDG_RUNTIME_DIR ..." on headless machines
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    n = envs.num_envs
    obs, reset_infos = envs.reset(seed=seeds)
    obs = np.array(obs)  # our own copy: each episode's row is updated as its environment steps
    state = initial_state(policy, n, device)  # a recurrent policy's memory: one row per episode
    if recorder is not None:
        recorder.reset(obs, reset_infos)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    video = VideoWriter(video_path, fps=envs.metadata.get("render_fps") or 30) if video_path is not None else None
    try:
        with torch.inference_mode():
            for _ in range(max_steps):
                if video is not None and running[0]:
                    video.write(envs.envs[0].render())
                # The whole batch goes through the policy (finished rows keep their last observation),
                # so an episode's actions never depend on which others are still running.
                obs_batch = torch.as_tensor(obs, dtype=torch.float32, device=device)
                if state is None:
                    actions = policy(obs_batch).cpu().numpy()
                else:
                    actions, *state = policy(obs_batch, *state)
                    actions = actions.cpu().numpy()
                # Only the running episodes step, each on its own environment: envs.step() would also
                # step and auto-reset the finished ones, about twice the env work of a 10-episode eval.
                for i in np.flatnonzero(running):
                    obs[i], reward, terminated, truncated, info = envs.envs[i].step(actions[i])
                    if recorder is not None:
                        recorder.step(i, actions[i], reward, terminated, truncated, info, obs[i])
                    returns[i] += reward
                    lengths[i] += 1
                    running[i] = not (terminated or truncated)
                if not running.any():
                    break
    except BaseException:
        if video is not None:
            video.discard()
        raise
    if video is not None:
        video.close()
    return [{"return": float(r), "length": int(l), "seed": s} for r, l, s in zip(returns, lengths, seeds)]


def initial_state(policy: Any, batch_size: int, device: Any = "cpu") -> Optional[tuple]:
    """The state a recurrent policy starts `batch_size` episodes from, on `device`; None for a feed-forward one.

    A recurrent policy (e.g. ppo_lstm.py's `RecurrentPolicy`) has `initial_state(batch_size)`
    returning a tuple of tensors, and is called as `policy(obs, *state) -> (actions, *state)`.
    """
    make = getattr(policy, "initial_state", None)
    if make is None:
        return None
    return tuple(s.to(device) for s in make(batch_size))


class VideoWriter:
    """An MP4 written frame by frame (the `video` extra: moviepy + ffmpeg), so an episode never sits in memory.

    Frames go to a hidden temp file next to `path`, which `close` renames into place (readers never
    see half a video) and `discard` deletes. Nothing is created before the first frame.
    """

    def __init__(self, path: Path, fps: int = 30) -> None:
        self.path = Path(path)
        self.fps = fps
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp.mp4")
        self._writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            # Not ImageSequenceClip.write_videofile: it samples the clip at t = i / fps and loses the
            # last frame when the float duration rounds down (323 frames at 50 fps encode as 322).
            from moviepy.video.io.ffmpeg_writer import FFMPEG_VideoWriter

            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            self._writer = FFMPEG_VideoWriter(str(self.tmp), (width, height), self.fps, codec="libx264")
        self._writer.write_frame(np.asarray(frame, dtype=np.uint8))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.tmp.replace(self.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.tmp.unlink(missing_ok=True)


def summarize(episodes: list[dict[str, Any]]) -> dict[str, float]:
    """The eval/* metrics of a list of episodes: return mean/std, length mean."""
    returns = np.array([e["return"] for e in episodes], dtype=np.float64)
    lengths = np.array([e["length"] for e in episodes], dtype=np.float64)
    return {
        "eval/return_mean": float(returns.mean()),
        "eval/return_std": float(returns.std()),
        "eval/length_mean": float(lengths.mean()),
    }


def episode_rows(
    episodes: list[dict[str, Any]], global_step: int, tag: str, checkpoint: Optional[str], deterministic: bool
) -> list[dict[str, Any]]:
    """eval_episodes.jsonl lines for the given episodes."""
    now = time.time()
    return [
        {
            "global_step": global_step,
            "episode": i,
            "return": e["return"],
            "length": e["length"],
            "seed": e["seed"],
            "deterministic": deterministic,
            "tag": tag,
            "checkpoint": checkpoint,
            "time": now,
        }
        for i, e in enumerate(episodes)
    ]
