"""Running the runs of a sweep: one run end to end (`execute_run`), and the backends it runs on
(local processes, Ray, Slurm).

`execute_run` is the whole life of one run of a sweep, wherever it executes (a thread of the local
launcher, a Ray task, a Slurm job): pick fresh start or `--resume` from what the run's slot holds,
start the script with its log file and thread limits, retry a crash, and say how it ended. It
writes `<slot>/sweep-run.json` (atomically) when an attempt starts and ends, so the launcher sees
which runs are running and where, whatever the backend.

Backends share one small interface that the launcher's loop drives:

    backend.start(tasks)      # queue every run
    backend.poll()            # -> [(task, outcome)] for the runs that ended since the last call
    backend.stop()            # stop gracefully: no new runs, SIGTERM to running ones (they checkpoint)
    backend.close()

`ray` and `submitit` are imported only by their backends (extras `ray` and `slurm`).
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils import UsageError
from axiomrl_utils.host import run_process_alive
from axiomrl_utils.jsonl import read_json, write_json_atomic
from axiomrl_utils.rundir import METADATA_FILE

STATUS_FILE = "sweep-run.json"
LOG_TAIL_LINES = 20
STOP_GRACE_S = 120.0  # how long a stopped run may take to write its checkpoint before it is killed
INTERRUPT_CODES = {130, 143, -signal.SIGINT, -signal.SIGTERM}


@dataclass
class Task:
    """Everything one run needs to execute on any machine that sees the sweep directory."""

    key: str
    algo: str
    env_id: str
    seed: int
    argv: list[str]  # the command's tokens, script paths made absolute
    extra_args: list[str]
    slot: str  # absolute; the run's --output-dir, which holds its run directory (or several)
    log_file: str  # absolute
    threads: int
    retries: int
    cwd: str
    die_with_launcher: bool = False  # Linux: the script gets SIGTERM (and checkpoints) when the thread that started it dies


@dataclass
class Outcome:
    """How a run ended in this session of the sweep."""

    status: str  # finished, failed, interrupted, pending (never started), busy (trained elsewhere)
    exit_code: Optional[int] = None
    attempts: int = 0
    duration_s: float = 0.0
    run_dir: Optional[str] = None
    error: Optional[str] = None
    usage_error: bool = False
    log_tail: list[str] = field(default_factory=list)
    argv: Optional[list[str]] = None  # the command line of the last attempt


# ---------------------------------------------------------------------------------- run slots


def run_dirs_in(slot: Path) -> list[Path]:
    """Run directories in a slot, oldest first (names end in a sortable timestamp)."""
    if not slot.is_dir():
        return []
    return sorted((p for p in slot.iterdir() if (p / METADATA_FILE).is_file()), key=lambda p: p.name)


def read_json_quiet(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, unreadable or no object (a file being created)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metadata_quiet(run_dir: Optional[Path]) -> dict[str, Any]:
    """metadata.json of a run, or {} when it is missing or unreadable (a run being created)."""
    return {} if run_dir is None else read_json_quiet(run_dir / METADATA_FILE)


def has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("*.pt"))


def next_action(slot: Path) -> tuple[str, Optional[Path]]:
    """What a (re)launch of the run in `slot` does: skip, busy, resume RUN_DIR, or fresh.

    The newest run directory decides: finished -> skip; still trained by a live process -> busy;
    holds a checkpoint -> resume it; otherwise (none yet, or it died before its first checkpoint)
    start fresh in a new directory next to it. Nothing is ever deleted.
    """
    dirs = run_dirs_in(slot)
    if not dirs:
        return "fresh", None
    newest = dirs[-1]
    meta = read_metadata_quiet(newest)
    if meta.get("status") == "finished":
        return "skip", newest
    if meta.get("status") == "running" and run_process_alive(meta):  # its own process still trains it here
        return "busy", newest
    if has_checkpoint(newest):
        return "resume", newest
    return "fresh", None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def _usage_line(tail: list[str]) -> Optional[str]:
    """The script's one-line `error: ...` (a UsageError), when that is how it ended."""
    if tail and tail[-1].startswith("error: "):
        return tail[-1][len("error: "):]
    return None


def _exception_line(tail: list[str]) -> Optional[str]:
    """The last `SomeError: message` line of a Python traceback in the log."""
    for line in reversed(tail):
        head = line.split(":", 1)[0]
        if ":" in line and head.isidentifier() and (head.endswith(("Error", "Exception")) or head in {"KeyboardInterrupt", "SystemExit"}):
            return line
    return None


# ---------------------------------------------------------------------------------- one run


