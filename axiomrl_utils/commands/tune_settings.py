"""What a study of `axiomrl tune` is, from its command line: the checks that need no file or
process, the script's Args with the arguments after `--`, the search space fitted to the script's
checks, the objective, the env check (the script's own --dry-run), and the comparison that refuses a
rerun changing any of it. Nothing here creates a file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils import UsageError

# What defines a study: a rerun under the same name that changes one of these is refused.
DEFINITION = ("script", "env_ids", "seeds", "extra_args", "space", "objective", "pruner", "startup_trials_pruner",
              "pruner_warmup_steps", "sampler", "report_every")


def require(module: str, extra: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UsageError(f"{what} needs {module}; install it with `pip install 'axiomrl[{extra}]'`")


def check_numbers(args: argparse.Namespace) -> None:
    for name in ("trials", "seeds", "workers", "report_every", "startup_trials"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    for name in ("pruner_startup_trials", "pruner_warmup_steps"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more (got {value})")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", args.name) or args.name in (".", ".."):
        raise UsageError(f"--name {args.name!r} cannot be a directory name; use letters, digits, '.', '_' and '-'")


def run_arguments(args: argparse.Namespace) -> Optional[list[str]]:
    rest = list(args.run_args or [])
    if rest and rest[0] != "--":
        raise UsageError(f"unexpected argument {rest[0]!r}; put the arguments meant for every run after `--`")
    return rest[1:] if rest else None


def _parse_base(args_type: type, script: str, extra: list[str]) -> Any:
    """The script's Args with the arguments after `--` (what every trial starts from)."""
    from axiomrl_utils.args import parse_args
    from axiomrl_utils.commands.sweep import tyro_message

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            return parse_args(args_type, script, extra)
    except UsageError:  # the script's own sentence (a --config file that does not exist, say)
        raise
    except SystemExit:
        raise UsageError(f"{Path(script).name} rejects the arguments after -- ({tyro_message(stderr.getvalue()) or 'see its --help'}); "
                         "fix them") from None


