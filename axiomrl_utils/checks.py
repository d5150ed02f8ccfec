"""What each flag accepts, declared next to its field, and the one validator that checks it.

A script states a field's constraint as `typing.Annotated` metadata, so `Args` stays one line per
field and tyro still shows the field's docstring in --help:

    gamma: Annotated[float, Range(0, 1)] = 0.99
    num_minibatches: Annotated[int, Positive(), Divides("num_envs", "num_steps")] = 4

The type is a declaration too: int fields take integers, float fields finite numbers, bool fields
true/false, `Literal[...]` fields one of their choices, `Optional[...]` fields also None. Every
other field must state at least one check (tests/test_args_validation.py holds it). `check_args`
runs them all, for every script, before anything is created (and under --dry-run): the first
problem becomes one `UsageError` sentence naming the flag, the value, the rule and a valid value.
Suspicious but legal settings print one `warning:` line each when the run starts (`warn_suspicious`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional, Sequence

from axiomrl_utils import UsageError

ALWAYS_LOGGED = ("charts/episodic_return", "charts/episodic_length")  # the run logs these for every script


def flag(name: str) -> str:
    """The command-line spelling of a field: `num_envs` -> `--num-envs`."""
    return "--" + name.replace("_", "-")


def _num(x: Any) -> str:
    """A bound or value as people write it: 1 not 1.0, 4294967296 not 4.29e+09."""
    if isinstance(x, float) and math.isfinite(x) and x.is_integer() and abs(x) >= 1e6:
        return str(int(x))
    return str(x)


class Check:
    """One declared constraint. `relation` checks read other fields, so they run after every field's own checks."""

    relation = False

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        """The sentence saying what is wrong with `value`, or None when it is fine."""
        raise NotImplementedError

    def rejected(self, name: str, args: Any) -> Any:
        """A value this check refuses, given the other fields of `args` (tests generate cases from it)."""
        raise NotImplementedError

    def warning(self, name: str, value: Any, args: Any) -> Optional[str]:
        """A warning line for a legal but suspicious value, or None."""
        return None


@dataclasses.dataclass(frozen=True)
class Range(Check):
    """A finite number in [lo, hi]; `lo_open`/`hi_open` exclude the bound. `rule` overrides how it reads."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    rule: Optional[str] = None

    def ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def describe(self) -> str:
        if self.rule:
            return self.rule
        if math.isinf(self.lo) and math.isinf(self.hi):
            return "a finite number"
        if math.isinf(self.hi):
            return f"{'above' if self.lo_open else 'at least'} {_num(self.lo)}"
        if math.isinf(self.lo):
            return f"{'below' if self.hi_open else 'at most'} {_num(self.hi)}"
        return f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        if value is None or self.ok(value):
            return None
        return f"{flag(name)} must be {self.describe()} (got {value}); pass a value such as {_example(self, name, args)}"

    def rejected(self, name: str, args: Any) -> Any:
        if math.isfinite(self.lo):
            return self.lo if self.lo_open else self.lo - 1
        if math.isfinite(self.hi):
            return self.hi if self.hi_open else self.hi + 1
        return math.nan


def Positive() -> Range:
    """Above 0."""
    return Range(0, lo_open=True, rule="positive")


def AtLeast(k: float) -> Range:
    """At least `k` (k=0: "0 or positive")."""
    return Range(k, rule="0 or positive" if k == 0 else f"at least {_num(k)}")


def Finite() -> Range:
    """Any finite number (no nan, no inf)."""
    return Range()


@dataclasses.dataclass(frozen=True)
class NonEmpty(Check):
    """A non-empty string."""

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        if value is None or (isinstance(value, str) and value.strip()):
            return None
        return f"{flag(name)} must be a non-empty string (got {value!r}); pass a value such as {_example(self, name, args)}"

    def rejected(self, name: str, args: Any) -> Any:
        return ""


@dataclasses.dataclass(frozen=True)
class FieldNames(Check):
    """A list of the Args' own field names (what --allow-config-change takes)."""

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(args)})
        if not unknown:
            return None
        return (
            f"{flag(name)} names {', '.join(unknown)}, which this script does not have; "
            "use the field names of config.yaml (snake_case)"
        )

    def rejected(self, name: str, args: Any) -> Any:
        return ["no_such_field"]


