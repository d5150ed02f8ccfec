"""The user's own problem: `module:EnvId`, --env-module, --env-kwargs, Dict observations, --config and --preset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from axiomrl import dqn, ppo
from axiomrl_utils import UsageError
from axiomrl_utils.args import parse_args
from axiomrl_utils.config_files import available_presets, load_config_file, preset_path
from axiomrl_utils.jsonl import read_jsonl

from conftest import REPO, TINY_PPO, only_run, run_dirs, strip_wall_clock
from test_resume import assert_same_training

ENV_MODULE = "axiomrl_test_envs"
ENV_SOURCE = '''
"""Envs a user might write: a corridor (Box obs, a constructor kwarg), its Dict-observation twin, and a pixel one."""
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Corridor(gym.Env):
    def __init__(self, length: int = 8, render_mode=None):
        self.length = length
        self.observation_space = spaces.Box(0.0, float(length), (1,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, 2))
        return self._obs(), {}

    def _obs(self):
        return np.array([self.pos], np.float32)

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos >= self.length
        return self._obs(), 1.0 if done else -0.1, done, False, {}


class DictCorridor(Corridor):
    def __init__(self, length: int = 8, render_mode=None):
        super().__init__(length)
        self.observation_space = spaces.Dict({"pos": spaces.Box(0.0, float(length), (1,), np.float32), "near": spaces.Discrete(2)})

    def _obs(self):
        return {"pos": np.array([self.pos], np.float32), "near": int(self.pos >= self.length - 1)}


class Pixels(Corridor):
    def __init__(self, render_mode=None):
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def _obs(self):
        return np.zeros((16, 16, 3), np.uint8)


for name, cls in (("AxCorridor-v0", Corridor), ("AxDictCorridor-v0", DictCorridor), ("AxPixels-v0", Pixels)):
    if name not in gym.registry:
        gym.register(name, entry_point=cls, max_episode_steps=40)
'''


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the user's env module, on sys.path for this process and PYTHONPATH for children."""
    folder = tmp_path_factory.mktemp("user_envs")
    (folder / f"{ENV_MODULE}.py").write_text(ENV_SOURCE)
    (folder / "registers_nothing.py").write_text("X = 1\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def _env(env_dir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(env_dir)]), "OMP_NUM_THREADS": "1"}


def _run(env_dir: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """A command in a fresh interpreter that can import the user's env module."""
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=_env(env_dir), capture_output=True, text=True, timeout=300)


def _ppo(out: Path, *argv: str) -> ppo.Args:
    tiny = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_PPO.items() if k != "progress"]
    return parse_args(ppo.Args, ppo.__file__, [*tiny, "--no-progress", "--output-dir", str(out), *argv])


