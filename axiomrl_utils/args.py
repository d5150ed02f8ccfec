"""Command-line arguments shared by every script, config.yaml, and the config-drift guard.

Every script's `Args` dataclass subclasses `RunArgs`, so the run-management flags (`--output-dir`,
`--resume`, `--eval-every`, ...) are spelled and documented once, and `tyro` shows them in each
script's `--help` next to the algorithm's own hyperparameters.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Sequence, TypeVar

from axiomrl_utils import UsageError
from axiomrl_utils.checks import AtLeast, FieldNames, JsonObject, MetricName, ModuleNames, NonEmpty, Positive, Range, WarnFrom, given_flags
from axiomrl_utils.jsonl import read_json, write_text_atomic, dumps

A = TypeVar("A", bound="RunArgs")

CONFIG_FILE = "config.yaml"


@dataclass
class RunArgs:
    """Flags every AxiomRL script shares: seeding, device, and run management."""

    if TYPE_CHECKING:
        # Read by run management, declared by every script with its own default and help (a
        # dataclass field here would move them in config.yaml and lend a default to a script
        # that forgot them).
        env_id: str
        total_timesteps: int
    config: Annotated[Optional[str], NonEmpty()] = None
    """start from a JSON/YAML file of these arguments (a run's config.yaml, a preset, a subset); flags override it"""
    preset: Annotated[Optional[str], NonEmpty()] = None
    """start from a tuned preset in axiomrl/presets/<script>/, e.g. MountainCar-v0; --config and flags override it"""
    env_module: Annotated[list[str], ModuleNames()] = field(default_factory=list)
    """modules to import before making the env (packages that register their ids on import; RL Zoo's --gym-packages)"""
    env_kwargs: Annotated[dict[str, Any], JsonObject()] = field(default_factory=dict)
    """keyword arguments for gym.make, as a JSON object: '{"sutton_barto_reward": true, "max_episode_steps": 200}'"""
    rescale_observation: bool = False
    """if toggled, rescale bounded Box observations to [-1, 1] linearly, in training, evaluation and export (MountainCar's velocity is ~100x smaller than its position)"""
    seed: Annotated[int, Range(0, 2**32, hi_open=True)] = 1  # what numpy's and gymnasium's seeding accept
    """seed of the experiment (python, numpy, torch and the environments)"""
    torch_deterministic: bool = True
    """if toggled, cudnn and torch use deterministic algorithms (same seed, same machine: same metrics)"""
    cuda: bool = True
    """if toggled, use a GPU when one is present (the CPU otherwise)"""
    output_dir: Annotated[str, NonEmpty()] = "runs"
    """directory in which each run gets its own sub-directory"""
    track: bool = False
    """if toggled, also log to Weights & Biases (needs `pip install 'axiomrl[wandb]'`)"""
    wandb_project_name: Annotated[str, NonEmpty()] = "axiomrl"
    """the Weights & Biases project"""
    wandb_entity: Annotated[Optional[str], NonEmpty()] = None
    """the Weights & Biases entity (team); your default entity when unset"""
    capture_video: bool = False
    """if toggled, record the first evaluation episode of each evaluation as MP4 under videos/"""
    eval_every: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "it evaluates only at the end", inclusive=False)] = 50_000
    """evaluate the deterministic policy every this many environment steps and at the end; 0 disables"""
    eval_episodes: Annotated[int, Positive()] = 10
    """episodes per evaluation, run in parallel on their own environments with fixed seeds"""
    checkpoint_every: Annotated[int, AtLeast(0)] = 50_000
    """save a checkpoint every this many environment steps (and at the end and on interruption)"""
    keep_checkpoints: Annotated[int, Positive()] = 3
    """how many periodic checkpoints/step_<N>.pt to keep (latest.pt and best.pt are always kept)"""
    best_metric: Annotated[str, MetricName()] = "eval/return_mean"
    """metric that picks checkpoints/best.pt (an eval/* metric, charts/episodic_return, or a logged key)"""
    best_mode: Literal["max", "min"] = "max"
    """whether a larger or a smaller best_metric is better"""
    resume: Annotated[Optional[str], NonEmpty()] = None
    """continue a stopped run: its directory, or a directory of runs (the newest matching one is taken)"""
    allow_config_change: Annotated[list[str], FieldNames()] = field(default_factory=list)
    """with --resume: hyperparameters that may differ from the run's config.yaml (e.g. learning_rate)"""
    pause_at_step: Annotated[Optional[int], Positive()] = None
    """stop cleanly (checkpoint, status interrupted, exit 0) once this many steps are done; resume later"""
    progress: bool = True
    """if toggled, show a progress bar (plain log lines when stdout is not a terminal)"""
    dry_run: bool = False
    """if toggled, check the arguments and the environment, print one line and exit without creating anything"""


