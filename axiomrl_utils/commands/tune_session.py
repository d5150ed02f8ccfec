"""One session of `axiomrl tune`: start the workers (local processes or Ray tasks), follow the
study's storage and show each trial that starts, finishes, is pruned or fails, stop the workers on
Ctrl-C/SIGTERM (their runs checkpoint), and write the report at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils.commands.tune_worker import STUDY_FILE
from axiomrl_utils.jsonl import write_json_atomic
from axiomrl_utils.rundir import utc_now

TICK_S = 1.0


def run_session(args: argparse.Namespace, study_dir: Path, study: dict[str, Any], shown_argv: list[str]) -> int:
    """Run the study's remaining trials on `args.workers` workers, then write the report; returns the exit status."""
    from axiomrl_utils.commands.sweep import Display
    from axiomrl_utils.commands.tune_report import write_report
    from axiomrl_utils.commands.tune_worker import open_study

    settings = study["settings"]
    session_id = uuid.uuid4().hex[:8]
    session = {"id": session_id, "started_at_utc": utc_now(), "argv": shown_argv, "backend": args.backend,
               "workers": args.workers, "trials": study["trials"], "ended_at_utc": None, "status": "running"}
    study["sessions"].append(session)
    study.update(status="running", driver={"pid": os.getpid(), "hostname": socket.gethostname()})
    save(study_dir, study)
    optuna_study = open_study(study_dir, settings)
    runs_per_trial = len(settings["env_ids"]) * len(settings["seeds"])
    print(f"study {study_dir}: {study['trials']} trials of {settings['algo']} on {', '.join(settings['env_ids'])}, "
          f"{len(settings['seeds'])} seed(s) each ({runs_per_trial} runs per trial), {args.workers} at a time on the "
          f"{args.backend} backend", flush=True)

    workers = RayWorkers(args, study_dir, session_id, runs_per_trial) if args.backend == "ray" else LocalWorkers(args.workers, study_dir, session_id)
    display = Display(study["trials"], live=sys.stdout.isatty(), label="tune")
    signals: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: signals.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    seen: dict[int, str] = {}
    stopping = False
    try:
        workers.start()
        while True:
            if signals and not stopping:
                stopping = True
                display.line(f"{signal.Signals(signals[0]).name}: stopping; running trials save a checkpoint and continue "
                             "when the study is rerun")
                workers.stop()
            running = workers.alive()
            _show_progress(optuna_study, study_dir, seen, display, settings["objective"]["direction"], study["trials"])
            if not running:
                break
            time.sleep(TICK_S)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        workers.close()
        display.close()
    _show_progress(optuna_study, study_dir, seen, display, settings["objective"]["direction"], study["trials"])

    import optuna

    trials = optuna_study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    done = sum(s != optuna.trial.TrialState.RUNNING for s in states)
    status = "interrupted" if signals or workers.failed() else ("finished" if done >= study["trials"] else "incomplete")
    study["status"] = status
    session.update(ended_at_utc=utc_now(), status=status)
    save(study_dir, study)
    print(write_report(study_dir, optuna_study, settings), end="", flush=True)
    again = f"axiomrl tune --name {study['name']}" + (f" --output-dir {args.output_dir}" if args.output_dir != "runs" else "")
    if status != "finished":
        why = workers.failed() or ("the study was interrupted" if signals else f"{done} of {study['trials']} trials ended")
        print(f"error: {why}; continue the study with `{again}`", file=sys.stderr)
        return 130 if signals else 1
    if not complete:
        print(f"error: no trial of the study finished (see the trials' logs in {study_dir / 'trials'}); fix the cause and "
              f"rerun with `{again}`", file=sys.stderr)
        return 1
    return 0


def save(study_dir: Path, study: dict[str, Any]) -> None:
    study["updated_at_utc"] = utc_now()
    write_json_atomic(study_dir / STUDY_FILE, study)


