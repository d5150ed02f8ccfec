import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`axiomrl ARGS` in a fresh interpreter, importable without installing the package."""
    return run_python("-m", "axiomrl_utils.cli", *args, cwd=cwd, timeout=timeout)


def run_python(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def cli():
    """Call as cli("report", str(path), ...) -> CompletedProcess."""
    return run_cli


@pytest.fixture
def python():
    """Call as python("-c", code) -> CompletedProcess, with the repo importable."""
    return run_python