class ModuleNames(Check):
    """A list of importable module names (dotted Python identifiers), e.g. what --env-module takes."""

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        bad = [v for v in value if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", v)]
        if not bad:
            return None
        return f"{flag(name)} takes module names such as mypkg.envs, not {', '.join(map(repr, bad))}; pass the module's import path"

    def rejected(self, name: str, args: Any) -> Any:
        return ["my-envs.py"]


class JsonObject(Check):
    """A mapping whose values JSON can hold (it is recorded in config.yaml and read back from it)."""

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        import json

        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            return f"{flag(name)} must hold JSON values (numbers, strings, true/false, null, lists, objects) ({e}); pass it as a JSON object"
        return None

    def rejected(self, name: str, args: Any) -> Any:
        return {"size": {1, 2}}


@dataclasses.dataclass(frozen=True)
class MetricName(Check):
    """A metric the script can log: eval/*, the training episodes' charts, or a key its source logs."""

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        known = logged_metrics(type(args))
        if value.startswith("eval/") or value in ALWAYS_LOGGED or known is None or value in known:
            return None
        script = Path(sys.modules[type(args).__module__].__file__ or "").name
        return (
            f"{flag(name)} {value} is not a metric {script} logs, so no checkpoint would ever be marked best; "
            f"pass eval/return_mean (or another eval/* metric) or one of {', '.join(ALWAYS_LOGGED + known)}"
        )

    def rejected(self, name: str, args: Any) -> Any:
        return "nosuch/metric"


@dataclasses.dataclass(frozen=True)
class Divides(Check):
    """The value divides the product of the named fields (PPO: num_minibatches divides num_envs * num_steps)."""

    fields: tuple[str, ...]
    relation = True

    def __init__(self, *fields: str) -> None:
        object.__setattr__(self, "fields", fields)

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        total = math.prod(getattr(args, f) for f in self.fields)
        if total % value == 0:
            return None
        default = declarations(type(args))[name].default
        divisor = default if total % default == 0 else max(d for d in range(1, min(value, total) + 1) if total % d == 0)
        return (
            f"{' * '.join(self.fields)} = {total} is not divisible by {flag(name)} {value}; "
            f"choose a divisor of it such as {divisor}"
        )

    def rejected(self, name: str, args: Any) -> Any:
        return math.prod(getattr(args, f) for f in self.fields) + 1


@dataclasses.dataclass(frozen=True)
class CoversProduct(Check):
    """At least the product of the named fields (PPO: total_timesteps covers one rollout)."""

    fields: tuple[str, ...]
    what: str
    relation = True

    def __init__(self, *fields: str, what: str) -> None:
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "what", what)

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        total = math.prod(getattr(args, f) for f in self.fields)
        if value >= total:
            return None
        return f"{flag(name)} {value} is below {self.what} ({' * '.join(self.fields)} = {total}); pass at least {total}"

    def rejected(self, name: str, args: Any) -> Any:
        return math.prod(getattr(args, f) for f in self.fields) - 1


@dataclasses.dataclass(frozen=True)
class Above(Check):
    """Strictly above another field (c51: v_max above v_min)."""

    other: str
    relation = True

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        low = getattr(args, self.other)
        if value > low:
            return None
        return (
            f"{flag(self.other)} < {flag(name)} is required (got {flag(self.other)} {low}, {flag(name)} {value}); "
            f"pass a {flag(name)} above {low}, such as {_num(low + abs(low) + 1)}"
        )

    def rejected(self, name: str, args: Any) -> Any:
        return getattr(args, self.other) - 1


@dataclasses.dataclass(frozen=True)
class WarnFrom(Check):
    """Legal, but a warning line when the value reaches another field (e.g. learning starts after the budget)."""

    other: str
    consequence: str
    inclusive: bool = True  # warn at equality too (learning_starts == total_timesteps also never learns)
    relation = True

    def problem(self, name: str, value: Any, args: Any) -> Optional[str]:
        return None

    def rejected(self, name: str, args: Any) -> Any:
        raise LookupError("a warning refuses nothing")

    def warning(self, name: str, value: Any, args: Any) -> Optional[str]:
        other = getattr(args, self.other)
        if value is None or not value or value < other or (value == other and not self.inclusive):
            return None
        return f"{flag(name)} {value} is {'not below' if self.inclusive else 'above'} {flag(self.other)} {other}: {self.consequence}"


class Declared(NamedTuple):
    """A field's declaration: its plain type, whether None is allowed, its choices (Literal), its checks."""

    name: str
    type: Any
    optional: bool
    choices: Optional[tuple[Any, ...]]
    checks: tuple[Check, ...]
    default: Any


@functools.lru_cache(maxsize=None)
def declarations(args_type: type) -> dict[str, Declared]:
    """Every field of an Args class with what it accepts, in field order."""
    hints = typing.get_type_hints(args_type, include_extras=True)
    out = {}
    for f in dataclasses.fields(args_type):
        hint, checks = hints[f.name], ()
        if typing.get_origin(hint) is typing.Annotated:
            checks = tuple(m for m in hint.__metadata__ if isinstance(m, Check))
            hint = typing.get_args(hint)[0]
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint):
            optional = True
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else None
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        out[f.name] = Declared(f.name, hint, optional, choices, checks, default)
    return out


def _example(check: Check, name: str, args: Any) -> str:
    """A valid value to suggest: the field's default when it passes, else a simple one that does."""
    default = declarations(type(args))[name].default
    if isinstance(check, Range):
        for value in (default, 1, 0, 0.5, check.lo, check.hi):
            if isinstance(value, (int, float)) and not isinstance(value, bool) and check.ok(value):
                return _num(value)
    elif isinstance(default, str) and default:
        return default
    return "the default"


