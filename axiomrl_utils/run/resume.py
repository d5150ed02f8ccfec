"""`--resume`: every check before anything on disk changes, then reopening the run directory at
its checkpoint (logs cut back to the checkpoint's step, a `resumes` entry in metadata.json)."""

from __future__ import annotations

import functools
import os
import socket
import sys
from pathlib import Path
from typing import Any, NamedTuple

from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import RunArgs, check_config_drift, read_config
from axiomrl_utils.host import run_process_alive
from axiomrl_utils.jsonl import JsonlDamage, check_jsonl, truncate_jsonl
from axiomrl_utils.provenance import git_state
from axiomrl_utils.rundir import read_metadata, utc_now


# The logs a resume cuts back to the checkpoint's step, and the field holding each row's step.
LOGS = (("metrics.jsonl", "global_step"), ("train_episodes.jsonl", "global_step"),
        ("eval_episodes.jsonl", "global_step"), ("checkpoints/checkpoints.jsonl", "step"))


def check_logs(run_dir: Path) -> None:
    """UsageError naming the file and line when a log is damaged other than by a torn last line:
    cutting it back would drop that line silently, so the resume stops before anything changes."""
    for name, field in LOGS:
        try:
            check_jsonl(run_dir / name, field)
        except JsonlDamage as e:
            raise UsageError(f"{e}, so the log is damaged; repair or remove that line (or start a new run), then resume") from None


class Resume(NamedTuple):
    """A checked resume: the run, its metadata, the checkpoint to continue from, accepted config changes."""

    run_dir: Path
    metadata: dict[str, Any]
    checkpoint: Path
    payload: dict[str, Any]
    config_changes: dict[str, tuple[Any, Any]]

    @property
    def step(self) -> int:
        return self.payload[ckpt.RESERVED]["global_step"]


def prepare_resume(args: RunArgs, algo: str, run_dir: Path) -> Resume:
    """Every check a resume needs, done before anything on disk changes; UsageError on bad input.

    Call it holding the run's lock (`RunLock`): the pid check below only catches runs of versions
    that did not lock.
    """
    meta = read_metadata(run_dir)
    if meta.get("status") == "running" and run_process_alive(meta) and meta.get("pid") != os.getpid():
        raise UsageError(f"{run_dir} is still being trained by process {meta['pid']}; stop it first (or wait for it)")
    changes = check_config_drift(read_config(run_dir), args)
    check_logs(run_dir)
    try:
        path, payload = ckpt.load_newest(run_dir / "checkpoints")
    except ckpt.CheckpointError as e:
        raise UsageError(f"{e}; the run cannot be resumed, start a new one instead") from None
    reserved = payload[ckpt.RESERVED]
    if reserved.get("algo") != algo:
        raise UsageError(f"{path} was saved by {reserved.get('algo')}.py, not {algo}.py; resume it with that script")
    step, total = reserved["global_step"], args.total_timesteps
    if meta.get("status") == "finished" and total <= step:
        raise UsageError(
            f"{run_dir} already finished its {step:,} steps; pass --total-timesteps larger than {step} to train it further"
        )
    if total <= step:
        raise UsageError(f"the checkpoint is at step {step:,} but --total-timesteps is {total:,}; pass a larger --total-timesteps")
    return Resume(run_dir, meta, path, payload, changes)


def _kept(row: dict[str, Any], field: str, step: int, eval_log: bool) -> bool:
    """Whether a log row stays at a resume from `step`: logged at or before it, or (eval_episodes.jsonl)
    an evaluation of `axiomrl eval` (other tags), which is not part of training."""
    return (eval_log and row.get("tag") != "train") or row.get(field, -1) <= step


def reopen_run_dir(resume: Resume, args: RunArgs, script_dir: Path) -> dict[str, Any]:
    """Cut the logs back to the checkpoint's step and record this resume in the metadata to continue
    with (returned; `Run.restore` writes it, and config.yaml, once the checkpoint has loaded)."""
    from axiomrl_utils.run.metadata import wandb_identity

    run_dir, meta, step = resume.run_dir, resume.metadata, resume.step
    for name, field in LOGS:
        truncate_jsonl(run_dir / name, functools.partial(_kept, field=field, step=step, eval_log=name == "eval_episodes.jsonl"), field)
    git, _ = git_state(script_dir)
    meta.setdefault("resumes", []).append(
        {
            "time_utc": utc_now(),
            "from_step": step,
            "checkpoint": str(resume.checkpoint.relative_to(run_dir)),
            "argv": list(sys.argv),
            "config_changes": {k: [old, new] for k, (old, new) in resume.config_changes.items()},
            "git": git,
            "envs_restored": None,
        }
    )
    meta.update({"status": "running", "error": None, "stop_reason": None, "pid": os.getpid(), "hostname": socket.gethostname()})
    meta["total_timesteps"] = meta.setdefault("benchmark", {})["total_timesteps"] = args.total_timesteps
    if args.track and not meta.get("wandb"):
        meta["wandb"] = wandb_identity(args)
    return meta


# Checkpoints written before the run kept the newest logged values (d80e42f and earlier) carried
# them as the scripts' own loop values: dqn and dqn_atari `td_loss`, c51 `loss`, those three
# `q_values`, sac/td3/ddpg a `metrics` dict. The last metrics row stands in for anything else.
LEGACY_LOGGED_VALUES = {"td_loss": "losses/td_loss", "loss": "losses/loss", "q_values": "losses/q_values"}


def logged_metrics_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The newest logged metric values a checkpoint holds, also for checkpoints from before the run kept them."""
    from axiomrl_utils.run.metrics import ROW_BOOKKEEPING

    run_state = payload[ckpt.RESERVED].get("run", {})
    if "logged_metrics" in run_state:
        return dict(run_state["logged_metrics"])
    row = run_state.get("latest_metrics") or {}
    logged = {k: v for k, v in row.items() if k not in ROW_BOOKKEEPING and not k.startswith("eval/")}
    if isinstance(payload.get("metrics"), dict):
        logged.update(payload["metrics"])
    for name, metric in LEGACY_LOGGED_VALUES.items():
        if payload.get(name) is not None:
            logged[metric] = float(payload[name])
    return logged
