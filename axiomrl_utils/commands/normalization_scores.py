"""Normalising per-run scores across envs for `axiomrl compare`: by reference scores (a random and a
target score per env, benchmark/reference/scores.json), by min/max over the runs, or not at all.

A normalised score is (s - low) / (high - low): 0 = the random policy (or the worst run), 1 = the
target (or the best run). Only the standard library is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from axiomrl_utils import UsageError
from axiomrl_utils.commands.runs import finite_number
from axiomrl_utils.jsonl import read_json_input

NORMALIZATIONS = {
    "reference": "(score - random) / (target - random), per env from --reference-scores",
    "minmax": "(score - min) / (max - min) over every selected run of the env",
    "none": "raw returns (the optimality gap then assumes a target of 1)",
}
# Shipped with the repository; an install without benchmark/ must pass --reference-scores.
DEFAULT_REFERENCE_SCORES = Path(__file__).resolve().parents[2] / "benchmark" / "reference" / "scores.json"


@dataclass(frozen=True)
class ReferenceScores:
    """Per env id (after aliases) the (random, target) pair of a reference-scores file."""

    path: Path
    scores: dict[str, tuple[float, float]]
    aliases: dict[str, str]

    def lookup(self, env_id: str) -> tuple[float, float] | None:
        """(random, target) for `env_id` or the env id it is aliased to; None when absent."""
        return self.scores.get(env_id) or self.scores.get(self.aliases.get(env_id, ""))


def load_reference_scores(path: str | os.PathLike) -> ReferenceScores:
    """Read a reference-scores file (format of benchmark/reference/scores.json); UsageError when unusable."""
    path = Path(path)
    fix = "fix it, pass another --reference-scores FILE, or use --normalize minmax"
    data = read_json_input(path, "reference-scores file", fix)
    entries = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise UsageError(f"reference-scores file {path} has no 'scores' object; {fix}")
    scores = {}
    for env_id, entry in entries.items():
        low = finite_number(entry.get("random")) if isinstance(entry, dict) else None
        high = finite_number(entry.get("target")) if isinstance(entry, dict) else None
        if low is None or high is None or high == low:
            raise UsageError(f"reference-scores file {path}: {env_id} needs numbers 'random' and 'target' that differ; {fix}")
        scores[env_id] = (low, high)
    aliases = data.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise UsageError(f"reference-scores file {path}: 'aliases' must map env ids to env ids; {fix}")
    return ReferenceScores(path, scores, {str(k): str(v) for k, v in aliases.items()})


def check_normalization(name: str) -> None:
    """UsageError naming the choices when `name` is not a normalisation."""
    if name not in NORMALIZATIONS:
        raise UsageError(f"--normalize {name} is not a normalisation; use one of {', '.join(NORMALIZATIONS)}")


def normalization_bounds(
    raw: Mapping[str, Mapping[str, Sequence[float]]], how: str, reference: ReferenceScores | None = None
) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Per env the (low, high) that map to 0 and 1, and the envs that cannot be normalised.

    `raw[algo][env]` are the runs' scores. `reference` is needed for `how == "reference"`; an env
    it lacks is returned as missing. With `minmax`, an env where every run scored the same maps
    every run to 0 (high = low + 1).
    """
    check_normalization(how)
    envs = sorted({env for per_env in raw.values() for env in per_env})
    bounds: dict[str, tuple[float, float]] = {}
    missing: list[str] = []
    for env in envs:
        if how == "none":
            bounds[env] = (0.0, 1.0)
        elif how == "minmax":
            values = [v for per_env in raw.values() for v in per_env.get(env, ())]
            low, high = min(values), max(values)
            bounds[env] = (low, high if high > low else low + 1.0)
        else:
            assert reference is not None
            found = reference.lookup(env)
            if found is None:
                missing.append(env)
            else:
                bounds[env] = found
    return bounds, missing


def normalize(value: float, bounds: tuple[float, float]) -> float:
    """`value` mapped so that bounds[0] -> 0 and bounds[1] -> 1."""
    low, high = bounds
    return (value - low) / (high - low)
