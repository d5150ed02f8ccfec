"""Where a run came from, as metadata.json records it: the git state of the code, the machine,
and the versions of the packages that decide its numbers."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import socket
import subprocess
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils import __version__

VERSIONED_PACKAGES = (
    "axiomrl", "torch", "gymnasium", "numpy", "tyro", "tensorboard", "pandas",
    "ale-py", "mujoco", "wandb", "moviepy", "ray", "submitit",
)


def git_state(directory: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(commit/dirty/branch, diff) of the git checkout holding `directory`; (None, None) without git.

    The diff is `git diff HEAD` plus the names of untracked files, and is None for a clean tree.
    """

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *cmd], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None, None
    try:
        commit = git("rev-parse", "HEAD").strip()
        branch = git("rev-parse", "--abbrev-ref", "HEAD").strip()
    except subprocess.CalledProcessError:  # a repository without commits
        commit, branch = None, None
    status = git("status", "--porcelain")
    dirty = bool(status.strip())
    diff = None
    if dirty:
        untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
        diff = git("diff", "HEAD") if commit else ""
        if untracked:
            diff += "\n# untracked files:\n" + "".join(f"#   {name}\n" for name in untracked)
    return {"commit": commit, "is_dirty": dirty, "branch": branch}, diff


def system_info() -> dict[str, Any]:
    """The machine a run trains on: Python, platform, CPU count, host, torch threads, GPU."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def package_versions() -> dict[str, str]:
    """The installed version of each of VERSIONED_PACKAGES that is installed (for metadata.json)."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        # The Version line read directly: Distribution.version parses the whole METADATA file with
        # the email parser, a few ms per package and most of start_run's own cost.
        header = (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").partition("\n\n")[0]  # not the description
        found = re.search(r"^Version:[ \t]*(\S+)", header, re.M)
        version = found.group(1) if found else dist.version
        if version:
            versions[name] = version
    versions.setdefault("axiomrl", __version__)
    return versions