def _show_progress(study: Any, study_dir: Path, seen: dict[int, str], display: Any, direction: str, target: int) -> None:
    """One line per trial that started, finished, was pruned or failed since the last call; the live stats."""
    from axiomrl_utils.commands.sweep_backends import read_json_quiet
    from axiomrl_utils.commands.tune_space import describe
    from axiomrl_utils.commands.tune_worker import TRIAL_FILE, trial_dir

    trials = study.get_trials(deepcopy=False)
    best = None
    for t in trials:
        if t.value is not None and t.state.name == "COMPLETE":
            if best is None or (t.value > best.value if direction == "maximize" else t.value < best.value):
                best = t
    best_text = f"best {best.value:.4g} (trial {best.number})" if best is not None else "no score yet"
    for t in trials:
        state = t.state.name.lower()
        if seen.get(t.number) == state:
            continue
        seen[t.number] = state
        if state == "running":
            resumed = read_json_quiet(trial_dir(study_dir, t.number) / TRIAL_FILE).get("resumed")
            display.line(f"trial {t.number} {'resumed' if resumed else 'started'}: {describe(t.params)}")
        elif state == "complete":
            ci = t.user_attrs.get("score_ci") or [None, None]
            ci_text = f" [{ci[0]:.4g}, {ci[1]:.4g}]" if ci[0] is not None else ""
            display.line(f"trial {t.number} finished: score {t.value:.4g}{ci_text}; {best_text}")
        elif state == "pruned":
            step = t.user_attrs.get("pruned_at_step")
            display.line(f"trial {t.number} pruned at step {step:,}; {best_text}" if isinstance(step, int) else f"trial {t.number} pruned; {best_text}")
        elif state == "fail":
            display.line(f"trial {t.number} FAILED: {t.user_attrs.get('error', 'see its logs')}")
    counts = {s: sum(t.state.name.lower() == s for t in trials) for s in ("complete", "pruned", "fail", "running")}
    display.update(counts["complete"] + counts["pruned"] + counts["fail"],
                   f"{counts['complete']} done, {counts['pruned']} pruned, {counts['fail']} failed, {counts['running']} running; {best_text}")


class LocalWorkers:
    """`n` worker processes on this machine; each gets SIGTERM when this process dies (even by SIGKILL)."""

    def __init__(self, n: int, study_dir: Path, session: str) -> None:
        self.n, self.study_dir, self.session = n, study_dir.resolve(), session
        self.procs: list[subprocess.Popen] = []
        self._failed: Optional[str] = None

    def start(self) -> None:
        from axiomrl_utils.commands.sweep_backends import die_with_parent

        logs = self.study_dir / "workers"
        logs.mkdir(exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for k in range(self.n):
            with open(logs / f"worker-{k}.log", "ab") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "axiomrl_utils.commands.tune_worker", str(self.study_dir), "--session", self.session,
                     "--worker", str(k)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    preexec_fn=die_with_parent))

    def alive(self) -> bool:
        for k, p in enumerate(self.procs):
            if p.poll() not in (None, 0) and self._failed is None:
                self._failed = f"worker {k} exited with status {p.returncode} (log {self.study_dir / 'workers' / f'worker-{k}.log'})"
        return any(p.poll() is None for p in self.procs)

    def failed(self) -> Optional[str]:
        self.alive()
        return self._failed

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait()


class RayWorkers:
    """`n` workers as Ray tasks, each with as many CPUs as a trial has runs, sharing the study's storage."""

    def __init__(self, args: argparse.Namespace, study_dir: Path, session: str, runs_per_trial: int) -> None:
        from axiomrl_utils.commands.sweep_backends import RayBackend

        self.backend = RayBackend(args.ray_address, args.workers, runs_per_trial)  # connects, or starts a local cluster
        self.ray = self.backend.ray
        from axiomrl_utils.commands.tune_worker import work

        self.remote = self.ray.remote(num_cpus=runs_per_trial, max_retries=0)(work)
        self.n, self.study_dir, self.session = args.workers, str(study_dir.resolve()), session
        self.refs: list[Any] = []
        self._failed: Optional[str] = None

    def start(self) -> None:
        self.refs = [self.remote.remote(self.study_dir, self.session, k) for k in range(self.n)]

    def alive(self) -> bool:
        if not self.refs:
            return False
        ready, _ = self.ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        for ref in ready:
            try:
                self.ray.get(ref)
            except self.ray.exceptions.TaskCancelledError:
                pass
            except self.ray.exceptions.RayError as e:
                self._failed = self._failed or f"a Ray worker failed ({str(e).strip().splitlines()[-1]})"
        return len(ready) < len(self.refs)

    def failed(self) -> Optional[str]:
        return self._failed

    def stop(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref)

    def close(self) -> None:
        self.backend.close()
