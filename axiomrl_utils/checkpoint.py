"""Checkpoint files: what goes into one, atomic saving, loading with fallback, latest/best/pruning.

A checkpoint is one `torch.save`d dict. The script's named objects are stored under their names
(state dicts for anything with `state_dict()`, values as they are), so `torch.load(path)["agent"]`
is the agent's state dict as in CleanRL. The reserved key `_axiomrl` holds what the run machinery
needs to continue exactly: step, RNG states, the pickled environments, run state and config.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

from axiomrl_utils.jsonl import atomic_file

RESERVED = "_axiomrl"
FORMAT_VERSION = 1
STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(Exception):
    """A checkpoint file that cannot be read (truncated, corrupt, or not an AxiomRL checkpoint)."""


def state_nbytes(obj: Any) -> int:
    """Memory held by the arrays and tensors inside `obj` (a cheap proxy for its size on disk)."""
    if hasattr(obj, "nbytes"):
        return int(obj.nbytes)
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, dict):
        return sum(state_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(v) for v in obj)
    return 0


def vector_env_state(envs: Any) -> tuple[Optional[bytes], str]:
    """Pickle a vector env with its sub-environments' full state, or say why that is not possible.

    Returns (blob, reason): blob is None when the state cannot be captured faithfully. MuJoCo and
    ALE envs are saved with their simulator state (`axiomrl_utils.env_state`); other `EzPickle`
    envs pickle by re-running their constructor, which silently loses their state, so they count
    as not restorable rather than as restored wrongly.
    """
    from axiomrl_utils import env_state

    return env_state.dumps(envs)


def restore_vector_env(envs: Any, blob: bytes) -> None:
    """Replace the state of `envs` in place with the pickled one, so the script's reference stays valid."""
    from axiomrl_utils import env_state

    restored = env_state.loads(blob)
    if type(restored) is not type(envs):
        restored = _with_per_env_statistics(restored, envs)
    if type(restored) is not type(envs):
        raise CheckpointError(
            f"the checkpoint's environments are a {type(restored).__name__}, this script builds a {type(envs).__name__}"
        )
    envs.close()
    vars(envs).update(vars(restored))


def _with_per_env_statistics(restored: Any, envs: Any) -> Any:
    """An older checkpoint's envs, recorded by gymnasium's vector RecordEpisodeStatistics, rebuilt as
    the per-env recorders the script now uses (dqn.py, c51.py), each carrying its env's running
    episode sums, so that a run paused before the change resumes exactly. Anything else as it was."""
    import gymnasium as gym

    per_env = gym.wrappers.RecordEpisodeStatistics
    if type(restored) is not gym.wrappers.vector.RecordEpisodeStatistics or type(restored.env) is not type(envs):
        return restored
    inner = restored.env
    live = getattr(envs, "envs", None)
    if live is None or len(live) != len(inner.envs):
        return restored
    if not all(type(new) is per_env and type(new.env) is type(old) for new, old in zip(live, inner.envs)):
        return restored
    for i, old in enumerate(inner.envs):
        recorder = per_env(old, buffer_length=restored.return_queue.maxlen, stats_key=restored._stats_key)
        recorder.episode_returns = float(restored.episode_returns[i])
        recorder.episode_lengths = int(restored.episode_lengths[i])
        recorder.episode_start_time = float(restored.episode_start_times[i])
        inner.envs[i] = recorder
    return inner


