"""Seed sweeps, `axiomrl sweep`: the launcher, the sweep directory and its report; every (script,
env, seed) of a benchmark as its own run, in parallel, rerunnable.

    python -m axiomrl_utils.benchmark --env-ids CartPole-v1 Acrobot-v1 \\
        --command "python axiomrl/ppo.py" --num-seeds 5 --workers 2 -- --total-timesteps 100000
    axiomrl sweep ...                        # the same launcher, as a subcommand of `axiomrl`

Layout of a sweep (docs/sweeps.md):

    <output-dir>/sweeps/<name>/
      sweep.json                 settings, sessions, and one record per run; rewritten atomically
      runs/<algo>__<env>__seed<N>/           the run's --output-dir (its "slot")
          <algo>__<env>__seed<N>__<time>/    the run directory the script creates
          sweep-run.json                     the launcher's state of the run (running, pid, host)
      logs/<algo>__<env>__seed<N>.log        the run's stdout and stderr, every attempt
      report.md, report.csv, report.json     the leaderboard of the finished runs, written at the end
      report.html                            the one-page HTML report (axiomrl report --html)

The launcher checks each (script, env) pair once with the script's `--dry-run` before anything is
created, so a typo in an env id or an extra argument is one sentence, not N failed runs. Running
the same command again with the same `--name` (or `--resume-sweep DIR`) skips finished runs and
resumes the others from their checkpoints. Backends live in `axiomrl_utils.commands.sweep_backends`;
`axiomrl_utils/benchmark.py` is the entry point of `python -m axiomrl_utils.benchmark`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.commands.output import fmt_float, warn
from axiomrl_utils.commands.sweep_backends import (
    STATUS_FILE,
    LocalBackend,
    Outcome,
    RayBackend,
    SlurmBackend,
    Task,
    check_ray_address,
    next_action,
    read_json_quiet,
    read_metadata_quiet,
    run_dirs_in,
    slurm_minutes,
)
from axiomrl_utils.console import fmt_duration
from axiomrl_utils.host import run_process_alive, writable_dir_problem
from axiomrl_utils.jsonl import dumps, read_json, write_json_atomic, write_text_atomic
from axiomrl_utils.rundir import DRY_RUN_OK, sanitize_env_id, utc_now

if TYPE_CHECKING:
    from axiomrl_utils.commands.runs import RunRecord

SWEEP_FILE = "sweep.json"
SCHEMA_VERSION = 1
PROG = "python -m axiomrl_utils.benchmark"
CHECK_TIMEOUT_S = 600.0
TICK_S = 0.25


# ---------------------------------------------------------------------------------- arguments


@dataclass
class ReservedFlags:
    """The flags the sweep sets for each run itself; tyro parses the arguments after `--` against
    them exactly as a script would, so every spelling (`--env_id`, `--seed=3`) is caught."""

    env_id: str = ""
    seed: int = 0
    output_dir: str = ""
    resume: Optional[str] = None
    dry_run: bool = False


def reserved_flags_given(extra: list[str]) -> list[str]:
    """The reserved flags (`ReservedFlags`) among `extra`, as `--kebab-case`; UsageError when tyro
    cannot parse one (`--seed abc`), which means it was given."""
    import contextlib
    import dataclasses
    import io

    from axiomrl_utils.checks import flag, given_flags

    names = [f.name for f in dataclasses.fields(ReservedFlags)]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            given = given_flags(ReservedFlags, extra, names, others_ok=True)
    except SystemExit:
        shown = ", ".join(flag(n) for n in names)
        raise UsageError(f"the arguments after -- give a flag the sweep sets for each run itself ({shown}) "
                         f"in a form that does not parse ({tyro_message(stderr.getvalue()) or 'see the script --help'}); "
                         "remove it from the arguments after --") from None
    return [flag(n) for n in names if n in given]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see `{PROG} --help`")


DESCRIPTION = ("Run AxiomRL scripts over several envs x seeds in parallel (local processes, Ray or Slurm), "
               "record every run in a sweep directory, and end with a leaderboard of the final training returns.")
EPILOG = ("Arguments after `--` are passed to every run, e.g. `-- --total-timesteps 100000`. "
          "Rerun the same command with the same --name (or use --resume-sweep DIR) to skip finished runs "
          "and resume the others from their checkpoints. See docs/sweeps.md.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep's options; shared by `python -m axiomrl_utils.benchmark` and `axiomrl sweep`."""
    p.add_argument("--env-ids", nargs="+", metavar="ENV_ID", help="gymnasium env ids to run every command on")
    # dest "commands": `axiomrl`'s own parser keeps the subcommand's name in `command`
    p.add_argument("--command", dest="commands", action="append", metavar="CMD",
                   help='the AxiomRL script to run, e.g. "python axiomrl/ppo.py" (repeat for several algorithms)')
    p.add_argument("--num-seeds", type=int, default=3, help="seeds per (command, env) (default: 3)")
    p.add_argument("--start-seed", type=int, default=1, help="first seed; seeds are consecutive (default: 1)")
    p.add_argument("--workers", type=int, default=1,
                   help="runs at the same time (local backend; Ray: size of the local cluster; Slurm: array parallelism) (default: 1)")
    p.add_argument("--output-dir", default="runs", help="the sweep goes to OUTPUT_DIR/sweeps/<name>/ (default: runs)")
    p.add_argument("--name", help="the sweep's directory name; the same command with the same --name continues that sweep "
                   "(default: <algos>__<time>)")
    p.add_argument("--resume-sweep", metavar="DIR", help="continue the sweep in DIR with its own commands, envs, seeds and arguments")
    p.add_argument("--backend", choices=("local", "ray", "slurm"), default="local", help="where runs execute (default: local)")
    p.add_argument("--retries", type=int, default=0,
                   help="restart a crashed run up to N times, from its newest checkpoint when it has one (default: 0)")
    p.add_argument("--cpus-per-run", type=int, metavar="N",
                   help="threads of each run (OMP_NUM_THREADS, MKL_NUM_THREADS), the Ray task's num_cpus, the Slurm "
                   "job's cpus_per_task (default: local max(1, cores // workers); ray, slurm 1)")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--slurm-partition", metavar="P", help="Slurm partition of the jobs")
    p.add_argument("--slurm-time", default="60", metavar="T",
                   help="time limit of each job: minutes or [D-]H:MM:SS; a run that hits it is requeued and resumes (default: 60)")
    p.add_argument("--slurm-max-requeues", type=int, default=3, metavar="N",
                   help="how often a job may be requeued after its time limit (default: 3)")
    p.add_argument("--slurm-cluster", choices=("slurm", "local"), default="slurm",
                   help="`local` runs the jobs as local processes through submitit, to try a Slurm sweep (default: slurm)")
    p.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN_ARGS",
                   help="arguments passed to every run, after `--`, e.g. -- --total-timesteps 100000")
    p.description, p.epilog = DESCRIPTION, EPILOG


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG)
    add_arguments(p)
    return p


