"""Rendering rows for the `axiomrl` command: aligned text, Markdown, CSV or JSON, its --format and
--output options, number cells, and stderr notes.

Human formats (table, markdown) show formatted cells chosen by the caller's `Column`s; machine
formats (csv, json) write the raw row dicts, so numbers keep full precision and parse back.
Durations are formatted by `axiomrl_utils.console.fmt_duration`. Only the standard library is
imported here: `axiomrl report` must start fast.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.console import MISSING
from axiomrl_utils.jsonl import dumps, write_text_atomic

FORMATS = ("table", "markdown", "csv", "json")


@dataclass(frozen=True)
class Column:
    """One column of a human-readable table: its header and how to show a row's cell."""

    header: str
    cell: Callable[[dict], str]
    align: str = "left"  # "right" for numbers


def warn(message: str) -> None:
    """Print one `warning: ...` line on stderr (stdout stays clean for pipes and --output)."""
    print(f"warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Print one informational line on stderr."""
    print(message, file=sys.stderr)


def fmt_float(value: Any, digits: int = 2) -> str:
    """A number with `digits` decimals, or '-' when missing."""
    if value is None or isinstance(value, bool):
        return MISSING
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def fmt_int(value: Any) -> str:
    """An integer with thousands separators, or '-' when missing."""
    if value is None or isinstance(value, bool):
        return MISSING
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _text_table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    cells = [[col.cell(row) for col in columns] for row in rows]
    widths = [max([len(col.header)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if col.align == "right" else v.ljust(w)
            for v, w, col in zip(values, widths, columns)
        ]
        return "  ".join(parts).rstrip()

    out = [line([c.header for c in columns]), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells)
    return "\n".join(out) + "\n"


def _markdown_table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = [
        "| " + " | ".join(esc(c.header) for c in columns) + " |",
        "|" + "|".join("---:" if c.align == "right" else "---" for c in columns) + "|",
    ]
    out.extend("| " + " | ".join(esc(c.cell(row)) for c in columns) + " |" for row in rows)
    return "\n".join(out) + "\n"


def _csv(rows: Sequence[dict]) -> str:
    fieldnames: list[str] = []
    for row in rows:  # union of keys, first-seen order: rows may differ (e.g. reference columns)
        fieldnames.extend(k for k in row if k not in fieldnames)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def render(rows: Sequence[dict], columns: Sequence[Column], fmt: str) -> str:
    """Render `rows` in `fmt` (one of FORMATS). csv/json hold every raw key of every row."""
    if fmt == "table":
        return _text_table(rows, columns)
    if fmt == "markdown":
        return _markdown_table(rows, columns)
    if fmt == "csv":
        return _csv(rows)
    if fmt == "json":
        return dumps(list(rows), indent=2) + "\n"
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """--format and --output, shared by `axiomrl report` and `axiomrl leaderboard`."""
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")


_KINDS = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "directory"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"))


def check_output_target(path: str | Path, flag: str = "--output") -> Path:
    """`path` as a Path when it is missing or a regular file; anything else (a symlink, a device, a
    directory) is a UsageError, so an atomic rename never replaces what the user did not mean."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as e:  # e.g. a parent that is a file
        raise UsageError(f"{flag} {path} cannot be written ({e.strerror}); pass the path of a regular file") from None
    if stat.S_ISREG(mode):
        return path
    kind = next((name for test, name in _KINDS if test(mode)), "special file")
    raise UsageError(f"{flag} {path} is a {kind}, not a regular file; it was left as it is, pass the path of a regular file")


def write_output(text: str, path: str | Path | None, flag: str = "--output") -> None:
    """Print `text` to stdout, or write it atomically to `path` (creating parent directories);
    `path` must be missing or a regular file (`check_output_target`)."""
    if path is None or str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = check_output_target(path, flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot create {path.parent} ({e.strerror}); pass a path in a writable directory") from None
    try:
        write_text_atomic(path, text)
    except OSError as e:
        raise UsageError(f"{flag} {path} cannot be written ({e.strerror}); pass a path in a writable directory") from None
    note(f"wrote {path}")