_CHILDREN: dict[str, subprocess.Popen] = {}  # running children of this process, by run key
_CHILDREN_LOCK = threading.Lock()


def terminate_children(sig: int = signal.SIGTERM) -> None:
    """Send `sig` to every run this process started (SIGTERM: they checkpoint and exit)."""
    with _CHILDREN_LOCK:
        children = list(_CHILDREN.values())
    for child in children:
        try:
            child.send_signal(sig)
        except ProcessLookupError:
            pass


def _write_status(task: Task, **fields: Any) -> None:
    path = Path(task.slot) / STATUS_FILE
    try:
        state = read_json(path)
    except (OSError, ValueError):
        state = {}
    state.update(fields)
    write_json_atomic(path, state)


def run_command(task: Task, resume: Optional[Path]) -> list[str]:
    """The argv of one attempt: a fresh start into the slot, or `--resume RUN_DIR`."""
    if resume is not None:
        return [*task.argv, "--resume", str(resume), *task.extra_args]
    return [*task.argv, "--env-id", task.env_id, "--seed", str(task.seed), "--output-dir", task.slot, *task.extra_args]


def _parent_death_signal() -> Any:
    """prctl(2) resolved once, in the parent: a child between fork and exec must not load libraries."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _parent_death_signal()
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn`: SIGTERM to the child when the thread that started it dies, so a launcher killed
    with SIGKILL leaves no orphan training on: the script checkpoints and ends `interrupted`."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_environment(threads: int) -> dict[str, str]:
    """The environment of a run: one BLAS/OpenMP pool of `threads` threads, unbuffered output."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
    }


def execute_run(task: Task, stop: Optional[threading.Event] = None) -> Outcome:
    """Run one run of a sweep to its end: start or resume it, retry crashes, return how it ended.

    Each attempt appends to the run's log file (stdout and stderr) after a header line. A crash
    (non-zero exit that is not a stop signal) is retried up to `task.retries` times, resuming from
    the newest checkpoint when there is one. A usage error (`error: ...`, exit 1, before any run
    directory exists) is not retried: it would fail the same way. When `stop` is set, or SIGTERM /
    SIGINT / KeyboardInterrupt reaches this process, the running script gets SIGTERM, checkpoints
    and exits, and the run ends `interrupted`.
    """
    slot, log_path = Path(task.slot), Path(task.log_file)
    slot.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = Outcome(status="pending")
    started = time.monotonic()
    for _ in range(task.retries + 1):
        if stop is not None and stop.is_set():
            break
        action, run_dir = next_action(slot)
        if action in ("skip", "busy"):
            outcome.status = "finished" if action == "skip" else "busy"
            outcome.run_dir = str(run_dir)
            break
        resume = run_dir if action == "resume" else None
        argv = outcome.argv = run_command(task, resume)
        before = set(run_dirs_in(slot))
        outcome.attempts += 1
        with open(log_path, "ab") as log:
            header = f"=== sweep attempt {outcome.attempts} on {socket.gethostname()} at {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(argv)}\n"
            log.write(header.encode())
            log.flush()
            try:
                child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=task.cwd, env=child_environment(task.threads),
                                         preexec_fn=die_with_parent if task.die_with_launcher else None)
            except OSError as e:
                outcome.status, outcome.error = "failed", f"cannot start {argv[0]}: {e.strerror or e}"
                break
        with _CHILDREN_LOCK:
            _CHILDREN[task.key] = child
        _write_status(task, state="running", attempt=outcome.attempts, mode="resume" if resume else "fresh",
                      pid=child.pid, launcher_pid=os.getpid(), hostname=socket.gethostname(),
                      started=time.time(), run_dir=str(resume) if resume else None, argv=argv)
        try:
            exit_code = _wait(child, stop)
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.pop(task.key, None)
        new = [d for d in run_dirs_in(slot) if d not in before]
        run_dir = new[-1] if new else resume
        meta = read_metadata_quiet(run_dir)
        tail = log_tail(log_path)
        outcome.exit_code, outcome.run_dir, outcome.log_tail = exit_code, str(run_dir) if run_dir else None, tail
        usage = _usage_line(tail) if exit_code == 1 and not new else None
        if exit_code == 0 and meta.get("status") == "finished":
            outcome.status, outcome.error = "finished", None
        elif exit_code == 0 and meta.get("status") == "interrupted":  # --pause-at-step among the extra args
            outcome.status, outcome.error = "interrupted", "paused (--pause-at-step)"
        elif exit_code in INTERRUPT_CODES or (stop is not None and stop.is_set()):
            outcome.status, outcome.error = "interrupted", f"stopped by a signal (exit {exit_code})"
        elif exit_code == 0:
            outcome.status, outcome.error = "failed", "the command exited 0 without a finished run directory"
        else:
            outcome.status = "failed"
            outcome.usage_error = usage is not None
            outcome.error = usage or meta.get("error") or _exception_line(tail) or f"exit code {exit_code}"
        if outcome.status != "failed" or outcome.usage_error:
            break
    outcome.duration_s = time.monotonic() - started
    _write_status(task, state="done", status=outcome.status, exit_code=outcome.exit_code, ended=time.time(),
                  run_dir=outcome.run_dir)
    return outcome


