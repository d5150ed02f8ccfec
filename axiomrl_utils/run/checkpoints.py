"""A run's checkpoints/ directory: step_<N>.pt, latest.pt, best.pt, pruning, the replay store's
chunk files the kept checkpoints name, and the checkpoints.jsonl index (one line per save: step,
file, size, best or not, metrics, what it holds)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.jsonl import JsonlWriter
from axiomrl_utils.replay_store import ReplayStore, is_manifest


class CheckpointStore:
    """Writes a run's checkpoints; every file is replaced atomically, so a kill at any instant
    leaves the previous checkpoint usable."""

    def __init__(self, checkpoint_dir: Path, keep: int, replay: Optional[ReplayStore] = None) -> None:
        self.dir, self.keep, self.replay = checkpoint_dir, keep, replay
        self.dir.mkdir(exist_ok=True)
        self._index = JsonlWriter(self.dir / "checkpoints.jsonl")
        self._manifests: dict[Path, list[dict[str, Any]]] = {}  # the stored buffers each step file names

    def step_file(self, step: int) -> Path:
        return self.dir / f"step_{step}.pt"

    def write(self, step: int, payload: dict[str, Any], resume_state: dict[str, Any], is_best: bool, metrics: dict[str, Any]) -> Path:
        """step_<step>.pt, then latest.pt (and best.pt) pointing at it, prune old step files, index the save."""
        step_file = self.step_file(step)
        try:
            size = ckpt.save_atomic(payload, step_file)
        except BaseException:
            if self.replay is not None:
                self.replay.discard_pending()
            raise
        ckpt.link_atomic(step_file, self.dir / "latest.pt")
        if is_best:
            ckpt.link_atomic(step_file, self.dir / "best.pt")
        ckpt.prune(self.dir, self.keep)
        self._collect_replay(step_file, payload)
        self._index.write(
            {
                "step": step,
                "file": f"checkpoints/{step_file.name}",
                "time": time.time(),
                "size_bytes": size,
                "is_best": is_best,
                "metrics": metrics,
                "resume_state": resume_state,
            }
        )
        self._index.flush()
        return step_file

    def _collect_replay(self, step_file: Path, payload: dict[str, Any]) -> None:
        """latest.pt names this save's buffers now: later saves build on them, and chunk files that
        no kept step file names go (best.pt older than those loses its buffer, and says so)."""
        if self.replay is None:
            return
        self._manifests[step_file] = [v for v in payload.values() if is_manifest(v)]
        if not self._manifests[step_file] and not self.replay.dir.exists():
            return  # a run without a stored buffer
        for name, value in payload.items():
            if is_manifest(value):
                self.replay.adopt(name, value)
        kept = [path for _, path in ckpt.step_files(self.dir)]
        self._manifests = {path: self._manifests.get(path) for path in kept}
        for path in kept:
            if self._manifests[path] is None:  # written before a resume: read its manifests once
                try:
                    self._manifests[path] = [v for v in ckpt.load(path, replay=False).values() if is_manifest(v)]
                except ckpt.CheckpointError:
                    self._manifests[path] = []
        self.replay.collect([m for manifests in self._manifests.values() for m in manifests])

    def close(self) -> None:
        self._index.close()
