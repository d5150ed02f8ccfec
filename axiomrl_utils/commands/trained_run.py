"""A trained run opened again: its directory, a checkpoint, its training script imported by path, and
the policy rebuilt from them (`open_run` -> `LoadedRun`), for `axiomrl eval` and `axiomrl export`.

Every script follows docs/writing-a-script.md: module-level `Args`, `make_env(args, idx,
evaluation, render_mode)`, and `load_policy(args, checkpoint, envs)` returning the deterministic
policy, with the training loop under `if __name__ == "__main__":`. So the script recorded in a
run's metadata.json can be imported by path, its Args rebuilt from config.yaml, and the policy
rebuilt from any checkpoint without knowing which algorithm made the run.

    run = open_run("runs/ppo__CartPole-v1__seed1__...", checkpoint="best")
    envs = run.make_envs(1)
    policy = run.policy(envs)                            # an nn.Module: observations -> actions

torch and gymnasium are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

from axiomrl_utils import UsageError
from axiomrl_utils.checkpoint import RESERVED, STEP_FILE, CheckpointError
from axiomrl_utils.rundir import METADATA_FILE, read_metadata

if TYPE_CHECKING:
    import torch

SCRIPT_API = ("Args", "make_env", "load_policy")  # what a script must define (docs/writing-a-script.md)


def resolve_run(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The run directory `path` names (or the one holding `path` when it is its metadata.json) and its metadata.

    Raises UsageError when `path` is no AxiomRL run directory.
    """
    run_dir = Path(path).expanduser()
    if run_dir.is_file() and run_dir.name == METADATA_FILE:
        run_dir = run_dir.parent
    if not run_dir.is_dir():
        raise UsageError(
            f"{path}: no such run directory; pass a run directory such as runs/<algo>__<env>__seed<N>__<time> "
            "(`axiomrl report runs/` lists them)"
        )
    if not (run_dir / METADATA_FILE).is_file():
        raise UsageError(
            f"{path} is not an AxiomRL run (it has no {METADATA_FILE}); pass a run directory such as "
            f"runs/<algo>__<env>__seed<N>__<time> (`axiomrl report {path}` lists the runs below it)"
        )
    return run_dir.resolve(), read_metadata(run_dir)


def available_checkpoints(run_dir: Path) -> list[str]:
    """The checkpoint names a run holds, as `--checkpoint` takes them: best, latest, step_N (oldest first)."""
    names = {p.stem for p in (run_dir / "checkpoints").glob("*.pt")}
    steps = sorted((int(m.group(1)), f"step_{m.group(1)}") for n in names if (m := STEP_FILE.match(n + ".pt")))
    return [n for n in ("best", "latest") if n in names] + [n for _, n in steps]


def resolve_checkpoint(run_dir: Path, name: str) -> Path:
    """The file `--checkpoint NAME` means: `best`, `latest`, `step_N` (with or without `.pt`), or a path in the run.

    Raises UsageError listing the checkpoints the run holds when there is no such file.
    """
    stem = name[: -len(".pt")] if name.endswith(".pt") else name
    if "/" in stem or os.sep in stem:
        candidate = Path(name).expanduser()
        candidate = candidate if candidate.is_absolute() else run_dir / candidate
    else:
        candidate = run_dir / "checkpoints" / f"{stem}.pt"
    if candidate.is_file():
        return candidate
    held = available_checkpoints(run_dir)
    if not held:
        raise UsageError(
            f"checkpoint {name!r} does not exist: {run_dir} holds no checkpoint yet (it stopped before its first save); "
            "evaluate a run that saved one"
        )
    raise UsageError(f"checkpoint {name!r} does not exist in {run_dir / 'checkpoints'}; it holds {', '.join(held)}: pass one of those")


def find_script(run_dir: Path, metadata: dict[str, Any], script: Optional[str | os.PathLike] = None) -> Path:
    """The script to rebuild the run's policy with.

    `script` when given; else the script recorded in metadata.json; else, when that file has moved
    (or the run was unpacked on another machine), `<algo>.py` of the installed `axiomrl` package.
    """
    algo = metadata["algo"]
    if script is not None:
        path = Path(script).expanduser()
        if not path.is_file():
            raise UsageError(f"--script {script}: no such file; pass the path of the {algo}.py that trained {run_dir.name}")
        return path.resolve()
    recorded = metadata.get("script")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    spec = importlib.util.find_spec("axiomrl")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / f"{algo}.py"
        if candidate.is_file():
            if recorded:
                print(f"note: the run's script {recorded} is gone; using {candidate}", file=sys.stderr)
            return candidate
    package = f"the axiomrl package at {locations[0]} has no {algo}.py" if locations else "no axiomrl package is importable"
    raise UsageError(
        f"the run's script {recorded or algo + '.py'} no longer exists and {package}; pass its location with --script PATH"
    )


