"""A worker of `axiomrl tune`: it claims trials from the study's Optuna storage, trains each
trial's runs (every env x seed, in parallel, one thread each), reports their progress to the
pruner, and records the trial's score. Several workers (local processes or Ray tasks) share one
storage; the claim lock makes sure no trial is run twice.

    python -m axiomrl_utils.commands.tune_worker STUDY_DIR --session S --worker K

A trial is claimed by writing `trials/<NNNN>/trial.json` with the worker's pid, host and a
heartbeat. A trial left `RUNNING` in the storage by a worker that died (its pid is gone, or its
heartbeat is stale) is claimed again and continued: each of its runs resumes from its
checkpoint with the script's own `--resume` (sweep_backends.execute_run picks that from the
run's slot), finished runs are kept.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils.commands.sweep_backends import Outcome, Task, execute_run, read_json_quiet, run_dirs_in
from axiomrl_utils.commands.tune_objective import Objective, RunProgress, common_bucket, final_value
from axiomrl_utils.host import run_process_alive
from axiomrl_utils.jsonl import write_json_atomic
from axiomrl_utils.rundir import sanitize_env_id, utc_now

TRIAL_FILE = "trial.json"
STUDY_FILE = "study.json"
HEARTBEAT_S = 5.0
STALE_S = 60.0  # a heartbeat older than this means the worker is gone (it may be on another host)
POLL_S = 0.25
BUSY_WAIT_S = 300.0  # how long a run still shutting down from a dead session may take to exit


def trial_dir(study_dir: Path, number: int) -> Path:
    return study_dir / "trials" / f"{number:04d}"


def run_key(algo: str, env_id: str, seed: int) -> str:
    return f"{algo}__{sanitize_env_id(env_id)}__seed{seed}"


def open_study(study_dir: Path, settings: dict[str, Any], seed: Optional[int] = None) -> Any:
    """The Optuna study in `study_dir` with the sampler and pruner study.json names."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=settings["name"], storage=storage(study_dir),
                             sampler=make_sampler(settings, seed), pruner=make_pruner(settings))


def storage(study_dir: Path) -> Any:
    """The study's journal storage: an append-only log file that a killed process cannot corrupt."""
    import warnings

    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return JournalStorage(JournalFileBackend(str(study_dir / "optuna.journal")))


