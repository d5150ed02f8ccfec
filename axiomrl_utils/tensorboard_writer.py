"""TensorBoard event files for scalars, written directly (no tensorboard or protobuf import):
what `SummaryWriter.add_scalar` writes, readable by tensorboard's own reader."""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any, Optional


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
