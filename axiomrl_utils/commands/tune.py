"""Hyperparameter search, `axiomrl tune` (and `python -m axiomrl_utils.tune`): an Optuna study
whose every trial is a set of ordinary AxiomRL runs (envs x seeds), resumable, pruned, on local
worker processes or Ray.

    axiomrl tune --script axiomrl/ppo.py --env-ids CartPole-v1 Acrobot-v1 --trials 50 --seeds 3 \\
        --workers 2 --name ppo-classic -- --total-timesteps 100000
    axiomrl tune --name ppo-classic              # continue the study
    axiomrl tune --name ppo-classic --report     # the table, best config and plots only

Layout (docs/tune.md):

    <output-dir>/studies/<name>/
      study.json              the command, space, objective, sessions (atomic rewrites)
      optuna.journal          Optuna's JournalStorage: an append-only log a kill cannot corrupt
      trials/<NNNN>/          trial.json (params, owner, state) and one slot per run:
          <algo>__<env>__seed<N>/<run directory>    logs/<run>.log
      workers/worker-<k>.log  the local workers' output
      report.md  report.json  best_config.yaml  history.png/.html  importance.png/.html

This module is the command and the study directory. What a study is and its checks: tune_settings;
spaces: tune_space; objective: tune_objective; a session, its workers and progress: tune_session;
a worker's trials: tune_worker; results: tune_report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.jsonl import read_json
from axiomrl_utils.commands.tune_settings import (
    check_envs,
    check_numbers,
    compare_definition,
    fill_from_study,
    given_definition,
    new_settings,
    require,
    run_arguments,
)
from axiomrl_utils.commands.tune_worker import STUDY_FILE
from axiomrl_utils.rundir import utc_now

PROG = "axiomrl tune"
SCHEMA_VERSION = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; see `{PROG} --help`")


DESCRIPTION = ("Search a script's hyperparameters with Optuna: every trial trains envs x seeds ordinary AxiomRL runs, "
               "scored by a normalised, aggregated metric, pruned from their evaluations; a rerun continues the study, "
               "resuming interrupted trials from their checkpoints.")
EPILOG = "Arguments after `--` go to every run, e.g. `-- --total-timesteps 50000 --eval-every 10000`. See docs/tune.md."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--script", help="the AxiomRL script to tune, e.g. axiomrl/ppo.py")
    p.add_argument("--env-ids", nargs="+", metavar="ENV_ID", help="envs every trial trains on (default: CartPole-v1)")
    p.add_argument("--trials", type=int, help="trials in the study, over all sessions (default: 20)")
    p.add_argument("--seeds", type=int, help="runs per env in each trial, seeds 1..N (default: 2)")
    p.add_argument("--workers", type=int, default=1, help="trials at the same time; each runs its envs x seeds runs in parallel, "
                   "one thread each (default: 1)")
    p.add_argument("--name", help="the study's directory name; the same --name continues the study (default: <algo>__<time>)")
    p.add_argument("--output-dir", default="runs", help="the study goes to OUTPUT_DIR/studies/<name>/ (default: runs)")
    p.add_argument("--space", metavar="FILE", help="YAML/JSON search space: field -> {low, high, log}, {choices: [...]} or a "
                   "value (default: the script's default space, docs/tune.md)")
    p.add_argument("--metric", help="per run: eval (final evaluation mean return, default), best_eval, train "
                   "(last-100 training return), or a metrics.jsonl key")
    p.add_argument("--direction", choices=("maximize", "minimize"), help="default: minimize for losses/*, else maximize")
    p.add_argument("--aggregate", choices=("mean", "median", "iqm"), help="across envs and seeds (rliable's definitions) (default: mean)")
    p.add_argument("--normalize", choices=("auto", "reference", "none"),
                   help="per-env normalisation by reference (random, target) scores; auto: when every env has one (default: auto)")
    p.add_argument("--bounds", action="append", metavar="ENV=LOW:HIGH", help="normalisation bounds of an env (repeatable)")
    p.add_argument("--reference-scores", metavar="FILE", help="reference scores file (default: benchmark/reference/scores.json)")
    p.add_argument("--pruner", choices=("median", "halving", "none"), help="Optuna pruner on the runs' progress (default: median)")
    p.add_argument("--pruner-startup-trials", type=int, help="trials the median pruner waits for before pruning (default: 5)")
    p.add_argument("--pruner-warmup-steps", type=int, metavar="STEPS",
                   help="the median pruner prunes no trial before this step (default: a third of --total-timesteps)")
    p.add_argument("--report-every", type=int, metavar="STEPS",
                   help="steps between the progress reports to the pruner (default: the runs' --eval-every for eval "
                   "metrics, a tenth of --total-timesteps otherwise)")
    p.add_argument("--sampler", choices=("tpe", "random"), help="Optuna sampler (default: tpe)")
    p.add_argument("--startup-trials", type=int, help="random trials before TPE models the space (default: 10)")
    p.add_argument("--sampler-seed", type=int, help="seed of the sampler (default: none)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where trials run (default: local)")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster (default: start a local one)")
    p.add_argument("--report", action="store_true", help="write and print the study's results without running anything")
    p.add_argument("run_args", nargs=argparse.REMAINDER, metavar="-- RUN_ARGS", help="arguments passed to every run, after `--`")
    p.description, p.epilog = DESCRIPTION, EPILOG


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m axiomrl_utils.tune`; returns the exit status."""
    p = _Parser(prog="python -m axiomrl_utils.tune")
    add_arguments(p)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    return launch(args, ["-m", "axiomrl_utils.tune", *(sys.argv[1:] if argv is None else argv)])