def _wait(child: subprocess.Popen, stop: Optional[threading.Event]) -> int:
    """Wait for the child; on `stop` or KeyboardInterrupt give it SIGTERM and time to checkpoint."""
    signalled = False
    try:
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if stop is not None and stop.is_set() and not signalled:
                child.send_signal(signal.SIGTERM)
                signalled = True
            if signalled:
                return _wait_stopped(child)
    except KeyboardInterrupt:  # Ray's cancel, submitit's cancel, or Ctrl-C in a job
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        _wait_stopped(child)
        raise


def _wait_stopped(child: subprocess.Popen) -> int:
    try:
        return child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


# ---------------------------------------------------------------------------------- backends


class LocalBackend:
    """A pool of `workers` threads, each running one script process at a time."""

    def __init__(self, workers: int) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep-run")
        self.stop_event = threading.Event()
        self.futures: dict[concurrent.futures.Future, Task] = {}

    def start(self, tasks: list[Task], sweep_dir: Path) -> None:
        for task in tasks:
            self.futures[self.pool.submit(execute_run, task, self.stop_event)] = task

    def poll(self) -> list[tuple[Task, Outcome]]:
        done = [f for f in self.futures if f.done()]
        results = []
        for future in done:
            task = self.futures.pop(future)
            try:
                results.append((task, future.result()))
            except Exception as e:  # a bug or an OSError in the launcher thread: the run failed, the sweep goes on
                results.append((task, Outcome(status="failed", error=f"launcher error: {type(e).__name__}: {e}")))
        return results

    def stop(self) -> None:
        self.stop_event.set()
        terminate_children(signal.SIGTERM)

    def kill(self) -> None:
        terminate_children(signal.SIGKILL)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ray_execute(task: Task) -> Outcome:
    return execute_run(task)


def check_ray_address(address: str) -> None:
    """Fail fast on a `host:port` nobody listens at (ray.init would retry for minutes)."""
    import re

    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address.strip())
    if not match:
        return  # "auto" and the like: ray.init resolves them
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=5).close()
    except OSError as e:
        raise UsageError(f"nothing answers at --ray-address {address} ({e.strerror or e}); start the cluster with "
                         "`ray start --head` or pass its address (`ray status` shows it)") from None


class RayBackend:
    """One Ray task per run, `cpus_per_run` CPUs each, on a local cluster or the one at `address`."""

    def __init__(self, address: Optional[str], workers: int, cpus_per_run: int) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("--backend ray needs Ray; install it with `pip install 'axiomrl[ray]'`") from None
        import logging

        self.ray = ray
        kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "include_dashboard": False}
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=workers * cpus_per_run, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = f"the cluster at --ray-address {address}" if address else "a local Ray cluster"
            raise UsageError(f"cannot start or join {where} ({str(e).splitlines()[0]}); check the address or `ray status`") from None
        self.remote = ray.remote(num_cpus=cpus_per_run, max_retries=0)(_ray_execute)
        self.refs: dict[Any, Task] = {}

    def start(self, tasks: list[Task], sweep_dir: Path) -> None:
        for task in tasks:
            self.refs[self.remote.remote(task)] = task

    def poll(self) -> list[tuple[Task, Outcome]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0)
        results = []
        for ref in ready:
            task = self.refs.pop(ref)
            try:
                results.append((task, self.ray.get(ref)))
            except self.ray.exceptions.TaskCancelledError:
                results.append((task, _outcome_from_status(task, "interrupted")))
            except self.ray.exceptions.RayError as e:
                results.append((task, _outcome_from_status(task, "failed", f"Ray: {str(e).strip().splitlines()[-1]}")))
        return results

    def stop(self) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref)  # running tasks get KeyboardInterrupt: their script gets SIGTERM and checkpoints

    def kill(self) -> None:
        for ref in list(self.refs):
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()


