"""AxiomRL's own TensorBoard event writer, read back with tensorboard's reader and protobufs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from axiomrl_utils.tensorboard_writer import TensorBoardWriter, _masked_crc32c


def _records(path: Path) -> list[bytes]:
    """The TFRecord payloads of an event file, each framing checksum verified with tensorboard's own CRC."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    data, records, pos = path.read_bytes(), [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8 : pos + 12])[0] == masked_crc32c(header)
        payload = data[pos + 12 : pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])[0] == masked_crc32c(payload)
        records.append(payload)
        pos += 16 + length
    return records


def test_crc_matches_tensorboard() -> None:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    for data in (b"", b"a", b"123456789", bytes(range(256)) * 3):
        assert _masked_crc32c(data) == masked_crc32c(data)


def test_events_parse_as_tensorboard_protobufs(tmp_path: Path) -> None:
    from tensorboard.compat.proto.event_pb2 import Event

    writer = TensorBoardWriter(tmp_path)
    writer.add_scalars({"losses/value_loss": 0.25, "charts/episodic_length": 17, "é/unicode tag": -3.5}, 2**40)
    writer.add_scalars({"charts/SPS": 1234.5}, 0)
    writer.close()
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("events.out.tfevents.")
    events = [Event.FromString(record) for record in _records(path)]
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 2**40
    assert [(v.tag, v.simple_value) for v in events[1].summary.value] == [
        ("losses/value_loss", 0.25), ("charts/episodic_length", 17.0), ("é/unicode tag", -3.5),
    ]
    assert events[2].step == 0 and events[2].summary.value[0].simple_value == 1234.5
    for record, event in zip(_records(path), events):
        assert event.SerializeToString() == record  # canonical encoding, byte for byte


def test_accumulator_reads_scalars_and_purges_a_dead_sessions_tail(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TensorBoardWriter(tmp_path)
    for step in range(0, 100, 10):
        first.add_scalars({"x": step / 10, "y": -step}, step)
    first.close()
    resumed = TensorBoardWriter(tmp_path, purge_step=50)  # the run resumes from a checkpoint at step 50
    for step in range(50, 120, 10):
        resumed.add_scalars({"x": step / 5}, step)
    resumed.flush()  # readable while the writer is still open
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("x")] == [(s, s / 10) for s in range(0, 50, 10)] + [
        (s, s / 5) for s in range(50, 120, 10)
    ]
    assert [e.step for e in acc.Scalars("y")] == [0, 10, 20, 30, 40]
    resumed.close()
    assert len(list(tmp_path.iterdir())) == 2  # a second writer never overwrites the first file


def test_does_not_import_tensorboard(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, pathlib; from axiomrl_utils.tensorboard_writer import TensorBoardWriter; "
        f"w = TensorBoardWriter(pathlib.Path({str(tmp_path)!r}), purge_step=3); w.add_scalars({{'a': 1}}, 5); w.close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'google', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e39])
def test_non_finite_and_out_of_range_values_are_stored_as_float32(tmp_path: Path, value: float) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorBoardWriter(tmp_path)
    writer.add_scalars({"v": value}, 1)
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    stored = acc.Scalars("v")[0].value
    assert (stored != stored) if value != value else stored == float("inf")