def import_script(path: Path) -> ModuleType:
    """Import a training script by path without running its training (it sits under `__main__`)."""
    name = "axiomrl_script_" + re.sub(r"\W", "_", path.stem) + f"_{abs(hash(str(path))):x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} cannot be imported as a Python module; pass a .py script with --script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except UsageError:
        raise
    except (Exception, SystemExit) as e:  # SystemExit: e.g. a script whose training is not under __main__
        del sys.modules[name]
        raise UsageError(
            f"importing {path} failed ({first_line(e)}); fix the script or point at another with --script"
        ) from None
    missing = [attr for attr in SCRIPT_API if not hasattr(module, attr)]
    if missing:
        del sys.modules[name]
        raise UsageError(
            f"{path} does not define {', '.join(missing)}; scripts define Args, make_env and load_policy "
            "(docs/writing-a-script.md), or pass the right one with --script"
        )
    return module


@dataclass
class LoadedRun:
    """A run opened for evaluation or export: its script imported, its Args and one checkpoint loaded."""

    dir: Path
    metadata: dict[str, Any]
    script: Path
    module: ModuleType = field(repr=False)
    args: Any  # the script's Args, as config.yaml recorded them
    checkpoint: Path
    payload: dict[str, Any] = field(repr=False)

    @property
    def step(self) -> int:
        """The global step at which the checkpoint was saved."""
        return int(self.payload[RESERVED]["global_step"])

    @property
    def checkpoint_name(self) -> str:
        """The checkpoint as recorded in eval_episodes.jsonl: its path relative to the run directory."""
        try:
            return self.checkpoint.relative_to(self.dir).as_posix()
        except ValueError:
            return str(self.checkpoint)

    def make_envs(self, n: int, video: bool = False) -> Any:
        """`n` evaluation environments from the script's `make_env` (the first renders rgb_array with `video`).

        A run trained with --rescale-observation gets raw envs here: `policy` takes raw observations.
        """
        import dataclasses

        from axiomrl_utils.envs import _is_atari, register_atari
        from axiomrl_utils.evaluation import make_eval_envs

        env_id = self.metadata["env_id"]
        if _is_atari(env_id):
            register_atari()  # the scripts register ALE in main(), which is not run here
        rescaled = getattr(self.args, "rescale_observation", False)
        raw_args = dataclasses.replace(self.args, rescale_observation=False) if rescaled else self.args
        try:
            return make_eval_envs(
                [
                    self.module.make_env(raw_args, i, evaluation=True, render_mode="rgb_array" if video and i == 0 else None)
                    for i in range(n)
                ]
            )
        except Exception as e:
            raise UsageError(
                f"{self.script.name}'s make_env cannot build {env_id} evaluation environments ({first_line(e)}); "
                "check the environment's extra with `axiomrl doctor`"
            ) from None

    def policy(self, envs: Any) -> "torch.nn.Module":
        """The script's `load_policy` for this checkpoint, as an nn.Module in eval mode (see `policy_module`),
        taking the raw observations of `make_envs`' envs (--rescale-observation baked in)."""
        from axiomrl_utils.envs import rescale_constants
        from axiomrl_utils.policy import policy_module, rescaled_policy

        try:
            policy = self.module.load_policy(self.args, self.payload, envs)
        except Exception as e:
            raise UsageError(
                f"{self.script.name}'s load_policy cannot rebuild the policy from {self.checkpoint_name} "
                f"({first_line(e)}); pass the script that trained the run with --script"
            ) from None
        if getattr(self.args, "rescale_observation", False):
            return rescaled_policy(policy, *rescale_constants(envs.single_observation_space)).eval()
        return policy_module(policy).eval()


def first_line(e: BaseException) -> str:
    """`Type: message` of an exception, on one line."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def open_run(path: str | os.PathLike, checkpoint: str = "best", script: Optional[str | os.PathLike] = None) -> LoadedRun:
    """Open a run for evaluation or export; every check is done here, before anything is written.

    Raises UsageError for a path that is no run, a checkpoint that does not exist or does not load,
    and a script that cannot be found or imported.
    """
    from axiomrl_utils.args import load_args
    from axiomrl_utils.checkpoint import load

    run_dir, metadata = resolve_run(path)
    checkpoint_path = resolve_checkpoint(run_dir, checkpoint)
    script_path = find_script(run_dir, metadata, script)
    module = import_script(script_path)
    args = load_args(module.Args, run_dir)
    try:
        payload = load(checkpoint_path, replay=False)  # a stored replay buffer is read only by export --replay-buffer
    except CheckpointError as e:
        others = [n for n in available_checkpoints(run_dir) if n != checkpoint_path.stem]
        hint = f"pass another with --checkpoint ({', '.join(others)})" if others else "the run has no other checkpoint"
        raise UsageError(f"{e}; {hint}") from None
    return LoadedRun(run_dir, metadata, script_path, module, args, checkpoint_path, payload)


def add_script_argument(parser: argparse.ArgumentParser) -> None:
    """--script PATH, shared by `axiomrl eval` and `axiomrl export`."""
    parser.add_argument(
        "--script",
        metavar="PATH",
        help="the training script to rebuild the policy with (default: the one in metadata.json, "
        "else axiomrl/<algo>.py of the installed package)",
    )