def run_arguments(args: argparse.Namespace) -> list[str]:
    """The arguments after `--`; UsageError for a stray word before it."""
    rest = list(args.run_args or [])
    if rest and rest[0] != "--":
        raise UsageError(f"unexpected argument {rest[0]!r}; put the arguments meant for every run after `--`, "
                         "e.g. -- --total-timesteps 100000")
    return rest[1:]


def parse_sweep_args(argv: Optional[Sequence[str]] = None) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's arguments and the extra arguments after `--` (passed to every run)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return args, run_arguments(args)


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_arguments(args: argparse.Namespace, extra: list[str]) -> None:
    """Bad values that need no file or process to detect."""
    for name in ("num_seeds", "workers"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    if args.start_seed < 0:
        raise UsageError(f"--start-seed must be 0 or more (got {args.start_seed}); environments take non-negative seeds")
    if args.retries < 0:
        raise UsageError(f"--retries must be 0 or more (got {args.retries})")
    if args.cpus_per_run is not None and args.cpus_per_run < 1:
        raise UsageError(f"--cpus-per-run must be at least 1 (got {args.cpus_per_run})")
    if args.slurm_max_requeues < 0:
        raise UsageError(f"--slurm-max-requeues must be 0 or more (got {args.slurm_max_requeues})")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        raise UsageError(f"--name {args.name!r} cannot be a directory name; use letters, digits, '.', '_' and '-'")
    for flag in reserved_flags_given(extra)[:1]:
        raise UsageError(f"the sweep sets {flag} for each run itself; remove {flag} from the arguments after --")
    if args.resume_sweep:
        given = [f for f, v in (("--command", args.commands), ("--env-ids", args.env_ids), ("arguments after --", extra)) if v]
        if given:
            raise UsageError(f"--resume-sweep takes the runs from the sweep's sweep.json; drop {' and '.join(given)} "
                             "(or use --name to add env ids or seeds to a sweep)")
        return
    if not args.commands:
        raise UsageError('--command is required; pass the script to run, e.g. --command "python axiomrl/ppo.py"')
    if not args.env_ids:
        raise UsageError("--env-ids is required; pass at least one gymnasium env id, e.g. --env-ids CartPole-v1")
    for values, flag in ((args.env_ids, "--env-ids"), (args.commands, "--command")):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise UsageError(f"{flag} names {', '.join(dupes)} twice; give each once")
    if args.backend == "slurm":
        slurm_minutes(args.slurm_time)


def resolve_command(command: str) -> list[str]:
    """The command's tokens with script paths made absolute; UsageError when it cannot run here."""
    try:
        tokens = shlex.split(command)
    except ValueError as e:
        raise UsageError(f"--command {command!r} does not parse ({e}); quote it as one word, e.g. --command \"python axiomrl/ppo.py\"") from None
    if not tokens:
        raise UsageError('--command is empty; pass the script to run, e.g. --command "python axiomrl/ppo.py"')
    if shutil.which(tokens[0]) is None:
        raise UsageError(f"--command {command!r}: program {tokens[0]!r} not found; check the spelling or your PATH")
    for i, token in enumerate(tokens[1:], 1):
        if token.endswith(".py"):
            path = Path(token).expanduser()
            if not path.is_file():
                raise UsageError(f"--command {command!r}: no such script {token} (from {os.getcwd()}); "
                                 "pass the path of an AxiomRL script, e.g. axiomrl/ppo.py")
            tokens[i] = str(path.resolve())
    return tokens


# ---------------------------------------------------------------------------------- the pre-launch check


def tyro_message(stderr: str) -> Optional[str]:
    """The first line inside tyro's error box (`Unrecognized options: --foo`), if there is one."""
    for line in stderr.splitlines():
        inner = line.strip().strip("│").strip()
        if line.strip().startswith("│") and inner and not set(inner) <= set("─"):
            return inner
    return None


def check_pair(command: str, argv: list[str], env_id: str, seed: int, extra: list[str]) -> str:
    """Run the script once with `--dry-run` and this pair's exact arguments; return its algo name.

    The script validates everything a run would (env id, extras, hyperparameters) and exits
    without creating anything. Anything but its `dry run ok:` line becomes one UsageError.
    """
    cmd = [*argv, "--env-id", env_id, "--seed", str(seed), *extra, "--dry-run"]
    shown = f"{command} --env-id {env_id}"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        raise UsageError(f"`{shown} --dry-run` did not answer within {CHECK_TIMEOUT_S:.0f}s; run it yourself to see why") from None
    except OSError as e:
        raise UsageError(f"--command {command!r} cannot be started ({e.strerror or e}); check the program") from None
    marker = next((line for line in proc.stdout.splitlines() if line.startswith(DRY_RUN_OK + ":")), None)
    if proc.returncode == 0 and marker:
        match = re.match(rf"{DRY_RUN_OK}: (\S+) on ", marker)
        return match.group(1) if match else Path(argv[-1]).stem
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode == 1 and lines and lines[-1].startswith("error: "):
        raise UsageError(f"{shown}: {lines[-1][len('error: '):]}")
    not_ours = (f"--command {command!r} is not an AxiomRL script (it does not answer --dry-run); "
                "pass one such as \"python axiomrl/ppo.py\"")
    if proc.returncode == 0 or "dry-run" in proc.stderr or "dry_run" in proc.stderr:
        raise UsageError(not_ours)
    tyro = tyro_message(proc.stderr)
    if tyro:
        raise UsageError(f"{shown} rejects the arguments ({tyro}); fix the arguments after --")
    last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
    raise UsageError(f"--command {command!r} is not an AxiomRL script or fails on start ({last}); "
                     "run it with --dry-run yourself to see why")


def check_pairs(pairs: list[tuple[str, list[str], str, int]], extra: list[str], workers: int) -> dict[tuple[str, str], str]:
    """`check_pair` for every (command, env) in parallel; the first failure in order is raised."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(pairs)))) as pool:
        futures = [pool.submit(check_pair, command, argv, env_id, seed, extra) for command, argv, env_id, seed in pairs]
        concurrent.futures.wait(futures)
    algos = {}
    for (command, _, env_id, _), future in zip(pairs, futures):
        algos[(command, env_id)] = future.result()  # raises the first UsageError, once
    return algos


# ---------------------------------------------------------------------------------- the sweep directory


def run_key(algo: str, env_id: str, seed: int) -> str:
    return f"{algo}__{sanitize_env_id(env_id)}__seed{seed}"


def load_sweep(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / SWEEP_FILE
    try:
        sweep = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{sweep_dir} holds no {SWEEP_FILE}, so it is not a sweep directory; pass the directory the sweep printed") from None
    except ValueError as e:
        raise UsageError(f"{e}; the sweep record is damaged, start a new sweep with another --name") from None
    except OSError as e:  # a directory in its place, no permission
        raise UsageError(f"{path} cannot be read ({e.strerror}); the sweep record is damaged, start a new sweep with another --name") from None
    if not isinstance(sweep, dict) or not isinstance(sweep.get("runs"), list) or "settings" not in sweep:
        raise UsageError(f"{path} is not an AxiomRL sweep record; pass a directory made by {PROG}")
    problem = sweep_record_problem(sweep)
    if problem:
        raise UsageError(f"{path} {problem}; the sweep record is damaged, repair it or start a new sweep with another --name")
    driver = sweep.get("driver") or {}
    if sweep.get("status") == "running" and run_process_alive(driver) and driver.get("pid") != os.getpid():
        raise UsageError(f"the sweep in {sweep_dir} is being run by process {driver['pid']}; wait for it or stop it first")
    return sweep


# What the launcher reads from sweep.json: the settings' lists and each run record's fields, by type.
SETTINGS_FIELDS = {"commands": str, "env_ids": str, "seeds": int, "extra_args": str}
RUN_FIELDS = {"key": str, "algo": str, "command": str, "env_id": str, "seed": int, "slot": str, "log_file": str, "status": str}


def sweep_record_problem(sweep: dict[str, Any]) -> Optional[str]:
    """What makes a loaded sweep.json unusable (a field missing or of the wrong type, a slot outside
    the sweep directory), or None."""
    settings = sweep["settings"]
    if not isinstance(settings, dict):
        return "has settings that are not an object"
    for name, kind in SETTINGS_FIELDS.items():
        value = settings.get(name)
        if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            return f"has settings.{name} {dumps(value)[:60]}, not a list of {'ints' if kind is int else 'strings'}"
    if not isinstance(sweep.get("driver") or {}, dict):
        return "has a driver that is not an object"
    for i, run in enumerate(sweep["runs"]):
        if not isinstance(run, dict):
            return f"has runs[{i}] that is not an object"
        for name, kind in RUN_FIELDS.items():
            if not isinstance(run.get(name), kind) or isinstance(run.get(name), bool):
                return f"has runs[{i}].{name} {dumps(run.get(name))[:60]}, not {'an int' if kind is int else 'a string'}"
        if any(part in ("..", "") for part in run["slot"].split("/")) or run["slot"].startswith("/"):
            return f"has runs[{i}].slot {run['slot']!r} outside the sweep directory"
    return None


def merge_settings(sweep: dict[str, Any], commands: list[str], env_ids: list[str], seeds: list[int], extra: list[str]) -> None:
    """Let the same --name add env ids or seeds; refuse other changes (they would mix two experiments)."""
    old = sweep["settings"]
    for what, new_value, old_value in (("--command", commands, old["commands"]), ("the arguments after --", extra, old["extra_args"])):
        if list(new_value) != list(old_value):
            raise UsageError(
                f"sweep {sweep['name']} was started with {what} {shlex.join(old_value) if what.endswith('--') else old_value} "
                f"and this command has {shlex.join(new_value) if what.endswith('--') else new_value}; "
                "rerun with the original values, or pick another --name"
            )
    old["env_ids"] = old["env_ids"] + [e for e in env_ids if e not in old["env_ids"]]
    old["seeds"] = old["seeds"] + [s for s in seeds if s not in old["seeds"]]


def new_sweep_dir(root: Path, name: Optional[str], algos: list[str]) -> Path:
    """Create the directory of a new sweep exclusively: of two sweeps started with the same --name at
    the same instant, one runs and the other gets a UsageError (they would share every run)."""
    if name:
        path = root / name
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            driver = (read_json_quiet(path / SWEEP_FILE).get("driver") or {}).get("pid")
            by = f"process {driver}" if isinstance(driver, int) else "another process"
            raise UsageError(f"a sweep named {name} was started at the same time by {by} in {path}; wait for it and rerun "
                             "with the same --name to continue it, or pick another --name") from None
        return path
    base = f"{'-'.join(dict.fromkeys(algos))}__{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1000):
        path = root / (base if attempt == 0 else f"{base}_{attempt}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a sweep directory for {base} in {root}")


def check_writable(directory: Path) -> None:
    """UsageError unless the sweep directory can be created in `directory` (probed with a real file)."""
    problem = writable_dir_problem(directory)
    if problem is not None:
        raise UsageError(f"cannot write to --output-dir {directory} ({problem}); pass a writable directory")


def save(sweep_dir: Path, sweep: dict[str, Any]) -> None:
    sweep["updated_at_utc"] = utc_now()
    write_json_atomic(sweep_dir / SWEEP_FILE, sweep)


# ---------------------------------------------------------------------------------- the report


def finished_runs(sweep_dir: Path, sweep: dict[str, Any]) -> list[RunRecord]:
    """The sweep's finished runs as `axiomrl report` reads them (`RunRecord`s)."""
    from axiomrl_utils.commands.runs import load_run

    runs = []
    for r in sweep["runs"]:
        if r["status"] == "finished" and r.get("run_dir"):
            try:
                runs.append(load_run(sweep_dir / r["run_dir"]))
            except ValueError as e:
                warn(f"the report leaves out {r['key']}: {e}")
    return runs


def _without_results(sweep: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """`algo on env (2 failed, 1 pending)` for each (algo, env) of the sweep that has no leaderboard row."""
    shown = {(row["algo"], row["env_id"]) for row in rows}
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for r in sweep["runs"]:
        counts = groups.setdefault((r["algo"], r["env_id"]), {})
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return [f"{algo} on {env_id} ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})"
            for (algo, env_id), counts in groups.items() if (algo, env_id) not in shown]


def report_markdown(sweep: dict[str, Any], leaderboard: str, rows: list[dict[str, Any]]) -> str:
    """report.md: the leaderboard of the finished runs, then every run of the sweep."""
    from axiomrl_utils.commands.runs import METRICS

    runs = sweep["runs"]
    finished = sum(r["status"] == "finished" for r in runs)
    out = [f"# Sweep {sweep['name']}", "",
           f"{finished} of {len(runs)} runs finished. Leaderboard of the finished runs (as `axiomrl leaderboard` computes it): "
           f"per run the {METRICS['train'][1]} (`summary.{METRICS['train'][0]}`), then per (algo, env) over the seeds.", ""]
    out.append(leaderboard.rstrip("\n") if rows else "No finished run has a training return yet.")
    missing = _without_results(sweep, rows)
    if missing:
        out += ["", "Not on the leaderboard (no finished run with a training return): " + "; ".join(missing) + "."]
    out += ["", "## Runs", "", "| run | status | return | duration | attempts | run directory |", "|---|---|---:|---:|---:|---|"]
    for r in runs:
        out.append(f"| {r['key']} | {r['status']} | {fmt_float(r.get('final_return'))} | {fmt_duration(r.get('duration_s'))} "
                   f"| {r.get('attempts', 0)} | {r.get('run_dir') or '-'} |")
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        out += ["", "## Failed runs", ""]
        for r in failed:
            out.append(f"- {r['key']}: {r.get('error') or 'failed'} (exit {r.get('exit_code')}; log {r['log_file']})")
    return "\n".join(out) + "\n"


def _write_html(sweep_dir: Path, sweep: dict[str, Any]) -> None:
    """report.html: the sweep's one-page HTML report (every run, finished or not); a problem is a warning."""
    from axiomrl_utils.commands.html_report import write_html_report_quietly
    from axiomrl_utils.commands.report import report_rows
    from axiomrl_utils.commands.runs import load_runs

    if (sweep_dir / "runs").is_dir():
        try:
            runs = load_runs([sweep_dir / "runs"])
        except UsageError as e:
            warn(f"no HTML report written ({e})")
            return
        write_html_report_quietly(runs, report_rows(runs), sweep_dir / "report.html", f"Sweep {sweep['name']}")


def write_report(sweep_dir: Path, sweep: dict[str, Any]) -> str:
    """Write the leaderboard of the sweep's finished runs as report.md, report.csv and report.json
    into the sweep directory (atomically); return it as a text table for the terminal."""
    from axiomrl_utils.commands.leaderboard import LEADERBOARD_COLUMNS, NOTE_COLUMN, leaderboard_rows
    from axiomrl_utils.commands.output import render
    from axiomrl_utils.commands.runs import METRICS

    rows = leaderboard_rows(finished_runs(sweep_dir, sweep), "train")
    columns = LEADERBOARD_COLUMNS + [NOTE_COLUMN]
    write_text_atomic(sweep_dir / "report.md", report_markdown(sweep, render(rows, columns, "markdown"), rows))
    write_text_atomic(sweep_dir / "report.csv", render(rows, columns, "csv"))
    runs = [{k: r.get(k) for k in ("key", "algo", "env_id", "seed", "status", "final_return", "duration_s", "attempts",
                                   "exit_code", "error", "run_dir", "log_file")} for r in sweep["runs"]]
    body = {"sweep": sweep["name"], "metric": "train", "metric_key": METRICS["train"][0], "leaderboard": rows, "runs": runs}
    write_text_atomic(sweep_dir / "report.json", dumps(body, indent=2) + "\n")
    _write_html(sweep_dir, sweep)
    table = render(rows, columns, "table") if rows else "no finished run has a training return yet\n"
    missing = _without_results(sweep, rows)
    return table + (f"not on the leaderboard (no finished run with a training return): {'; '.join(missing)}\n" if missing else "")


# ---------------------------------------------------------------------------------- display


class Display:
    """A rich live line (done, failed, running, ETA) on a terminal; plain event lines otherwise."""

    def __init__(self, total: int, live: bool, label: str = "sweep") -> None:
        self.total, self.label = total, label
        self.progress = None
        if live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"))
            self.bar = self.progress.add_task(label, total=total, stats="")
            self.progress.start()

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(f"[{self.label}] {text}", flush=True)

    def update(self, done: int, stats: str) -> None:
        if self.progress is not None:
            self.progress.update(self.bar, completed=done, stats=stats)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _eta(records: list[dict[str, Any]], live: dict[str, dict[str, Any]], session_durations: list[float], workers: int) -> Optional[float]:
    """Remaining seconds: running runs from their step progress, pending ones at the mean run time."""
    per_run = statistics.fmean(session_durations) if session_durations else None
    remaining, now = 0.0, time.time()
    for r in records:
        if r["status"] == "running":
            state = live.get(r["key"], {})
            elapsed, fraction = now - state.get("started", now), state.get("fraction") or 0.0
            if fraction > 0.02:
                estimate = elapsed / fraction
                per_run = per_run or estimate
                remaining += elapsed * (1 - fraction) / fraction
            elif per_run:
                remaining += max(per_run - elapsed, 0.0)
            else:
                return None
    pending = sum(r["status"] == "pending" for r in records)
    if pending:
        if per_run is None:
            return None
        remaining += pending * per_run
    return remaining / workers


# ---------------------------------------------------------------------------------- the launcher


def make_backend(args: argparse.Namespace, cpus_per_run: int) -> Any:
    """The backend, connected (Ray) or checked (Slurm); UsageError before any sweep file exists."""
    if args.backend == "ray":
        return RayBackend(args.ray_address, args.workers, cpus_per_run)
    if args.backend == "slurm":
        return SlurmBackend(args.workers, cpus_per_run, args.slurm_partition, slurm_minutes(args.slurm_time),
                            args.slurm_cluster, args.slurm_max_requeues)
    return LocalBackend(args.workers)


def _check_extra_installed(backend: str) -> None:
    import importlib

    module, extra = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}.get(backend, (None, None))
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--backend {backend} needs {module}; install it with `pip install 'axiomrl[{extra}]'`") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The `python -m axiomrl_utils.benchmark` command; returns the exit status."""
    args, extra = parse_sweep_args(argv)
    shown = ["-m", "axiomrl_utils.benchmark", *(sys.argv[1:] if argv is None else argv)]
    return launch(args, extra, shown, PROG)


def run(args: argparse.Namespace) -> int:
    """The `axiomrl sweep` command (arguments from `add_arguments`); returns the exit status."""
    return launch(args, run_arguments(args), [Path(sys.argv[0]).name, *sys.argv[1:]], "axiomrl sweep")


def launch(args: argparse.Namespace, extra: list[str], shown_argv: list[str], prog: str) -> int:
    """Run (or continue) the sweep `args` describes, then write its report; returns the exit status.

    `shown_argv` is recorded in sweep.json's session; `prog` is how the rerun hint names the command.
    """
    check_arguments(args, extra)
    _check_extra_installed(args.backend)
    if args.backend == "ray" and args.ray_address:
        check_ray_address(args.ray_address)
    root = Path(args.output_dir).expanduser() / "sweeps"

    # --- which sweep: an existing one (--resume-sweep, or --name that exists) or a new one
    sweep: Optional[dict[str, Any]] = None
    sweep_dir: Optional[Path] = None
    if args.resume_sweep:
        sweep_dir = Path(args.resume_sweep).expanduser()
        if not sweep_dir.is_dir():
            raise UsageError(f"--resume-sweep {args.resume_sweep}: no such directory; pass the sweep directory the launcher printed")
        sweep = load_sweep(sweep_dir)
    elif args.name and (root / args.name).exists():
        sweep_dir = root / args.name
        sweep = load_sweep(sweep_dir)
    seeds = list(range(args.start_seed, args.start_seed + args.num_seeds))
    if sweep is not None and not args.resume_sweep:
        merge_settings(sweep, args.commands, args.env_ids, seeds, extra)
    settings = sweep["settings"] if sweep else {"commands": args.commands, "env_ids": args.env_ids, "seeds": seeds, "extra_args": extra}
    if sweep is None:
        check_writable(root)
    argvs = {c: resolve_command(c) for c in settings["commands"]}

    # --- what each run needs now; every (command, env) with a run to start is checked once
    algos: dict[tuple[str, str], str] = dict(((r["command"], r["env_id"]), r["algo"]) for r in (sweep or {}).get("runs", []))
    wanted = [(c, e, s) for c in settings["commands"] for e in settings["env_ids"] for s in settings["seeds"]]
    known = {(r["command"], r["env_id"], r["seed"]): r for r in (sweep or {}).get("runs", [])}
    pairs: dict[tuple[str, str], int] = {}
    for c, e, s in wanted:
        record = known.get((c, e, s))
        if record is None or next_action(sweep_dir / record["slot"])[0] == "fresh":  # type: ignore[operator]
            pairs.setdefault((c, e), s)
    algos.update(check_pairs([(c, argvs[c], e, s) for (c, e), s in pairs.items()], settings["extra_args"], args.workers))
    keys = {}
    for c, e, s in wanted:
        key = run_key(algos[(c, e)], e, s)
        if key in keys and keys[key] != (c, e, s):
            raise UsageError(f"--command {keys[key][0]!r} and {c!r} are the same algorithm ({algos[(c, e)]}); "
                             "sweep each version under its own --name")
        keys[key] = (c, e, s)

    # --- the backend (Ray connects here), then create or update the sweep directory
    cores = cpu_cores()
    cpus_per_run = args.cpus_per_run or (max(1, cores // args.workers) if args.backend == "local" else 1)
    backend = make_backend(args, cpus_per_run)
    if sweep is None:
        sweep_dir = new_sweep_dir(root, args.name, [algos[(c, e)] for c, e, _ in wanted])
        sweep = {"schema_version": SCHEMA_VERSION, "kind": "axiomrl-sweep", "name": sweep_dir.name,
                 "sweep_dir": str(sweep_dir.resolve()), "created_at_utc": utc_now(), "settings": settings,
                 "status": "running", "sessions": [], "runs": []}
    assert sweep_dir is not None
    for c, e, s in wanted:
        if (c, e, s) not in known:
            key = run_key(algos[(c, e)], e, s)
            sweep["runs"].append({"key": key, "algo": algos[(c, e)], "command": c, "env_id": e, "seed": s,
                                  "slot": f"runs/{key}", "log_file": f"logs/{key}.log", "status": "pending",
                                  "argv": None, "run_dir": None, "exit_code": None, "attempts": 0, "duration_s": 0.0,
                                  "final_return": None, "error": None, "log_tail": None})
    session = {"started_at_utc": utc_now(), "argv": shown_argv,
               "backend": args.backend, "workers": args.workers, "cpus_per_run": cpus_per_run, "cores": cores,
               "retries": args.retries, "ended_at_utc": None, "status": "running"}
    sweep["sessions"].append(session)
    sweep.update(status="running", driver={"pid": os.getpid(), "hostname": socket.gethostname()})

    # --- decide each run's action from what is on disk
    records = sweep["runs"]
    to_launch = []
    for r in records:
        action, run_dir = next_action(sweep_dir / r["slot"])
        if action == "skip":
            r.update(status="finished", run_dir=_rel(run_dir, sweep_dir), final_return=_final_return(run_dir))
        elif action == "busy":
            r.update(status="busy", run_dir=_rel(run_dir, sweep_dir))
        else:
            r.update(status="pending")
            to_launch.append(r)
    save(sweep_dir, sweep)

    skipped = sum(r["status"] == "finished" for r in records)
    print(f"sweep {sweep_dir}: {len(records)} runs ({skipped} finished before, {len(to_launch)} to run) on the "
          f"{args.backend} backend, {args.workers} at a time, {cpus_per_run} thread(s) each", flush=True)
    try:
        status = run_sweep(args, backend, sweep_dir, sweep, to_launch, cpus_per_run)
    finally:
        backend.close()

    failed = [r for r in records if r["status"] == "failed"]
    unfinished = [r for r in records if r["status"] != "finished"]
    sweep["status"] = status if status == "interrupted" else ("failed" if failed else "finished" if not unfinished else "incomplete")
    session.update(ended_at_utc=utc_now(), status=sweep["status"])
    save(sweep_dir, sweep)
    print(write_report(sweep_dir, sweep), end="", flush=True)
    print(f"report: {sweep_dir / 'report.md'} (also report.csv, report.json)", flush=True)

    rerun = f"{prog} --resume-sweep {sweep_dir}"
    if sweep["status"] == "interrupted":
        print(f"error: the sweep was interrupted; continue it with `{rerun}`", file=sys.stderr)
        return 130
    if failed:
        named = "; ".join(f"{r['key']} ({r.get('error') or 'exit ' + str(r.get('exit_code'))}; log {sweep_dir / r['log_file']})" for r in failed)
        print(f"error: {len(failed)} of {len(records)} runs failed: {named}; fix the cause and rerun with `{rerun}`", file=sys.stderr)
        return 1
    if unfinished:
        named = ", ".join(f"{r['key']} ({r['status']})" for r in unfinished)
        print(f"error: {len(unfinished)} runs did not finish: {named}; rerun with `{rerun}` once they are free", file=sys.stderr)
        return 1
    return 0


def _rel(path: Optional[Path], base: Path) -> Optional[str]:
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _final_return(run_dir: Optional[Path]) -> Optional[float]:
    """The run's final training return, as the leaderboard counts it (None when it has none)."""
    from axiomrl_utils.commands.runs import load_run, run_metric

    if run_dir is None:
        return None
    try:
        return run_metric(load_run(run_dir), "train")
    except ValueError:
        return None


def run_sweep(args: argparse.Namespace, backend: Any, sweep_dir: Path, sweep: dict[str, Any], records: list[dict[str, Any]],
              cpus_per_run: int) -> str:
    """Launch `records` on the chosen backend and follow them to the end; returns finished or interrupted."""
    if not records:
        return "finished"
    tasks = {}
    for r in sorted(records, key=lambda r: r["seed"]):  # one seed of every (command, env) first
        slot = sweep_dir / r["slot"]
        slot.mkdir(parents=True, exist_ok=True)
        write_json_atomic(slot / STATUS_FILE, {"state": "queued"})
        tasks[r["key"]] = Task(key=r["key"], algo=r["algo"], env_id=r["env_id"], seed=r["seed"],
                               argv=resolve_command(r["command"]), extra_args=sweep["settings"]["extra_args"],
                               slot=str(slot.resolve()), log_file=str((sweep_dir / r["log_file"]).resolve()),
                               threads=cpus_per_run, retries=args.retries, cwd=os.getcwd())
    by_key = {r["key"]: r for r in records}
    live: dict[str, dict[str, Any]] = {}  # per running run: start time, attempt, step fraction (not saved)
    display = Display(len(sweep["runs"]), live=sys.stdout.isatty())
    signals: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda signum, frame: signals.append(signum))
    durations: list[float] = []
    stopping = killed = False
    last_progress_read = 0.0
    try:
        backend.start(list(tasks.values()), sweep_dir)
        if isinstance(backend, SlurmBackend):
            for key, job_id in backend.job_ids().items():
                by_key[key]["job_id"] = job_id
            save(sweep_dir, sweep)
        remaining = set(tasks)
        while remaining:
            changed = False
            if signals and not stopping:
                stopping = True
                display.line(f"{signal.Signals(signals[0]).name}: stopping; running runs save a checkpoint "
                             "(signal again to stop them at once)")
                backend.stop()
            if len(signals) > 1 and not killed:
                killed = True
                backend.kill()
            for task, outcome in backend.poll():
                remaining.discard(task.key)
                _record_outcome(by_key[task.key], outcome, sweep_dir)
                if outcome.status in ("finished", "failed"):
                    durations.append(outcome.duration_s)
                display.line(_event(by_key[task.key], outcome))
                changed = True
            now = time.time()
            read_progress = now - last_progress_read > 2.0
            for key in remaining:
                changed |= _refresh_running(by_key[key], live.setdefault(key, {}), sweep_dir, display, read_progress)
            if read_progress:
                last_progress_read = now
            counts = {s: sum(r["status"] == s for r in sweep["runs"]) for s in ("finished", "failed", "running", "pending")}
            eta = _eta(sweep["runs"], live, durations, args.workers)
            stats = (f"{counts['finished']} done, {counts['failed']} failed, {counts['running']} running, "
                     f"{counts['pending']} pending" + (f", ETA {fmt_duration(eta)}" if eta is not None else ""))
            display.update(counts["finished"] + counts["failed"], stats)
            if changed:
                save(sweep_dir, sweep)
            if remaining:
                time.sleep(TICK_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        display.close()
    return "interrupted" if signals else "finished"


def _refresh_running(record: dict[str, Any], live: dict[str, Any], sweep_dir: Path, display: Display, read_progress: bool) -> bool:
    """Pick up a run that started (from its sweep-run.json); return whether the record changed."""
    slot = sweep_dir / record["slot"]
    try:
        state = read_json(slot / STATUS_FILE)
    except (OSError, ValueError):
        return False
    changed = False
    if state.get("state") == "running" and (record["status"] != "running" or live.get("attempt") != state.get("attempt")):
        record.update(status="running", started_at_utc=utc_now(), hostname=state.get("hostname"), pid=state.get("pid"))
        live.update(started=state.get("started", time.time()), attempt=state.get("attempt"))
        display.line(f"started {record['key']}" + (f" (attempt {state.get('attempt')}, {state.get('mode')})" if state.get("attempt", 1) > 1 or state.get("mode") == "resume" else ""))
        changed = True
    if record["status"] == "running" and read_progress:
        dirs = run_dirs_in(slot)
        meta = read_metadata_quiet(dirs[-1] if dirs else None)
        if meta.get("total_timesteps"):
            live["fraction"] = min(1.0, meta.get("total_steps", 0) / meta["total_timesteps"])
        if dirs and record.get("run_dir") != _rel(dirs[-1], sweep_dir):
            record["run_dir"] = _rel(dirs[-1], sweep_dir)
            changed = True
    return changed


def _record_outcome(record: dict[str, Any], outcome: Outcome, sweep_dir: Path) -> None:
    run_dir = Path(outcome.run_dir) if outcome.run_dir else None
    record.update(
        status=outcome.status,
        exit_code=outcome.exit_code,
        attempts=record.get("attempts", 0) + outcome.attempts,
        duration_s=(record.get("duration_s") or 0.0) + outcome.duration_s,
        run_dir=_rel(run_dir, sweep_dir) or record.get("run_dir"),
        error=outcome.error,
        log_tail=outcome.log_tail if outcome.status == "failed" else None,
        argv=outcome.argv or record.get("argv"),
        ended_at_utc=utc_now(),
        final_return=_final_return(run_dir) if outcome.status == "finished" else record.get("final_return"),
    )


def _event(record: dict[str, Any], outcome: Outcome) -> str:
    key, took = record["key"], fmt_duration(outcome.duration_s)
    if outcome.status == "finished":
        ret = record.get("final_return")
        return f"finished {key} in {took}" + (f", return {ret:.2f}" if ret is not None else "")
    if outcome.status == "failed":
        tries = f" after {outcome.attempts} attempts" if outcome.attempts > 1 else ""
        return f"FAILED {key}{tries} (exit {outcome.exit_code}): {outcome.error}; log {record['log_file']}"
    if outcome.status == "interrupted":
        return f"interrupted {key} after {took}; it resumes from its checkpoint when the sweep is rerun"
    return f"{outcome.status} {key}"


if __name__ == "__main__":
    sys.exit(main())  # a UsageError exits 1 with its one line on stderr