def test_module_prefixed_id_trains_resumes_in_a_fresh_process_and_evaluates_and_exports(env_dir: Path, tmp_path: Path) -> None:
    env_args = ["--env-id", f"{ENV_MODULE}:AxCorridor-v0", "--env-kwargs", '{"length": 3}']
    ppo.main(_ppo(tmp_path / "straight", *env_args))
    ppo.main(_ppo(tmp_path / "split", *env_args, "--pause-at-step", "640"))
    split = only_run(tmp_path / "split")
    assert split.name.startswith(f"ppo__{ENV_MODULE}-AxCorridor-v0__seed1__")
    config = json.loads((split / "config.yaml").read_text())
    assert config["env_id"] == f"{ENV_MODULE}:AxCorridor-v0" and config["env_kwargs"] == {"length": 3}

    # the resume, the evaluation and the export each import the module in a process of their own
    resumed = _run(env_dir, str(REPO / "axiomrl" / "ppo.py"), "--resume", str(split), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_training(only_run(tmp_path / "straight"), split)
    # length 3 from a start at 0 or 1: an episode takes at least 2 steps, and a good policy no more than 3
    lengths = [row["length"] for row in read_jsonl(split / "train_episodes.jsonl")]
    assert min(lengths) >= 2 and len(lengths) > 100

    evaluated = _run(env_dir, "-m", "axiomrl_utils.commands.cli", "eval", str(split), "--episodes", "3", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    manual = [row for row in read_jsonl(split / "eval_episodes.jsonl") if row.get("tag") == "manual"]
    assert len(manual) == 3 and all(row["length"] <= 3 for row in manual)  # the kwarg reached the evaluation envs
    exported = _run(env_dir, "-m", "axiomrl_utils.commands.cli", "export", str(split), "--format", "torchscript",
                    "--output", str(tmp_path / "policy.pt"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    policy = torch.jit.load(str(tmp_path / "policy.pt"))
    assert policy(torch.tensor([[2.0]])).shape == (1,)


def test_env_module_flag_and_dict_observations_train_with_ppo_and_dqn(env_dir: Path, tmp_path: Path, capsys) -> None:
    env_args = ["--env-module", ENV_MODULE, "--env-id", "AxDictCorridor-v0"]
    ppo.main(_ppo(tmp_path / "ppo", *env_args, "--total-timesteps", "256", "--eval-every", "128"))
    dqn.main(parse_args(dqn.Args, dqn.__file__, [
        *env_args, "--total-timesteps", "300", "--learning-starts", "100", "--buffer-size", "300", "--batch-size", "16",
        "--eval-every", "150", "--eval-episodes", "2", "--no-progress", "--output-dir", str(tmp_path / "dqn"),
    ]))
    for out in ("ppo", "dqn"):
        meta = json.loads((only_run(tmp_path / out) / "metadata.json").read_text())
        assert meta["status"] == "finished"
        assert meta["observation_adapter"].startswith("FlattenObservation: Dict(") and "(3,), float32" in meta["observation_adapter"]
        assert read_jsonl(only_run(tmp_path / out) / "eval_episodes.jsonl")
    # said once per process, not per env or per run
    assert capsys.readouterr().err.count("flattens AxDictCorridor-v0's Dict(") == 1


def test_env_kwargs_shorten_episodes_in_training_evaluation_and_after_resume(tmp_path: Path) -> None:
    args = _ppo(tmp_path, "--env-kwargs", '{"max_episode_steps": 12}', "--pause-at-step", "640")
    ppo.main(args)
    run_dir = only_run(tmp_path)
    with pytest.raises(UsageError, match=r"cannot change env_kwargs"):
        ppo.main(parse_args(ppo.Args, ppo.__file__, ["--resume", str(run_dir), "--env-kwargs", '{"max_episode_steps": 20}']))
    ppo.main(parse_args(ppo.Args, ppo.__file__, ["--resume", str(run_dir)]))
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "finished"
    train = [row["length"] for row in read_jsonl(run_dir / "train_episodes.jsonl")]
    evals = [row["length"] for row in read_jsonl(run_dir / "eval_episodes.jsonl")]
    assert max(train) == 12 and max(evals) == 12 and len(train) > 100  # CartPole's own limit is 500


def test_config_file_reproduces_a_run_and_flags_override_it(tmp_path: Path) -> None:
    ppo.main(_ppo(tmp_path / "first", "--seed", "3", "--learning-rate", "0.001"))
    first = only_run(tmp_path / "first")
    again = parse_args(ppo.Args, ppo.__file__, ["--config", str(first / "config.yaml"), "--output-dir", str(tmp_path / "again")])
    assert again.seed == 3 and again.learning_rate == 0.001 and again.config == str(first / "config.yaml")
    ppo.main(again)
    second = only_run(tmp_path / "again")
    for name in ("metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl"):
        assert strip_wall_clock(read_jsonl(first / name)) == strip_wall_clock(read_jsonl(second / name)), name

    subset = tmp_path / "subset.yaml"
    subset.write_text("# a hand-written subset\nlearning_rate: 0.0005\nnum_envs: 8\n_source: notes are ignored\n")
    args = parse_args(ppo.Args, ppo.__file__, ["--config", str(subset), "--num-envs", "2"])
    assert (args.learning_rate, args.num_envs, args.gamma) == (0.0005, 2, 0.99)


def test_every_shipped_preset_loads_and_passes_its_scripts_checks() -> None:
    import importlib

    from axiomrl_utils.checks import check_args

    folders = sorted(p for p in (REPO / "axiomrl" / "presets").iterdir() if p.is_dir())
    assert {f.name for f in folders} >= {"ppo"}
    for folder in folders:
        module = importlib.import_module(f"axiomrl.{folder.name}")
        for name in available_presets(module.__file__):
            text = preset_path(module.__file__, name).read_text()
            assert "# source:" in text and "_expected_return:" in text, (folder.name, name)
            values = load_config_file(module.Args, preset_path(module.__file__, name))
            assert values["env_id"] == name
            args = parse_args(module.Args, module.__file__, ["--preset", name])
            check_args(args)
            assert all(getattr(args, k) == v for k, v in values.items())
    args = parse_args(ppo.Args, ppo.__file__, ["--preset", "MountainCar-v0", "--seed", "7"])
    assert args.env_id == "MountainCar-v0" and args.seed == 7 and args.preset == "MountainCar-v0"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env-id", "no_such_module_xyz:Foo-v0"], r"module 'no_such_module_xyz' \(the env id's module prefix\) cannot be imported"),
        (["--env-module", "no_such_module_xyz"], r"module 'no_such_module_xyz' \(--env-module\) cannot be imported"),
        (["--env-id", "registers_nothing:Foo-v0"], r"module 'registers_nothing' does not register 'Foo-v0' \(it registered no environment\)"),
        (["--env-id", "AxCorridorr-v0", "--env-module", ENV_MODULE], r"unknown environment id 'AxCorridorr-v0'; did you mean AxCorridor-v0"),
        (["--env-kwargs", '{"sutton_barto": true}'], r"CartPole-v1 does not accept the keyword argument 'sutton_barto'; it accepts sutton_barto_reward"),
        (["--env-kwargs", "{max_episode_steps: 5}"], r"--env-kwargs takes a JSON object such as .* is not JSON"),
        (["--env-kwargs", "[1, 2]"], r"--env-kwargs takes a JSON object such as"),
        (["--preset", "NoSuchEnv-v0"], r"no preset 'NoSuchEnv-v0' for ppo.py; the presets for ppo.py are .*MountainCar-v0"),
        (["--env-id", f"{ENV_MODULE}:AxPixels-v0"], r"ppo.py feeds flat vector observations to an MLP but .* has image observations"),
        (["--config", "CONFIG", "--resume", "runs"], r"--resume continues a run with its own config.yaml, so it takes no --config"),
    ],
)
def test_bad_env_and_config_input_is_one_sentence_and_creates_nothing(env_dir: Path, tmp_path: Path, argv, message) -> None:
    argv = [str(tmp_path / "c.yaml") if a == "CONFIG" else a for a in argv]
    (tmp_path / "c.yaml").write_text("{}\n")
    with pytest.raises(UsageError, match=message) as raised:
        ppo.main(parse_args(ppo.Args, ppo.__file__, [*argv, "--output-dir", str(tmp_path / "runs")]))
    assert "\n" not in raised.value.message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("learning_rate: [0.1\n", r"does not parse as JSON or YAML at line 2"),
        ("learnig_rate: 0.1\n", r"sets 'learnig_rate', which this script does not have; did you mean 'learning_rate'\?"),
        ("num_envs: four\n", r"num_envs must be an integer \(got 'four'\)"),
        ("env_kwargs: [1]\n", r"env_kwargs must be a mapping with string keys"),
        ("- 1\n- 2\n", r"holds list, not a mapping"),
    ],
)
def test_bad_config_files_name_the_key_and_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as raised:
        parse_args(ppo.Args, ppo.__file__, ["--config", str(path)])
    assert str(path) in raised.value.message
    with pytest.raises(UsageError, match=r"config file .*missing.yaml does not exist"):
        parse_args(ppo.Args, ppo.__file__, ["--config", str(tmp_path / "missing.yaml")])


def test_bad_input_from_the_shell_is_one_line_and_a_nonzero_exit(env_dir: Path, tmp_path: Path) -> None:
    done = _run(env_dir, str(REPO / "axiomrl" / "dqn.py"), "--env-kwargs", "{oops", "--output-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "--env-kwargs takes a JSON object" in done.stderr
    assert not (tmp_path / "runs").exists()
    help_text = _run(env_dir, str(REPO / "axiomrl" / "sac_continuous_action.py"), "--help", cwd=tmp_path).stdout
    assert "--env-kwargs JSON" in help_text and "--env-module" in help_text and "--preset" in help_text


def test_rescale_observation_trains_on_unit_inputs_and_exports_a_policy_for_raw_ones(tmp_path: Path) -> None:
    import numpy as np

    from axiomrl_utils import checkpoint as ckpt
    from axiomrl_utils.envs import create_env

    args = _ppo(tmp_path, "--env-id", "MountainCar-v0", "--rescale-observation", "--total-timesteps", "512", "--eval-every", "256")
    ppo.main(args)
    run_dir = only_run(tmp_path)
    env, raw_env = create_env(args), create_env(ppo.Args(env_id="MountainCar-v0"))
    seen = np.stack([env.reset(seed=3)[0]] + [env.step(i % 3)[0] for i in range(150)])
    raw = np.stack([raw_env.reset(seed=3)[0]] + [raw_env.step(i % 3)[0] for i in range(150)])
    assert np.abs(seen).max() <= 1 and np.abs(raw[:, 1]).max() < 0.08 < np.abs(seen[:, 1]).max()

    # evaluation in a fresh process plays raw envs with the rescaling baked into the policy: same returns as logged
    from conftest import logged_eval_returns, run_cli

    best_step = json.loads((run_dir / "metadata.json").read_text())["best_checkpoint"]["step"]
    assert run_cli("eval", str(run_dir), "--episodes", "3").returncode == 0
    manual = [r["return"] for r in read_jsonl(run_dir / "eval_episodes.jsonl") if r.get("tag") == "manual"]
    assert manual == logged_eval_returns(run_dir, best_step)[:3]
    done = run_cli("export", str(run_dir), "--format", "torchscript", "--output", str(tmp_path / "p.pt"))
    assert done.returncode == 0, done.stderr
    exported = torch.jit.load(str(tmp_path / "p.pt"))
    agent = ppo.Agent(type("Spaces", (), {"single_observation_space": env.observation_space, "single_action_space": env.action_space}))
    agent.load_state_dict(ckpt.load(run_dir / "checkpoints" / "best.pt")["agent"])
    with torch.no_grad():
        assert torch.equal(exported(torch.as_tensor(raw)), agent.act(torch.as_tensor(seen)))

    with pytest.raises(UsageError, match=r"--rescale-observation needs observations with finite bounds but CartPole-v1 has Box"):
        ppo.main(_ppo(tmp_path / "bad", "--rescale-observation"))


def test_a_sweep_runs_a_user_env_with_its_kwargs(env_dir: Path, tmp_path: Path) -> None:
    done = _run(env_dir, "-m", "axiomrl_utils.commands.cli", "sweep", "--env-ids", f"{ENV_MODULE}:AxCorridor-v0",
                "--command", "python axiomrl/ppo.py", "--num-seeds", "1", "--output-dir", str(tmp_path), "--name", "mine", "--",
                "--total-timesteps", "256", "--num-envs", "2", "--num-steps", "64", "--eval-every", "0",
                "--env-kwargs", '{"length": 3}', "--no-progress", cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    (meta_path,) = (tmp_path / "sweeps" / "mine").rglob("metadata.json")
    assert json.loads(meta_path.read_text())["status"] == "finished"
    assert json.loads((meta_path.parent / "config.yaml").read_text())["env_kwargs"] == {"length": 3}


def test_report_reproduces_a_long_command_line_through_the_runs_config(tmp_path: Path) -> None:
    import shlex

    from axiomrl_utils.commands.report import reproduce_command

    short = {"command": ["axiomrl/ppo.py", "--seed", "2"], "output_dir": str(tmp_path / "run")}
    assert reproduce_command(short) == "python axiomrl/ppo.py --seed 2"
    long = {**short, "command": ["axiomrl/ppo.py", *[f"--learning-rate={i}e-4" for i in range(20)]]}
    line = reproduce_command(long)
    assert shlex.split(line) == ["python", "axiomrl/ppo.py", "--config", str(tmp_path / "run" / "config.yaml")]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_dict_observation_policy_exports_taking_the_envs_own_observations(env_dir: Path, tmp_path: Path, fmt: str) -> None:
    import gymnasium as gym
    import numpy as np

    from axiomrl_utils import checkpoint as ckpt

    ppo.main(_ppo(tmp_path / "runs", "--env-module", ENV_MODULE, "--env-id", "AxDictCorridor-v0", "--total-timesteps", "256", "--eval-every", "128"))
    run_dir = only_run(tmp_path / "runs")
    path = tmp_path / ("p.pt" if fmt == "torchscript" else "p.onnx")
    done = _run(env_dir, "-m", "axiomrl_utils.commands.cli", "export", str(run_dir), "--format", fmt, "--output", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    space = gym.make("AxDictCorridor-v0").observation_space  # Dict keys in order: near, pos
    space.seed(5)
    samples = [space.sample() for _ in range(64)]
    near = np.array([s["near"] for s in samples])
    pos = np.stack([s["pos"] for s in samples])
    flat = torch.as_tensor(np.stack([gym.spaces.flatten(space, s) for s in samples]).astype(np.float32))
    flat_space = gym.spaces.Box(0, 8, (3,), np.float32)
    agent = ppo.Agent(type("Spaces", (), {"single_observation_space": flat_space, "single_action_space": gym.spaces.Discrete(2)}))
    agent.load_state_dict(ckpt.load(run_dir / "checkpoints" / "best.pt")["agent"])
    with torch.no_grad():
        expected = agent.act(flat).numpy()
    if fmt == "torchscript":
        got = torch.jit.load(str(path))(torch.as_tensor(near), torch.as_tensor(pos)).numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["near", "pos"]
        got = session.run(None, {"near": near, "pos": pos})[0]
    assert np.array_equal(got, expected)