def build_payload(
    objects: dict[str, Any], envs: Any, meta: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Assemble a checkpoint dict and the `resume_state` summary of what it holds.

    `objects` maps names to modules/optimizers/buffers (anything with `state_dict`) or plain values.
    """
    from axiomrl_utils.reproducibility import get_rng_state

    payload: dict[str, Any] = {}
    modules, values = {}, []
    for name, obj in objects.items():
        if name == RESERVED:
            raise ValueError(f"{RESERVED!r} is reserved for the run machinery")
        if hasattr(obj, "state_dict"):
            payload[name] = obj.state_dict()
            modules[name] = state_nbytes(payload[name])
        else:
            payload[name] = obj
            values.append(name)
    env_blob, env_reason = (None, "no environments given") if envs is None else vector_env_state(envs)
    payload[RESERVED] = {
        "format_version": FORMAT_VERSION,
        **meta,
        "rng": get_rng_state(),
        "envs": env_blob,
        "envs_reason": env_reason,
    }
    resume_state = {
        "modules": modules,
        "values": values,
        "rng": ["python", "numpy", "torch"],
        "envs": env_blob is not None,
        "envs_reason": env_reason or None,
    }
    return payload, resume_state


def save_atomic(payload: dict[str, Any], path: Path) -> int:
    """torch.save to a temp file, fsync, then rename over `path`; returns the file size in bytes.

    A reader (or a resume after `kill -9`) sees the old file or the complete new one, never a
    partial write.
    """
    import torch

    with atomic_file(path, binary=True, durable=True) as f:
        torch.save(payload, f)
    return path.stat().st_size


def link_atomic(source: Path, target: Path) -> None:
    """Make `target` a copy of `source` atomically: a hard link where possible, else a file copy."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def step_files(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """The periodic checkpoint files of a run, oldest first, as (step, path)."""
    found = []
    for path in checkpoint_dir.glob("step_*.pt"):
        match = STEP_FILE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def prune(checkpoint_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` step files; latest.pt and best.pt are separate files and stay."""
    files = step_files(checkpoint_dir)
    removed = [path for _, path in files[: max(0, len(files) - keep)]]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def load(path: Path, map_location: Any = "cpu", replay: bool = True) -> dict[str, Any]:
    """Load an AxiomRL checkpoint; raises CheckpointError naming the file when it cannot be used.

    A replay buffer kept in the run's replay store comes back as its state dict (`replay=True`),
    read from the chunk files beside the checkpoint (its manifest moves to the reserved entry's
    `replay_store`), or stays a small manifest (`replay=False`: evaluation and export, which do
    not need it). Checkpoints hold pickled Python objects (RNG
    states, environments), so only load files you trust.
    """
    import torch

    from axiomrl_utils.replay_store import MANIFEST_KEY, resolve

    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"{path} does not exist") from None
    except Exception as e:
        raise CheckpointError(f"{path} cannot be read ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(payload, dict) or RESERVED not in payload:
        raise CheckpointError(f"{path} is not an AxiomRL checkpoint")
    if replay:
        manifests = resolve(payload, Path(path).parent, Path(path).name)
        if manifests:
            payload[RESERVED][MANIFEST_KEY] = manifests
    return payload


def load_newest(checkpoint_dir: Path, candidates: Optional[Iterable[Path]] = None) -> tuple[Path, dict[str, Any]]:
    """Load latest.pt, or else the newest step file that loads, warning about each one skipped.

    A truncated or corrupt latest.pt (a disk filled up, a copy cut short) therefore costs one
    checkpoint interval, not the run. Raises CheckpointError when nothing loads.
    """
    if candidates is None:
        candidates = [checkpoint_dir / "latest.pt"] + [p for _, p in reversed(step_files(checkpoint_dir))]
    tried = []
    for path in candidates:
        if not path.exists():
            continue
        try:
            return path, load(path)
        except CheckpointError as e:
            warnings.warn(f"{e}; falling back to an older checkpoint", stacklevel=2)
            tried.append(path.name)
    if tried:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir} can be read (tried {', '.join(tried)})")
    raise CheckpointError(f"{checkpoint_dir} holds no checkpoint")


def load_into(payload: dict[str, Any], objects: dict[str, Any]) -> None:
    """Load the saved state dicts into the given objects (modules, optimizers, buffers) by name."""
    for name, obj in objects.items():
        if name not in payload:
            raise CheckpointError(
                f"the checkpoint has no {name!r} (it holds {', '.join(k for k in payload if k != RESERVED)})"
            )
        obj.load_state_dict(payload[name])