def make_sampler(settings: dict[str, Any], seed: Optional[int]) -> Any:
    import optuna

    if settings["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings["startup_trials"])


def make_pruner(settings: dict[str, Any]) -> Any:
    import optuna

    if settings["pruner"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["startup_trials_pruner"],
                                           n_warmup_steps=settings.get("pruner_warmup_steps", 0))
    if settings["pruner"] == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def trial_owner_alive(record: dict[str, Any]) -> bool:
    """Whether the worker named in a trial.json may still be working on it."""
    worker = record.get("worker") or {}
    if not worker:
        return False
    if time.time() - float(worker.get("heartbeat") or 0) > STALE_S:
        return False
    return run_process_alive(worker) is not False


class Worker:
    """Claims and runs trials until the study has its trials or the worker is told to stop."""

    def __init__(self, study_dir: Path, session: str, index: int) -> None:
        from axiomrl_utils.jsonl import read_json

        self.study_dir, self.session, self.index = study_dir.resolve(), session, index
        record = read_json(self.study_dir / STUDY_FILE)
        self.settings = record["settings"]
        seed = self.settings.get("sampler_seed")
        # each worker and session its own stream: two workers with one seed would sample the same parameters
        seed = None if seed is None else seed + 7919 * index + 104729 * len(record.get("sessions", []))
        self.study = open_study(self.study_dir, self.settings, seed)
        self.objective = Objective.from_json(self.settings["objective"])
        self.stop = threading.Event()
        self.identity = {"pid": os.getpid(), "hostname": socket.gethostname(), "session": session, "worker": index}
        self.args_type()  # imported once, before the first trial's clock starts

    # ------------------------------------------------------------------ claiming
    def claim(self) -> Optional[tuple[Any, dict[str, Any], bool]]:
        """(trial, params, resumed) of the next trial to run, or None when the study has its trials.

        Under the claim lock: a trial whose worker died is taken over first; otherwise a new trial
        is asked for while the study has fewer than its target. While a trial of an earlier session
        is still held by a live worker (it is shutting down), wait for it.
        """
        import optuna
        from filelock import FileLock

        from axiomrl_utils.commands.tune_space import suggest
        from axiomrl_utils.jsonl import read_json

        while not self.stop.is_set():
            with FileLock(str(self.study_dir / ".claim.lock")):
                target = int(read_json(self.study_dir / STUDY_FILE)["trials"])
                trials = self.study.get_trials(deepcopy=False)
                waiting = False
                for t in trials:
                    if t.state != optuna.trial.TrialState.RUNNING:
                        continue
                    record = read_json_quiet(trial_dir(self.study_dir, t.number) / TRIAL_FILE)
                    if trial_owner_alive(record):
                        waiting |= (record.get("worker") or {}).get("session") != self.session
                        continue
                    trial = optuna.trial.Trial(self.study, t._trial_id)
                    params = suggest(trial, self.settings["space"])  # the stored values (sampled if missing)
                    self._write_record(t.number, params, "running", resumed=True)
                    return trial, params, True
                if len(trials) < target:
                    trial = self.study.ask()
                    params = suggest(trial, self.settings["space"])
                    self._write_record(trial.number, params, "running", resumed=False)
                    return trial, params, False
            if not waiting:
                return None
            self.stop.wait(1.0)
        return None

    def _write_record(self, number: int, params: dict[str, Any], state: str, **extra: Any) -> None:
        path = trial_dir(self.study_dir, number)
        path.mkdir(parents=True, exist_ok=True)
        record = read_json_quiet(path / TRIAL_FILE)
        record.update(number=number, params=params, state=state, worker={**self.identity, "heartbeat": time.time()},
                      updated_at_utc=utc_now(), **extra)
        write_json_atomic(path / TRIAL_FILE, record)

    # ------------------------------------------------------------------ one trial
    def tasks(self, number: int, params: dict[str, Any]) -> list[Task]:
        from axiomrl_utils.commands.tune_space import param_flags

        s = self.settings
        extra = list(s["extra_args"]) + param_flags(params, self.args_type())
        base = trial_dir(self.study_dir, number)
        return [Task(key=run_key(s["algo"], env, seed), algo=s["algo"], env_id=env, seed=seed,
                     argv=[sys.executable, s["script"]], extra_args=extra,
                     slot=str(base / run_key(s["algo"], env, seed)), log_file=str(base / "logs" / f"{run_key(s['algo'], env, seed)}.log"),
                     threads=1, retries=0, cwd=s["cwd"], die_with_launcher=True)
                for env in s["env_ids"] for seed in s["seeds"]]

    def args_type(self) -> type:
        if not hasattr(self, "_args_type"):
            from axiomrl_utils.commands.trained_run import import_script

            self._args_type = import_script(Path(self.settings["script"])).Args
        return self._args_type

    def run_trial(self, trial: Any, params: dict[str, Any], resumed: bool, claimed_at: float) -> str:
        """Train the trial's runs to their end (or until pruned or stopped); returns the trial's new state."""
        import optuna

        tasks = self.tasks(trial.number, params)
        for task in tasks:  # a stop request left by a session that died must not mark a resumed run pruned
            for run_dir in run_dirs_in(Path(task.slot)):
                (run_dir / "stop-request.json").unlink(missing_ok=True)
        stops = {t.key: threading.Event() for t in tasks}
        every = self.settings["report_every"]
        progress = {t.key: RunProgress(Path(t.slot), self.objective.metric, every) for t in tasks}
        outcomes: dict[str, Outcome] = {}
        reported = set(trial.storage.get_trial(trial._trial_id).intermediate_values) if resumed else set()
        pruned_at: Optional[int] = None
        failed: Optional[str] = None
        last_beat = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="tune-run") as pool:
            futures = {pool.submit(_execute_until_free, task, stops[task.key]): task for task in tasks}
            while futures:
                try:
                    done, _ = concurrent.futures.wait(futures, timeout=POLL_S)
                except KeyboardInterrupt:  # Ray's cancel: stop the runs (they checkpoint), keep the trial to resume
                    self.stop.set()
                    done = set()
                for future in done:
                    task = futures.pop(future)
                    try:
                        outcomes[task.key] = future.result()
                    except Exception as e:  # the run's thread broke: the trial cannot be scored
                        outcomes[task.key] = Outcome(status="failed", error=f"{type(e).__name__}: {e}")
                    if outcomes[task.key].status == "failed" and failed is None and pruned_at is None and not self.stop.is_set():
                        failed = f"{task.key}: {outcomes[task.key].error}"
                        for event in stops.values():
                            event.set()
                if self.stop.is_set() or failed is not None or pruned_at is not None:
                    for event in stops.values():
                        event.set()
                    continue
                for p in progress.values():
                    p.poll()
                common = common_bucket(list(progress.values()), [t.key in outcomes for t in tasks])
                # every bucket up to the one all runs passed, in order: the pruner compares trials step by step
                due = sorted({b for p in progress.values() for b in p.values if common is not None and b <= common} - reported)
                for bucket in due if futures else []:
                    values = self._values_at(tasks, progress, bucket)
                    if values is None:
                        continue
                    reported.add(bucket)
                    trial.report(self.objective.point(values), bucket)
                    if trial.should_prune():
                        pruned_at = bucket
                        self._prune(tasks, bucket)
                        for event in stops.values():
                            event.set()
                        break
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    self._write_record(trial.number, params, "running")
                    last_beat = time.monotonic()

        runs = [{"key": t.key, "env_id": t.env_id, "seed": t.seed, "status": outcomes[t.key].status,
                 "run_dir": _rel(outcomes[t.key].run_dir, self.study_dir), "duration_s": round(outcomes[t.key].duration_s, 3)}
                for t in tasks]
        runs_wall = max((r["duration_s"] for r in runs), default=0.0)
        if self.stop.is_set():
            self._write_record(trial.number, params, "interrupted", runs=runs)
            return "interrupted"
        trial.set_user_attr("runs", runs)
        trial.set_user_attr("runs_wall_s", runs_wall)
        if failed is not None:
            trial.set_user_attr("error", failed)
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            self._write_record(trial.number, params, "failed", runs=runs, error=failed)
            return "failed"
        if pruned_at is not None:
            trial.set_user_attr("pruned_at_step", pruned_at)
            self._finish(trial, claimed_at, runs_wall)
            self.study.tell(trial.number, state=optuna.trial.TrialState.PRUNED)
            self._write_record(trial.number, params, "pruned", runs=runs, pruned_at_step=pruned_at)
            return "pruned"
        values: dict[str, list[float]] = {}
        for t, r in zip(tasks, runs):
            value = final_value(self.study_dir / r["run_dir"], self.objective.metric) if r["run_dir"] else None
            r["value"] = value
            if value is None:
                error = f"{t.key} has no value of {self.objective.metric}; see docs/tune.md (the metric needs evaluations, episodes or that key)"
                trial.set_user_attr("runs", runs)
                trial.set_user_attr("error", error)
                self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
                self._write_record(trial.number, params, "failed", runs=runs, error=error)
                return "failed"
            values.setdefault(t.env_id, []).append(value)
        score, low, high = self.objective.score(values)
        trial.set_user_attr("runs", runs)
        trial.set_user_attr("score_ci", [low, high])
        self._finish(trial, claimed_at, runs_wall)
        self.study.tell(trial.number, score)
        self._write_record(trial.number, params, "complete", runs=runs, score=score, score_ci=[low, high])
        return "complete"

    def _finish(self, trial: Any, claimed_at: float, runs_wall: float) -> None:
        trial.set_user_attr("trial_wall_s", round(time.monotonic() - claimed_at, 3))
        trial.set_user_attr("overhead_s", round(time.monotonic() - claimed_at - runs_wall, 3))

    def _values_at(self, tasks: list[Task], progress: dict[str, RunProgress], bucket: int) -> Optional[dict[str, list[float]]]:
        values: dict[str, list[float]] = {}
        for t in tasks:
            value = progress[t.key].value_at(bucket)
            if value is None:
                return None
            values.setdefault(t.env_id, []).append(value)
        return values

    def _prune(self, tasks: list[Task], bucket: int) -> None:
        """Ask every live run of the trial to end `pruned` (the signal comes from execute_run's stop)."""
        from axiomrl_utils.run.signals import request_stop

        for task in tasks:
            dirs = run_dirs_in(Path(task.slot))
            if dirs and read_json_quiet(dirs[-1] / "metadata.json").get("status") == "running":
                request_stop(dirs[-1], "pruned", f"pruned by axiomrl tune: the trial's score at step {bucket} "
                             "was below the pruner's threshold")

    def work(self) -> dict[str, int]:
        """Run trials until none is left or the worker is stopped; returns counts by final state."""
        counts: dict[str, int] = {}
        while not self.stop.is_set():
            claimed_at = time.monotonic()
            claimed = self.claim()
            if claimed is None:
                break
            trial, params, resumed = claimed
            state = self.run_trial(trial, params, resumed, claimed_at)
            counts[state] = counts.get(state, 0) + 1
        return counts