def type_problem(d: Declared, value: Any) -> Optional[str]:
    """A value of the wrong type for its field (reachable in-process, or from a hand-edited config.yaml)."""
    if value is None:
        return None if d.optional else f"{flag(d.name)} must be set (got None); pass a value such as {d.default}"
    if d.choices is not None:
        if value in d.choices:
            return None
        return f"{flag(d.name)} must be one of {', '.join(map(str, d.choices))} (got {value!r}); pass {d.choices[0]}"
    if d.type is bool:
        ok = isinstance(value, bool)
        rule, fix = "true or false", f"pass {flag(d.name)} or {flag('no_' + d.name)}"
    elif d.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        rule, fix = "an integer", f"pass a whole number such as {d.default}"
    elif d.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        rule, fix = "a finite number", f"pass a value such as {d.default}"
    elif d.type is str:
        ok = isinstance(value, str)
        rule, fix = "a string", f"pass a value such as {d.default}"
    elif typing.get_origin(d.type) is list:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        rule, fix = "a list of names", "pass names separated by spaces"
    elif typing.get_origin(d.type) is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        rule, fix = "a mapping with string keys", "pass a JSON object such as '{\"max_episode_steps\": 200}'"
    else:
        return None
    return None if ok else f"{flag(d.name)} must be {rule} (got {value!r}); {fix}"


def rejected_values(args_type: type, name: str, args: Any) -> list[Any]:
    """Values the declaration of `name` refuses: one from its type and one per check (for tests)."""
    d = declarations(args_type)[name]
    values: list[Any] = []
    if d.choices is not None:
        values.append("no-such-choice")
    elif d.type is bool:
        values.append("yes")
    elif d.type is int:
        values.append(1.5)
    elif d.type is float:
        values.append(math.nan)
    for check in d.checks:
        try:
            values.append(check.rejected(name, args))
        except LookupError:
            pass
    return values


def check_args(args: Any) -> None:
    """Check every field of `args` against its declaration; UsageError with the first problem.

    Each field's type and own checks first, then the checks that relate fields (they may assume
    the fields they read are valid). Warnings are separate (`warn_suspicious`), so that an error
    found later is still the only line a bad command prints.
    """
    decl = declarations(type(args))
    for phase in (False, True):
        for name, d in decl.items():
            value = getattr(args, name)
            if not phase:
                problem = type_problem(d, value)
                if problem:
                    raise UsageError(problem)
            if value is None:
                continue
            for check in d.checks:
                if check.relation == phase:
                    problem = check.problem(name, value, args)
                    if problem:
                        raise UsageError(problem)


_warned: set[str] = set()


def warn_suspicious(args: Any) -> None:
    """Print one `warning:` line per legal but suspicious setting (each once per process); call it
    once every check has passed, just before the run starts (start_run does)."""
    for name, d in declarations(type(args)).items():
        for check in d.checks:
            line = check.warning(name, getattr(args, name), args)
            if line and line not in _warned:
                _warned.add(line)
                print(f"warning: {line}", file=sys.stderr, flush=True)


_METRIC_LITERAL = re.compile(r"""["']((?:charts|losses)/[A-Za-z0-9_]+)["']""")


@functools.lru_cache(maxsize=None)
def logged_metrics(args_type: type) -> Optional[tuple[str, ...]]:
    """The charts/* and losses/* keys the script defining `args_type` logs, read from its source
    (the keys are string literals in its `run.log_metrics` calls); None when the source is not readable."""
    path = getattr(sys.modules.get(args_type.__module__), "__file__", None)
    try:
        source = Path(path).read_text(encoding="utf-8") if path else None
    except OSError:
        source = None
    if source is None:
        return None
    return tuple(sorted(set(_METRIC_LITERAL.findall(source)) - set(ALWAYS_LOGGED)))


def given_flags(args_type: type, argv: Sequence[str], names: Sequence[str], others_ok: bool = False) -> set[str]:
    """Which of the fields `names` the command line sets, as tyro parses it (`--env-id`, `--env_id`, `--seed=3`).

    Parsing against defaults that no command line can produce (a sentinel per field) tells a flag
    given with its default value apart from one not given at all. `others_ok`: arguments that are
    no field of `args_type` are ignored (the sweep checks a script's arguments against a few flags).
    """
    decl = declarations(args_type)
    bools = [name for name in names if decl[name].type is bool]
    marks = {name: False if name in bools else -(2**62) - 7 if decl[name].type is int else "\0unset" for name in names}
    given = _changed(args_type, argv, marks, others_ok)
    if bools:  # a bool has no third value: parse again with the opposite defaults, for `--no-<flag>`
        given |= _changed(args_type, argv, {name: True for name in bools}, others_ok)
    return given


def _changed(args_type: type, argv: Sequence[str], marks: dict[str, Any], others_ok: bool) -> set[str]:
    """The fields of `marks` whose value tyro's parse of `argv` changes from the default put there."""
    from axiomrl_utils.cli_types import tyro_cli

    default = args_type()
    for name, mark in marks.items():
        setattr(default, name, mark)
    if others_ok:
        parsed, _ = tyro_cli(args_type, argv, default=default, unknown_ok=True)
    else:
        parsed = tyro_cli(args_type, argv, default=default)
    return {name for name, mark in marks.items() if getattr(parsed, name) != mark}
