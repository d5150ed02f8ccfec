"""Search spaces of `axiomrl tune`: the default space of each script, `--space FILE`, and sampling
a trial's parameters so that every sampled combination passes the script's `check_args`.

A space maps Args field names (snake_case) to one of:

    {"low": 1e-5, "high": 1e-2, "log": true}     a number range (int for int fields)
    {"choices": [64, 128, 256]}                   a categorical
    0.99                                          a fixed value, passed to every trial

Resolved (as study.json keeps it), each entry is `{"type": "float"|"int", "low", "high", "log"}`,
`{"choices": [...]}` or `{"value": v}`. The default ranges follow RL Zoo's samplers
(rl_zoo3/hyperparams_opt.py) adapted to AxiomRL's flags (docs/tune.md lists them). Only the
standard library is imported here; the script's Args class is passed in by the caller.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Optional

from axiomrl_utils import UsageError
from axiomrl_utils.checks import Check, check_args, declarations, flag

# Fields the tuner sets itself or that are not hyperparameters: never in a space.
NOT_TUNABLE = frozenset({"env_id", "seed", "output_dir", "resume", "dry_run", "pause_at_step", "allow_config_change",
                         "progress", "track", "wandb_project_name", "wandb_entity", "capture_video", "cuda",
                         "torch_deterministic", "best_metric", "best_mode", "keep_checkpoints", "checkpoint_every",
                         "eval_every", "eval_episodes", "total_timesteps", "torch_threads", "save_buffer", "config",
                         "preset", "env_module", "env_kwargs"})

GAMMAS = [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999]
LOG_LR = {"low": 1e-5, "high": 1e-2, "log": True}
# On-policy scripts (they have num_steps): RL Zoo's sample_ppo_params.
ON_POLICY: dict[str, Any] = {
    "learning_rate": LOG_LR,
    "num_steps": {"choices": [8, 16, 32, 64, 128, 256, 512, 1024, 2048]},
    "num_minibatches": {"choices": [1, 2, 4, 8, 16, 32]},
    "update_epochs": {"choices": [1, 5, 10, 20]},
    "gamma": {"choices": GAMMAS},
    "gae_lambda": {"choices": [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]},
    "clip_coef": {"choices": [0.1, 0.2, 0.3, 0.4]},
    "ent_coef": {"low": 1e-8, "high": 0.1, "log": True},
    "vf_coef": {"low": 0.0, "high": 1.0},
    "max_grad_norm": {"choices": [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0]},
    # opt-in observation normalisation flags, under the names scripts give them (--rescale-observation,
    # which every script has but the pixel ones refuse, goes in a --space file where it fits)
    "norm_obs": {"choices": [True, False]},
    "norm_reward": {"choices": [True, False]},
    "normalize_observation": {"choices": [True, False]},
    "normalize_reward": {"choices": [True, False]},
    "hidden_size": {"choices": [64, 256]},
}
# Off-policy scripts (they have buffer_size): RL Zoo's sample_dqn_params, sample_sac_params, sample_td3_params.
OFF_POLICY: dict[str, Any] = {
    "learning_rate": LOG_LR,
    "policy_lr": LOG_LR,
    "q_lr": LOG_LR,
    "gamma": {"choices": GAMMAS},
    "batch_size": {"choices": [16, 32, 64, 100, 128, 256, 512]},
    "buffer_size": {"choices": [10_000, 50_000, 100_000, 1_000_000]},
    "learning_starts": {"choices": [0, 1000, 5000, 10_000, 20_000]},
    "train_frequency": {"choices": [1, 4, 8, 16, 128, 256, 1000]},
    "end_e": {"low": 0.0, "high": 0.2},
    "exploration_fraction": {"low": 0.01, "high": 0.5},
    "tau": {"choices": [0.001, 0.005, 0.01, 0.02, 0.05, 0.08]},
    "exploration_noise": {"low": 0.0, "high": 1.0},
    "policy_noise": {"low": 0.0, "high": 1.0},
    "hidden_size": {"choices": [64, 256]},
}
# Hard target updates (DQN, C51) sample the update interval instead of tau.
HARD_UPDATE: dict[str, Any] = {"target_network_frequency": {"choices": [1, 1000, 5000, 10_000, 15_000, 20_000]}}
MAX_COMBINATIONS = 200_000


def default_space(args_type: type) -> dict[str, Any]:
    """The default space of a script: the entries of its family's table that name one of its fields."""
    fields = declarations(args_type)
    if "num_steps" in fields:
        table = ON_POLICY
    else:
        table = dict(OFF_POLICY)
        if "exploration_fraction" in fields:  # epsilon-greedy DQN family: tau stays a hard update
            table.pop("tau")
            table.update(HARD_UPDATE)
    return {name: spec for name, spec in table.items() if name in fields and name not in NOT_TUNABLE}


