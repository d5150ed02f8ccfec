"""Where a run's numbers go: the jsonl logs (the source of truth reports read), mirrored to
TensorBoard under CleanRL's tag names and, with --track, to W&B against `global_step`."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable, Optional

from axiomrl_utils.jsonl import JsonlWriter, name_failed_file
from axiomrl_utils.tensorboard_writer import TensorBoardWriter

# Keys of a metrics row that are bookkeeping, not curves.
NOT_SCALARS = frozenset({"global_step", "iteration", "time", "wall_time"})


class RunLogger:
    """Writers for one session of a run; `flush()` once per iteration, `close()` at the end."""

    def __init__(self, run_dir: Path, purge_step: Optional[int], wandb_run: Any = None) -> None:
        self.metrics = JsonlWriter(run_dir / "metrics.jsonl")
        self.train_episodes = JsonlWriter(run_dir / "train_episodes.jsonl")
        self.eval_episodes = JsonlWriter(run_dir / "eval_episodes.jsonl")
        # purge_step hides events a crashed session logged after the checkpoint we resume from,
        # so TensorBoard shows one curve with no overlapping points.
        self.tb_dir = run_dir / "tensorboard"
        self.tb = TensorBoardWriter(self.tb_dir, purge_step=purge_step)
        self.wandb = wandb_run

    def episode(self, global_step: int, episode_return: float, length: int, env_index: int) -> None:
        self.train_episodes.write(
            {"global_step": global_step, "return": episode_return, "length": length, "env_index": env_index, "time": time.time()}
        )
        self._tb(self.tb.add_scalars, {"charts/episodic_return": episode_return, "charts/episodic_length": length}, global_step)
        if self.wandb is not None:
            self.wandb.log({"global_step": global_step, "charts/episodic_return": episode_return, "charts/episodic_length": length})

    def metrics_row(self, row: dict[str, Any]) -> None:
        self.metrics.write(row)
        step = row["global_step"]
        scalars = {k: v for k, v in row.items() if k not in NOT_SCALARS and v is not None}
        self._tb(self.tb.add_scalars, scalars, step)
        if self.wandb is not None:
            self.wandb.log({"global_step": step, **scalars})

    def _tb(self, call: Callable[..., None], *args: Any) -> None:
        """A call of the TensorBoard writer; its OSError (a full disk) names the tensorboard directory."""
        try:
            call(*args)
        except OSError as e:
            name_failed_file(e, self.tb_dir)
            raise

    def eval_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.eval_episodes.write(row)
        self.eval_episodes.flush()

    def flush(self) -> None:
        """Push buffered jsonl lines and TensorBoard events to the OS (cheap: no fsync)."""
        self.metrics.flush()
        self.train_episodes.flush()
        self._tb(self.tb.flush)

    def close(self) -> None:
        """Close every writer, also when one fails (a full disk); then raise the first failure."""
        failure: BaseException | None = None
        closes = (self.metrics.close, self.train_episodes.close, self.eval_episodes.close,
                  functools.partial(self._tb, self.tb.close), self._finish_wandb)
        for close in closes:
            try:
                close()
            except Exception as e:
                failure = failure or e
        if failure is not None:
            raise failure

    def _finish_wandb(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
