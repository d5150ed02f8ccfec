"""Hand-built run directories with known numbers, for tests and benchmarks (`from fake_runs import write_run`).

`write_run` writes what a training script writes (docs/run-directory.md, schema_version 1):
metadata.json with its `summary`, and the jsonl logs, so readers can be tested without training.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from axiomrl_utils import __version__
from axiomrl_utils.jsonl import dumps, write_json_atomic

AUTO = "auto"
_BASE_TIME = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _summary(train: Sequence[tuple[int, float]], evals: Mapping[int, Sequence[float]], steps: int, wall: float) -> dict:
    tail = [r for _, r in train][-100:]
    means = {step: sum(v) / len(v) for step, v in sorted(evals.items()) if v}
    best_step = max(means, key=means.get) if means else None
    return {
        "train_return_last100": sum(tail) / len(tail) if tail else None,
        "train_episodes_in_mean": len(tail),
        "eval_return_last": means[max(means)] if means else None,
        "eval_return_best": means[best_step] if means else None,
        "eval_step_best": best_step,
        "sps": steps / wall if wall else None,
    }


def _write_lines(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(dumps(row) + "\n" for row in rows)


def write_run(
    root: str | os.PathLike,
    algo: str = "ppo",
    env_id: str = "CartPole-v1",
    seed: int = 1,
    *,
    train: Sequence[tuple[int, float]] = (),
    evals: Mapping[int, Sequence[float]] | None = None,
    metrics: Sequence[dict] = (),
    summary: Any = AUTO,
    status: str = "finished",
    total_timesteps: int | None = None,
    wall_time_s: float = 100.0,
    pid: int | None = None,
    hostname: str | None = None,
    git: dict | None = None,
    index: int = 0,
    **overrides: Any,
) -> Path:
    """Write one run directory under `root` and return its path.

    `train` is (global_step, return) per training episode, `evals` maps an evaluation's
    global_step to its episode returns, `metrics` are metrics.jsonl lines. `summary` defaults to
    the one the contract defines for those logs; pass a dict to set it, or None to leave the key
    out (readers must then fall back to the logs). `overrides` replace metadata keys.
    `index` makes the directory's timestamp unique when many runs share algo/env/seed.
    """
    evals = dict(evals or {})
    steps = max([s for s, _ in train] + list(evals) + [m.get("global_step", 0) for m in metrics] + [0])
    total_timesteps = total_timesteps if total_timesteps is not None else steps
    created = _BASE_TIME + timedelta(seconds=seed, microseconds=index)
    run_id = f"{algo}__{env_id.replace('/', '-')}__seed{seed}__{created:%Y%m%d-%H%M%S-%f}"
    path = Path(root) / run_id
    path.mkdir(parents=True, exist_ok=False)
    (path / "checkpoints").mkdir()
    host = hostname or socket.gethostname()
    metadata = {
        "schema_version": 1,
        "algo": algo,
        "env_id": env_id,
        "seed": seed,
        "run_id": run_id,
        "output_dir": os.fspath(path.absolute()),
        "script": f"/repo/axiomrl/{algo}.py",
        "created_at_utc": created.isoformat(),
        "command": [f"axiomrl/{algo}.py", "--env-id", env_id, "--seed", str(seed)],
        "system": {"python_version": "3.11.7", "platform": "Linux", "processor": "x86_64", "cpu_count": 2,
                   "hostname": host, "torch_threads": 2, "gpu": None},
        "versions": {"axiomrl": __version__, "torch": "2.13.0", "gymnasium": "1.4.0", "numpy": "2.4.6", "tyro": "1.0"},
        "git": git if git is not None else {"commit": "0123456789abcdef0123456789abcdef01234567", "is_dirty": False, "branch": "main"},
        "benchmark": {"best_metric": "eval/return_mean", "best_mode": "max", "eval_every": 10000, "eval_episodes": 10,
                      "checkpoint_every": 50000, "keep_checkpoints": 3, "total_timesteps": total_timesteps},
        "status": status,
        "error": "RuntimeError: boom" if status == "failed" else None,
        "stop_reason": "SIGINT" if status == "interrupted" else None,
        "pid": pid if pid is not None else 1,
        "hostname": host,
        "total_timesteps": total_timesteps,
        "total_steps": steps,
        "total_episodes": len(train),
        "wall_time_s": wall_time_s,
        "last_updated_utc": (created + timedelta(seconds=wall_time_s)).isoformat(),
        "latest_checkpoint_path": None,
        "latest_metrics": dict(metrics[-1]) if metrics else {},
        "best_checkpoint": None,
        "resumes": [],
        "wandb": None,
    }
    if summary is AUTO:
        metadata["summary"] = _summary(train, evals, steps, wall_time_s)
    elif summary is not None:
        metadata["summary"] = summary
    metadata.update(overrides)
    write_json_atomic(path / "metadata.json", metadata)
    (path / "config.yaml").write_text(dumps({"env_id": env_id, "seed": seed}) + "\n")
    _write_lines(path / "metrics.jsonl", list(metrics))
    _write_lines(
        path / "train_episodes.jsonl",
        [{"global_step": s, "return": r, "length": 10, "env_index": 0, "time": 0.0} for s, r in train],
    )
    _write_lines(
        path / "eval_episodes.jsonl",
        [
            {"global_step": s, "episode": i, "return": r, "length": 10, "seed": seed + i, "deterministic": True,
             "tag": "train", "checkpoint": None, "time": 0.0}
            for s, returns in sorted(evals.items())
            for i, r in enumerate(returns)
        ],
    )
    return path
