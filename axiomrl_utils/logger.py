"""Where a run's numbers go: jsonl logs, TensorBoard, Weights & Biases, and the console.

One `RunLogger` per training session. Every number is written to the jsonl files (the source of
truth that reports read) and mirrored to TensorBoard under CleanRL's tag names and, with --track,
to W&B against `global_step`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils.jsonl import JsonlWriter

# Keys of a metrics row that are bookkeeping, not curves.
NOT_SCALARS = frozenset({"global_step", "iteration", "time", "wall_time"})


def _format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class ConsoleProgress:
    """A rich progress bar on a terminal; a plain line every `interval` seconds otherwise."""

    def __init__(self, label: str, total: int, start: int, enabled: bool, interval: float = 10.0) -> None:
        self.label, self.total, self.enabled, self.interval = label, total, enabled, interval
        self._bar = None
        self._last_line = 0.0
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(label, total=total, completed=start, stats="")
            self._bar.start()

    def update(self, step: int, sps: float, recent_return: Optional[float], eval_return: Optional[float]) -> None:
        if not self.enabled:
            return
        stats = f"SPS {sps:,.0f}"
        if recent_return is not None:
            stats += f" | return {recent_return:.1f}"
        if eval_return is not None:
            stats += f" | eval {eval_return:.1f}"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, stats=stats)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval or step >= self.total:
            self._last_line = now
            eta = (self.total - step) / sps if sps > 0 else 0.0
            pct = 100.0 * step / max(1, self.total)
            print(f"[{self.label}] step {step:,}/{self.total:,} ({pct:.0f}%) | {stats} | ETA {_format_duration(eta)}", flush=True)

    def message(self, text: str) -> None:
        """A line that does not disturb the bar."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class RunLogger:
    """Writers for one session of a run; `flush()` once per iteration, `close()` at the end."""

    def __init__(self, run_dir: Path, purge_step: Optional[int], wandb_run: Any = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.metrics = JsonlWriter(run_dir / "metrics.jsonl")
        self.train_episodes = JsonlWriter(run_dir / "train_episodes.jsonl")
        self.eval_episodes = JsonlWriter(run_dir / "eval_episodes.jsonl")
        # purge_step hides events a crashed session logged after the checkpoint we resume from,
        # so TensorBoard shows one curve with no overlapping points.
        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)
        self.wandb = wandb_run

    def episode(self, global_step: int, episode_return: float, length: int, env_index: int) -> None:
        self.train_episodes.write(
            {"global_step": global_step, "return": episode_return, "length": length, "env_index": env_index, "time": time.time()}
        )
        self._tb_scalars({"charts/episodic_return": episode_return, "charts/episodic_length": length}, global_step)
        if self.wandb is not None:
            self.wandb.log({"global_step": global_step, "charts/episodic_return": episode_return, "charts/episodic_length": length})

    def metrics_row(self, row: dict[str, Any]) -> None:
        self.metrics.write(row)
        step = row["global_step"]
        scalars = {k: v for k, v in row.items() if k not in NOT_SCALARS and v is not None}
        self._tb_scalars(scalars, step)
        if self.wandb is not None:
            self.wandb.log({"global_step": step, **scalars})

    def _tb_scalars(self, scalars: dict[str, Any], step: int) -> None:
        """Write `scalars` to TensorBoard as one event holding a value per tag (each tag still its own curve).

        The same records `add_scalar` writes one event at a time, at a sixth of the cost for a metrics row.
        """
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()]
        self.tb._get_file_writer().add_summary(Summary(value=values), step)

    def eval_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.eval_episodes.write(row)
        self.eval_episodes.flush()

    def flush(self, tensorboard: bool = False) -> None:
        """Push buffered jsonl lines to the OS (cheap); with `tensorboard`, also TB's event file."""
        self.metrics.flush()
        self.train_episodes.flush()
        if tensorboard:
            self.tb.flush()

    def close(self) -> None:
        for writer in (self.metrics, self.train_episodes, self.eval_episodes):
            writer.close()
        self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def start_wandb(project: str, entity: Optional[str], run_id: str, wandb_id: str, run_dir: Path, config: dict) -> Any:
    """Start (or, with the same `wandb_id`, resume) the W&B run; x-axis is `global_step`."""
    import wandb

    run = wandb.init(
        project=project,
        entity=entity,
        name=run_id,
        id=wandb_id,
        resume="allow",
        config=config,
        dir=str(run_dir),
    )
    run.define_metric("global_step")
    run.define_metric("*", step_metric="global_step")
    return run
