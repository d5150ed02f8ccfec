"""`axiomrl export`: write a checkpoint's deterministic policy as a standalone TorchScript or ONNX
file (observation batch -> actions), checked against the checkpoint before it is kept. A recurrent
policy (ppo_lstm.py) is exported as one step: (observations, *state) -> (actions, *next state).

    axiomrl export runs/ppo__CartPole-v1__seed1__... --format onnx  # standalone policy file

    run = open_run("runs/ppo__CartPole-v1__seed1__...", checkpoint="best")
    export(run, "torchscript", Path("policy.pt"))        # or "onnx"

numpy, torch and the ONNX tools are imported inside the functions, so `axiomrl export --help`
starts fast. Docs: docs/eval-export-share.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from axiomrl_utils import UsageError
from axiomrl_utils.commands.trained_run import LoadedRun, add_script_argument, first_line, open_run

if TYPE_CHECKING:
    import numpy as np
    import torch

EXPORT_FORMATS = ("torchscript", "onnx")
EXPORT_SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}
ONNX_EXPORTER = "torch.onnx.export(dynamo=True)"  # the torch.export-based exporter, torch's default since 2.9
VERIFY_OBSERVATIONS = 256  # observations the exported file is checked on before it is kept


def require_export_extra(fmt: str) -> None:
    """The packages `--format fmt` needs, or one sentence naming the extra."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r} is not supported; pass one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "onnx":
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(f"--format onnx needs {', '.join(missing)}; install them with `pip install 'axiomrl[export]'`")


def sample_observations(run: LoadedRun, envs: Any, policy: Any, n: int = VERIFY_OBSERVATIONS) -> "torch.Tensor":
    """Observations to check an export on: half from playing the policy, half drawn from the observation space."""
    import numpy as np
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


def episode_observations(run: LoadedRun, envs: Any, policy: Any, max_steps: int = 100_000) -> "torch.Tensor":
    """The observations of one whole episode of a recurrent policy (first evaluation seed), in order."""
    import numpy as np
    import torch

    from axiomrl_utils.evaluation import eval_seeds, initial_state

    seen = []
    obs, _ = envs.reset(seed=eval_seeds(run.args.seed, envs.num_envs))
    state = initial_state(policy, envs.num_envs)
    with torch.inference_mode():
        for _ in range(max_steps):
            seen.append(np.asarray(obs, dtype=np.float32))
            action, *state = policy(torch.as_tensor(obs, dtype=torch.float32), *state)
            obs, _, terminated, truncated, _ = envs.envs[0].step(action.numpy()[0])
            obs = obs[None]
            if terminated or truncated:
                break
    return torch.as_tensor(np.concatenate(seen))


def play_sequence(step: Any, observations: "torch.Tensor", state: tuple) -> np.ndarray:
    """A recurrent policy's actions on consecutive observations of one episode, its state carried
    from each step to the next; `step(obs, *state) -> (actions, *state)` on a batch of one."""
    import numpy as np
    import torch

    actions = []
    with torch.inference_mode():
        for i in range(len(observations)):
            action, *state = step(observations[i : i + 1], *state)
            actions.append(np.asarray(action))
    return np.concatenate(actions)


def state_batch_dims(policy: Any) -> list[int]:
    """For each tensor of a recurrent policy's state, the dimension that indexes the batch."""
    one, two = policy.initial_state(1), policy.initial_state(2)
    return [next(d for d, (a, b) in enumerate(zip(s1.shape, s2.shape)) if a != b) for s1, s2 in zip(one, two)]


