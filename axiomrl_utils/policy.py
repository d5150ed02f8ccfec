"""A run's trained policy, rebuilt from its script and a checkpoint: evaluate it again or export it.

Every script follows docs/writing-a-script.md: module-level `Args`, `make_env(args, idx,
evaluation, render_mode)`, and `load_policy(args, checkpoint, envs)` returning the deterministic
policy, with the training loop under `if __name__ == "__main__":`. So the script recorded in a
run's metadata.json can be imported by path, its Args rebuilt from config.yaml, and the policy
rebuilt from any checkpoint without knowing which algorithm made the run.

    run = open_run("runs/ppo__CartPole-v1__seed1__...", checkpoint="best")
    result = evaluate(run, episodes=10)                  # rows appended to eval_episodes.jsonl
    export(run, "torchscript", Path("policy.pt"))        # or "onnx"

torch, gymnasium and the ONNX tools are imported inside the functions that use them.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np

from axiomrl_utils import UsageError
from axiomrl_utils.checkpoint import RESERVED, STEP_FILE, CheckpointError
from axiomrl_utils.run import METADATA_FILE, read_metadata

EXPORT_FORMATS = ("torchscript", "onnx")
EXPORT_SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
SCRIPT_API = ("Args", "make_env", "load_policy")  # what a script must define (docs/writing-a-script.md)
ONNX_EXPORTER = "torch.onnx.export(dynamo=True)"  # the torch.export-based exporter, torch's default since 2.9
VERIFY_OBSERVATIONS = 256  # observations the exported file is checked on before it is kept


# --------------------------------------------------------------------------------------------
# Finding the run, its checkpoint and its script


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
            f"importing {path} failed ({_first_line(e)}); fix the script or point at another with --script"
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
        """`n` evaluation environments from the script's `make_env` (the first renders rgb_array with `video`)."""
        from axiomrl_utils.envs import _is_atari, register_atari
        from axiomrl_utils.evaluation import make_eval_envs

        env_id = self.metadata["env_id"]
        if _is_atari(env_id):
            register_atari()  # the scripts register ALE in main(), which is not run here
        try:
            return make_eval_envs(
                [
                    self.module.make_env(self.args, i, evaluation=True, render_mode="rgb_array" if video and i == 0 else None)
                    for i in range(n)
                ]
            )
        except Exception as e:
            raise UsageError(
                f"{self.script.name}'s make_env cannot build {env_id} evaluation environments ({_first_line(e)}); "
                "check the environment's extra with `axiomrl doctor`"
            ) from None

    def policy(self, envs: Any) -> "torch.nn.Module":  # noqa: F821
        """The script's `load_policy` for this checkpoint, as an nn.Module in eval mode (see `policy_module`)."""
        try:
            policy = self.module.load_policy(self.args, self.payload, envs)
        except Exception as e:
            raise UsageError(
                f"{self.script.name}'s load_policy cannot rebuild the policy from {self.checkpoint_name} "
                f"({_first_line(e)}); pass the script that trained the run with --script"
            ) from None
        return policy_module(policy).eval()


def _first_line(e: BaseException) -> str:
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
        payload = load(checkpoint_path)
    except CheckpointError as e:
        others = [n for n in available_checkpoints(run_dir) if n != checkpoint_path.stem]
        hint = f"pass another with --checkpoint ({', '.join(others)})" if others else "the run has no other checkpoint"
        raise UsageError(f"{e}; {hint}") from None
    return LoadedRun(run_dir, metadata, script_path, module, args, checkpoint_path, payload)


# --------------------------------------------------------------------------------------------
# The policy as an nn.Module


