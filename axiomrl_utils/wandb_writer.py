"""Weights & Biases for a run (--track): start it, or resume it under the run's W&B id."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional


def start_wandb(project: str, entity: Optional[str], run_id: str, wandb_id: str, run_dir: Path, config: dict) -> Any:
    """Start (or, with the same `wandb_id`, resume) the W&B run; x-axis is `global_step`."""
    import wandb

    run = wandb.init(
        project=project,
        entity=entity,
        name=run_id,
        id=wandb_id,
        resume="allow",
        config=config,
        dir=str(run_dir),
    )
    run.define_metric("global_step")
    run.define_metric("*", step_metric="global_step")
    return run
