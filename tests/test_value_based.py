"""pqn.py, c51_atari.py, sac_atari.py, rainbow_atari.py and `dqn.py --prioritized` on the run
contract: tiny real runs, exact resume, CleanRL's defaults, eval/export, bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl import dqn, pqn
from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import parse_args
from axiomrl_utils.checks import check_args, declarations, flag, rejected_values
from axiomrl_utils.jsonl import read_jsonl

from conftest import REPO, logged_eval_returns, only_run, reevaluate, run_script, strip_wall_clock

ATARI = ("c51_atari", "sac_atari", "rainbow_atari")
LOGS = ("metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl")


def atari_module(name: str):
    pytest.importorskip("ale_py", reason="the atari extra (ale-py) is not installed")
    pytest.importorskip("cv2", reason="the atari extra (opencv) is not installed")
    import importlib

    return importlib.import_module(f"axiomrl.{name}")


def script_module(name: str):
    import importlib

    return atari_module(name) if name in ATARI else importlib.import_module(f"axiomrl.{name}")


# CleanRL's published hyperparameters (its scripts' Args and docs/rl-algorithms/*.md), written out
# here so a changed default shows up as a failure; the run-management flags are AxiomRL's own.
CLEANRL_DEFAULTS = {
    "pqn": dict(
        env_id="CartPole-v1", total_timesteps=500000, learning_rate=2.5e-4, num_envs=4, num_steps=128, num_minibatches=4,
        update_epochs=4, anneal_lr=True, gamma=0.99, start_e=1, end_e=0.05, exploration_fraction=0.5, max_grad_norm=10.0,
        q_lambda=0.65,
    ),
    "c51_atari": dict(
        env_id="BreakoutNoFrameskip-v4", total_timesteps=10000000, learning_rate=2.5e-4, n_atoms=51, v_min=-10, v_max=10,
        buffer_size=1000000, gamma=0.99, target_network_frequency=10000, batch_size=32, start_e=1, end_e=0.01,
        exploration_fraction=0.10, learning_starts=80000, train_frequency=4,
    ),
    "sac_atari": dict(
        env_id="BeamRiderNoFrameskip-v4", total_timesteps=5000000, buffer_size=1000000, gamma=0.99, tau=1.0, batch_size=64,
        learning_starts=20000, policy_lr=3e-4, q_lr=3e-4, update_frequency=4, target_network_frequency=8000, alpha=0.2,
        autotune=True, target_entropy_scale=0.89,
    ),
    "rainbow_atari": dict(
        env_id="BreakoutNoFrameskip-v4", total_timesteps=10000000, learning_rate=0.0000625, buffer_size=1000000, gamma=0.99,
        tau=1.0, target_network_frequency=8000, batch_size=32, learning_starts=80000, train_frequency=4, n_step=3,
        prioritized_replay_alpha=0.5, prioritized_replay_beta=0.4, prioritized_replay_eps=1e-6, n_atoms=51, v_min=-10, v_max=10,
    ),
}
# what CleanRL sets outside its Args: the optimizer and its epsilon
CLEANRL_OPTIMIZERS = {"pqn": ("RAdam", 1e-8), "c51_atari": ("Adam", 0.01 / 32), "sac_atari": ("Adam", 1e-4), "rainbow_atari": ("Adam", 1.5e-4)}


@pytest.mark.parametrize("name", list(CLEANRL_DEFAULTS))
def test_defaults_equal_cleanrl(name: str) -> None:
    args = script_module(name).Args()
    assert {k: getattr(args, k) for k in CLEANRL_DEFAULTS[name]} == CLEANRL_DEFAULTS[name]
    check_args(args)


@pytest.mark.parametrize("name", list(CLEANRL_DEFAULTS))
def test_every_field_declares_what_it_refuses(name: str) -> None:
    from axiomrl_utils.args import RunArgs

    args_type = script_module(name).Args
    shared = {f.name for f in dataclasses.fields(RunArgs)}  # checked with every script elsewhere
    for field in (f for f in dataclasses.fields(args_type) if f.name not in shared):
        d = declarations(args_type)[field.name]
        if d.type is not bool and d.choices is None:
            assert d.checks, f"{name}.Args.{field.name} declares no check"
        for value in rejected_values(args_type, field.name, args_type()):
            with pytest.raises(UsageError) as err:
                check_args(dataclasses.replace(args_type(), **{field.name: value}))
            assert flag(field.name) in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- pqn
TINY_PQN = dict(total_timesteps=2048, num_envs=4, num_steps=32, eval_every=512, eval_episodes=3, checkpoint_every=512,
                keep_checkpoints=2, progress=False)


def tiny_pqn(output_dir: Path, **overrides) -> "pqn.Args":
    return pqn.Args(output_dir=str(output_dir), **{**TINY_PQN, **overrides})


@pytest.fixture(scope="module")
def pqn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pqn")
    pqn.main(tiny_pqn(out))
    return only_run(out)


def test_pqn_run_contract(pqn_run: Path) -> None:
    meta = json.loads((pqn_run / "metadata.json").read_text())
    assert pqn_run.name.startswith("pqn__CartPole-v1__seed1__")
    assert meta["status"] == "finished" and meta["total_steps"] == 2048 and meta["total_episodes"] > 0
    metrics = read_jsonl(pqn_run / "metrics.jsonl")
    assert [row["global_step"] for row in metrics] == list(range(128, 2049, 128))  # one row per iteration
    assert [row["iteration"] for row in metrics] == list(range(1, 17))
    # learning rate annealed linearly to 0, epsilon linear over half the run (at the rollout's last step)
    assert metrics[0]["charts/learning_rate"] == pytest.approx(2.5e-4) and metrics[-1]["charts/learning_rate"] == pytest.approx(2.5e-4 / 16)
    assert metrics[0]["charts/epsilon"] == pytest.approx(1 - 0.95 * 128 / 1024)
    assert all(np.isfinite(row["losses/td_loss"]) and "losses/q_values" in row for row in metrics)
    assert sum("eval/return_mean" in row for row in metrics) == 4
    index = read_jsonl(pqn_run / "checkpoints" / "checkpoints.jsonl")
    assert [row["step"] for row in index] == [512, 1024, 1536, 2048]
    assert index[-1]["resume_state"]["modules"].keys() == {"q_network", "optimizer"}  # no buffer, no target network
    payload = ckpt.load(pqn_run / "checkpoints" / "latest.pt")
    assert any(k.startswith("network.1.") for k in payload["q_network"])  # the LayerNorm after the first layer
    group = payload["optimizer"]["param_groups"][0]
    assert "decoupled_weight_decay" in group and group["eps"] == CLEANRL_OPTIMIZERS["pqn"][1]  # RAdam, CleanRL's


def test_pqn_best_checkpoint_replays_its_evaluation(pqn_run: Path) -> None:
    meta = json.loads((pqn_run / "metadata.json").read_text())
    logged = logged_eval_returns(pqn_run, meta["best_checkpoint"]["step"])
    assert logged and reevaluate(pqn, pqn_run, "checkpoints/best.pt") == logged


def test_pqn_resume_is_bitwise_the_uninterrupted_run(tmp_path: Path) -> None:
    """1024 steps, pause, --resume to 2048 == 2048 straight: every log line (minus wall clock), the
    Q-network and the RAdam state bit for bit (exploration coins, minibatch shuffles, lr schedule)."""
    pqn.main(tiny_pqn(tmp_path / "straight"))
    pqn.main(tiny_pqn(tmp_path / "paused", pause_at_step=1024))
    paused = only_run(tmp_path / "paused")
    assert json.loads((paused / "metadata.json").read_text())["status"] == "interrupted"
    pqn.main(parse_args(pqn.Args, pqn.__file__, ["--resume", str(paused), "--pause-at-step", "None"]))
    straight = only_run(tmp_path / "straight")
    meta = json.loads((paused / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["resumes"][0]["from_step"] == 1024 and meta["resumes"][0]["envs_restored"]
    for name in LOGS:
        a, b = read_jsonl(straight / name), read_jsonl(paused / name)
        assert a and strip_wall_clock(a) == strip_wall_clock(b), name
    a, b = ckpt.load(straight / "checkpoints" / "latest.pt"), ckpt.load(paused / "checkpoints" / "latest.pt")
    assert all(torch.equal(a["q_network"][k], b["q_network"][k]) for k in a["q_network"])
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][k][s])) for s, v in state.items())


def test_pqn_eval_and_export_through_axiomrl(pqn_run: Path, tmp_path: Path) -> None:
    import shutil

    from axiomrl_utils.commands.cli import main as axiomrl_main

    run_dir = tmp_path / pqn_run.name
    shutil.copytree(pqn_run, run_dir)
    assert axiomrl_main(["eval", str(run_dir), "--checkpoint", "latest", "--episodes", "2"]) == 0
    manual = [r for r in read_jsonl(run_dir / "eval_episodes.jsonl") if r.get("tag") != "train"]
    assert len(manual) == 2 and all(r["checkpoint"] == "checkpoints/latest.pt" for r in manual)
    assert axiomrl_main(["export", str(run_dir), "--checkpoint", "latest", "--format", "torchscript"]) == 0
    (exported,) = (run_dir / "exported").glob("*.pt")
    traced = torch.jit.load(str(exported))
    envs = gym.vector.SyncVectorEnv([pqn.make_env(pqn.Args(), 0, evaluation=True)])
    policy = pqn.load_policy(pqn.Args(), ckpt.load(run_dir / "checkpoints" / "latest.pt"), envs)
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 4)), dtype=torch.float32)
    assert torch.equal(traced(obs), policy(obs))


# ------------------------------------------------------------------------------- dqn --prioritized
TINY_DQN = dict(total_timesteps=1200, learning_starts=200, buffer_size=1000, batch_size=32, target_network_frequency=100,
                eval_every=600, eval_episodes=2, checkpoint_every=300, keep_checkpoints=2, progress=False, prioritized=True)


def test_dqn_prioritized_resume_is_exact(tmp_path: Path) -> None:
    """`dqn.py --prioritized`: 600 steps, pause, resume to 1200 == 1200 straight, the sum tree and
    priorities included; the priorities are the TD errors (not uniform) and beta anneals toward 1."""
    dqn.main(dqn.Args(output_dir=str(tmp_path / "straight"), **TINY_DQN))
    dqn.main(dqn.Args(output_dir=str(tmp_path / "paused"), pause_at_step=600, **TINY_DQN))
    paused = only_run(tmp_path / "paused")
    dqn.main(parse_args(dqn.Args, dqn.__file__, ["--resume", str(paused), "--pause-at-step", "None"]))
    straight = only_run(tmp_path / "straight")
    for name in LOGS:
        assert strip_wall_clock(read_jsonl(straight / name)) == strip_wall_clock(read_jsonl(paused / name)), name
    a, b = ckpt.load(straight / "checkpoints" / "latest.pt"), ckpt.load(paused / "checkpoints" / "latest.pt")
    for k, v in a["rb"].items():
        assert torch.equal(v, b["rb"][k]) if isinstance(v, torch.Tensor) else v == b["rb"][k], k
    assert all(torch.equal(a["q_network"][k], b["q_network"][k]) for k in a["q_network"])
    tree = a["rb"]["priority_tree"].numpy()
    leaves = tree[len(tree) // 2 : len(tree) // 2 + 1000]
    assert tree[1] == pytest.approx(leaves.sum()) and len(np.unique(leaves)) > 100
    rows = read_jsonl(straight / "metrics.jsonl")
    betas = [row["charts/beta"] for row in rows if "charts/beta" in row]
    assert betas == sorted(betas) and 0.4 < betas[0] < betas[-1] < 1


# ------------------------------------------------------------------------------------------- Atari
def tiny_atari(name: str, output_dir: Path, **overrides):
    module = atari_module(name)
    settings = dict(env_id="ALE/Pong-v5", output_dir=str(output_dir), total_timesteps=300, buffer_size=200, learning_starts=100,
                    batch_size=16, target_network_frequency=50, eval_every=300, eval_episodes=1, checkpoint_every=150, progress=False)
    return module, module.Args(**{**settings, **overrides})


LOSS = {"c51_atari": "losses/loss", "sac_atari": "losses/qf_loss", "rainbow_atari": "losses/td_loss"}
NETWORK = {"c51_atari": "q_network", "sac_atari": "actor", "rainbow_atari": "q_network"}
OPTIMIZER = {"c51_atari": "optimizer", "sac_atari": "q_optimizer", "rainbow_atari": "optimizer"}


@pytest.mark.parametrize("name", ATARI)
def test_atari_smoke_on_pong(name: str, tmp_path: Path) -> None:
    module, args = tiny_atari(name, tmp_path)
    module.main(args)
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert run_dir.name.startswith(f"{name}__ALE-Pong-v5__seed1__")
    assert meta["status"] == "finished" and meta["total_steps"] == 300
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [row["global_step"] for row in metrics] == [100, 200, 300]
    assert np.isfinite(metrics[-1][LOSS[name]]) and LOSS[name] not in metrics[0]  # learning from step 101
    evals = read_jsonl(run_dir / "eval_episodes.jsonl")
    assert len(evals) == 1 and -21 <= evals[0]["return"] <= 21 and evals[0]["length"] > 100  # a whole game
    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    assert [row["step"] for row in index] == [150, 300]
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["rb"]["frames"].shape == (200, 1, 84, 84)  # each frame stored once
    assert payload[OPTIMIZER[name]]["param_groups"][0]["eps"] == pytest.approx(
        {"c51_atari": 0.01 / 16, "sac_atari": 1e-4, "rainbow_atari": 1.5e-4}[name])
    envs = gym.vector.SyncVectorEnv([module.make_env(args, 0, evaluation=True)])
    obs, _ = envs.reset(seed=0)
    policy = module.load_policy(args, payload, envs)
    action = policy(torch.as_tensor(obs, dtype=torch.float32))
    assert action.shape == (1,) and torch.equal(action, policy(torch.as_tensor(obs, dtype=torch.float32)))  # deterministic
    envs.close()


def test_rainbow_checkpoint_holds_the_replay_state_of_the_uninterrupted_run(tmp_path: Path) -> None:
    """Paused at 200 vs straight to 300: the pause's checkpoint equals the straight run's step-200
    checkpoint (sum tree, priorities, episode ends, largest priority, noisy-net noise, optimizer), and
    both, restored with their RNG state, draw the same next batch. The resume then continues from
    that tree: its one new transition takes the largest priority and the frame-stack slot it makes
    unsampleable drops to 0; every other leaf is unchanged (training every 3 steps: none at that step)."""
    from axiomrl_utils.replay_buffer import PrioritizedReplayBuffer, make_replay_buffer
    from axiomrl_utils.reproducibility import set_rng_state

    rainbow, args = tiny_atari("rainbow_atari", tmp_path / "straight", checkpoint_every=100, keep_checkpoints=5,
                               train_frequency=3, eval_every=0)
    rainbow.main(args)
    _, paused_args = tiny_atari("rainbow_atari", tmp_path / "paused", checkpoint_every=100, pause_at_step=200,
                                 train_frequency=3, eval_every=0)
    rainbow.main(paused_args)
    straight, paused = only_run(tmp_path / "straight"), only_run(tmp_path / "paused")
    a, b = ckpt.load(straight / "checkpoints" / "step_200.pt"), ckpt.load(paused / "checkpoints" / "latest.pt")
    for name in ("q_network", "target_network", "rb"):
        assert a[name].keys() == b[name].keys()
        for k, v in a[name].items():
            assert torch.equal(v, b[name][k]) if isinstance(v, torch.Tensor) else v == b[name][k], (name, k)
    assert any("epsilon" in k for k in a["q_network"])  # the noise is part of the network's state
    tree = a["rb"]["priority_tree"].numpy()
    assert tree[1] > 0 and len(np.unique(tree[256:456])) > 10  # trained from 101: priorities differ

    def next_batch(payload: dict) -> tuple:
        probe = gym.vector.SyncVectorEnv([rainbow.make_env(args, 0)])
        rb = PrioritizedReplayBuffer(make_replay_buffer(200, probe.single_observation_space, probe.single_action_space),
                                     alpha=0.5, eps=1e-6, n_step=3, gamma=0.99)
        probe.close()
        rb.load_state_dict(payload["rb"])
        set_rng_state(payload["_axiomrl"]["rng"])
        return rb.sample(16, 0.5)

    x, y = next_batch(a), next_batch(b)
    assert np.array_equal(x.indices, y.indices) and all(torch.equal(u, v) for u, v in zip(x[:-1], y[:-1]))

    rainbow.main(parse_args(rainbow.Args, rainbow.__file__, ["--resume", str(paused), "--pause-at-step", "201"]))
    c = ckpt.load(paused / "checkpoints" / "latest.pt")
    assert json.loads((paused / "metadata.json").read_text())["total_steps"] == 201
    before, after = a["rb"]["priority_tree"].numpy(), c["rb"]["priority_tree"].numpy()
    size = len(before) // 2
    changed = np.flatnonzero(before[size:] != after[size:])
    assert changed.tolist() == [0, 3]  # the ring was full: slot 0 overwritten, slots 1-3 now hold stale frames
    assert after[size] == pytest.approx(a["rb"]["max_priority"] ** 0.5) and after[size + 3] == 0 and before[size + 3] > 0


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("pqn", {"env_id": "Pendulum-v1"}, "pqn.py needs a discrete action space but Pendulum-v1"),
        ("pqn", {"env_id": "ALE/Pong-v5"}, "pqn.py feeds flat vector observations to an MLP but ALE/Pong-v5 has image observations"),
        ("pqn", {"num_minibatches": 3}, "is not divisible by --num-minibatches 3"),
        ("pqn", {"q_lambda": 1.5}, "--q-lambda must be in [0, 1]"),
        ("c51_atari", {"env_id": "CartPole-v1"}, "c51_atari.py trains on Atari games but CartPole-v1 is not one"),
        ("c51_atari", {"v_min": 5.0, "v_max": -5.0}, "--v-min < --v-max"),
        ("sac_atari", {"env_id": "Acrobot-v1"}, "sac_atari.py trains on Atari games but Acrobot-v1 is not one"),
        ("sac_atari", {"env_id": "ALE/Pong-v5", "buffer_size": 32}, "--buffer-size 32 is smaller than --batch-size 64"),
        ("rainbow_atari", {"env_id": "ALE/Pong-v5", "buffer_size": 16}, "--buffer-size 16 is smaller than --batch-size 32"),
        ("rainbow_atari", {"n_step": 0}, "--n-step must be positive (got 0)"),
        ("rainbow_atari", {"v_min": 10.0, "v_max": 10.0}, "--v-min < --v-max"),
        ("rainbow_atari", {"prioritized_replay_alpha": 1.5}, "--prioritized-replay-alpha must be in [0, 1]"),
        ("rainbow_atari", {"prioritized_replay_beta": -0.1}, "--prioritized-replay-beta must be in [0, 1]"),
        ("dqn", {"prioritized": True, "prioritized_replay_alpha": -0.5}, "--prioritized-replay-alpha must be in [0, 1]"),
    ],
)
def test_bad_input_is_one_sentence_and_creates_nothing(tmp_path: Path, name: str, overrides: dict, message: str) -> None:
    module = script_module(name)
    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        module.main(module.Args(output_dir=str(out), progress=False, **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("script", [f"{name}.py" for name in ATARI])
def test_missing_atari_extra_names_it(tmp_path: Path, script: str) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text("import sys\nsys.modules['ale_py'] = None\n")
    env = {**subprocess.os.environ, "PYTHONPATH": f"{tmp_path / 'site'}:{REPO}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "axiomrl" / script), "--env-id", "ALE/Pong-v5", "--output-dir",
                           str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: Atari environments need ale-py; install it with `pip install 'axiomrl[atari]'`"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", list(CLEANRL_DEFAULTS))
def test_help_documents_every_field(name: str) -> None:
    module = script_module(name)
    proc = run_script(f"{name}.py", "--help")
    assert proc.returncode == 0
    for field in dataclasses.fields(module.Args):
        assert "--" + field.name.replace("_", "-") in proc.stdout, field.name