@functools.cache
def _module_types() -> tuple[type, type, type]:
    """nn.Module classes, defined on first use so that importing this module does not import torch."""
    import torch
    from torch import nn

    class MethodPolicy(nn.Module):
        """`owner.<method>(obs)` as a module, with `owner` (and so its weights) as a submodule."""

        def __init__(self, owner: nn.Module, method: str) -> None:
            super().__init__()
            self.owner = owner
            self.method = method

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return getattr(self.owner, self.method)(obs)

    class CallablePolicy(nn.Module):
        """Any callable as a module; the modules and tensors it closes over are registered on it."""

        def __init__(self, fn: Callable, modules: Sequence[nn.Module], tensors: Sequence[torch.Tensor]) -> None:
            super().__init__()
            self.fn = fn
            self.captured = nn.ModuleList(modules)
            for i, tensor in enumerate(tensors):
                self.register_buffer(f"captured_{i}", tensor)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.fn(obs)

    class NormalizedPolicy(nn.Module):
        """`policy(clip((obs - mean) / sqrt(var + epsilon)))`, with mean and var as buffers."""

        def __init__(self, policy: nn.Module, mean: torch.Tensor, var: torch.Tensor, epsilon: float, clip: Optional[float]) -> None:
            super().__init__()
            self.policy = policy
            self.register_buffer("obs_mean", mean)
            self.register_buffer("obs_var", var)
            self.epsilon = float(epsilon)
            self.clip = None if clip is None else float(clip)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            obs = (obs - self.obs_mean) / torch.sqrt(self.obs_var + self.epsilon)
            if self.clip is not None:
                obs = obs.clamp(-self.clip, self.clip)
            return self.policy(obs)

    return MethodPolicy, CallablePolicy, NormalizedPolicy


def _captured(fn: Any, seen: Optional[set[int]] = None) -> tuple[list, list]:
    """The nn.Modules and tensors a callable reaches through its closure, `__self__` or partial arguments."""
    import torch

    seen = set() if seen is None else seen
    modules, tensors = [], []
    if id(fn) in seen:
        return modules, tensors
    seen.add(id(fn))
    values: list[Any] = []
    if isinstance(fn, functools.partial):
        values += [fn.func, *fn.args, *fn.keywords.values()]
    values += [getattr(fn, "__self__", None)]
    values += [cell.cell_contents for cell in (getattr(fn, "__closure__", None) or ()) if _cell_filled(cell)]
    for value in values:
        if isinstance(value, torch.nn.Module):
            modules.append(value)
        elif isinstance(value, torch.Tensor):
            tensors.append(value)
        elif callable(value):
            more_modules, more_tensors = _captured(value, seen)
            modules += more_modules
            tensors += more_tensors
    return modules, tensors


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def policy_module(policy: Callable[[Any], Any]) -> "torch.nn.Module":  # noqa: F821
    """`load_policy`'s result as an nn.Module whose `forward(obs)` returns actions, for `.to(device)` and export.

    An nn.Module is returned as is; a bound method of one (`agent.act`, what ppo.py returns) is
    wrapped with its module registered, so the weights travel with it. Any other callable is
    wrapped with the modules and tensors it closes over registered (best effort: a closure over
    module-level globals cannot be found); prefer returning a module or a module's method, and
    `normalized_policy` for observation normalisation.
    """
    import torch

    method_policy, callable_policy, _ = _module_types()
    if isinstance(policy, torch.nn.Module):
        return policy
    owner = getattr(policy, "__self__", None)
    if isinstance(owner, torch.nn.Module) and getattr(owner, policy.__name__, None) == policy:
        return method_policy(owner, policy.__name__)
    modules, tensors = _captured(policy)
    return callable_policy(policy, modules, tensors)


def normalized_policy(
    policy: Callable[[Any], Any], mean: Any, var: Any, epsilon: float = 1e-8, clip: Optional[float] = None
) -> "torch.nn.Module":  # noqa: F821
    """The policy applied to normalised observations, as one nn.Module holding the statistics as buffers.

    Computes `policy(clip((obs - mean) / sqrt(var + epsilon), -clip, clip))`, which is what
    `gymnasium.wrappers.NormalizeObservation` (epsilon 1e-8) followed by an optional clip does.
    `mean` and `var` are arrays or tensors (e.g. the wrapper's `obs_rms.mean` / `obs_rms.var`
    saved in the checkpoint); they are stored as float32 buffers, so `.to(device)` moves them and
    `axiomrl export` bakes them into the exported file. Scripts that normalise observations return
    this from `load_policy`.
    """
    import torch

    _, _, normalized = _module_types()
    as_tensor = lambda x: torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32).clone()  # noqa: E731
    return normalized(policy_module(policy), as_tensor(mean), as_tensor(var), epsilon, clip)


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class EvalResult:
    """What `evaluate` did: the episodes, their eval_episodes.jsonl rows, and the video written."""

    episodes: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    video: Optional[Path]

    @property
    def returns(self) -> np.ndarray:
        return np.array([e["return"] for e in self.episodes], dtype=np.float64)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([e["length"] for e in self.episodes], dtype=np.float64)


