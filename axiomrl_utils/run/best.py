"""Which checkpoint is the best: the `--best-metric` value it was saved with, and the rule that
decides whether a new value beats it (`--best-mode`)."""

from __future__ import annotations

from typing import Any, Optional


class BestTracker:
    """The best checkpoint so far, as metadata.json's `best_checkpoint` records it (None before one)."""

    def __init__(self, metric: str, mode: str, best: Optional[dict[str, Any]] = None) -> None:
        self.metric, self.mode, self.best = metric, mode, best

    @property
    def by_evaluation(self) -> bool:
        """Whether the metric comes from evaluations (it can improve only right after one)."""
        return self.metric.startswith("eval/")

    def beats(self, value: Optional[float]) -> bool:
        """Whether `value` would be a new best (None never is)."""
        if value is None:
            return False
        if self.best is None:
            return True
        return value > self.best["value"] if self.mode == "max" else value < self.best["value"]

    def record(self, value: float, step: int, source: str) -> None:
        """`source` (a step checkpoint, relative to the run) is the new best.pt."""
        self.best = {
            "path": "checkpoints/best.pt",
            "source": source,
            "step": step,
            "metric": self.metric,
            "value": value,
            "mode": self.mode,
        }
