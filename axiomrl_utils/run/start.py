"""`start_run`: check the run-management flags, then create the run directory (or reopen one with
--resume) and hand back the `Run` that trains in it."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Optional

from axiomrl_utils import UsageError
from axiomrl_utils.args import RunArgs, write_config
from axiomrl_utils.checks import check_args, warn_suspicious
from axiomrl_utils.host import writable_dir_problem
from axiomrl_utils.jsonl import remove_stale_temp_files, write_json_atomic, write_text_atomic
from axiomrl_utils.provenance import git_state
from axiomrl_utils.run.lock import RunLock
from axiomrl_utils.run.resume import prepare_resume, reopen_run_dir
from axiomrl_utils.run.training_run import Run
from axiomrl_utils.run.write_errors import failed_write, write_fix
from axiomrl_utils.rundir import DRY_RUN_OK, METADATA_FILE, create_run_dir, find_run_to_resume


def check_run_args(args: RunArgs) -> None:
    """Run-management flags that cannot work, and extras they need, before anything is created."""
    for name in ("env_id", "total_timesteps"):
        if not hasattr(args, name):
            raise TypeError(f"{type(args).__name__} must declare `{name}`: run management reads it (see docs/writing-a-script.md)")
    check_args(args)
    if args.track and importlib.util.find_spec("wandb") is None:
        raise UsageError("--track needs Weights & Biases; install it with `pip install 'axiomrl[wandb]'`")
    if args.capture_video and importlib.util.find_spec("moviepy") is None:
        raise UsageError("--capture-video needs moviepy; install it with `pip install 'axiomrl[video]'`")


def start_run(args: RunArgs, script: str, log_every: Optional[int] = None) -> Run:
    """Create a run directory (or reopen one with --resume) and everything it holds; return the Run.

    Fresh run: `<output_dir>/<algo>__<env>__seed<seed>__<time>/` with metadata.json, config.yaml,
    code.diff (dirty git tree only), log files and TensorBoard/W&B writers. With --resume: the same
    directory, logs cut back to the checkpoint's step, a `resumes` entry, TensorBoard purged past
    that step, W&B resumed under the same id. Bad input raises UsageError before any change.

    `log_every`: write a metrics row every this many steps (and at the last step); None writes one
    at each step the script logs metrics at (once per iteration for PPO).
    """
    from axiomrl_utils.run.metadata import new_metadata

    script_path = Path(script).resolve()
    algo = script_path.stem
    check_run_args(args)
    if args.dry_run:
        if args.resume:
            run_dir = find_run_to_resume(args.resume, algo)
            with RunLock.acquire(run_dir):  # a run being trained fails the dry run as it would fail the resume
                prepare_resume(args, algo, run_dir)
        warn_suspicious(args)
        what = f"resume of {args.resume}" if args.resume else f"{algo} on {args.env_id} seed {args.seed}"
        print(f"{DRY_RUN_OK}: {what}; the arguments are valid and nothing was created", flush=True)
        raise SystemExit(0)
    if args.resume:
        run_dir = find_run_to_resume(args.resume, algo)
        lock = RunLock.acquire(run_dir)  # before anything of the run is read: one writer per run
        try:
            resume = prepare_resume(args, algo, run_dir)
            warn_suspicious(args)
            remove_stale_temp_files(run_dir, run_dir / "checkpoints")  # a killed writer's; ours now, under the lock
            meta = reopen_run_dir(resume, args, script_path.parent)
            # config.yaml and metadata.json change in run.restore(), once the checkpoint has loaded
            return Run(args, algo, run_dir, meta, log_every=log_every, resume_payload=resume.payload,
                       config_changes=resume.config_changes, lock=lock)
        except BaseException as e:
            lock.release()
            failed = failed_write(e, run_dir)
            if failed:  # the logs a resume cuts back are replaced atomically: a later resume does the same
                raise UsageError(f"cannot write {failed[0]} ({failed[1]}) to reopen the run; {write_fix(e)}, "
                                 f"then resume again with --resume {run_dir}") from None
            raise

    output_dir = Path(args.output_dir).expanduser()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write to --output-dir {args.output_dir} ({e.strerror or e}); pass a writable directory") from None
    problem = writable_dir_problem(output_dir)
    if problem:
        raise UsageError(f"cannot write to --output-dir {args.output_dir} ({problem}); pass a writable directory")
    warn_suspicious(args)
    try:
        run_dir = create_run_dir(output_dir, algo, args.env_id, args.seed)
    except OSError as e:
        raise UsageError(f"cannot create a run directory in --output-dir {args.output_dir} ({e.strerror or e}); "
                         f"{write_fix(e)} or pass another --output-dir") from None
    lock, run = None, None
    try:
        lock = RunLock.acquire(run_dir)  # held from the start, so a --resume of this run waits its turn
        git, diff = git_state(script_path.parent)
        write_config(run_dir, args)
        if diff is not None:
            write_text_atomic(run_dir / "code.diff", diff)
        meta = new_metadata(args, algo, script_path, run_dir, git)
        write_json_atomic(run_dir / METADATA_FILE, meta)
        run = Run(args, algo, run_dir, meta, log_every=log_every, lock=lock)
        run._write_metadata()
    except BaseException as e:
        # a run directory that could not be set up completely (a full disk) is no run: none is left behind
        if run is not None:
            _close_quietly(run)
        if lock is not None:
            lock.release()
        shutil.rmtree(run_dir, ignore_errors=True)
        failed = failed_write(e, run_dir)
        if failed:
            raise UsageError(f"cannot write {failed[0]} ({failed[1]}), so no run was created; "
                             f"{write_fix(e)} or pass another --output-dir") from None
        raise
    return run


def _close_quietly(run: Run) -> None:
    """Close the writers and put the signal handlers back of a run whose directory is about to go."""
    try:
        run.close(status="failed")
    except Exception:
        pass  # its files are removed next