def new_settings(args: argparse.Namespace, extra: list[str], stored_space: Optional[dict[str, Any]] = None) -> tuple[dict[str, Any], Any]:
    """A study's definition from the command line, checked; returns (settings, the script's Args type).

    `stored_space`: a rerun's study space, taken when the command line gives no --space.
    """
    from axiomrl_utils.checks import logged_metrics
    from axiomrl_utils.commands.sweep import reserved_flags_given
    from axiomrl_utils.commands.trained_run import import_script
    from axiomrl_utils.commands.tune_objective import Objective, check_metric, default_direction, parse_bounds, resolve_bounds
    from axiomrl_utils.commands.tune_space import default_space, fit_space, read_space_file, resolve_space

    if not args.script:
        raise UsageError("--script is required for a new study; pass the script to tune, e.g. --script axiomrl/ppo.py")
    script = Path(args.script).expanduser()
    if script.suffix != ".py" or not script.is_file():
        raise UsageError(f"--script {args.script}: no such script (from {os.getcwd()}); pass the path of an AxiomRL script, "
                         "e.g. axiomrl/ppo.py")
    script = script.resolve()
    env_ids = args.env_ids or ["CartPole-v1"]
    dupes = sorted({e for e in env_ids if env_ids.count(e) > 1})
    if dupes:
        raise UsageError(f"--env-ids names {', '.join(dupes)} twice; give each once")
    for flag in reserved_flags_given(extra)[:1]:
        raise UsageError(f"the tuner sets {flag} for each run itself; remove {flag} from the arguments after --")
    module = import_script(script)
    args_type = getattr(module, "Args", None)
    if args_type is None or not hasattr(module, "main"):
        raise UsageError(f"--script {args.script} is not an AxiomRL script (no Args and main); pass one such as axiomrl/ppo.py")
    base = _parse_base(args_type, str(script), extra)

    where = f"--space {args.space}" if args.space else "the default space"
    raw = read_space_file(args.space) if args.space else default_space(args_type)
    space = resolve_space(raw, args_type, where) if args.space or stored_space is None else stored_space
    from axiomrl_utils.checks import given_flags

    import warnings

    with warnings.catch_warnings():  # tyro notes the sentinel defaults given_flags parses against
        warnings.simplefilter("ignore")
        both = sorted(given_flags(args_type, extra, list(space), others_ok=True)) if space else []
    if both:
        raise UsageError(f"{', '.join(both)} is both in the search space and after --; drop it from one of them")
    if space is not stored_space:
        space = fit_space(space, base, is_default=not args.space, where=where)
    if not space:
        raise UsageError(f"{where} leaves nothing to tune; give a --space FILE")

    metric = args.metric or "eval"
    check_metric(metric)
    if metric in ("eval", "best_eval") and not base.eval_every:
        raise UsageError(f"--metric {metric} needs evaluations, and the runs have --eval-every 0; pass a positive --eval-every "
                         "after -- (or --metric train)")
    known = logged_metrics(args_type)
    if "/" in metric and not metric.startswith("eval/") and known is not None and metric not in known \
            and metric not in ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate"):
        raise UsageError(f"--metric {metric} is not a key {script.name} logs; use eval, best_eval, train or one of {', '.join(known)}")
    normalize = args.normalize or ("auto" if metric in ("eval", "best_eval", "train") else "none")
    bounds = resolve_bounds(env_ids, normalize, parse_bounds(args.bounds or []), args.reference_scores)
    objective = Objective(metric, args.direction or default_direction(metric), args.aggregate or "mean", bounds)
    report_every = args.report_every or (base.eval_every if metric in ("eval", "best_eval") else max(1, base.total_timesteps // 10))
    settings = {
        "script": str(script), "algo": script.stem, "env_ids": env_ids, "seeds": list(range(1, (args.seeds or 2) + 1)),
        "extra_args": extra, "space": space, "objective": objective.to_json(),
        "pruner": args.pruner or "median", "startup_trials_pruner": 5 if args.pruner_startup_trials is None else args.pruner_startup_trials,
        # RL Zoo's warm-up: no pruning in the first third of training, where most trials look alike
        "pruner_warmup_steps": base.total_timesteps // 3 if args.pruner_warmup_steps is None else args.pruner_warmup_steps,
        "sampler": args.sampler or "tpe", "startup_trials": args.startup_trials or 10, "sampler_seed": args.sampler_seed,
        "report_every": report_every, "cwd": os.getcwd(),
    }
    return settings, args_type


def check_envs(settings: dict[str, Any], workers: int) -> None:
    """Every env once with the script's --dry-run and the arguments after -- (unknown env ids, wrong action spaces)."""
    import shlex

    from axiomrl_utils.commands.sweep import check_pairs

    command = shlex.join([sys.executable, settings["script"]])
    argv = [sys.executable, settings["script"]]
    check_pairs([(command, argv, env, 1) for env in settings["env_ids"]], settings["extra_args"], workers)


def compare_definition(name: str, old: dict[str, Any], new: dict[str, Any], given: set[str]) -> None:
    """Refuse a rerun that changes what the study is (script, envs, seeds, space, objective, ...)."""
    for key in DEFINITION:
        if key in given and old.get(key) != new.get(key):
            raise UsageError(f"study {name} was started with a different {key.replace('_', ' ')} ({_short(old.get(key))} vs "
                             f"{_short(new.get(key))} now); rerun with the original values (or just --name {name}), "
                             "or pick another --name")


def _short(value: Any) -> str:
    from axiomrl_utils.jsonl import dumps

    text = dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def given_definition(args: argparse.Namespace, extra: Optional[list[str]]) -> set[str]:
    """The definition keys this command line sets (the rest come from study.json on a rerun)."""
    given = set()
    pruner = args.pruner or args.pruner_startup_trials is not None or args.pruner_warmup_steps is not None
    if pruner:
        given |= {"pruner", "startup_trials_pruner", "pruner_warmup_steps"}
    for key, present in (("script", args.script), ("env_ids", args.env_ids), ("seeds", args.seeds), ("extra_args", extra is not None),
                         ("space", args.space),
                         ("sampler", args.sampler or args.startup_trials or args.sampler_seed is not None),
                         ("report_every", args.report_every),
                         ("objective", args.metric or args.direction or args.aggregate or args.normalize or args.bounds or args.reference_scores)):
        if present:
            given.add(key)
    return given


def fill_from_study(args: argparse.Namespace, settings: dict[str, Any]) -> argparse.Namespace:
    """The rerun's command line with the study's values where it gives none (to rebuild the definition)."""
    filled = argparse.Namespace(**vars(args))
    if not args.env_ids:
        filled.env_ids = settings["env_ids"]
    if not args.seeds:
        filled.seeds = len(settings["seeds"])
    return filled
