"""`axiomrl eval RUN --record DIR`: play a checkpoint's policy in its evaluation envs and keep every
step (observation, action, reward, terminated, truncated, array info fields, and the policy's
log-probability and value where the script gives them) as a Minari dataset and/or a parquet table.

    run = open_run("runs/ppo__CartPole-v1__seed1__...", checkpoint="best")
    result = record(run, Path("datasets/cartpole-v0"), episodes=10)

The episodes are played by `evaluation.run_episodes` (the same episodes, seeds and policy as
`axiomrl eval`), with a recorder that sees each step. Stochastic recording needs the script's
optional `load_recording_policy(args, checkpoint, envs)` hook (docs/writing-a-script.md), which
returns `fn(obs, deterministic, generator) -> {"action", "log_prob", "value"}`; without it the
deterministic `load_policy` is recorded and the outputs are absent. Docs: docs/eval-export-share.md.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from axiomrl_utils import UsageError, __version__
from axiomrl_utils.commands.dataset import Episode, check_spaces, check_target, formats_of, require_data_extra, write_dataset
from axiomrl_utils.commands.trained_run import LoadedRun, first_line

RECORDING_HOOK = "load_recording_policy"  # optional script function (docs/writing-a-script.md)


@dataclass
class RecordResult:
    """What `record` did: the episodes played, their eval_episodes.jsonl rows, what was written."""

    episodes: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    target: Path
    sizes: dict[str, int]  # bytes per format
    steps: int
    seconds: float  # playing and recording, not writing
    not_stored: list[str]  # info fields left out, with why


def _numeric(value: Any) -> Optional[np.ndarray]:
    """An info value as a numeric array, or None when it is not one (strings, dicts, objects)."""
    array = np.asarray(value) if isinstance(value, (np.ndarray, np.number, bool, int, float)) else None
    if array is None or array.dtype.kind not in "biuf":
        return None
    return array


class StepRecorder:
    """Collects each episode's steps as `run_episodes` plays them (its `recorder` hook)."""

    def __init__(self, n: int, policy: "DetailedPolicy") -> None:
        self.n, self.policy = n, policy
        self.observations: list[list[np.ndarray]] = [[] for _ in range(n)]
        self.actions: list[list[Any]] = [[] for _ in range(n)]
        self.rewards: list[list[float]] = [[] for _ in range(n)]
        self.terminations: list[list[bool]] = [[] for _ in range(n)]
        self.truncations: list[list[bool]] = [[] for _ in range(n)]
        self.infos: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self.outputs: list[dict[str, list]] = [{} for _ in range(n)]

    def reset(self, obs: np.ndarray, infos: dict[str, Any]) -> None:
        # Only the step infos are kept, one per action: reset infos often lack the step's fields
        # (Atari's reset gives {} and each step lives/frame_number), which would leave them out.
        for i in range(self.n):
            self.observations[i].append(np.array(obs[i]))

    def step(self, i: int, action: Any, reward: float, terminated: bool, truncated: bool, info: dict, next_obs: np.ndarray) -> None:
        self.observations[i].append(np.array(next_obs))  # a copy: run_episodes reuses its array
        self.actions[i].append(np.array(action))
        self.rewards[i].append(float(reward))
        self.terminations[i].append(bool(terminated))
        self.truncations[i].append(bool(truncated))
        self.infos[i].append(info)
        for key, values in self.policy.last.items():
            self.outputs[i].setdefault(key, []).append(values[i])

    def episodes(self, seeds: list[int]) -> tuple[list[Episode], list[str]]:
        """The recorded episodes, and the info fields left out (not numeric arrays of one shape everywhere)."""
        keys, dropped = self._info_keys()
        episodes = [
            Episode(
                observations=np.stack(self.observations[i]),
                actions=np.stack(self.actions[i]),
                rewards=np.array(self.rewards[i], dtype=np.float64),
                terminations=np.array(self.terminations[i], dtype=bool),
                truncations=np.array(self.truncations[i], dtype=bool),
                seed=seeds[i],
                infos={k: np.stack([_numeric(info[k]) for info in self.infos[i]]) for k in keys},
                policy={k: np.array(v, dtype=np.float32) for k, v in self.outputs[i].items()},
            )
            for i in range(self.n)
        ]
        return episodes, dropped

    def _info_keys(self) -> tuple[list[str], list[str]]:
        # Minari and the table need one numeric array of one shape and dtype per field, in every step
        # of every episode: anything else is left out and named.
        every = [info for infos in self.infos for info in infos]
        names = sorted({k for info in every for k in info})
        kept, dropped = [], []
        for k in names:
            values = [_numeric(info[k]) if k in info else None for info in every]
            if any(v is None for v in values):
                dropped.append(f"{k} (not a number or numeric array in every step)")
            elif len({(v.shape, v.dtype.str) for v in values}) > 1:
                dropped.append(f"{k} (its shape or dtype changes between steps)")
            else:
                kept.append(k)
        return kept, dropped


class DetailedPolicy:
    """The policy `run_episodes` calls (observations -> actions) that keeps the script's other outputs."""

    def __init__(self, fn: Callable[..., Any], detailed: bool, deterministic: bool, generator: Any) -> None:
        self.fn, self.detailed, self.deterministic, self.generator = fn, detailed, deterministic, generator
        self.last: dict[str, np.ndarray] = {}
        if not detailed and hasattr(fn, "initial_state"):  # a recurrent load_policy: run_episodes carries its state
            self.initial_state = fn.initial_state

    def __call__(self, obs: Any, *state: Any) -> Any:
        if not self.detailed:
            return self.fn(obs, *state)
        out = self.fn(obs, deterministic=self.deterministic, generator=self.generator)
        self.last = {k: v.float().cpu().numpy() for k, v in out.items() if k != "action"}
        return out["action"]