def read_space_file(path: str) -> dict[str, Any]:
    """The mapping in a --space YAML or JSON file; UsageError when it does not parse or is no mapping."""
    from axiomrl_utils.config_files import read_mapping

    fix = "fix it (a mapping of field name to {low, high, log}, {choices: [...]} or a value; docs/tune.md)"
    data = read_mapping(Path(path).expanduser(), what="--space", fix=fix)
    if not data:
        raise UsageError(f"--space {path} does not hold a non-empty mapping; {fix}")
    return data


def resolve_space(raw: Mapping[str, Any], args_type: type, where: str) -> dict[str, Any]:
    """Entries in their resolved form, typed against the fields; UsageError for a field the script
    lacks, a field the tuner sets itself, an empty range or a value of the wrong type."""
    decl = declarations(args_type)
    out: dict[str, Any] = {}
    for name, entry in raw.items():
        if name not in decl:
            close = [n for n in decl if n.replace("_", "") == str(name).replace("_", "").replace("-", "")]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"{where} names {name!r}, which the script has no field for{hint}; use the snake_case "
                             "field names of its config.yaml (`--help` lists them)")
        if name in NOT_TUNABLE:
            raise UsageError(f"{where} names {name}, which the tuner sets for every run itself; remove it from the space "
                             "(pass a fixed value after -- instead)")
        d = decl[name]
        entry = _numbers(entry) if d.type in (int, float) else entry
        if isinstance(entry, dict) and "choices" in entry:
            choices = entry["choices"]
            if not isinstance(choices, list) or not choices:
                raise UsageError(f"{where}: {name} has an empty list of choices; give at least one value")
            for value in choices:
                _check_type(where, name, d, value)
            out[name] = {"choices": list(dict.fromkeys(choices))}
        elif isinstance(entry, dict) and ("low" in entry or "high" in entry):
            low, high, log = entry.get("low"), entry.get("high"), bool(entry.get("log", False))
            if d.type not in (int, float):
                raise UsageError(f"{where}: {name} is not a number field; give it {{choices: [...]}} or a value")
            for bound in (low, high):
                if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                    raise UsageError(f"{where}: {name} needs numbers low and high (got {low!r}, {high!r})")
                if d.type is int and not float(bound).is_integer():
                    raise UsageError(f"{where}: {name} is an integer field; give integer low and high (got {low!r}, {high!r})")
            if not low < high:
                raise UsageError(f"{where}: {name} has an empty range (low {low} is not below high {high}); "
                                 "give low < high, or a fixed value")
            if log and low <= 0:
                raise UsageError(f"{where}: {name} has log: true with low {low}; a log range needs low > 0")
            kind = "int" if d.type is int else "float"
            cast = int if kind == "int" else float
            out[name] = {"type": kind, "low": cast(low), "high": cast(high), "log": log}
        elif isinstance(entry, dict):
            raise UsageError(f"{where}: {name} must be {{low, high, log}}, {{choices: [...]}} or a value (got keys "
                             f"{', '.join(map(str, entry)) or 'none'})")
        else:
            _check_type(where, name, d, entry)
            out[name] = {"value": entry}
    return out