# Fields that may differ between a run's config.yaml and a resume of it: they change where output
# goes or how often it is written, never what is learned (evaluation uses no training randomness).
MUTABLE_ON_RESUME = frozenset(
    {
        "total_timesteps",
        "cuda",
        "output_dir",
        "track",
        "wandb_project_name",
        "wandb_entity",
        "capture_video",
        "eval_every",
        "eval_episodes",
        "checkpoint_every",
        "keep_checkpoints",
        "resume",
        "allow_config_change",
        "pause_at_step",
        "progress",
        "dry_run",
        "save_buffer",
        "config",
        "preset",
        "env_module",
        "compile",  # --compile/--cudagraphs: the same updates to float rounding, only faster
        "cudagraphs",
    }
)


# Fields whose change alters what the saved progress means (the env, the batch shape, and so the
# step and iteration counts): refused even when named by --allow-config-change.
FIXED_ON_RESUME = frozenset({"env_id", "env_kwargs", "rescale_observation", "num_envs", "num_steps"})


# Fields that describe one session, not the run: a resume does not inherit them from config.yaml.
SESSION_ONLY = frozenset({"pause_at_step", "allow_config_change", "config", "preset"})


def args_to_dict(args: RunArgs) -> dict[str, Any]:
    """The Args as plain JSON-able values, in field order."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}


def write_config(run_dir: Path, args: RunArgs) -> None:
    """Atomically write config.yaml: the full Args as JSON (which YAML parsers also read)."""
    write_text_atomic(run_dir / CONFIG_FILE, dumps(args_to_dict(args), indent=2) + "\n", durable=True)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The raw config.yaml of a run, as a dict."""
    try:
        config = read_json(run_dir / CONFIG_FILE)
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {CONFIG_FILE}; it is not an AxiomRL run directory") from None
    except ValueError as e:
        raise UsageError(f"{e}; the run's configuration is damaged and it cannot be resumed") from None
    except OSError as e:  # a directory in its place, no permission
        raise UsageError(f"{run_dir / CONFIG_FILE} cannot be read ({e.strerror}); the run's configuration is damaged") from None
    if not isinstance(config, dict):
        raise UsageError(f"{run_dir / CONFIG_FILE} does not hold a mapping of arguments")
    return config


def load_args(args_type: type[A], run_dir: Path) -> A:
    """Rebuild the Args a run was started with from its config.yaml (unknown keys are ignored)."""
    config = read_config(run_dir)
    names = {f.name for f in dataclasses.fields(args_type)}
    return args_type(**{k: v for k, v in config.items() if k in names})


def config_changes(saved: dict[str, Any], args: RunArgs) -> dict[str, tuple[Any, Any]]:
    """Every field whose value differs between a saved config and `args`: name -> (old, new).

    A field missing on one side (the script gained or lost a flag since the run started) shows as
    `None` on that side.
    """
    new = json.loads(dumps(args_to_dict(args)))  # compare JSON values: tuples vs lists, numpy, ...
    changes = {}
    for name in list(saved) + [n for n in new if n not in saved]:
        old_value, new_value = saved.get(name), new.get(name)
        if old_value != new_value:
            changes[name] = (old_value, new_value)
    return changes