def check_record_request(run: LoadedRun, episodes: int, deterministic: bool, fmt: str) -> None:
    """Every check on `--record` that needs the opened run, before anything is played."""
    if episodes <= 0:
        raise UsageError(f"--episodes must be positive (got {episodes}); pass a value above 0")
    if not deterministic and not hasattr(run.module, RECORDING_HOOK):
        raise UsageError(
            f"--stochastic is not supported by {run.script.name}: it defines no {RECORDING_HOOK} to sample from its "
            "policy (docs/writing-a-script.md); record with --deterministic"
        )
    require_data_extra(fmt)


def _recording_policy(run: LoadedRun, envs: Any, deterministic: bool, seed: int, device: Any) -> DetailedPolicy:
    import torch

    hook = getattr(run.module, RECORDING_HOOK, None)
    if hook is None:
        return DetailedPolicy(run.policy(envs).to(device), False, True, None)
    try:
        fn = hook(run.args, run.payload, envs)
    except Exception as e:
        raise UsageError(
            f"{run.script.name}'s {RECORDING_HOOK} cannot rebuild the policy from {run.checkpoint_name} ({first_line(e)}); "
            "pass the script that trained the run with --script"
        ) from None
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        owner.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)  # sampling repeats with the same --seed
    return DetailedPolicy(fn, True, deterministic, generator)


def record(
    run: LoadedRun,
    target: Path,
    episodes: Optional[int] = None,
    seed: Optional[int] = None,
    deterministic: bool = True,
    fmt: str = "minari",
) -> RecordResult:
    """Play `episodes` episodes (env seeds as `axiomrl eval`) and write them to the new directory `target`.

    Every check (episodes, format and its extra, target, spaces, stochastic support) is done before
    an episode is played; the dataset appears whole or not at all. Returns the episodes'
    eval_episodes.jsonl rows (tag manual, `dataset` naming `target`) for the caller to append.
    """
    from axiomrl_utils.evaluation import episode_rows, eval_seeds, run_episodes
    from axiomrl_utils.reproducibility import select_device

    episodes = run.args.eval_episodes if episodes is None else episodes
    seed = run.args.seed if seed is None else seed
    if seed < 0:
        raise UsageError(f"--seed must be 0 or positive (got {seed}); environment seeds cannot be negative")
    check_record_request(run, episodes, deterministic, fmt)
    target = check_target(target)
    device = select_device(run.args.cuda)
    envs = run.make_envs(episodes)
    try:
        check_spaces(envs.single_observation_space, envs.single_action_space, fmt)
        policy = _recording_policy(run, envs, deterministic, seed, device)
        recorder = StepRecorder(episodes, policy)
        seeds = eval_seeds(seed, episodes)
        start = time.perf_counter()
        played = run_episodes(policy, envs, seeds, device, recorder=recorder)
        data, not_stored = recorder.episodes(seeds)
        seconds = time.perf_counter() - start
        meta = recording_metadata(run, envs.envs[0], seeds, seed, deterministic, fmt, data, not_stored)
        sizes = write_dataset(
            target, data, envs.single_observation_space, envs.single_action_space, envs.envs[0], meta, fmt,
            description=f"{len(data)} episodes of {run.metadata['algo']} on {run.metadata['env_id']}, "
            f"{run.checkpoint_name} (step {run.step}), recorded by axiomrl eval --record",
        )
    finally:
        envs.close()
    rows = episode_rows(played, run.step, tag="manual", checkpoint=run.checkpoint_name, deterministic=deterministic)
    for row in rows:
        row["dataset"] = str(target)
    return RecordResult(played, rows, target, sizes, sum(len(e) for e in data), seconds, not_stored)


def env_kwargs(env: Any) -> dict[str, Any]:
    """The kwargs the env was made with (its spec), as JSON-able values."""
    spec = getattr(env, "spec", None)
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v) for k, v in (spec.kwargs if spec else {}).items()}


def recording_metadata(
    run: LoadedRun, env: Any, seeds: list[int], seed: int, deterministic: bool, fmt: str,
    episodes: list[Episode], not_stored: list[str],
) -> dict[str, Any]:
    """What a recorded dataset says about itself (Minari metadata.json and parquet schema, key `axiomrl`)."""
    git = run.metadata.get("git") or {}
    return {
        "kind": "rollouts",
        "axiomrl_version": __version__,
        "run_id": run.metadata.get("run_id", run.dir.name),
        "run_dir": str(run.dir),
        "algo": run.metadata["algo"],
        "script": str(run.script),
        "checkpoint": run.checkpoint_name,
        "global_step": run.step,
        "env_id": run.metadata["env_id"],
        "env_kwargs": env_kwargs(env),
        "run_seed": run.metadata.get("seed"),
        "episode_seeds": seeds,
        "deterministic": deterministic,
        "sampling_seed": None if deterministic else seed,
        "policy_outputs": sorted(episodes[0].policy) if episodes else [],
        "info_fields": sorted(episodes[0].infos) if episodes else [],
        "info_fields_not_stored": not_stored,
        "observation_dtype": str(episodes[0].observations.dtype) if episodes else None,
        "formats": list(formats_of(fmt)),
        "code_permalink": git.get("commit") if isinstance(git, dict) else None,
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "layout": "observations: n+1 per episode (the last is the final one); actions, rewards, terminations, "
        "truncations, infos (the info each step returned; reset infos are not kept) and infos/policy "
        "(log_prob, value of the action): n per episode",
    }

