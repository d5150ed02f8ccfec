"""metadata.json: the run's identity and context, written at start, and its progress, rewritten
atomically during training (every few seconds with the logs, durably after each checkpoint and
at the end)."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils.args import RunArgs
from axiomrl_utils.envs import observation_adapter
from axiomrl_utils.jsonl import write_json_atomic
from axiomrl_utils.provenance import package_versions, system_info
from axiomrl_utils.rundir import METADATA_FILE, utc_now

SCHEMA_VERSION = 1
METADATA_INTERVAL_S = 10.0  # how stale the progress in metadata.json may get between checkpoints


def wandb_identity(args: RunArgs) -> dict[str, Any]:
    """A run's W&B project, entity and id (the id lets a resume continue the same W&B run)."""
    return {"project": args.wandb_project_name, "entity": args.wandb_entity, "id": uuid.uuid4().hex[:12]}


def new_metadata(args: RunArgs, algo: str, script: Path, run_dir: Path, git: Optional[dict]) -> dict[str, Any]:
    """metadata.json of a run that starts now: identity, context, and empty progress."""
    return {
        "schema_version": SCHEMA_VERSION,
        "algo": algo,
        "env_id": args.env_id,
        "observation_adapter": observation_adapter(args.env_id),
        "seed": args.seed,
        "run_id": run_dir.name,
        "output_dir": str(run_dir.resolve()),
        "script": str(script),
        "created_at_utc": utc_now(),
        "command": list(sys.argv),
        "system": system_info(),
        "versions": package_versions(),
        "git": git,
        "benchmark": {
            "best_metric": args.best_metric,
            "best_mode": args.best_mode,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "checkpoint_every": args.checkpoint_every,
            "keep_checkpoints": args.keep_checkpoints,
            "total_timesteps": args.total_timesteps,
        },
        "status": "running",
        "error": None,
        "stop_reason": None,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "total_timesteps": args.total_timesteps,
        "total_steps": 0,
        "total_episodes": 0,
        "wall_time_s": 0.0,
        "last_updated_utc": utc_now(),
        "latest_checkpoint_path": None,
        "latest_metrics": {},
        "best_checkpoint": None,
        "summary": {},
        "resumes": [],
        "wandb": wandb_identity(args) if args.track else None,
    }


class MetadataFile:
    """The run's metadata.json: `data` in memory, written whole and atomically by `write`."""

    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.path, self.data = run_dir / METADATA_FILE, data
        self._written = 0.0

    def stale(self) -> bool:
        """Whether the progress on disk is older than METADATA_INTERVAL_S."""
        return time.monotonic() - self._written >= METADATA_INTERVAL_S

    def write(self, durable: bool = False, **progress: Any) -> None:
        """Update the progress fields given, then rewrite the file; `durable` (fsync) where a resume relies on it."""
        self.data.update(progress, last_updated_utc=utc_now())
        write_json_atomic(self.path, self.data, durable=durable)
        self._written = time.monotonic()
