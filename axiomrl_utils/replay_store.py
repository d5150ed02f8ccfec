"""A run's replay buffers stored once on disk, beside its checkpoints, and written incrementally.

A checkpoint does not carry an off-policy run's replay buffer. The buffer's arrays are cut into
chunks of rows, each chunk kept as a `.npy` file in `checkpoints/replay/<name>/`, and
the checkpoint holds a small manifest instead: which chunk files make up each array, plus the
buffer's scalars (position, layout, settings). A save writes only the chunks that changed since the
previous one: for the ring arrays (one row per slot) the buffer's add counter says which slots were
written; the arrays held whole (side stores, the sum tree, free lists) are hashed chunk by chunk.
Files never change once written (a new name for new rows, the hash of the contents for the arrays
held whole), so every checkpoint that shares a chunk shares its file.

Atomic as a whole: chunk files are written (temp file, fsync, rename) before the checkpoint that
names them, and a file is deleted only once no checkpoint still on disk names it, after latest.pt
points at the new save (`collect`, called by the run's CheckpointStore). A kill at any instant
therefore leaves latest.pt and every chunk it names. The kept step files share all but the rows
added between them, so a run's disk use is about one buffer plus the models; best.pt, when it is
older than every kept step file, still loads for evaluation and export, and says that its buffer
is gone when asked for it (`resolve`).

    store = ReplayStore(run_dir / "checkpoints" / "replay")
    payload["rb"], stats = store.stage("rb", rb)    # before the checkpoint that names the chunks
    ...write the checkpoint, point latest.pt at it, prune old step files...
    store.adopt("rb", payload["rb"])                # the next save writes what changes after it
    store.collect(manifests_of_the_kept_checkpoints)
    manifests = resolve(payload, checkpoint_dir)    # on load: manifests -> the buffers' state dicts
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from axiomrl_utils.jsonl import TEMP_FILE, atomic_file

DIRECTORY = "replay"
MANIFEST_KEY = "replay_store"
MANIFEST_VERSION = 1
CHUNK_BYTES = 8 * 1024 * 1024  # a chunk: a few MB, so a save rewrites little beyond the new rows
MAX_CHUNK_ROWS = 1 << 16  # small-row arrays (rewards, flags) still come in several chunks


def is_manifest(value: Any) -> bool:
    """Whether a checkpoint entry is a stored buffer's manifest (not the buffer's state dict itself)."""
    return isinstance(value, dict) and value.get(MANIFEST_KEY) is not None and "arrays" in value


def storable(obj: Any) -> bool:
    """Whether `obj` is a replay buffer this store can hold (one that saves its contents)."""
    return hasattr(obj, "ring_array_names") and getattr(obj, "save_contents", False)


def _chunk_rows(row_bytes: int) -> int:
    rows = max(1, CHUNK_BYTES // max(row_bytes, 1))
    return min(1 << (rows.bit_length() - 1), MAX_CHUNK_ROWS)


def _as_numpy(value: Any) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)


def _digest(chunk: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{chunk.dtype.str}{chunk.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(chunk)).cast("B"))
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReplayStore:
    """The chunk files of a run's replay buffers (one subdirectory per declared buffer name)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._base: dict[str, dict[str, Any]] = {}  # name -> the manifest latest.pt holds
        self._pending: list[Path] = []  # files staged for a checkpoint not written yet

    def adopt(self, name: str, manifest: dict[str, Any]) -> None:
        """Take `manifest` (latest.pt's: just committed, or loaded by a resume) as the one the next
        save builds on. Until then a save compares with the previous one, whose files stay."""
        self._base[name] = manifest
        self._pending.clear()

    def stage(self, name: str, buffer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write the chunks of `buffer` that the last committed save does not hold; return the
        manifest that names all of them (for the checkpoint) and what the save cost."""
        started = time.perf_counter()
        state = buffer.state_dict()
        ring = set(buffer.ring_array_names())
        previous = self._base.get(name)
        changed = self._changed_slots(previous, buffer)
        directory = self.dir / name
        directory.mkdir(parents=True, exist_ok=True)
        scalars, arrays = {}, {}
        token = secrets.token_hex(6)  # never reused: a file name always means the same contents
        written_bytes = total_bytes = 0
        new_files: list[Path] = []
        try:
            for key, value in state.items():
                if not (hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1):
                    scalars[key] = value
                    continue
                array = _as_numpy(value)
                rows = _chunk_rows(int(array[:1].nbytes) or array.dtype.itemsize)
                old = (previous or {}).get("arrays", {}).get(key, {})
                old_chunks = {tuple(c[1:]): c[0] for c in old.get("chunks", [])} if old.get("dtype") == array.dtype.str else {}
                chunks = []
                for start in range(0, len(array), rows):
                    stop = min(start + rows, len(array))
                    reuse = old_chunks.get((start, stop)) if key in ring else None
                    if reuse is not None and changed is not None and not changed[start:stop].any():
                        chunks.append([reuse, start, stop])
                        continue
                    chunk = array[start:stop]
                    # rows an add wrote get a fresh name (hashing them would cost as much as writing them);
                    # arrays held whole are named by their contents, so an unchanged one is not rewritten
                    file = f"{key}.{start}.{token}.npy" if key in ring else f"{key}.{_digest(chunk)}.npy"
                    if not (directory / file).exists():
                        with atomic_file(directory / file, binary=True, durable=True) as f:
                            np.save(f, chunk, allow_pickle=False)
                        new_files.append(directory / file)
                        written_bytes += chunk.nbytes
                    chunks.append([file, start, stop])
                total_bytes += array.nbytes
                arrays[key] = {"dtype": array.dtype.str, "shape": list(array.shape), "ring": key in ring, "chunks": chunks}
            if new_files:
                _fsync_dir(directory)  # the new names are on disk before a checkpoint refers to them
        except BaseException:
            for path in new_files:  # a failed save (a full disk) gives back what it took
                path.unlink(missing_ok=True)
            raise
        self._pending += new_files
        manifest = {
            MANIFEST_KEY: MANIFEST_VERSION,
            "directory": f"{DIRECTORY}/{name}",
            "adds": int(buffer.adds),
            "pos": int(buffer.pos),
            "slots": int(buffer.slots),
            "state": scalars,
            "arrays": arrays,
        }
        stats = {
            "bytes": total_bytes,
            "bytes_written": written_bytes,
            "chunks_written": len(new_files),
            "seconds": round(time.perf_counter() - started, 4),
        }
        return manifest, stats

    def _changed_slots(self, previous: Optional[dict[str, Any]], buffer: Any) -> Optional[np.ndarray]:
        """Per slot, whether an add since the `previous` save may have written it (None: assume all)."""
        if previous is None or previous["slots"] != buffer.slots:
            return None
        added = int(buffer.adds) - int(previous["adds"])
        if added < 0:
            return None
        changed = np.zeros(buffer.slots, dtype=bool)
        # an add writes its own slot and may rewrite the one before it (where the next observation goes)
        if added + 2 >= buffer.slots:
            changed[:] = True
        else:
            changed[(int(previous["pos"]) - 1 + np.arange(added + 2)) % buffer.slots] = True
        return changed

    def discard_pending(self) -> None:
        """The checkpoint that was to name the staged chunks failed: delete them (a full disk gets
        its space back now, not at the next save)."""
        for path in self._pending:
            path.unlink(missing_ok=True)
        self._pending.clear()

    def collect(self, manifests: list[dict[str, Any]]) -> int:
        """Delete every chunk file (and killed save's temp file) that none of `manifests` names: the
        checkpoints still on disk. Call it only once latest.pt names the newest manifest."""
        keep = {(m["directory"], c[0]) for m in manifests for a in m["arrays"].values() for c in a["chunks"]}
        removed = 0
        if not self.dir.is_dir():
            return removed
        for directory in self.dir.iterdir():
            if not directory.is_dir():
                continue
            relative = f"{DIRECTORY}/{directory.name}"
            for path in directory.iterdir():
                stale_temp = path.name.startswith(".") and TEMP_FILE.match(path.name)
                if stale_temp or (path.suffix == ".npy" and (relative, path.name) not in keep):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def disk_bytes(self) -> int:
        """Bytes the chunk files take on disk now."""
        return sum(p.stat().st_size for p in self.dir.rglob("*.npy")) if self.dir.is_dir() else 0


def resolve_state(manifest: dict[str, Any], checkpoint_dir: Path, checkpoint_name: str = "this checkpoint") -> dict[str, Any]:
    """The buffer state dict a manifest describes, read from its chunk files (torch tensors, as
    `state_dict()` gives them). When a chunk is gone (a later save replaced it), the state says so:
    `contents_saved` False and `contents_missing` with the reason."""
    import torch

    directory = Path(checkpoint_dir) / manifest["directory"]
    state = dict(manifest["state"])
    try:
        for key, spec in manifest["arrays"].items():
            array = np.empty(tuple(spec["shape"]), dtype=np.dtype(spec["dtype"]))
            for file, start, stop in spec["chunks"]:
                array[start:stop] = np.load(directory / file, mmap_mode="r", allow_pickle=False)
            state[key] = torch.from_numpy(array)
    except (OSError, ValueError) as e:
        missing = isinstance(e, FileNotFoundError)
        why = "was replaced by later saves (the run keeps one buffer on disk: latest.pt's)" if missing else f"cannot be read ({e})"
        return {
            **{k: v for k, v in manifest["state"].items() if not hasattr(v, "shape")},
            "contents_saved": False,
            "contents_missing": f"the replay buffer of {checkpoint_name} {why}",
        }
    return state


def resolve(payload: dict[str, Any], checkpoint_dir: Path, checkpoint_name: str = "this checkpoint") -> dict[str, dict[str, Any]]:
    """Replace every stored buffer's manifest in `payload` by the buffer's state dict; returns the
    manifests of the buffers read in full (a resume builds its next save on them)."""
    manifests = {}
    for key, value in list(payload.items()):
        if is_manifest(value):
            payload[key] = resolve_state(value, checkpoint_dir, checkpoint_name)
            if payload[key]["contents_saved"]:
                manifests[key] = value
    return manifests