def run(args: argparse.Namespace) -> int:
    """`axiomrl tune` (arguments from `add_arguments`)."""
    return launch(args, [Path(sys.argv[0]).name, *sys.argv[1:]])


# ---------------------------------------------------------------------------------- the command


def launch(args: argparse.Namespace, shown_argv: list[str]) -> int:
    """Create or continue the study `args` names, run its trials, then write its report."""
    check_numbers(args)
    extra = run_arguments(args)
    require("optuna", "tune", "axiomrl tune")
    if args.backend == "ray":
        require("ray", "ray", "--backend ray")
        if args.ray_address:
            from axiomrl_utils.commands.sweep_backends import check_ray_address

            check_ray_address(args.ray_address)
    root = Path(args.output_dir).expanduser() / "studies"
    study_dir = root / args.name if args.name else None
    existing = study_dir is not None and (study_dir / STUDY_FILE).is_file()
    if study_dir is not None and study_dir.exists() and not existing:
        raise UsageError(f"{study_dir} exists but holds no {STUDY_FILE}, so it is not a study; pick another --name")
    if args.report:
        if not existing:
            raise UsageError(f"--report needs an existing study; no study named {args.name} in {root}" if args.name else
                             "--report needs --name of an existing study")
        return report_only(study_dir)  # type: ignore[arg-type]

    given = given_definition(args, extra)
    if existing:
        assert study_dir is not None
        study = load_study_file(study_dir)
        settings = study["settings"]
        if "script" in given and str(Path(args.script).expanduser().resolve()) != settings["script"]:
            raise UsageError(f"study {args.name} was started with a different script ({settings['script']} vs {args.script} now); "
                             f"rerun it with just --name {args.name}, or pick another --name for this script")
        if given:
            args.script = settings["script"]
            new, _ = new_settings(fill_from_study(args, settings), extra if extra is not None else settings["extra_args"], settings["space"])
            new["cwd"] = settings["cwd"]
            compare_definition(args.name, settings, new, given)
        if args.trials:
            study["trials"] = args.trials
    else:
        settings, _ = new_settings(args, extra or [])
        check_envs(settings, args.workers)
        study = None

    from filelock import FileLock, Timeout

    if study is None:
        study_dir = _new_study_dir(root, args.name, settings["algo"])
        settings["name"] = study_dir.name
        study = {"schema_version": SCHEMA_VERSION, "kind": "axiomrl-tune", "name": study_dir.name,
                 "study_dir": str(study_dir.resolve()), "created_at_utc": utc_now(), "settings": settings,
                 "trials": args.trials or 20, "status": "running", "sessions": []}
        _create_optuna_study(study_dir, settings)
    assert study_dir is not None
    lock = FileLock(str(study_dir / ".tune.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UsageError(f"study {study['name']} is being run by another `axiomrl tune` process; wait for it or stop it first") from None
    try:
        from axiomrl_utils.commands.tune_session import run_session

        return run_session(args, study_dir, study, shown_argv)
    finally:
        lock.release()


def load_study_file(study_dir: Path) -> dict[str, Any]:
    try:
        study = read_json(study_dir / STUDY_FILE)
    except (OSError, ValueError) as e:
        raise UsageError(f"{study_dir / STUDY_FILE} cannot be read ({e}); the study record is damaged, pick another --name") from None
    if not isinstance(study, dict) or study.get("kind") != "axiomrl-tune" or not isinstance(study.get("settings"), dict):
        raise UsageError(f"{study_dir / STUDY_FILE} is not an axiomrl tune study; pick another --name")
    return study


def _new_study_dir(root: Path, name: Optional[str], algo: str) -> Path:
    from axiomrl_utils.commands.sweep import check_writable

    check_writable(root)
    base = name or f"{algo}__{time.strftime('%Y%m%d-%H%M%S')}"
    path = root / base
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise UsageError(f"a study named {base} was created at the same time by another process; rerun with --name {base} "
                         "to continue it") from None
    return path


def _create_optuna_study(study_dir: Path, settings: dict[str, Any]) -> None:
    import optuna

    from axiomrl_utils.commands.tune_worker import storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=settings["name"], storage=storage(study_dir), direction=settings["objective"]["direction"])


def report_only(study_dir: Path) -> int:
    from axiomrl_utils.commands.tune_report import write_report
    from axiomrl_utils.commands.tune_worker import open_study

    settings = load_study_file(study_dir)["settings"]
    print(write_report(study_dir, open_study(study_dir, settings), settings), end="", flush=True)
    return 0



if __name__ == "__main__":
    sys.exit(main())