def check_config_drift(saved: dict[str, Any], args: RunArgs) -> dict[str, tuple[Any, Any]]:
    """Refuse a resume whose hyperparameters differ from the run's, unless allowed; return changes.

    Fields in MUTABLE_ON_RESUME and those named by --allow-config-change may change; the accepted
    changes are returned so they can be recorded in metadata.json's `resumes`.
    """
    names = {f.name for f in dataclasses.fields(args)}
    gone = [k for k in saved if k not in names]
    if gone:  # the script dropped these flags since the run started: nothing can honour them now
        listed = ", ".join(gone)
        print(f"warning: config.yaml sets {listed}, which this script no longer has; resuming without them", file=sys.stderr, flush=True)
    # A flag added to the script since the run started did what its default does now (the
    # behaviour before the flag existed): compare it as that default, not as missing.
    defaults = json.loads(dumps(args_to_dict(type(args)())))
    known = {**{k: v for k, v in defaults.items() if k not in saved}, **{k: v for k, v in saved.items() if k in names}}
    changes = config_changes(known, args)
    allowed = set(args.allow_config_change)
    unknown = allowed - names
    if unknown:
        raise UsageError(
            f"--allow-config-change names {', '.join(sorted(unknown))}, which this script does not have; "
            "use the field names of config.yaml (snake_case)"
        )
    fixed = {k: v for k, v in changes.items() if k in FIXED_ON_RESUME}
    if fixed:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in fixed.items())
        raise UsageError(
            f"a resume cannot change {', '.join(fixed)} ({listed}): the checkpoint's environments, batch shape and step "
            "counts depend on it; resume with the run's values, or start a new run with the new ones"
        )
    refused = {k: v for k, v in changes.items() if k not in MUTABLE_ON_RESUME and k not in allowed}
    if refused:
        listed = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
        raise UsageError(
            f"resuming with hyperparameters that differ from the run's config.yaml ({listed}); "
            f"pass the original values, or accept the change with --allow-config-change {' '.join(refused)}"
        )
    return {k: v for k, v in changes.items() if k not in {"resume", "allow_config_change"}}


def parse_args(args_type: type[A], script: str, argv: Optional[Sequence[str]] = None) -> A:
    """Parse the command line into `args_type`, over the defaults of --preset/--config or, with
    --resume, of the run's saved config.

    `python ppo.py --resume RUN` continues RUN with the hyperparameters in its config.yaml; flags
    given on the command line override them (and then pass through the drift guard at start).
    `--preset NAME` and `--config FILE` replace the defaults (preset first, then the file); flags
    given on the command line override both.
    """
    from axiomrl_utils.cli_types import tyro_cli
    from axiomrl_utils.config_files import defaults_from_files
    from axiomrl_utils.rundir import find_run_to_resume

    argv = list(sys.argv[1:] if argv is None else argv)
    _check_json_flags(argv)
    args = tyro_cli(args_type, argv)
    if args.resume is None:
        if args.preset is None and args.config is None:
            return args
        base = defaults_from_files(args_type, script, args.preset, args.config)
        return tyro_cli(args_type, argv, default=base)
    if args.config is not None or args.preset is not None:
        raise UsageError(
            "--resume continues a run with its own config.yaml, so it takes no --config or --preset; "
            "pass changed values as flags (with --allow-config-change where needed)"
        )
    given = given_flags(args_type, argv, ("env_id", "seed"))
    run_dir = find_run_to_resume(
        args.resume,
        algo=Path(script).stem,
        env_id=args.env_id if "env_id" in given else None,
        seed=args.seed if "seed" in given else None,
    )
    saved = load_args(args_type, run_dir)
    fresh = args_type()
    for name in SESSION_ONLY:
        setattr(saved, name, getattr(fresh, name))
    args = tyro_cli(args_type, argv, default=saved)
    args.resume = str(run_dir)
    return args


def _check_json_flags(argv: Sequence[str]) -> None:
    """A malformed --env-kwargs as one sentence (tyro would print a box around its parser's message)."""
    from axiomrl_utils.cli_types import parse_json_object

    for i, arg in enumerate(argv):
        for spelling in ("--env-kwargs", "--env_kwargs"):
            if arg == spelling and i + 1 < len(argv):
                text = argv[i + 1]
            elif arg.startswith(spelling + "="):
                text = arg.split("=", 1)[1]
            else:
                continue
            try:
                parse_json_object(text, "--env-kwargs")
            except ValueError as e:
                raise UsageError(str(e)) from None