def _execute_until_free(task: Task, stop: threading.Event) -> Outcome:
    """execute_run, waiting while the run's directory is still held by a process of a dead session
    (it is writing its checkpoint after the signal its launcher's death sent)."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        outcome = execute_run(task, stop)
        if outcome.status != "busy" or stop.is_set() or time.monotonic() > deadline:
            return outcome
        stop.wait(1.0)


def _rel(path: Optional[str], base: Path) -> Optional[str]:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(base))
    except ValueError:
        return str(path)


def work(study_dir: str, session: str, index: int, install_signals: bool = False) -> dict[str, int]:
    """One worker's life (a local worker process or a Ray task)."""
    worker = Worker(Path(study_dir), session, index)
    if install_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: worker.stop.set())
    try:
        return worker.work()
    except KeyboardInterrupt:  # Ray's cancel: the runs got SIGTERM from execute_run and checkpointed
        worker.stop.set()
        return {"interrupted": 1}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m axiomrl_utils.commands.tune_worker",
                                description="one worker of `axiomrl tune` (the tune command starts these)")
    p.add_argument("study_dir")
    p.add_argument("--session", required=True)
    p.add_argument("--worker", type=int, default=0)
    args = p.parse_args(argv)
    counts = work(args.study_dir, args.session, args.worker, install_signals=True)
    print(f"worker {args.worker}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
