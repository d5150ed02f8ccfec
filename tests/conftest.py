"""Shared helpers: tiny real training runs, in-process or as subprocesses, in temp directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
WALL_CLOCK = {"time", "wall_time", "charts/SPS"}  # the only fields allowed to differ between identical runs

TINY_PPO = dict(
    total_timesteps=1280,
    num_envs=2,
    num_steps=64,
    eval_every=256,
    eval_episodes=3,
    checkpoint_every=256,
    keep_checkpoints=2,
    progress=False,
)


def tiny_ppo_args(output_dir: Path, **overrides: Any):
    """ppo.Args for a run of a few hundred steps that still evaluates, checkpoints and prunes."""
    from axiomrl import ppo

    return ppo.Args(output_dir=str(output_dir), **{**TINY_PPO, **overrides})


def run_dirs(output_dir: Path) -> list[Path]:
    """Run directories directly inside `output_dir`, oldest first."""
    return sorted((p for p in Path(output_dir).iterdir() if (p / "metadata.json").exists()), key=lambda p: p.name)


def only_run(output_dir: Path) -> Path:
    dirs = run_dirs(output_dir)
    assert len(dirs) == 1, dirs
    return dirs[0]


def script_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: the repo importable without an install, one thread each."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}
    env.pop("WANDB_API_KEY", None)
    return env


def run_script(script: str, *args: str, timeout: float = 300, **popen: Any) -> subprocess.CompletedProcess:
    """Run `python axiomrl/<script>` with args; returns the completed process (text output)."""
    return subprocess.run(
        [sys.executable, str(REPO / "axiomrl" / script), *args],
        capture_output=True, text=True, timeout=timeout, env=script_env(), cwd=REPO, **popen,
    )


def strip_wall_clock(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]


def reevaluate(module: Any, run_dir: Path, checkpoint: str | Path) -> list[float]:
    """Play a run's evaluation episodes again with the policy the script's `load_policy` rebuilds from a checkpoint."""
    from axiomrl_utils import checkpoint as ckpt
    from axiomrl_utils.args import load_args
    from axiomrl_utils.evaluation import eval_seeds, make_eval_envs, run_episodes

    args = load_args(module.Args, run_dir)
    envs = make_eval_envs([module.make_env(args, i, evaluation=True) for i in range(args.eval_episodes)])
    policy = module.load_policy(args, ckpt.load(Path(run_dir) / checkpoint), envs)
    try:
        return [e["return"] for e in run_episodes(policy, envs, eval_seeds(args.seed, args.eval_episodes))]
    finally:
        envs.close()


def logged_eval_returns(run_dir: Path, step: int) -> list[float]:
    """The evaluation returns a run logged at `step`, in episode order."""
    from axiomrl_utils.jsonl import read_jsonl

    return [r["return"] for r in read_jsonl(Path(run_dir) / "eval_episodes.jsonl") if r["global_step"] == step]


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file below root: equal snapshots mean nothing on disk changed."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tiny_ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny ppo.py run shared by the read-only contract tests."""
    from axiomrl import ppo

    out = tmp_path_factory.mktemp("tiny_ppo")
    ppo.main(tiny_ppo_args(out))
    return only_run(out)


def run_cli(*args: str, cwd: str | os.PathLike | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`axiomrl ARGS` in a fresh interpreter, importable without installing the package."""
    return run_python("-m", "axiomrl_utils.commands.cli", *args, cwd=cwd, timeout=timeout)


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
