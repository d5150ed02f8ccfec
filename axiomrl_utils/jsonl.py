"""Crash-tolerant JSON files: atomic JSON writes and append-only JSON-lines logs.

Readers may look at these files while a run writes them, and a run may be killed at any instant,
so: whole-file writes go through a temp file and `os.replace`, and jsonl readers skip a torn last
line instead of failing (any other damage is a warning for readers, a refusal for a resume).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator


def _clean(obj: Any) -> Any:
    """Make `obj` strict JSON: numpy/torch values become Python ones, NaN and inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return _clean(obj.tolist())
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` that accepts numpy/torch values and writes NaN/inf as null."""
    return json.dumps(_clean(obj), **kwargs)


def _file_mode() -> int:
    """The mode `open()` would give a new file (0o666 minus the umask); mkstemp's 0o600 hides runs from others."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_file_for(path: Path) -> tuple[int, str]:
    """An open temp file next to `path` (same file system, so `os.replace` is atomic), normal permissions."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, _file_mode())
    return fd, tmp


# The names of our temp files: `temp_file_for`'s `.<name>.<8 mkstemp characters>.tmp` and
# checkpoint.link_atomic's `.<name>.<pid>.tmp`. Only these are ever removed as stale.
TEMP_FILE = re.compile(r"^\..+\.(?:[a-z0-9_]{8}|\d+)\.tmp$")


def remove_stale_temp_files(*directories: Path) -> list[Path]:
    """Delete the temp files a killed writer left in `directories` (call it holding the run's lock,
    so no live writer owns them); returns what was removed."""
    removed = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            if TEMP_FILE.match(path.name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError `exc` is, or was raised from or while handling (torch.save reports a full disk as
    a RuntimeError raised during the OSError); None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        # `raise ... from None` (a UsageError that already said what went wrong) ends the chain
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return None


def name_failed_file(exc: BaseException, path: str | os.PathLike) -> None:
    """Record `path` as the file of the OSError behind `exc` when it names none (a buffered write's
    ENOSPC names no file), so whoever reports the failed write can say which file it was."""
    error = os_error_in(exc)
    if error is not None and error.filename is None:
        error.filename = str(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, binary: bool = False, durable: bool = False) -> Iterator[IO[Any]]:
    """Yield a temp file beside `path`; when the block succeeds rename it over `path`, else delete it.

    Readers see the old file or the complete new one, never a mix. The rename alone survives a
    killed process; `durable=True` also fsyncs before it, which survives a power loss but costs
    tens of milliseconds per call on a busy disk.
    """
    path = Path(path)
    fd, tmp = temp_file_for(path)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)  # on a full disk, the space the user needs back
        name_failed_file(e, path)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    """Write `text` to `path` atomically (`durable`: see `atomic_file`; metadata.json is rewritten often)."""
    with atomic_file(path, durable=durable) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, durable: bool = False) -> None:
    """Atomically write `obj` as indented JSON (`durable`: see `atomic_file`)."""
    write_text_atomic(path, dumps(obj, indent=2) + "\n", durable)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; raises ValueError naming the file when it does not parse."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None


def read_json_input(path: str | os.PathLike, what: str, fix: str) -> Any:
    """`read_json` for a file the user names on the command line: a missing, unreadable or
    unparsable file becomes one UsageError sentence, "<what> <path> ...; <fix>"."""
    from axiomrl_utils import UsageError

    try:
        return read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; {fix}") from None
    except OSError as e:  # a directory in its place, no permission
        raise UsageError(f"{what} {path} cannot be read ({e.strerror}); {fix}") from None
    except ValueError as e:
        raise UsageError(f"{what} {e}; {fix}") from None


class JsonlDamage(ValueError):
    """A jsonl file damaged other than by a torn last line; the message names the file and line."""


def _rows(path: Path, strict: bool, int_field: str | None = None) -> Iterator[dict]:
    """The objects of a jsonl file; a torn last line (a run killed mid-write) is dropped silently.

    Anything else wrong (a line in the middle that does not parse, a line that is not a JSON
    object, `int_field` not an integer, a directory where the file should be) raises JsonlDamage
    when `strict`, else is skipped with a warning naming the file and line.
    """
    def damaged(problem: str) -> None:
        if strict:
            raise JsonlDamage(problem)
        warnings.warn(f"{problem}; skipped", stacklevel=3)

    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return
    except OSError as e:  # a directory in the file's place, no permission
        damaged(f"{path} cannot be read as a jsonl file ({e.strerror})")
        return
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for i, raw in enumerate(lines[: last + 1]):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i != last:
                damaged(f"{path}:{i + 1} does not parse")
            continue
        if not isinstance(row, dict):
            damaged(f"{path}:{i + 1} is not a JSON object")
        elif int_field is not None and int_field in row and (type(row[int_field]) is not int):
            damaged(f"{path}:{i + 1} has {int_field} {row[int_field]!r}, not an integer")
        else:
            yield row


def iter_jsonl(path: str | os.PathLike) -> Iterable[dict]:
    """Yield the objects of a jsonl file, skipping a torn last line (a run killed mid-write).

    Any other damage (a line in the middle that does not parse, a line that is valid JSON but no
    object, a directory in the file's place) is skipped with a warning naming the file and line.
    """
    return _rows(Path(path), strict=False)


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All the objects of a jsonl file (see `iter_jsonl`); [] when the file does not exist."""
    return list(iter_jsonl(path))


def check_jsonl(path: str | os.PathLike, int_field: str | None = None) -> None:
    """Raise JsonlDamage naming the file and line unless every line but a torn last one is an object
    (whose `int_field`, when present, is an integer); a resume calls it before it changes anything."""
    for _ in _rows(Path(path), strict=True, int_field=int_field):
        pass


def truncate_jsonl(path: str | os.PathLike, keep: Callable[[dict], bool], int_field: str | None = None) -> int:
    """Atomically rewrite a jsonl file with only the rows for which `keep(row)` is true.

    Used by resume to drop what a run logged after the checkpoint it restarts from, and a torn
    last line; any other damage raises JsonlDamage (see `check_jsonl`) and the file stays as it
    is, since dropping a line from the middle of a log would lose history silently. Returns the
    number of rows kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = [row for row in _rows(path, strict=True, int_field=int_field) if keep(row)]
    write_text_atomic(path, "".join(dumps(row) + "\n" for row in kept))
    return len(kept)


class JsonlWriter:
    """Append-only jsonl log. Lines are buffered and reach the disk at `flush()` or `close()`.

    The scripts flush once per logged iteration, so a crash loses at most one iteration's lines,
    and the hot loop never waits for the disk.

    A flush that fails (a full disk) cuts the file back to what it held before and keeps the lines
    pending, raising an OSError that names the file: the file never ends in a torn line that a later
    flush would bury in the middle (a buffered file object drops the lines it could not write
    and appends the next ones after that gap).
    """

    FLUSH_AT = 1 << 16  # characters pending before a write flushes by itself

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        self._pending: list[str] = []
        self._pending_chars = 0

    def write(self, row: dict) -> None:
        line = dumps(row) + "\n"
        self._pending.append(line)
        self._pending_chars += len(line)
        if self._pending_chars >= self.FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self._fd is None:
            return
        data = memoryview("".join(self._pending).encode("utf-8"))
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as e:
            if written:  # our partial append is the end of the file (`axiomrl eval` appends whole rows in one write)
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
            name_failed_file(e, self.path)
            raise
        self._pending.clear()
        self._pending_chars = 0

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None