def _numbers(entry: Any) -> Any:
    """YAML 1.1 reads `1e-5` (no dot) as a string: such strings become numbers for number fields."""
    def num(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return v

    if isinstance(entry, dict):
        return {k: ([num(c) for c in v] if k == "choices" and isinstance(v, list) else num(v) if k in ("low", "high") else v)
                for k, v in entry.items()}
    return num(entry)


def _check_type(where: str, name: str, d: Any, value: Any) -> None:
    if value is None and d.optional:
        return
    if d.choices is not None:
        ok = value in d.choices
    elif d.type is bool:
        ok = isinstance(value, bool)
    elif d.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif d.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif d.type is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise UsageError(f"{where}: {name} gets {value!r}, which {flag(name)} does not take; give values of its type")


# ---------------------------------------------------------------------------------- constraints


def _candidates(spec: dict[str, Any]) -> list[Any]:
    """Values that stand for the whole entry when checking constraints: every choice, every integer
    of a short int range, the ends of a float range (the checks are monotone in one number)."""
    if "value" in spec:
        return [spec["value"]]
    if "choices" in spec:
        return list(spec["choices"])
    if spec["type"] == "int" and spec["high"] - spec["low"] <= 256:
        return list(range(spec["low"], spec["high"] + 1))
    return [spec["low"], spec["high"]]


def _relations(args_type: type) -> dict[str, set[str]]:
    """For each field with a check relating fields, the fields that check reads (itself included)."""
    out: dict[str, set[str]] = {}
    for name, d in declarations(args_type).items():
        for check in d.checks:
            if check.relation:
                reads = set(getattr(check, "fields", ())) | ({check.other} if hasattr(check, "other") else set())
                out.setdefault(name, {name}).update(reads)
    return out


def _first_problem(args: Any) -> Optional[str]:
    try:
        check_args(args)
    except UsageError as e:
        return str(e)
    return None


def _warning(args: Any, names: set[str], known: Optional[str] = None) -> Optional[str]:
    decl = declarations(type(args))
    for name in sorted(names):
        for check in decl[name].checks:
            line = check.warning(name, getattr(args, name), args) if isinstance(check, Check) else None
            if line and line != known:
                return line
    return None


def fit_space(space: dict[str, Any], base: Any, is_default: bool, where: str) -> dict[str, Any]:
    """Make sure no combination the space can sample breaks the script's checks given `base` (the
    script's Args with the arguments after `--`).

    Each entry is checked alone (ranges, positivity), then the entries a relation check reads
    (`Divides`, `CoversProduct`, `Above`, warnings such as learning_starts beyond the budget) are
    checked in every combination of their candidate values. The default space drops the values
    that break a check (a rollout longer than the budget, say); a user's space is refused with
    the combination and the script's sentence.
    """
    space = {k: dict(v) for k, v in space.items()}
    relations = _relations(type(base))
    while True:
        problem = _space_problem(space, base, relations, warnings=is_default)
        if problem is None:
            return {k: v for k, v in space.items() if v}
        name, value, sentence = problem
        spec = space[name]
        if is_default and "choices" in spec and len(spec["choices"]) > 1:
            spec["choices"] = [c for c in spec["choices"] if c != value]
            continue
        if is_default:  # a default entry that cannot be sampled at all is left out: the script's value stays
            space[name] = {}
            continue
        shown = f"{name} = {value!r}" if not isinstance(value, dict) else ", ".join(f"{k} = {v!r}" for k, v in value.items())
        raise UsageError(f"{where} can sample {shown}, which the script refuses ({sentence}); narrow the space")


def _space_problem(space: dict[str, Any], base: Any, relations: dict[str, set[str]],
                   warnings: bool) -> Optional[tuple[str, Any, str]]:
    """The first (entry, value, sentence) that breaks a check (or, with `warnings`, draws a warning), or None."""
    live = {k: v for k, v in space.items() if v}
    for name, spec in live.items():  # each entry alone, the others at the script's values
        for value in _candidates(spec):
            args = dataclasses.replace(base, **{name: value})
            sentence = _first_problem(args)
            if sentence is not None and name in sentence.replace("-", "_"):
                return name, value, sentence
    involved = sorted({f for subject, reads in relations.items() for f in reads if f in live or subject in live}
                      & set(live), key=list(live).index)
    if not involved:
        return None
    grids = [_candidates(live[n]) for n in involved]
    if math.prod(len(g) for g in grids) > MAX_COMBINATIONS:
        raise UsageError(f"the space's related entries ({', '.join(involved)}) have too many combinations to verify; "
                         "give them fewer choices")
    # warnings of checks that read a space entry; one the script's own values already draw is not the space's doing
    watched = {n for n, reads in relations.items() if reads & set(live)}
    known = _warning(base, watched)
    for combo in itertools.product(*grids):
        args = dataclasses.replace(base, **dict(zip(involved, combo)))
        sentence = _first_problem(args) or (_warning(args, watched, known) if warnings else None)
        if sentence is not None:
            # the entry to blame: the first one (in space order) that has alternatives
            for n, v in zip(involved, combo):
                if "choices" in live[n] and len(live[n]["choices"]) > 1:
                    return n, v, sentence
            return involved[0], dict(zip(involved, combo)), sentence
    return None


# ---------------------------------------------------------------------------------- sampling


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """Sample (or, for a trial resumed after a crash, read back) the trial's value of every entry."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if "value" in spec:
            params[name] = spec["value"]
        elif "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
        else:
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec["log"])
    return params


def param_flags(params: Mapping[str, Any], args_type: type) -> list[str]:
    """The command-line flags that set `params` (`--no-norm-adv` for False, `None` for an unset Optional)."""
    decl = declarations(args_type)
    out: list[str] = []
    for name, value in params.items():
        if decl[name].type is bool and decl[name].choices is None:
            out.append(flag(name) if value else flag("no_" + name))
        elif value is None:
            out += [flag(name), "None"]
        elif isinstance(value, float):
            out += [flag(name), repr(value)]
        else:
            out += [flag(name), str(value)]
    return out


def describe(params: Mapping[str, Any]) -> str:
    """`lr=0.00031 gamma=0.99` for tables and progress lines."""
    def short(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={short(v)}" for k, v in params.items())
