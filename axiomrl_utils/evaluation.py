"""Evaluation: run a policy for N episodes on separate, fixed-seed environments, in parallel.

The episodes run side by side in one vector env so the policy sees one batch per step (an
evaluation of 10 episodes costs about as much as one episode). Each episode uses its own fixed
seed, the same at every evaluation, so evaluations along a run are comparable, and nothing here
draws from the global RNGs, so evaluating never changes what the agent learns.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

EVAL_SEED_OFFSET = 100_000  # far from the training seeds (seed .. seed + num_envs - 1)


def eval_seeds(seed: int, episodes: int) -> list[int]:
    """The environment seeds of a run's evaluation episodes."""
    return [seed + EVAL_SEED_OFFSET + i for i in range(episodes)]


def make_eval_envs(env_fns: list[Callable[[], Any]]) -> Any:
    """A SyncVectorEnv over the evaluation environments (same-step autoreset: no dead steps)."""
    import gymnasium as gym

    return gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def run_episodes(
    policy: Callable[[Any], Any],
    envs: Any,
    seeds: list[int],
    device: Any = "cpu",
    video_path: Optional[Path] = None,
    max_steps: int = 1_000_000,
) -> list[dict[str, Any]]:
    """Play one episode per sub-environment of `envs` and return [{return, length, seed}, ...].

    `policy` maps a float32 observation batch (a torch tensor on `device`) to an action batch.
    Returns are the raw rewards the evaluation envs give (no training-time normalisation or clipping).
    With `video_path`, the first environment (created with render_mode="rgb_array") is recorded.
    """
    import torch

    n = envs.num_envs
    obs, _ = envs.reset(seed=seeds)
    returns = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    running = np.ones(n, dtype=bool)
    frames = []
    with torch.inference_mode():
        for _ in range(max_steps):
            if video_path is not None and running[0]:
                frames.append(envs.envs[0].render())
            actions = policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()
            obs, rewards, terminations, truncations, _ = envs.step(actions)
            returns += np.where(running, rewards, 0.0)
            lengths += running
            running &= ~(terminations | truncations)
            if not running.any():
                break
    if video_path is not None and frames:
        write_video(frames, video_path, fps=envs.metadata.get("render_fps") or 30)
    return [{"return": float(r), "length": int(l), "seed": s} for r, l, s in zip(returns, lengths, seeds)]


def write_video(frames: list[np.ndarray], path: Path, fps: int = 30) -> None:
    """Encode RGB frames as an MP4 (the `video` extra: moviepy + ffmpeg), one video frame per frame given."""
    from moviepy.video.io.ffmpeg_writer import FFMPEG_VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    height, width = frames[0].shape[:2]
    # Not ImageSequenceClip.write_videofile: it samples the clip at t = i / fps and loses the last
    # frame when the float duration rounds down (323 frames at 50 fps encode as 322).
    with FFMPEG_VideoWriter(str(tmp), (width, height), fps, codec="libx264") as writer:
        for frame in frames:
            writer.write_frame(np.asarray(frame, dtype=np.uint8))
    tmp.replace(path)


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
