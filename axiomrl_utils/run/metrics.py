"""A run's numbers between the script and the log files: training episodes, the metrics a script
logs where it computes them, evaluations, and the metrics rows made of them.

A script logs a value whenever it has one (`run.log_metrics(step, {...})`, tensors welcome: they
become floats only when a row is written). The run decides which steps get a metrics row; a row
holds the newest value of every metric logged so far, plus the evaluation of that step if there
was one. The newest values are part of the checkpoint, so a resumed run writes the same rows as
an uninterrupted one.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Optional

import numpy as np

from axiomrl_utils.run.logs import RunLogger

RECENT_EPISODES = 100  # CleanRL's published tables average each seed's last 100 training episodes
ROW_BOOKKEEPING = frozenset({"global_step", "time", "wall_time", "charts/SPS"})


def _plain(value: Any) -> Any:
    """A logged value as JSON takes it: tensors and numpy scalars as Python numbers."""
    return value.item() if hasattr(value, "item") else value


class MetricsLog:
    """Episodes, logged metrics and evaluations of one run, and the rows written from them."""

    def __init__(self, logger: RunLogger, state: dict[str, Any]) -> None:
        self.logger = logger
        self.total_episodes = int(state.get("total_episodes", 0))
        self.recent_returns: collections.deque = collections.deque(state.get("recent_returns", []), maxlen=RECENT_EPISODES)
        self.eval_last: Optional[float] = state.get("eval_return_last")
        eval_best = state.get("eval_return_best")
        self.eval_best: Optional[tuple[float, int]] = (float(eval_best[0]), int(eval_best[1])) if eval_best else None
        self.latest_row: dict[str, Any] = state.get("latest_metrics") or {}
        self.logged: dict[str, Any] = dict(state.get("logged_metrics", {}))
        self.logged_at: Optional[int] = None  # the step of the newest log_metrics call
        self.pending_eval: dict[str, float] = {}
        self.eval_at: Optional[int] = None

    # ------------------------------------------------------------------ what the script reports
    def episodes(self, global_step: int, infos: dict[str, Any]) -> None:
        """Every training episode that ended in this step (gymnasium's vector `infos["episode"]`)."""
        if "_episode" not in infos:
            return
        episode = infos["episode"]
        for i in np.flatnonzero(infos["_episode"]):
            episode_return = float(episode["r"][i])
            self.logger.episode(global_step, episode_return, int(episode["l"][i]), int(i))
            self.recent_returns.append(episode_return)
            self.total_episodes += 1

    def log(self, global_step: int, metrics: dict[str, Any]) -> None:
        self.logged.update(metrics)
        self.logged_at = global_step

    def record_evaluation(self, global_step: int, metrics: dict[str, float]) -> None:
        """An evaluation's eval/* metrics: for this step's row, the summary and the best checkpoint."""
        self.pending_eval = dict(metrics)
        self.eval_at = global_step
        self.eval_last = metrics["eval/return_mean"]
        if self.eval_best is None or self.eval_last > self.eval_best[0]:
            self.eval_best = (self.eval_last, global_step)

    # ------------------------------------------------------------------ what the run reads
    def recent_mean(self) -> Optional[float]:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    def value_now(self, metric: str, global_step: int) -> Optional[float]:
        """The value of `metric` that describes the parameters at `global_step`, or None.

        An eval/* metric counts only at the step it was measured (a checkpoint must hold the
        evaluated parameters); a training metric is judged from the newest metrics row.
        """
        if metric.startswith("eval/"):
            if self.eval_at != global_step:
                return None
            return (self.pending_eval or self.latest_row).get(metric)
        if metric == "charts/episodic_return":
            return self.recent_mean()
        value = self.latest_row.get(metric)  # the newest row: judged where the script's rows are written
        return None if value is None else float(value)

    def write_row(self, global_step: int, sps: float, wall_time: float) -> dict[str, Any]:
        """Write the metrics row of `global_step` (jsonl, TensorBoard, W&B); returns it."""
        self.logged = {k: _plain(v) for k, v in self.logged.items()}
        row = {"global_step": global_step, **self.logged, **self.pending_eval}
        row.update({"time": time.time(), "wall_time": wall_time, "charts/SPS": sps})
        self.pending_eval = {}
        self.logger.metrics_row(row)
        self.logger.flush()
        self.latest_row = row
        return row

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of this, so a resume continues the same rows and summaries."""
        return {
            "total_episodes": self.total_episodes,
            "recent_returns": list(self.recent_returns),
            "eval_return_last": self.eval_last,
            "eval_return_best": self.eval_best,
            "latest_metrics": self.latest_row,
            "logged_metrics": {k: _plain(v) for k, v in self.logged.items()},
        }

    def summary(self) -> dict[str, Any]:
        """metadata.json's summary fields that come from the logs."""
        return {
            "train_return_last100": self.recent_mean(),
            "train_episodes_in_mean": len(self.recent_returns),
            "eval_return_last": self.eval_last,
            "eval_return_best": self.eval_best[0] if self.eval_best else None,
            "eval_step_best": self.eval_best[1] if self.eval_best else None,
        }
