"""A run's checkpoints/ directory: step_<N>.pt, latest.pt, best.pt, pruning, and the
checkpoints.jsonl index (one line per save: step, file, size, best or not, metrics, what it holds)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.jsonl import JsonlWriter


class CheckpointStore:
    """Writes a run's checkpoints; every file is replaced atomically, so a kill at any instant
    leaves the previous checkpoint usable."""

    def __init__(self, checkpoint_dir: Path, keep: int) -> None:
        self.dir, self.keep = checkpoint_dir, keep
        self.dir.mkdir(exist_ok=True)
        self._index = JsonlWriter(self.dir / "checkpoints.jsonl")

    def step_file(self, step: int) -> Path:
        return self.dir / f"step_{step}.pt"

    def write(self, step: int, payload: dict[str, Any], resume_state: dict[str, Any], is_best: bool, metrics: dict[str, Any]) -> Path:
        """step_<step>.pt, then latest.pt (and best.pt) pointing at it, prune old step files, index the save."""
        step_file = self.step_file(step)
        size = ckpt.save_atomic(payload, step_file)
        ckpt.link_atomic(step_file, self.dir / "latest.pt")
        if is_best:
            ckpt.link_atomic(step_file, self.dir / "best.pt")
        ckpt.prune(self.dir, self.keep)
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

    def close(self) -> None:
        self._index.close()