def _same_actions(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per observation, whether two action batches agree: exactly for integers, to float32 precision else."""
    import numpy as np

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


def recurrent_info(policy: Any) -> dict[str, str]:
    """What export_info says instead about the inputs and outputs of a recurrent policy's file."""
    shapes = [["batch" if d == dim else n for d, n in enumerate(s.shape)] for s, dim in zip(policy.initial_state(1), state_batch_dims(policy))]
    names = ", ".join(f"state_{i} {shape}" for i, shape in enumerate(shapes))
    return {
        "input": f"float32 observation batch [batch, *observation_shape], then the recurrent state: {names} "
        "(zeros at an episode's first step, else the state the previous step returned)",
        "output": "deterministic action batch, then the next recurrent state (next_state_0, ...)",
        "state_shapes": json.dumps(shapes),
    }


def export(run: LoadedRun, fmt: Literal["torchscript", "onnx"], output: Path) -> dict[str, Any]:
    """Write the checkpoint's deterministic policy as a standalone TorchScript or ONNX file.

    The file maps a float32 observation batch `[batch, *obs_shape]` to the action batch, with
    whatever `load_policy` does (observation normalisation included) baked in; using it needs
    torch (`torch.jit.load`) or onnxruntime only. Before the file is put in place it is loaded
    back and checked to give the checkpoint's actions on VERIFY_OBSERVATIONS observations.
    A recurrent policy (one with `initial_state`, e.g. ppo_lstm.py's) is exported as one step,
    `(obs, state_0, state_1, ...) -> (action, next_state_0, ...)` (ONNX names), and checked to
    give the checkpoint's actions at every step of a whole episode, each carrying its own state.
    The file is written atomically. Returns what was written (path, exporter, check counts).
    """
    import torch

    from axiomrl_utils.evaluation import initial_state

    require_export_extra(fmt)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    envs = run.make_envs(1)
    try:
        policy = run.policy(envs).cpu()
        recurrent = initial_state(policy, 1) is not None
        raw_space = None if recurrent else space_before_flattening(run)
        if raw_space is not None:  # the file takes the env's own (Dict, Tuple, Discrete, ...) observations
            return _export_unflattened(run, fmt, output, policy, raw_space, envs)
        if recurrent:
            observations = episode_observations(run, envs, policy)
            expected = play_sequence(policy, observations, initial_state(policy, 1))
        else:
            observations = sample_observations(run, envs, policy)
            with torch.inference_mode():
                expected = policy(observations).numpy()
        exporter = "torch.jit.trace" if fmt == "torchscript" else ONNX_EXPORTER
        info = {**export_info(run, fmt, envs, exporter), **(recurrent_info(policy) if recurrent else {})}

        def write(tmp: Path) -> np.ndarray:
            if fmt == "torchscript":
                return _export_torchscript(policy, observations, tmp, info)
            return _export_onnx(policy, observations, tmp, info)

        checked = _write_checked(output, fmt, expected, "steps of an episode" if recurrent else "test observations", write)
    finally:
        envs.close()
    return {"path": output, "exporter": exporter, "checked": checked, "recurrent": recurrent, "size_bytes": output.stat().st_size}


def space_before_flattening(run: LoadedRun) -> Any:
    """The env's own observation space when the script flattened it for its network (else None)."""
    from axiomrl_utils.envs import env_options, make_registered, needs_flattening, registered_id

    if not str(run.metadata.get("observation_adapter") or "").startswith("FlattenObservation"):
        return None
    shown_id, env_kwargs, modules = env_options(run.args)
    env = make_registered(shown_id, registered_id(shown_id, modules), env_kwargs)
    try:
        return env.observation_space if needs_flattening(env.observation_space) else None
    finally:
        env.close()


def _export_unflattened(run: LoadedRun, fmt: str, output: Path, policy: Any, space: Any, envs: Any) -> dict[str, Any]:
    """Export a policy whose script flattened Dict/Tuple/Discrete observations as a file that takes
    them as the env gives them: one input per part (a Dict's keys in order, ONNX names = keys),
    flattened inside the file exactly as gymnasium's `spaces.flatten` does."""
    import gymnasium as gym
    import numpy as np
    import torch

    from axiomrl_utils.policy import unflattened_input_policy

    try:
        names, wrapped = unflattened_input_policy(policy, space)
    except ValueError as e:
        raise UsageError(f"{e}; only Dicts and Tuples of Box/Discrete/MultiBinary/MultiDiscrete parts export as raw inputs") from None
    space.seed(run.args.seed)
    samples = [space.sample() for _ in range(VERIFY_OBSERVATIONS)]
    flat = torch.as_tensor(np.stack([gym.spaces.flatten(space, s) for s in samples]).astype(np.float32))
    parts = _parts(space, samples)
    with torch.inference_mode():
        expected = policy(flat).numpy()
    exporter = "torch.jit.trace" if fmt == "torchscript" else ONNX_EXPORTER
    info = {**export_info(run, fmt, envs, exporter),
            "input": f"the env's observation {space} as {len(names)} tensor(s) with a leading batch dimension, in this order: "
                     + ", ".join(names)}
    examples = tuple(p[:2] for p in parts)

    def write(tmp: Path) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if fmt == "torchscript":
                    torch.jit.save(torch.jit.trace(wrapped, examples, check_trace=False), str(tmp),
                                   _extra_files={"axiomrl.json": json.dumps(info)})
                    with torch.inference_mode():
                        return torch.jit.load(str(tmp))(*parts).numpy()
                batch = torch.export.Dim("batch")
                torch.onnx.export(wrapped, examples, str(tmp), dynamo=True, external_data=False, input_names=names,
                                  output_names=["action"], dynamic_shapes=(tuple({0: batch} for _ in parts),), verbose=False)
            except Exception as e:
                raise UsageError(f"exporting the policy for {space} observations failed ({first_line(e)}); "
                                 "try the other --format") from None
        return _onnx_session(tmp, info).run(None, {n: p.numpy() for n, p in zip(names, parts)})[0]

    checked = _write_checked(output, fmt, expected, "test observations", write)
    return {"path": output, "exporter": exporter, "checked": checked, "recurrent": False, "size_bytes": output.stat().st_size}


def _parts(space: Any, samples: list) -> list["torch.Tensor"]:
    """Observations of a Dict/Tuple/other space as one batched tensor per part (the file's inputs)."""
    import gymnasium as gym
    import numpy as np
    import torch

    if isinstance(space, gym.spaces.Dict):
        return [torch.as_tensor(np.stack([np.asarray(s[k]) for s in samples])) for k in space.spaces]
    if isinstance(space, gym.spaces.Tuple):
        return [torch.as_tensor(np.stack([np.asarray(s[i]) for s in samples])) for i in range(len(space.spaces))]
    return [torch.as_tensor(np.stack([np.asarray(s) for s in samples]))]


def _export_torchscript(policy: Any, observations: Any, path: Path, info: dict[str, str]) -> np.ndarray:
    """Trace and save; return the saved file's actions on `observations` (played in order when recurrent)."""
    import torch

    from axiomrl_utils.evaluation import initial_state

    state = initial_state(policy, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but is the TorchScript format
        try:
            example = observations[:2] if state is None else (observations[:1], *state)
            traced = torch.jit.trace(policy, example, check_trace=False)
        except Exception as e:
            raise UsageError(
                f"tracing the policy failed ({first_line(e)}); make the script's "
                "load_policy return an nn.Module or a method of one (docs/eval-export-share.md)"
            ) from None
        torch.jit.save(traced, str(path), _extra_files={"axiomrl.json": json.dumps(info)})
        loaded = torch.jit.load(str(path))
        if state is not None:
            return play_sequence(loaded, observations, state)
        with torch.inference_mode():
            return loaded(observations).numpy()


def _export_onnx(policy: Any, observations: Any, path: Path, info: dict[str, str]) -> np.ndarray:
    """Export with torch.onnx's torch.export-based (dynamo) exporter; return the file's actions.

    The batch dimension is dynamic. The model has one input `obs` and one output `action`; a
    recurrent policy also takes `state_0, ...` and returns `next_state_0, ...` after them.
    """
    import numpy as np
    import torch

    from axiomrl_utils.evaluation import initial_state

    state = initial_state(policy, 2)
    batch = torch.export.Dim("batch")
    if state is None:
        inputs, names, output_names, dynamic = (observations[:2],), ["obs"], ["action"], ({0: batch},)
    else:
        inputs = (observations[:2], *state)
        names = ["obs"] + [f"state_{i}" for i in range(len(state))]
        output_names = ["action"] + [f"next_state_{i}" for i in range(len(state))]
        dynamic = ({0: batch}, *({dim: batch} for dim in state_batch_dims(policy)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                policy,
                inputs,
                str(path),
                dynamo=True,
                external_data=False,
                input_names=names,
                output_names=output_names,
                dynamic_shapes=dynamic,
                verbose=False,
            )
        except Exception as e:
            raise UsageError(
                f"exporting the policy to ONNX failed ({first_line(e)}); "
                "try --format torchscript"
            ) from None
    session = _onnx_session(path, info)
    if state is None:
        return session.run(None, {"obs": observations.numpy()})[0]

    def step(obs: Any, *state: Any) -> tuple:
        outputs = session.run(None, dict(zip(names, [np.asarray(obs), *(np.asarray(s) for s in state)])))
        return tuple(outputs)

    return play_sequence(step, observations, tuple(s.numpy() for s in initial_state(policy, 1)))


def _onnx_session(path: Path, info: dict[str, str]) -> Any:
    """Record `info` in the ONNX file's metadata, then open it with onnxruntime (to check it)."""
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, info)
    onnx.save(model, str(path))
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _write_checked(output: Path, fmt: str, expected: np.ndarray, what: str, write: Callable[[Path], np.ndarray]) -> int:
    """`write(tmp)` the file to a temporary path and keep it as `output` only if the actions it
    returns (the written file's) equal `expected` (the checkpoint's); the number of checks."""
    from axiomrl_utils.jsonl import temp_file_for

    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_file_for(output)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        same = _same_actions(expected, write(tmp))
        if not same.all():
            raise UsageError(
                f"the exported {fmt} policy gives other actions than the checkpoint on {int((~same).sum())} of "
                f"{len(same)} {what}; nothing was written: try the other --format, or make the script's "
                "load_policy return an nn.Module (docs/eval-export-share.md)"
            )
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return len(same)


def default_export_path(run: LoadedRun, fmt: str) -> Path:
    """`RUN/exported/policy_<checkpoint>_step<N>.pt|.onnx`."""
    return run.dir / "exported" / f"policy_{run.checkpoint.stem}_step{run.step}{EXPORT_SUFFIX[fmt]}"


# --------------------------------------------------------------------------------------------
# The subcommand (wired in axiomrl_utils/commands/cli.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl export`."""
    parser.add_argument("run", metavar="RUN", help="a run directory")
    parser.add_argument(
        "--checkpoint", default=None,
        help="best, latest, step_N, or a .pt path (default: best; latest with --replay-buffer)",
    )
    parser.add_argument("--format", choices=EXPORT_FORMATS, help="torchscript (torch.jit.load) or onnx (onnxruntime; the export extra)")
    parser.add_argument(
        "--replay-buffer", metavar="DIR",
        help="instead of the policy: write the checkpoint's replay buffer as a Minari dataset in the new directory DIR (data extra)",
    )
    parser.add_argument("--output", metavar="FILE", help="where to write it (default: RUN/exported/policy_<checkpoint>_step<N>.pt|.onnx)")
    add_script_argument(parser)


def run(args: argparse.Namespace) -> int:
    """`axiomrl export`: prints the written path; exit 0, or UsageError."""
    if args.replay_buffer is not None:
        return _run_replay_buffer(args)
    if args.format is None:
        raise UsageError("pass --format torchscript or --format onnx to export the policy (or --replay-buffer DIR for the replay buffer)")
    args.checkpoint = args.checkpoint or "best"
    require_export_extra(args.format)
    if args.output:  # checked before the run is opened: that imports torch and the script
        output = Path(args.output).expanduser()
        if not output.parent.is_dir():
            raise UsageError(f"--output {output}: the directory {output.parent} does not exist; create it or write elsewhere")
        _refuse_existing(output)
    loaded = open_run(args.run, args.checkpoint, args.script)
    output = Path(args.output).expanduser() if args.output else default_export_path(loaded, args.format)
    _refuse_existing(output)
    written = export(loaded, args.format, output)
    print(written["path"])
    print(
        f"{args.format} policy of {loaded.checkpoint_name} (step {loaded.step:,}), {written['size_bytes'] / 1024:,.0f} KiB, "
        f"exported with {written['exporter']}; gives the checkpoint's actions "
        + (f"at every step of a {written['checked']}-step episode, carrying its state" if written["recurrent"] else f"on {written['checked']} test observations"),
        file=sys.stderr,
    )
    return 0


def _run_replay_buffer(args: argparse.Namespace) -> int:
    """`axiomrl export RUN --replay-buffer DIR`: the buffer as a Minari dataset (axiomrl_utils/commands/replay_dataset.py)."""
    from axiomrl_utils.commands.dataset import check_target, require_data_extra
    from axiomrl_utils.commands.replay_dataset import export_replay_buffer

    if args.format is not None or args.output is not None:
        option = "--format" if args.format is not None else "--output"
        raise UsageError(f"{option} is for exporting the policy; with --replay-buffer DIR the dataset goes to DIR, so drop {option}")
    require_data_extra("minari")
    check_target(Path(args.replay_buffer))  # before the run is opened: that imports torch and the script
    loaded = open_run(args.run, args.checkpoint or "latest", args.script)
    written = export_replay_buffer(loaded, Path(args.replay_buffer))
    print(written["path"])
    print(
        f"replay buffer of {loaded.checkpoint_name} (step {loaded.step:,}): {written['transitions']:,} transitions in "
        f"{written['episodes']:,} episodes, Minari dataset of {written['size_bytes'] / 1024:,.0f} KiB",
        file=sys.stderr,
    )
    return 0


def _refuse_existing(output: Path) -> None:
    if output.exists():
        raise UsageError(f"{output} already exists; pass another --output or remove it first")
