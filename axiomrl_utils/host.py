"""This machine: whether a process (or a run's training process) is alive here, and whether a
directory can be written. The one home of these checks for the scripts and the `axiomrl` command."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional


def pid_alive(pid: Optional[int]) -> bool:
    """Whether a process with this pid exists on this machine (a pid reused since reads as alive)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def run_host(metadata: Mapping[str, Any]) -> Optional[str]:
    """The host a run's metadata.json says it trains on (older runs keep it under `system`)."""
    return metadata.get("hostname") or (metadata.get("system") or {}).get("hostname")


def run_process_alive(metadata: Mapping[str, Any], hostname: Optional[str] = None) -> Optional[bool]:
    """For a run whose metadata.json says `running`: is its process alive?

    True or False when the run trains on this host (`hostname`, default this machine), None when
    that cannot be checked from here (another host, or no pid recorded).
    """
    pid, host = metadata.get("pid"), run_host(metadata)
    if not host or host != (hostname or socket.gethostname()) or not isinstance(pid, int):
        return None
    return pid_alive(pid)


def nearest_existing_dir(path: Path) -> Path:
    """`path` itself, or the nearest parent that exists (what creating `path` would write into)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def writable_dir_problem(path: str | os.PathLike) -> Optional[str]:
    """None when files can be created in `path` (or in the nearest parent it would be created in);
    otherwise why not, in a few words. Probes with a real temporary file that does not stay."""
    probe = nearest_existing_dir(Path(path))
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".axiomrl-write-test-"):
            pass
    except OSError as e:
        return f"cannot create a file in {probe} ({e.strerror or e})"
    return None
