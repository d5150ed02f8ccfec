"""Rollouts as data on disk: episodes written as a Minari dataset (through Minari's own buffer-based
writer) and/or as a per-step parquet table, into a new directory that appears whole or not at all.

    check_target(Path("datasets/cartpole-v0"))            # refuses a non-empty directory, before any work
    require_data_extra("both")                             # one sentence naming the `data` extra
    check_spaces(obs_space, action_space, "both")          # spaces Minari (or the table) cannot store
    write_dataset(Path("datasets/cartpole-v0"), episodes, obs_space, action_space, env, metadata, "both")

Layout of DIR: `DIR/data/` is Minari's (metadata.json, main_data.hdf5), so `MinariDataset("DIR/data")`
opens it, and so does `minari.load_dataset(DIR.name)` with MINARI_DATASETS_PATH set to DIR's parent;
`DIR/steps.parquet` is the table. numpy is imported here; minari and pyarrow inside the functions.
Docs: docs/eval-export-share.md#rollouts-as-data.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from axiomrl_utils import UsageError

DATA_FORMATS = ("minari", "parquet", "both")
PARQUET_FILE = "steps.parquet"
MINARI_DIR = "data"  # Minari's own directory name inside a dataset directory
# what the per-step table can hold in one column: arrays of a fixed shape (Dict/Tuple/Text spaces cannot)
TABLE_SPACES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")


@dataclass
class Episode:
    """One episode as data: `observations` has one more entry than the steps (the final observation).

    `infos`: env info fields, the info each step returned (one per action; Minari's DataCollector also
    keeps the reset info first); `policy`: the policy's outputs per action (log_prob, value), where given.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    seed: Optional[int] = None
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    policy: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rewards)


def formats_of(fmt: str) -> tuple[str, ...]:
    """`--format` as the writers to run: ("minari",), ("parquet",) or both."""
    if fmt not in DATA_FORMATS:
        raise UsageError(f"--format {fmt!r} is not a dataset format; pass one of {', '.join(DATA_FORMATS)}")
    return ("minari", "parquet") if fmt == "both" else (fmt,)


def require_data_extra(fmt: str) -> None:
    """The packages `fmt` needs are importable, or one sentence naming the `data` extra."""
    needed = {"minari": ("minari", "h5py"), "parquet": ("pyarrow",)}
    missing = [m for f in formats_of(fmt) for m in needed[f] if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"writing a {fmt} dataset needs {', '.join(missing)}; install them with `pip install 'axiomrl[data]'`"
        )


def check_target(target: Path) -> Path:
    """`DIR` for a new dataset: absent or an empty directory, never overwritten. Returns it resolved."""
    target = Path(target).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} already exists and is a file; pass a new directory for the dataset")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"{target} already exists and is not empty; pass a new directory (datasets are never overwritten)")
    parent = target.absolute().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        raise UsageError(f"{existing} is not writable; pass a dataset directory somewhere you can write")
    return target.absolute()


def space_problem(space: Any, fmt: str) -> Optional[str]:
    """Why `space` cannot be stored in `fmt` (None when it can)."""
    if "minari" in formats_of(fmt):
        from minari.serialization import serialize_space

        try:
            serialize_space(space)
        except NotImplementedError:
            return f"Minari {_version('minari')} cannot store a {type(space).__name__} space"
    if type(space).__name__ not in TABLE_SPACES:
        # the recorder and the table hold array observations and actions only
        return f"AxiomRL records only {', '.join(TABLE_SPACES)} spaces, not {type(space).__name__}"
    return None


