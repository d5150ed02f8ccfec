"""One writer per run directory: an exclusive OS file lock, held from before the run's files are
read until the session closes, and released by the OS when the process dies (also `kill -9`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from axiomrl_utils import UsageError

LOCK_FILE = ".axiomrl.lock"  # stays in place (never deleted), so every process locks the same inode


class RunLock:
    """The lock of one run directory; `acquire` refuses with one sentence while another process holds it."""

    def __init__(self, run_dir: Path) -> None:
        import filelock  # flock on POSIX, LockFileEx on Windows

        self.run_dir = run_dir
        self._lock = filelock.FileLock(run_dir / LOCK_FILE, timeout=0)

    @classmethod
    def acquire(cls, run_dir: Path) -> "RunLock":
        """Take the lock of `run_dir` now or raise UsageError naming the process that trains it."""
        import filelock

        lock = cls(run_dir)
        try:
            lock._lock.acquire()
        except filelock.Timeout:
            raise UsageError(f"{run_dir} is still being trained by {_holder(run_dir)}; stop it first (or wait for it)") from None
        return lock

    def release(self) -> None:
        self._lock.release(force=True)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(run_dir: Path) -> str:
    """Who holds the lock, as metadata.json tells it (the holder may not have written its pid yet)."""
    from axiomrl_utils.jsonl import read_json
    from axiomrl_utils.rundir import METADATA_FILE

    try:
        meta = read_json(run_dir / METADATA_FILE)
    except (OSError, ValueError):
        meta = {}
    pid = meta.get("pid") if isinstance(meta, dict) and meta.get("status") == "running" else None
    return f"process {pid}" if pid and pid != os.getpid() else "another process"
