"""Args from a file: `--config FILE` (a run's config.yaml, a preset, a hand-written subset) and
`--preset NAME` (a tuned file shipped in `axiomrl/presets/<script>/NAME.yaml`).

A file is a JSON or YAML mapping of Args field names to values. Keys that describe one session
(resume, config, preset, ...) are ignored, so a run's own config.yaml starts a new run with the
same hyperparameters; keys starting with `_` are notes (a preset's source and the return it
reaches). Unknown keys and wrong types are refused with a sentence naming the key and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from pathlib import Path
from typing import Any

from axiomrl_utils import UsageError
from axiomrl_utils.checks import declarations, flag, type_problem

# Describe how a run was started or continued, not what it learns: a new run from the file must not inherit them.
SESSION_KEYS = frozenset({"resume", "config", "preset", "allow_config_change", "pause_at_step", "dry_run"})


def presets_dir(script: str) -> Path:
    """Where the presets of `script` live: `presets/<script stem>/` beside the script."""
    path = Path(script).resolve()
    return path.parent / "presets" / path.stem


def available_presets(script: str) -> list[str]:
    """The preset names shipped for `script` (file stems), sorted."""
    folder = presets_dir(script)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(script: str, name: str) -> Path:
    """The file of preset `name` for `script`; UsageError listing the presets that exist."""
    path = presets_dir(script) / f"{name}.yaml"
    if path.is_file():
        return path
    names = available_presets(script)
    stem = Path(script).stem
    listed = f"the presets for {stem}.py are {', '.join(names)}" if names else f"{stem}.py has no presets"
    raise UsageError(f"no preset {name!r} for {stem}.py; {listed} (or pass a file with --config)")


def read_mapping(path: Path, what: str = "config file", fix: str = "fix the file or pass another") -> dict[str, Any]:
    """A JSON or YAML file holding a mapping; UsageError (`what` names the file's role) when it is
    missing, unreadable, does not parse or is not a mapping.

    JSON is read as JSON first: YAML 1.1 reads an exponent without a dot (`1e-05`, which
    json.dumps writes) as a string. YAML files get the same floats through `_yaml_loader`.
    """
    import json

    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; pass the path of a JSON or YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {path} cannot be read ({getattr(e, 'strerror', None) or e}); pass a readable JSON or YAML file") from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.load(text, Loader=_yaml_loader())
        except yaml.YAMLError as e:
            where = getattr(e, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            raise UsageError(f"{what} {path} does not parse as JSON or YAML{at}; {fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} holds {type(data).__name__}, not a mapping of names to values; {fix}")
    return data


@functools.cache
def _yaml_loader() -> type:
    """yaml.SafeLoader that also reads `1e-5` and `3E+4` as floats (YAML 1.2 does; 1.1 wants a dot)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_config_file(args_type: type, path: Path) -> dict[str, Any]:
    """The arguments `path` sets for `args_type`, checked: field name -> value."""
    data = read_mapping(path)
    decl = declarations(args_type)
    values = {}
    for key, value in data.items():
        name = str(key)
        if name.startswith("_") or name in SESSION_KEYS:
            continue
        if name not in decl:
            close = difflib.get_close_matches(name.replace("-", "_"), list(decl), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see the script's --help for the names (snake_case)"
            raise UsageError(f"config file {path} sets {name!r}, which this script does not have; {hint}")
        problem = type_problem(decl[name], value)
        if problem:
            raise UsageError(f"config file {path}: {problem.replace(flag(name), name, 1)}")
        values[name] = value
    return values


def defaults_from_files(args_type: type, script: str, preset: str | None, config: str | None) -> Any:
    """An `args_type` with the defaults replaced by the preset's values, then the config file's."""
    values: dict[str, Any] = {}
    if preset:
        values.update(load_config_file(args_type, preset_path(script, preset)))
    if config:
        values.update(load_config_file(args_type, Path(config).expanduser()))
    args = args_type()
    names = {f.name for f in dataclasses.fields(args_type)}
    for name, value in values.items():
        if name in names:
            setattr(args, name, list(value) if isinstance(value, tuple) else value)
    return args