class SlurmRun:
    """The callable a Slurm job executes; on preemption or time-out submitit calls `checkpoint`.

    `checkpoint` stops the script with SIGTERM (it saves a checkpoint and exits) and returns the
    same callable for submitit to requeue; the requeued job finds the checkpoint and resumes.
    """

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self) -> Outcome:
        return execute_run(self.task)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        with _CHILDREN_LOCK:
            child = _CHILDREN.get(self.task.key)
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            _wait_stopped(child)
        return submitit.helpers.DelayedSubmission(SlurmRun(self.task))


def slurm_minutes(text: str) -> int:
    """`--slurm-time` in whole minutes, from Slurm's formats: `90`, `90:30`, `1:30:00`, `2-00`, `2-12:00:00`."""
    import math
    import re

    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise UsageError(f"--slurm-time {text!r} is not a duration; use minutes (90), H:MM:SS (1:30:00) or D-HH:MM:SS")
    days, a, b, c = match.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is None:  # minutes | minutes:seconds | hours:minutes:seconds
        h, m, s = parts if len(parts) == 3 else (0, parts[0], parts[1] if len(parts) == 2 else 0)
    else:  # days-hours | days-hours:minutes | days-hours:minutes:seconds
        h, m, s = (parts + [0, 0])[:3]
        h += 24 * int(days)
    minutes = math.ceil(h * 60 + m + s / 60)
    if minutes <= 0:
        raise UsageError(f"--slurm-time {text!r} is zero; give each job time to train, e.g. --slurm-time 60")
    return minutes


class SlurmBackend:
    """One Slurm job per run (a job array) through submitit; `cluster="local"` runs them as local processes."""

    def __init__(self, workers: int, cpus_per_run: int, partition: Optional[str], minutes: int, cluster: str,
                 max_requeues: int) -> None:
        try:
            import submitit
        except ImportError:
            raise UsageError("--backend slurm needs submitit; install it with `pip install 'axiomrl[slurm]'`") from None
        if cluster == "slurm" and not _which("sbatch"):
            raise UsageError("--backend slurm found no `sbatch` here; run the sweep on a Slurm login node, "
                             "or try it locally with --slurm-cluster local")
        self.submitit, self.cluster, self.max_requeues = submitit, cluster, max_requeues
        self.params: dict[str, Any] = {"timeout_min": minutes, "cpus_per_task": cpus_per_run, "slurm_array_parallelism": workers}
        if partition:
            self.params["slurm_partition"] = partition
        self.jobs: dict[Any, Task] = {}

    def start(self, tasks: list[Task], sweep_dir: Path) -> None:
        """Submit one job per run, as one array, with submitit's files in `<sweep>/slurm/`."""
        self.executor = self.submitit.AutoExecutor(folder=str(sweep_dir / "slurm"), cluster=self.cluster,
                                                   slurm_max_num_timeout=self.max_requeues)
        self.executor.update_parameters(name=f"sweep-{sweep_dir.name}", **self.params)
        with self.executor.batch():
            submitted = [(self.executor.submit(SlurmRun(task)), task) for task in tasks]
        self.jobs.update(submitted)

    def job_ids(self) -> dict[str, str]:
        return {task.key: str(job.job_id) for job, task in self.jobs.items()}

    def poll(self) -> list[tuple[Task, Outcome]]:
        results = []
        for job in [j for j in self.jobs if j.done()]:
            task = self.jobs.pop(job)
            try:
                results.append((task, job.result()))
            except Exception as e:
                message = str(e).strip().splitlines()
                results.append((task, _outcome_from_status(task, "failed", f"Slurm job {job.job_id}: {message[-1] if message else type(e).__name__}")))
        return results

    def stop(self) -> None:
        for job in list(self.jobs):
            job.cancel(check=False)  # scancel: Slurm sends SIGTERM to the job's processes, the script checkpoints

    def kill(self) -> None:
        self.stop()

    def close(self) -> None:
        pass


def _which(program: str) -> bool:
    import shutil

    return shutil.which(program) is not None


def _outcome_from_status(task: Task, status: str, error: Optional[str] = None) -> Outcome:
    """An outcome for a run whose executor gave none (cancelled, or its worker died)."""
    try:
        state = read_json(Path(task.slot) / STATUS_FILE)
    except (OSError, ValueError):
        state = {}
    if status == "interrupted" and not state:
        status = "pending"  # cancelled before it started
    if state.get("state") == "done" and state.get("status"):
        status = state["status"]
    run_dir = state.get("run_dir")
    return Outcome(status=status, exit_code=state.get("exit_code"), attempts=int(state.get("attempt") or 0),
                   run_dir=run_dir, error=error, log_tail=log_tail(Path(task.log_file)))
