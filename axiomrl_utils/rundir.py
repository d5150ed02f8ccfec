"""Run directories on disk: their names, creating one, reading its metadata.json, finding the run
a `--resume PATH` means. Imported by scripts (through the run and args modules) and by the
`axiomrl` command alike; it imports nothing heavy and nothing else of the run."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, Optional

from axiomrl_utils import UsageError
from axiomrl_utils.jsonl import read_json

METADATA_FILE = "metadata.json"
DRY_RUN_OK = "dry run ok"  # first words of the line --dry-run prints; launchers look for it


def utc_now() -> str:
    """The current time in UTC, ISO 8601 (what metadata.json records)."""
    return dt.datetime.now(dt.timezone.utc).isoformat()


def sanitize_env_id(env_id: str) -> str:
    """A file-system-safe version of an env id: `ALE/Breakout-v5` -> `ALE-Breakout-v5`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", env_id).strip("-.") or "env"


def create_run_dir(output_dir: Path, algo: str, env_id: str, seed: int) -> Path:
    """Create `<output_dir>/<algo>__<env>__seed<seed>__<YYYYMMDD-HHMMSS-ffffff>` exclusively.

    `mkdir` fails if the directory exists, so two runs started in the same microsecond (or two
    processes racing) get `..._1`, `..._2` rather than sharing a directory.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    base = f"{algo}__{sanitize_env_id(env_id)}__seed{seed}__{stamp}"
    for attempt in range(1000):
        path = output_dir / (base if attempt == 0 else f"{base}_{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run directory for {base} in {output_dir}")


# The type each metadata.json field must have when present and not null: what the readers (report,
# leaderboard, plot, eval, export, pack, resume) rely on. algo and env_id must be present.
FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "algo": str, "env_id": str, "seed": int, "status": str, "pid": int, "hostname": str, "run_id": str,
    "script": str, "created_at_utc": str, "command": list, "git": dict, "benchmark": dict, "summary": dict,
    "resumes": list, "total_steps": int, "total_timesteps": int, "wall_time_s": (int, float),
}
REQUIRED_FIELDS = ("algo", "env_id")


def metadata_problem(meta: Any) -> Optional[str]:
    """Why `meta` is unusable as run metadata (`is not a JSON object`, `lacks algo`, `has seed [1], not an
    int`), or None; one check shared by every reader, so a malformed field is a sentence, never a traceback."""
    if not isinstance(meta, dict):
        return "is not a JSON object"
    missing = [k for k in REQUIRED_FIELDS if not meta.get(k)]
    if missing:
        return f"lacks {' and '.join(missing)}"
    for name, types in FIELD_TYPES.items():
        value = meta.get(name)
        # bool is an int to isinstance, but `"seed": true` is as malformed as `"seed": [1]`
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            wanted = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            return f"has {name} {json.dumps(value)[:60]}, not a{'n' if wanted[0] in 'aeiou' else ''} {wanted}"
    return None


def read_metadata(run_dir: Path) -> dict[str, Any]:
    """metadata.json of a run; a UsageError naming the file when it is missing or damaged."""
    path = run_dir / METADATA_FILE
    try:
        meta = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not an AxiomRL run (it has no {METADATA_FILE})") from None
    except OSError as e:  # a directory in its place, no permission
        raise UsageError(f"{path} cannot be read ({e.strerror}); the run's metadata is damaged") from None
    except ValueError as e:
        raise UsageError(f"{e}; the run's metadata is damaged") from None
    if not isinstance(meta, dict) or "algo" not in meta:
        raise UsageError(f"{path} is not AxiomRL run metadata")
    problem = metadata_problem(meta)
    if problem:
        raise UsageError(f"{path} {problem}; the run's metadata is damaged, repair that field or use another run")
    return meta


def find_run_to_resume(path: str, algo: str, env_id: Optional[str] = None, seed: Optional[int] = None) -> Path:
    """Resolve --resume PATH: a run directory, or the newest matching run inside a directory of runs."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(
            f"--resume {path}: no such directory; pass a run directory (runs/<algo>__<env>__seed<N>__<time>) "
            "or the directory that holds runs"
        )
    if (root / METADATA_FILE).exists():
        meta = read_metadata(root)
        if meta["algo"] != algo:
            raise UsageError(f"{root} is a run of {meta['algo']}; resume it with {meta['algo']}.py, not {algo}.py")
        return root.resolve()
    matches = []
    for child in root.iterdir():
        if not (child / METADATA_FILE).is_file():
            continue
        try:
            meta = read_json(child / METADATA_FILE)
        except (ValueError, OSError):
            continue
        if metadata_problem(meta):
            continue
        if meta.get("algo") == algo and env_id in (None, meta.get("env_id")) and seed in (None, meta.get("seed")):
            matches.append((meta.get("created_at_utc", ""), child.name, child))
    if not matches:
        wanted = " ".join(x for x in (algo, env_id, f"seed {seed}" if seed is not None else None) if x)
        raise UsageError(f"{root} is not a run directory and holds no {wanted} run; pass the run's own directory")
    return max(matches)[2].resolve()