def check_writable(run_dir: Path) -> None:
    """A run directory `axiomrl eval` can append to (checked before any episode is played)."""
    target = run_dir / "eval_episodes.jsonl"
    if not os.access(run_dir, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{target} is not writable; copy or unpack the run somewhere you can write, then evaluate it there")


def append_jsonl_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a jsonl file that a training process may be appending to at the same time.

    One `write()` on an O_APPEND descriptor: the rows land after whatever is in the file, in one
    piece, and a training process's own appends are not disturbed. A torn last line left by a killed
    process is terminated first so it does not swallow the first new row.
    """
    from axiomrl_utils.jsonl import dumps

    text = "".join(dumps(row) + "\n" for row in rows)
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def evaluate(
    run: LoadedRun,
    episodes: Optional[int] = None,
    seed: Optional[int] = None,
    capture_video: bool = False,
    append: bool = True,
) -> EvalResult:
    """Play `episodes` episodes of the checkpoint's deterministic policy and log them to the run.

    Episode i uses env seed `eval_seeds(seed, episodes)[i]`; with the defaults (the run's seed and
    --eval-episodes) these are exactly the episodes the run's own evaluations played, so
    evaluating a checkpoint reproduces the evaluation logged at its step. The rows are appended to
    eval_episodes.jsonl with tag `manual`, the checkpoint's step and file. With `capture_video`
    the first episode is written to videos/ as an MP4 (the `video` extra).
    """
    from gymnasium.error import DependencyNotInstalled

    from axiomrl_utils.evaluation import episode_rows, eval_seeds, run_episodes
    from axiomrl_utils.reproducibility import select_device

    episodes = run.args.eval_episodes if episodes is None else episodes
    seed = run.args.seed if seed is None else seed
    if episodes <= 0:
        raise UsageError(f"--episodes must be positive (got {episodes}); pass a value above 0")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or positive (got {seed}); environment seeds cannot be negative")
    if capture_video and importlib.util.find_spec("moviepy") is None:
        raise UsageError("--capture-video needs moviepy; install it with `pip install 'axiomrl[video]'`")
    if append:
        check_writable(run.dir)
    device = select_device(run.args.cuda)
    envs = run.make_envs(episodes, video=capture_video)
    try:
        policy = run.policy(envs).to(device)
        video = None
        if capture_video:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            video = run.dir / "videos" / f"manual_{run.checkpoint.stem}_step{run.step:010d}_seed{seed}_{stamp}.mp4"
        try:
            played = run_episodes(policy, envs, eval_seeds(seed, episodes), device, video)
        except DependencyNotInstalled as e:  # rendering needs a package (pygame for classic control)
            raise UsageError(f"rendering {run.metadata['env_id']} failed ({e}); install `pip install 'axiomrl[video]'`") from None
    finally:
        envs.close()
    rows = episode_rows(played, run.step, tag="manual", checkpoint=run.checkpoint_name, deterministic=True)
    if append:
        append_jsonl_rows(run.dir / "eval_episodes.jsonl", rows)
    return EvalResult(played, rows, video if video is not None and video.exists() else None)


# --------------------------------------------------------------------------------------------
# Export


def require_export_extra(fmt: str) -> None:
    """The packages `--format fmt` needs, or one sentence naming the extra."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported; pass one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(f"--format onnx needs {', '.join(missing)}; install them with `pip install 'axiomrl[export]'`")


def sample_observations(run: LoadedRun, envs: Any, policy: Any, n: int = VERIFY_OBSERVATIONS) -> "torch.Tensor":  # noqa: F821
    """Observations to check an export on: half from playing the policy, half drawn from the observation space."""
    import torch

    from axiomrl_utils.evaluation import eval_seeds

    seen = []
    obs, _ = envs.reset(seed=eval_seeds(run.args.seed, envs.num_envs))
    with torch.inference_mode():
        while len(seen) * envs.num_envs < n // 2:
            seen.append(np.asarray(obs, dtype=np.float32))
            obs, *_ = envs.step(policy(torch.as_tensor(obs, dtype=torch.float32)).numpy())
    space = envs.single_observation_space
    space.seed(run.args.seed)
    drawn = [np.asarray(space.sample(), dtype=np.float32) for _ in range(n - n // 2)]
    return torch.as_tensor(np.concatenate([np.concatenate(seen)[: n // 2], np.stack(drawn)]))


def _same_actions(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per observation, whether two action batches agree: exactly for integers, to float32 precision else."""
    if expected.shape != got.shape:
        return np.zeros(len(expected), dtype=bool)
    if np.issubdtype(expected.dtype, np.integer) or expected.dtype == bool:
        same = expected == got
    else:
        same = np.isclose(expected, got, rtol=1e-4, atol=1e-5)
    return same.reshape(len(expected), -1).all(axis=1)


def export_info(run: LoadedRun, fmt: str, envs: Any, exporter: str) -> dict[str, str]:
    """What the exported file records about itself (TorchScript extra file / ONNX metadata_props)."""
    return {
        "format": fmt,
        "exporter": exporter,
        "run_id": run.metadata.get("run_id", run.dir.name),
        "algo": run.metadata["algo"],
        "env_id": run.metadata["env_id"],
        "checkpoint": run.checkpoint_name,
        "global_step": str(run.step),
        "observation_space": str(envs.single_observation_space),
        "action_space": str(envs.single_action_space),
        "input": "float32 observation batch [batch, *observation_shape]",
        "output": "deterministic action batch",
    }


def export(run: LoadedRun, fmt: Literal["torchscript", "onnx"], output: Path) -> dict[str, Any]:
    """Write the checkpoint's deterministic policy as a standalone TorchScript or ONNX file.

    The file maps a float32 observation batch `[batch, *obs_shape]` to the action batch, with
    whatever `load_policy` does (observation normalisation included) baked in; using it needs
    torch (`torch.jit.load`) or onnxruntime only. Before the file is put in place it is loaded
    back and checked to give the checkpoint's actions on VERIFY_OBSERVATIONS observations.
    The file is written atomically. Returns what was written (path, exporter, check counts).
    """
    import torch

    from axiomrl_utils.jsonl import temp_file_for

    require_export_extra(fmt)
    envs = run.make_envs(1)
    try:
        policy = run.policy(envs).cpu()
        observations = sample_observations(run, envs, policy)
        with torch.inference_mode():
            expected = policy(observations).numpy()
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = temp_file_for(output)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            if fmt == "torchscript":
                exporter = "torch.jit.trace"
                got = _export_torchscript(policy, observations, tmp, export_info(run, fmt, envs, exporter))
            else:
                exporter, got = _export_onnx(policy, observations, tmp, export_info(run, fmt, envs, ONNX_EXPORTER))
            same = _same_actions(expected, got)
            if not same.all():
                raise UsageError(
                    f"the exported {fmt} policy gives other actions than the checkpoint on {int((~same).sum())} of "
                    f"{len(same)} test observations; nothing was written: try the other --format, or make the script's "
                    "load_policy return an nn.Module (docs/eval-export-share.md)"
                )
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        envs.close()
    return {"path": output, "exporter": exporter, "checked": len(same), "size_bytes": output.stat().st_size}


def _export_torchscript(policy: Any, observations: Any, path: Path, info: dict[str, str]) -> np.ndarray:
    """Trace and save; return the saved file's actions on `observations`."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but is the TorchScript format
        try:
            traced = torch.jit.trace(policy, observations[:2], check_trace=False)
        except Exception as e:
            raise UsageError(
                f"tracing the policy failed ({_first_line(e)}); make the script's "
                "load_policy return an nn.Module or a method of one (docs/eval-export-share.md)"
            ) from None
        torch.jit.save(traced, str(path), _extra_files={"axiomrl.json": json.dumps(info)})
        loaded = torch.jit.load(str(path))
        with torch.inference_mode():
            return loaded(observations).numpy()


def _export_onnx(policy: Any, observations: Any, path: Path, info: dict[str, str]) -> tuple[str, np.ndarray]:
    """Export with torch.onnx's torch.export-based (dynamo) exporter; return (exporter, the file's actions).

    The batch dimension is dynamic. The model has one input `obs` and one output `action`.
    """
    import logging

    import onnx
    import onnxruntime
    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    exporter = ONNX_EXPORTER
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                policy,
                (observations[:2],),
                str(path),
                dynamo=True,
                external_data=False,
                input_names=["obs"],
                output_names=["action"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
        except Exception as e:
            raise UsageError(
                f"exporting the policy to ONNX failed ({_first_line(e)}); "
                "try --format torchscript"
            ) from None
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, info)
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return exporter, session.run(None, {"obs": observations.numpy()})[0]


def default_export_path(run: LoadedRun, fmt: str) -> Path:
    """`RUN/exported/policy_<checkpoint>_step<N>.pt|.onnx`."""
    return run.dir / "exported" / f"policy_{run.checkpoint.stem}_step{run.step}{EXPORT_SUFFIX[fmt]}"
