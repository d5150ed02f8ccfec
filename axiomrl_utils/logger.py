"""Where a run's numbers go: jsonl logs, TensorBoard, Weights & Biases, and the console.

One `RunLogger` per training session. Every number is written to the jsonl files (the source of
truth that reports read) and mirrored to TensorBoard under CleanRL's tag names and, with --track,
to W&B against `global_step`.
"""

from __future__ import annotations

import math
import os
import socket
import struct
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
        self.metrics = JsonlWriter(run_dir / "metrics.jsonl")
        self.train_episodes = JsonlWriter(run_dir / "train_episodes.jsonl")
        self.eval_episodes = JsonlWriter(run_dir / "eval_episodes.jsonl")
        # purge_step hides events a crashed session logged after the checkpoint we resume from,
        # so TensorBoard shows one curve with no overlapping points.
        self.tb = TensorBoardWriter(run_dir / "tensorboard", purge_step=purge_step)
        self.wandb = wandb_run

    def episode(self, global_step: int, episode_return: float, length: int, env_index: int) -> None:
        self.train_episodes.write(
            {"global_step": global_step, "return": episode_return, "length": length, "env_index": env_index, "time": time.time()}
        )
        self.tb.add_scalars({"charts/episodic_return": episode_return, "charts/episodic_length": length}, global_step)
        if self.wandb is not None:
            self.wandb.log({"global_step": global_step, "charts/episodic_return": episode_return, "charts/episodic_length": length})

    def metrics_row(self, row: dict[str, Any]) -> None:
        self.metrics.write(row)
        step = row["global_step"]
        scalars = {k: v for k, v in row.items() if k not in NOT_SCALARS and v is not None}
        self.tb.add_scalars(scalars, step)
        if self.wandb is not None:
            self.wandb.log({"global_step": step, **scalars})

    def eval_rows(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.eval_episodes.write(row)
        self.eval_episodes.flush()

    def flush(self) -> None:
        """Push buffered jsonl lines and TensorBoard events to the OS (cheap: no fsync)."""
        self.metrics.flush()
        self.train_episodes.flush()
        self.tb.flush()

    def close(self) -> None:
        for writer in (self.metrics, self.train_episodes, self.eval_episodes):
            writer.close()
        self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


class TensorBoardWriter:
    """A TensorBoard event file holding scalars, written without importing tensorboard or protobuf.

    The format is TFRecord framing around `Event` protocol buffers (tensorboard's event.proto and
    summary.proto), of which only the few fields scalars need are encoded here. Importing
    `torch.utils.tensorboard` costs ~0.35 s and starts a writer thread; this writes in the
    caller's thread into a buffered file that `flush()` pushes to the OS.
    The tests read these files back with tensorboard's own EventAccumulator.
    """

    def __init__(self, log_dir: Path, purge_step: Optional[int] = None) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        for uid in range(1000):  # a second writer in the same second and process gets the next free name
            try:
                self._file = open(log_dir / f"{stem}.{uid}", "xb")
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"no free TensorBoard event file name under {log_dir}")
        self._write_event(_event(time.time(), 0, _bytes_field(3, b"brain.Event:2")))
        if purge_step is not None:
            # What SummaryWriter(purge_step=...) writes: a SessionLog START at `purge_step` makes
            # TensorBoard drop the events a crashed session logged at or after that step.
            self._write_event(_event(time.time(), purge_step, _bytes_field(3, b"brain.Event:2")))
            self._write_event(_event(time.time(), purge_step, _bytes_field(7, b"\x08\x01")))  # session_log: START
        self.flush()

    def add_scalars(self, scalars: dict[str, Any], step: int) -> None:
        """One event at `step` with a simple_value per tag (each tag is still its own curve)."""
        values = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + b"\x15" + _float32(value))
            for tag, value in scalars.items()
        )
        self._write_event(_event(time.time(), step, _bytes_field(5, values)))

    def _write_event(self, event: bytes) -> None:
        header = struct.pack("<Q", len(event))
        self._file.write(header + struct.pack("<I", _masked_crc32c(header)) + event + struct.pack("<I", _masked_crc32c(event)))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # protobuf encodes negative int64 as their 64-bit two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): a string or a nested message."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _float32(value: Any) -> bytes:
    """A float field's 4 bytes; beyond float32's range it is +-inf, as protobuf stores it."""
    try:
        return struct.pack("<f", float(value))
    except OverflowError:
        return struct.pack("<f", math.copysign(math.inf, float(value)))


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    """An Event message: wall_time (field 1, double), step (field 2, int64), then `body` (other fields)."""
    step_field = b"\x10" + _varint(step) if step else b""  # proto3 leaves a zero out
    return b"\x09" + struct.pack("<d", wall_time) + step_field + body


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C (Castagnoli) of `data`, rotated and offset as TensorFlow masks it."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


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
