"""`Run`: one training session of a run, coordinating the parts that each do one job: the metrics
log, the cadence, the best checkpoint, the checkpoint store, metadata.json and the stop signals."""

from __future__ import annotations

import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import MUTABLE_ON_RESUME, RunArgs, args_to_dict, write_config
from axiomrl_utils.console import fmt_bytes
from axiomrl_utils.jsonl import remove_stale_temp_files
from axiomrl_utils.run.best import BestTracker
from axiomrl_utils.run.cadence import NEVER, Cadence
from axiomrl_utils.run.checkpoints import CheckpointStore
from axiomrl_utils.run.lock import RunLock
from axiomrl_utils.run.metadata import MetadataFile
from axiomrl_utils.run.metrics import MetricsLog
from axiomrl_utils.run.resume import logged_metrics_of
from axiomrl_utils.run.signals import EXIT_CODES, StopSignals, take_stop_request
from axiomrl_utils.replay_store import DIRECTORY as REPLAY_DIRECTORY
from axiomrl_utils.replay_store import ReplayStore
from axiomrl_utils.run.state import DeclaredState
from axiomrl_utils.run.write_errors import failed_write, write_fix

class Run:
    """One training run (possibly resumed). Create it with `start_run`, use it as a context manager."""

    def __init__(
        self,
        args: RunArgs,
        algo: str,
        run_dir: Path,
        metadata: dict[str, Any],
        log_every: Optional[int] = None,
        resume_payload: Optional[dict[str, Any]] = None,
        config_changes: Optional[dict[str, tuple[Any, Any]]] = None,
        lock: Optional[RunLock] = None,
    ) -> None:
        from axiomrl_utils.console import ConsoleProgress
        from axiomrl_utils.reproducibility import select_device
        from axiomrl_utils.run.logs import RunLogger

        self.args, self.algo, self.dir = args, algo, run_dir
        self.device = select_device(args.cuda)
        self._resume_payload = resume_payload
        self._config_changes = config_changes or {}
        self._lock = lock
        # a resume writes config.yaml and metadata.json only once restore() has loaded the checkpoint,
        # so a checkpoint that does not fit a changed config leaves both as they were
        self._committed = resume_payload is None
        reserved = resume_payload[ckpt.RESERVED] if resume_payload else {}
        saved = dict(reserved.get("run", {}))
        if resume_payload:
            saved["logged_metrics"] = logged_metrics_of(resume_payload)
        self.global_step: int = reserved.get("global_step", 0)
        self._session_start_step, self._session_start = self.global_step, time.monotonic()
        self._wall_time_prior = float(saved.get("wall_time_s", 0.0))
        self._open_step: Optional[int] = None  # the step whose metrics row is not decided yet
        self._last_row_step: Optional[int] = None
        self._last_saved_step: Optional[int] = None
        self._eval_envs: Any = None
        self._closed = False
        # the checkpoint file a save is writing (step, path, estimated size), for the sentence if it fails
        self._saving: Optional[tuple[int, Path, int]] = None
        self._checkpoint_bytes = _file_size(run_dir / "checkpoints" / "latest.pt") if resume_payload else None

        self.metadata = MetadataFile(run_dir, metadata)
        replay_store = ReplayStore(run_dir / "checkpoints" / REPLAY_DIRECTORY)
        self.state = DeclaredState(replay_store)
        self.best = BestTracker(args.best_metric, args.best_mode, saved.get("best"))
        # log_every None: a row at each step the script logged metrics at; N: at multiples of N and the last step
        self.log_every = log_every
        pause = args.pause_at_step
        # the first step at which a checkpoint can be urgent by itself: any step when a training metric
        # picks the best; otherwise only at --pause-at-step (an evaluation or a signal wakes it)
        self._checkpoint_urgent_from = 0 if not self.best.by_evaluation else (pause if pause is not None else NEVER)
        self.cadence = Cadence(
            args.total_timesteps,
            {"eval": args.eval_every, "checkpoint": args.checkpoint_every, "log": log_every or 0},
            start_step=self.global_step,
        )
        wandb_run = None
        if args.track:
            from axiomrl_utils.wandb_writer import start_wandb

            wandb_run = start_wandb(
                args.wandb_project_name, args.wandb_entity, run_dir.name, metadata["wandb"]["id"], run_dir, args_to_dict(args)
            )
        # purge_step hides what a crashed session logged past the checkpoint a resume starts from
        logger = RunLogger(run_dir, purge_step=self.global_step + 1 if resume_payload else None, wandb_run=wandb_run)
        self.metrics = MetricsLog(logger, saved)
        self.checkpoints = CheckpointStore(run_dir / "checkpoints", args.keep_checkpoints, replay_store)
        self.progress = ConsoleProgress(
            f"{algo} {metadata['env_id']} seed{metadata['seed']}", args.total_timesteps, self.global_step, args.progress
        )
        self.signals = StopSignals(self.progress.message)
        self.signals.install()

    # ------------------------------------------------------------------ context management
    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            try:
                self.finish()
            except Exception as e:
                self._stop_if_write_failed(e)
                raise
            return False
        if issubclass(exc_type, KeyboardInterrupt):  # a second Ctrl-C: one line, not a traceback
            self.close(status="interrupted", stop_reason="SIGINT")
            where = f"step {self._last_saved_step:,}" if self._last_saved_step is not None else "its last checkpoint"
            self.progress.message(f"interrupted: the run continues from {where} with --resume {self.dir}")
            raise SystemExit(EXIT_CODES[signal.SIGINT]) from None
        self._stop_if_write_failed(exc)
        message = str(exc) or exc_type.__name__
        self.close(status="failed", error=f"{exc_type.__name__}: {message}"[:2000])
        return False

    # ------------------------------------------------------------------ a write that failed
    def _stop_if_write_failed(self, exc: BaseException) -> None:
        """The one place a failed write of the run (a full disk) ends it: temp files of the write
        removed, status `failed` in metadata.json (when that can still be written; else the previous
        file stays), one sentence naming the file and the space a checkpoint needs, exit 1 through
        UsageError, no traceback. The directory resumes from its last good checkpoint. Returns when
        `exc` is something else."""
        saving, self._saving = self._saving, None
        failed = failed_write(exc, self.dir, saving[1] if saving else None)
        if failed is None:
            return
        path, reason = failed
        size = (saving[2] if saving else None) or self._checkpoint_bytes or self._state_nbytes()
        need = f"; a checkpoint of this run needs about {fmt_bytes(size)}" if size else ""
        step = self._last_good_step(saving)
        then = (f"continue it from step {step:,} with --resume {self.dir}" if step is not None
                else "start it again (it has no checkpoint to continue from)")
        sentence = f"cannot write {path} ({reason}{need}), so the run stopped as failed; {write_fix(exc)}, then {then}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the sentence is the report, not a warning per writer that fails too
            try:
                if self._closed:  # the last write of finish() failed: try once more to record the status
                    self.metadata.data.update(status="failed", error=sentence, stop_reason=None)
                    self._write_metadata(durable=True)
                else:
                    # under the run's lock still: what the failed write left is the space the user needs back
                    remove_stale_temp_files(self.dir, self.dir / "checkpoints")
                    self.close(status="failed", error=sentence)
            except Exception:
                pass  # metadata.json cannot be written either: the previous one stays, whole
        raise UsageError(sentence) from None

    def _state_nbytes(self) -> Optional[int]:
        """The declared state's size in memory: what a first checkpoint needs, roughly."""
        try:
            return ckpt.state_nbytes({name: obj.state_dict() if hasattr(obj, "state_dict") else obj
                                 for name, obj in self.state.objects.items()}) or None
        except Exception:
            return None

    def _last_good_step(self, saving: Optional[tuple[int, Path, int]]) -> Optional[int]:
        """The step a resume continues from: latest.pt's (the save that failed may have linked it already)."""
        if saving is not None:
            try:
                if os.path.samefile(self.dir / "checkpoints" / "latest.pt", saving[1]):
                    return saving[0]
            except OSError:
                pass
        if self._last_saved_step is not None:
            return self._last_saved_step
        return self._session_start_step if self._resume_payload is not None else None

    # ------------------------------------------------------------------ state
    def declare_state(self, envs: Any = None, **objects: Any) -> None:
        """Declare, once, what every checkpoint holds and a resume loads back: modules, optimizers,
        buffers and tensors by name (tensors are restored in place), and the vector env."""
        self.state.declare(envs, **objects)

    def restore(self) -> dict[str, Any]:
        """Load the resumed checkpoint into the declared state; return its loop values.

        Modules, optimizers and buffers get their state dicts, tensors their values in place, the
        environments their pickled state (in place) where it was saved, and python/numpy/torch RNGs
        their states. Returns the loop values the script saved (e.g. `iteration`, `next_obs`) plus
        `global_step` and `envs_restored`.
        """
        from axiomrl_utils.reproducibility import set_rng_state

        if self._resume_payload is None:
            raise RuntimeError("Run.restore() is only for runs started with --resume")
        if not self.state.declared:
            raise RuntimeError("declare what the run checkpoints with run.declare_state(...) before run.restore()")
        payload, reserved = self._resume_payload, self._resume_payload[ckpt.RESERVED]
        try:
            values = self.state.load(payload)
            if self.state.envs is not None and reserved["envs"] is not None:
                ckpt.restore_vector_env(self.state.envs, reserved["envs"])
        except Exception as e:
            changed = [k for k in self._config_changes if k not in MUTABLE_ON_RESUME]
            if not changed:
                raise
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(
                f"the checkpoint does not fit the changed {', '.join(changed)} ({why[:200]}); "
                "resume with the run's values, or start a new run with the new ones"
            ) from None
        envs_restored = False
        if self.state.envs is not None:
            if reserved["envs"] is not None:
                envs_restored = True
            else:
                self.progress.message(
                    f"note: the environments were not saved ({reserved['envs_reason']}); "
                    "they restart from a reset, so episodes in progress at the checkpoint start over"
                )
        set_rng_state(reserved["rng"])
        self.metadata.data["resumes"][-1]["envs_restored"] = envs_restored
        write_config(self.dir, self.args)
        self._committed = True
        self._write_metadata()
        return {**values, "global_step": reserved["global_step"], "envs_restored": envs_restored}

    # ------------------------------------------------------------------ logging
    def log_episodes(self, global_step: int, infos: dict[str, Any]) -> None:
        """Log every training episode that ended in this step (gymnasium's vector `infos["episode"]`)."""
        # called at every env step: only closes an earlier step that has something to decide
        if self._open_step is not None and global_step != self._open_step:
            self._close_step()
        if "_episode" in infos:
            self.metrics.episodes(global_step, infos)

    def log_metrics(self, global_step: int, metrics: dict[str, Any]) -> None:
        """Log metrics where they are computed (numbers or one-element tensors); the run writes
        them in the metrics rows it decides on (see axiomrl_utils/run/metrics.py)."""
        if global_step != self._open_step:
            self._advance(global_step)
        self.metrics.log(global_step, metrics)

    def _advance(self, global_step: int) -> None:
        """A call for a new step: the previous step is over, so write its row if it gets one."""
        if self._open_step is not None:
            self._close_step()
        self._open_step = global_step

    def _close_step(self) -> None:
        step, self._open_step = self._open_step, None
        if step is None or step == self._last_row_step:
            return
        if self.log_every:
            row_due = not self.cadence.quiet("log", step) and self.cadence.due("log", step)
        else:
            row_due = self.metrics.logged_at == step
        if row_due or (self.metrics.eval_at == step and self.metrics.pending_eval):
            self._write_row(step)

    def _write_row(self, step: int) -> None:
        self._last_row_step = step
        session_seconds = max(time.monotonic() - self._session_start, 1e-9)
        sps = (step - self._session_start_step) / session_seconds
        self.metrics.write_row(step, sps, self._wall_time_prior + session_seconds)
        if self.progress.enabled:
            self.progress.update(step, sps, self.metrics.recent_mean(), self.metrics.eval_last)
        if self.metadata.stale():
            self._write_metadata()

    # ------------------------------------------------------------------ cadence
    def due(self, kind: Literal["eval", "checkpoint"], global_step: int) -> bool:
        """Whether to evaluate (`kind="eval"`) or checkpoint (`"checkpoint"`) at this step.

        True when `global_step` crossed a multiple of --eval-every / --checkpoint-every, at the last
        step of training, and (checkpoints only) after a new best evaluation or when a stop was
        requested (axiomrl_utils/run/cadence.py has the rule).
        """
        if kind not in ("eval", "checkpoint"):
            raise ValueError(f"run.due takes 'eval' or 'checkpoint', not {kind!r}")
        if global_step != self._open_step:
            self._advance(global_step)
        self.global_step = global_step
        if self.cadence.quiet(kind, global_step) and self.signals.received is None:
            return False  # off-policy scripts ask twice per env step: most answers end here
        if kind == "eval":
            return self.cadence.due("eval", global_step)
        return self.cadence.due(
            "checkpoint", global_step, self._checkpoint_urgent, self._checkpoint_urgent_from, self.signals.received is not None
        )

    def _checkpoint_urgent(self) -> bool:
        """A checkpoint off the cadence: a stop was requested, or the parameters now are a new best."""
        if self.stop_requested:
            return True
        if not self.best.by_evaluation and self._open_step == self.global_step:
            self._close_step()  # a training metric is judged from the rows, so this step's row first
        return self._best_pending()

    @property
    def stop_requested(self) -> bool:
        """True after SIGINT/SIGTERM or once --pause-at-step is reached: save, then leave the loop."""
        pause = self.args.pause_at_step
        return self.signals.received is not None or (pause is not None and self.global_step >= pause)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, global_step: int, policy: Callable[[Any], Any], make_env: Callable[..., Callable[[], Any]]) -> dict[str, float]:
        """Run --eval-episodes episodes of `policy` and log them; returns the eval/* metrics.

        `policy` maps an observation batch (float32 tensor on the run's device) to actions and
        should be deterministic. `make_env(args, idx, evaluation=True, render_mode=...)` is the
        script's env factory; evaluation envs are built once and reused with fixed seeds.
        """
        from axiomrl_utils.evaluation import episode_rows, eval_seeds, make_eval_envs, run_episodes, summarize

        if global_step != self._open_step:
            self._advance(global_step)
        if self._eval_envs is None:
            self._eval_envs = make_eval_envs(
                [
                    make_env(self.args, i, evaluation=True, render_mode="rgb_array" if self.args.capture_video and i == 0 else None)
                    for i in range(self.args.eval_episodes)
                ]
            )
        video = self.dir / "videos" / f"eval_step{global_step:010d}.mp4" if self.args.capture_video else None
        episodes = run_episodes(policy, self._eval_envs, eval_seeds(self.args.seed, self.args.eval_episodes), self.device, video)
        self.metrics.logger.eval_rows(episode_rows(episodes, global_step, tag="train", checkpoint=None, deterministic=True))
        metrics = summarize(episodes)
        self.record_evaluation(global_step, metrics)
        return metrics

    def record_evaluation(self, global_step: int, metrics: dict[str, float]) -> None:
        """Take an evaluation's eval/* metrics (`eval/return_mean` at least) as this step's: they
        go into its metrics row, the summary, and may make a new best checkpoint due now."""
        self.metrics.record_evaluation(global_step, metrics)
        self.cadence.wake("checkpoint")

    # ------------------------------------------------------------------ checkpoints
    def _best_pending(self) -> bool:
        return self.best.beats(self.metrics.value_now(self.best.metric, self.global_step))

    def save(self, global_step: int, **values: Any) -> Path:
        """Save a checkpoint: the declared state plus the loop `values` (saved as they are).

        Writes step_<N>.pt, latest.pt, best.pt when best by --best-metric, then prunes old step
        files. Every file is replaced atomically, so a kill at any instant leaves the previous
        checkpoint; a write that fails (a full disk) ends the run as it leaves the `with` block, in
        one sentence, resumable from that previous checkpoint (`_stop_if_write_failed`).
        """
        if not self.state.declared:
            raise RuntimeError("declare what the run checkpoints with run.declare_state(...) before run.save()")
        if not self._committed:
            raise RuntimeError("a resumed run must call run.restore() before run.save()")
        if global_step != self._open_step:
            self._advance(global_step)
        self._close_step()  # the row of this step belongs before its checkpoint
        self.global_step = global_step
        value = self.metrics.value_now(self.best.metric, global_step)
        is_best = value is not None and self.best.beats(value)
        if value is not None and is_best:
            self.best.record(value, global_step, f"checkpoints/{self.checkpoints.step_file(global_step).name}")
        meta = {
            "algo": self.algo,
            "env_id": self.args.env_id,
            "global_step": global_step,
            "config": args_to_dict(self.args),
            "run": {"wall_time_s": self._wall_time(), "best": self.best.best, **self.metrics.state()},
        }
        step_path = self.checkpoints.step_file(global_step)
        self._saving = (global_step, step_path, self._checkpoint_bytes or 0)  # building the payload stores replay buffers
        payload, resume_state = self.state.build_payload(values, meta)
        # the declared objects' bytes (the buffer's included) dominate a checkpoint: no second walk of the payload
        size = max(sum(resume_state["modules"].values()), self._checkpoint_bytes or 0)
        self._saving = (global_step, step_path, size)
        with self.signals.deferred():  # a second Ctrl-C now waits for the checkpoint to be complete
            # the logs reach the file before the checkpoint that a resume cuts them back to
            self.metrics.logger.flush()
            step_file = self.checkpoints.write(global_step, payload, resume_state, is_best, self.metrics.latest_row)
            self._saving = None
            self._last_saved_step = global_step
            self._checkpoint_bytes = _file_size(step_file)
            self.metadata.data["latest_checkpoint_path"] = "checkpoints/latest.pt"
            self._write_metadata(durable=True)
        return step_file

    # ------------------------------------------------------------------ metadata and shutdown
    def _wall_time(self) -> float:
        return self._wall_time_prior + (time.monotonic() - self._session_start)

    def _write_metadata(self, durable: bool = False) -> None:
        if not self._committed:
            return  # a resume whose checkpoint has not loaded yet leaves metadata.json as it was
        wall = self._wall_time()
        self.metadata.write(
            durable,
            total_steps=self.global_step,
            total_episodes=self.metrics.total_episodes,
            wall_time_s=wall,
            latest_metrics=self.metrics.latest_row,
            best_checkpoint=self.best.best,
            summary={
                **self.metrics.summary(),
                "sps": self.global_step / wall if self.global_step and wall > 0 else None,
            },
        )

    def finish(self) -> None:
        """Mark the run finished, or interrupted after a signal / --pause-at-step (or the status a stop
        request file asked for, `pruned`), and close everything.

        After SIGINT/SIGTERM this raises SystemExit(130/143) so shells and schedulers see the stop.
        """
        if self._closed:
            return
        if self.signals.received is not None:
            # the sender may have said why it stopped the run (a pruned trial of `axiomrl tune`)
            status, reason = take_stop_request(self.dir) or ("interrupted", self.signals.name)
            self.close(status=status, stop_reason=reason)
            raise SystemExit(self.signals.exit_code)
        if self.stop_requested and not self.cadence.at_last_step(self.global_step):
            self.close(status="interrupted", stop_reason="pause_at_step")
            self.progress.message(f"paused at step {self.global_step:,}; continue with --resume {self.dir}")
            return
        if self._last_saved_step != self.global_step:
            warnings.warn(f"the run ended at step {self.global_step} without a checkpoint there", stacklevel=2)
        self.close(status="finished")
        data = self.metadata.data
        summary = data["summary"]
        parts = [f"finished {self.global_step:,} steps in {data['wall_time_s']:.0f}s"]
        if summary["sps"]:
            parts.append(f"SPS {summary['sps']:,.0f}")
        if summary["train_return_last100"] is not None:
            parts.append(f"return (last {summary['train_episodes_in_mean']}) {summary['train_return_last100']:.2f}")
        if summary["eval_return_best"] is not None:
            parts.append(f"best eval {summary['eval_return_best']:.2f}")
        self.progress.message(f"[{self.progress.label}] " + " | ".join(parts) + f"\n  run directory: {self.dir}")

    def close(self, status: str = "interrupted", error: Optional[str] = None, stop_reason: Optional[str] = None) -> None:
        """Write the last metrics row, close every writer, put the signal handlers back, and record
        `status` in metadata.json. `finish()` (or leaving the `with` block) calls it; call it
        directly only for a run you drive by hand."""
        if self._closed:
            return
        self._closed = True
        self.progress.close()
        self.metadata.data.update({"status": status, "error": error, "stop_reason": stop_reason})
        try:
            self._close_step()
        except Exception as e:  # e.g. a logged tensor on a failed device: keep closing, keep the original error
            warnings.warn(f"the last metrics row could not be written ({type(e).__name__}: {e})", stacklevel=2)
        failure: Optional[Exception] = None
        for close in (self.metrics.logger.close, self.checkpoints.close, self._close_eval_envs):
            try:  # each one, also after another failed (a full disk): no writer is left open
                close()
            except Exception as e:
                failure = failure or e
        try:
            self._write_metadata(durable=True)
        finally:
            if self._lock is not None:
                self._lock.release()
            # last: a stop signal that arrives while the final status is written (a sweep sends
            # SIGTERM from two places) must not kill the process with metadata.json half replaced
            self.signals.restore()
        if failure is not None:
            raise failure

    def _close_eval_envs(self) -> None:
        if self._eval_envs is not None:
            self._eval_envs.close()


def _file_size(path: Path) -> Optional[int]:
    try:
        return path.stat().st_size
    except OSError:
        return None