def check_spaces(observation_space: Any, action_space: Any, fmt: str) -> None:
    """Refuse, in one sentence, spaces the dataset cannot hold (before anything is played or written)."""
    for what, space in (("observation", observation_space), ("action", action_space)):
        problem = space_problem(space, fmt)
        if problem is not None:
            raise UsageError(f"the env's {what} space {space} cannot be written: {problem}; record an env with Box or Discrete spaces")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def dataset_id_for(target: Path) -> str:
    """A Minari dataset id from DIR's name: Minari ids are `name-vN`, so `-v0` is added when missing."""
    name = re.sub(r"[^-\w]", "_", target.name).strip("-_") or "axiomrl"
    return name if re.search(r"-v\d+$", name) else f"{name}-v0"


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """A hidden directory beside `target` to write into; renamed to `target` on success, removed on failure.

    Readers never see half a dataset and a failed write leaves nothing behind.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if target.is_dir():
            target.rmdir()  # an empty directory the user made for it (checked empty before)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_dataset(
    target: Path,
    episodes: list[Episode],
    observation_space: Any,
    action_space: Any,
    env: Any,
    metadata: dict[str, Any],
    fmt: str,
    description: str,
) -> dict[str, int]:
    """Write `episodes` to the new directory `target` as `fmt`; returns the bytes written per format.

    `metadata` (JSON-able) goes into Minari's metadata.json under `axiomrl` and into the parquet
    file's schema metadata under `axiomrl`.
    """
    sizes: dict[str, int] = {}
    with staged_directory(target) as staging:
        if "minari" in formats_of(fmt):
            _write_minari(staging, dataset_id_for(target), episodes, observation_space, action_space, env, metadata, description)
            sizes["minari"] = _tree_bytes(staging / MINARI_DIR)
        if "parquet" in formats_of(fmt):
            write_parquet(staging / PARQUET_FILE, episodes, metadata)
            sizes["parquet"] = (staging / PARQUET_FILE).stat().st_size
    return sizes


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _write_minari(
    staging: Path,
    dataset_id: str,
    episodes: list[Episode],
    observation_space: Any,
    action_space: Any,
    env: Any,
    metadata: dict[str, Any],
    description: str,
) -> None:
    """Minari's `create_dataset_from_buffers` into `staging/data`, then our metadata added."""
    import minari
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            id=i,
            seed=e.seed,
            observations=e.observations,
            actions=e.actions,
            rewards=list(np.asarray(e.rewards, dtype=np.float64)),
            terminations=list(np.asarray(e.terminations, dtype=bool)),
            truncations=list(np.asarray(e.truncations, dtype=bool)),
            infos={**e.infos, **({"policy": e.policy} if e.policy else {})} or None,
        )
        for i, e in enumerate(episodes)
    ]
    # Minari writes under MINARI_DATASETS_PATH/<dataset id>/data: point it at the staging area, then
    # move that directory's content up so DIR itself holds `data/`.
    root = staging / ".minari-root"
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        with warnings.catch_warnings():
            # Minari warns about each unset optional field (author, eval_env...) and unserialisable env specs
            warnings.simplefilter("ignore")
            dataset = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=f"axiomrl/{metadata.get('algo', '?')}",
                author="AxiomRL",
                author_email="unknown",
                code_permalink=str(metadata.get("code_permalink") or "unknown"),
                description=description,
                data_format="hdf5",
                jpeg_encoding=False,  # pixels stay exact uint8 (Minari's default JPEG is lossy)
            )
            dataset.storage.update_metadata({"axiomrl": json.loads(json.dumps(metadata, default=str))})
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
    os.replace(root / dataset_id / MINARI_DIR, staging / MINARI_DIR)
    shutil.rmtree(root)


def _column(values: np.ndarray) -> Any:
    """A pyarrow column: scalars as they are, arrays flattened to a fixed-size list per row."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.ndim == 1:
        return pa.array(values)
    width = int(np.prod(values.shape[1:]))
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)


def write_parquet(path: Path, episodes: list[Episode], metadata: dict[str, Any]) -> None:
    """One row per step: episode, step, seed, observation, action, reward, terminated, truncated,
    next_observation, the policy's outputs (`log_prob`, `value`) and the env's info fields (`info_<key>`,
    the info that step returned). Arrays are flattened; their shapes are in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not episodes:
        raise ValueError("no episodes to write")

    def cat(get: Any) -> np.ndarray:
        return np.concatenate([np.asarray(get(e)) for e in episodes])

    lengths = [len(e) for e in episodes]
    columns: dict[str, np.ndarray] = {
        "episode": np.repeat(np.arange(len(episodes), dtype=np.int64), lengths),
        "step": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
        "seed": np.repeat(np.array([-1 if e.seed is None else e.seed for e in episodes], dtype=np.int64), lengths),
        "observation": cat(lambda e: e.observations[:-1]),
        "action": cat(lambda e: e.actions),
        "reward": cat(lambda e: e.rewards).astype(np.float64),
        "terminated": cat(lambda e: e.terminations).astype(bool),
        "truncated": cat(lambda e: e.truncations).astype(bool),
        "next_observation": cat(lambda e: e.observations[1:]),
    }
    for key in episodes[0].policy:
        columns[key] = cat(lambda e: e.policy[key])
    for key in episodes[0].infos:
        columns[f"info_{key}"] = cat(lambda e: e.infos[key])
    shapes = {name: list(values.shape[1:]) for name, values in columns.items() if values.ndim > 1}
    table = pa.table({name: _column(values) for name, values in columns.items()})
    schema_meta = {"axiomrl": json.dumps({**metadata, "column_shapes": shapes}, default=str)}
    table = table.replace_schema_metadata(schema_meta)
    pq.write_table(table, path, compression="zstd")
