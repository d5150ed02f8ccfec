"""A write of a run that failed: is it one (a full disk, a quota, a read-only file system, or any
OSError naming one of the run's files), which file, why, and what the user should do about it.
`Run` turns such a failure into one sentence and the status `failed`."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Optional

from axiomrl_utils.console import fmt_bytes
from axiomrl_utils.host import nearest_existing_dir
from axiomrl_utils.jsonl import os_error_in

# OSErrors that say the disk failed whatever file they name (the run's own files fail with any errno)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def failed_write(exc: BaseException, run_dir: Path, path: Optional[Path] = None) -> Optional[tuple[Path, str]]:
    """(file, reason) when `exc` is a failed write of the run in `run_dir`: an OSError (or an error
    raised during one, as torch.save does) naming a file of the run or saying the disk failed (full,
    over quota, read-only); None for anything else. `path`: the file being written, when the error
    names none of the run's."""
    error = os_error_in(exc)
    if error is None:
        return None

    def in_run(file: Optional[Path]) -> bool:
        return file is not None and Path(os.path.abspath(file)).is_relative_to(os.path.abspath(run_dir))

    named = Path(os.fsdecode(error.filename)) if isinstance(error.filename, (str, bytes, os.PathLike)) else None
    target = named if in_run(named) else path or named
    if not in_run(target) and error.errno not in DISK_ERRNOS:
        return None
    target = target or run_dir
    if error.errno is None:  # numpy's short write says how much it wrote, not why: say how much room is left
        what = str(error.args[0]) if error.args else "a short write"
        try:
            free = shutil.disk_usage(nearest_existing_dir(target)).free
        except OSError:
            return target, what
        return target, f"{what}, with {fmt_bytes(free)} free on that disk"
    return target, error.strerror or str(error)


def write_fix(exc: BaseException) -> str:
    """What to do about a failed write (`failed_write`), in a few words."""
    error = os_error_in(exc)
    code = error.errno if error is not None else None
    if code == errno.EROFS:
        return "make that file system writable"
    return "free space on that disk" if code in DISK_ERRNOS or code is None else "fix that"
