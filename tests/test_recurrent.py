"""Issue 21: ppo_lstm.py, ppo_atari_lstm.py and rpo_continuous_action.py on real runs: the run contract,
resume with the hidden state of the episodes in progress, done-masking, evaluation and export with
the recurrent state, and bad input."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl import ppo_lstm, rpo_continuous_action
from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.checks import check_args, declarations, flag, rejected_values
from axiomrl_utils.jsonl import read_jsonl

from conftest import REPO, logged_eval_returns, only_run, reevaluate, run_dirs, script_env, strip_wall_clock

SCRIPTS = ["ppo_lstm", "ppo_atari_lstm", "rpo_continuous_action"]
LOGS = ("metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl")
TINY_LSTM = dict(total_timesteps=1024, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2, eval_every=256,
                 eval_episodes=3, checkpoint_every=256, keep_checkpoints=2, progress=False)


def tiny_lstm_args(output_dir: Path, **overrides) -> ppo_lstm.Args:
    """ppo_lstm.Args for a run of about a thousand steps that trains, evaluates and checkpoints."""
    return ppo_lstm.Args(output_dir=str(output_dir), **{**TINY_LSTM, **overrides})


def needs_atari() -> None:
    pytest.importorskip("ale_py", reason="the atari extra is not installed")


# ---------------------------------------------------------------------------------------- done-masking
def test_done_masking_resets_the_state_exactly_where_an_episode_starts() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    torch.manual_seed(0)
    agent = ppo_lstm.Agent(envs, lstm_hidden_size=16)
    T, B = 12, 3
    x = torch.randn(T * B, 4)
    done = torch.zeros(T, B)
    done[4, 0] = 1  # env 0 starts a new episode at step 4, env 2 at steps 0 and 9; env 1 never
    done[0, 2] = done[9, 2] = 1
    state = (torch.randn(1, B, 16), torch.randn(1, B, 16))  # the memory the rollout started with
    out, (h, c) = agent.get_states(x, state, done.flatten())
    out = out.reshape(T, B, 16)

    def alone(b: int, start: int, stop: int, first: tuple) -> torch.Tensor:
        """Env b's LSTM outputs for steps start..stop-1, one step at a time, from `first`."""
        s, outs = first, []
        for t in range(start, stop):
            o, s = agent.lstm(agent.network(x.reshape(T, B, 4)[t, b : b + 1]).unsqueeze(0), s)
            outs.append(o[0, 0])
        return torch.stack(outs), s

    zeros = (torch.zeros(1, 1, 16), torch.zeros(1, 1, 16))
    given = lambda b: (state[0][:, b : b + 1], state[1][:, b : b + 1])  # noqa: E731
    # env 0: its own memory until step 3, then a fresh episode from zeros
    before, _ = alone(0, 0, 4, given(0))
    after, last0 = alone(0, 4, T, zeros)
    torch.testing.assert_close(out[:4, 0], before, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[4:, 0], after, rtol=1e-5, atol=1e-6)
    # env 1: never reset, the given memory carries through (and it matters: zeros give other outputs)
    carried, last1 = alone(1, 0, T, given(1))
    torch.testing.assert_close(out[:, 1], carried, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(alone(1, 0, T, zeros)[0], carried, atol=1e-3)
    # env 2: done at step 0 discards the given memory; done at 9 resets again
    first, _ = alone(2, 0, 9, zeros)
    second, last2 = alone(2, 9, T, zeros)
    torch.testing.assert_close(out[:9, 2], first, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[9:, 2], second, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h[0], torch.cat([last0[0], last1[0], last2[0]], dim=1)[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c[0], torch.cat([last0[1], last1[1], last2[1]], dim=1)[0], rtol=1e-5, atol=1e-6)
    envs.close()


# ---------------------------------------------------------------------------------------- ppo_lstm runs
def test_ppo_lstm_smoke_run_keeps_the_contract(tmp_path: Path) -> None:
    ppo_lstm.main(tiny_lstm_args(tmp_path))
    run_dir = only_run(tmp_path)
    assert run_dir.name.startswith("ppo_lstm__CartPoleNoVel-v1__seed1__")
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 1024 and meta["env_id"] == "CartPoleNoVel-v1"
    assert [row["global_step"] for row in read_jsonl(run_dir / "metrics.jsonl")] == list(range(128, 1025, 128))
    assert {"losses/value_loss", "losses/approx_kl", "eval/return_mean"} <= set(read_jsonl(run_dir / "metrics.jsonl")[-1])
    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    assert set(index[-1]["resume_state"]["values"]) == {"iteration", "next_obs", "next_done", "next_lstm_state", "initial_lstm_state"}
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    h, c = payload["next_lstm_state"]
    assert h.shape == c.shape == (1, 4, 128) and h.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(payload["initial_lstm_state"], payload["next_lstm_state"]))
    # best.pt, rebuilt by load_policy, plays its evaluation again with its memory: the same returns
    best = meta["best_checkpoint"]
    assert reevaluate(ppo_lstm, run_dir, best["path"]) == logged_eval_returns(run_dir, best["step"])


def test_resume_mid_episode_equals_uninterrupted_and_needs_the_memory(tmp_path: Path) -> None:
    ppo_lstm.main(tiny_lstm_args(tmp_path / "straight"))
    ppo_lstm.main(tiny_lstm_args(tmp_path / "split", pause_at_step=512))
    split = only_run(tmp_path / "split")
    paused = ckpt.load(split / "checkpoints" / "latest.pt")
    assert paused["_axiomrl"]["global_step"] == 512
    # the pause falls inside episodes: envs not at an episode start, carrying a non-zero memory
    in_progress = paused["next_done"] == 0
    assert in_progress.any() and (paused["next_lstm_state"][0][0, torch.as_tensor(in_progress)].abs().sum(-1) > 0).all()
    damaged = tmp_path / "damaged"
    subprocess.run(["cp", "-r", str(tmp_path / "split"), str(damaged)], check=True)

    ppo_lstm.main(tiny_lstm_args(tmp_path / "split", resume=str(split)))
    assert run_dirs(tmp_path / "split") == [split]
    straight = only_run(tmp_path / "straight")
    for name in LOGS:
        assert strip_wall_clock(read_jsonl(straight / name)) == strip_wall_clock(read_jsonl(split / name)), name
    a, b = ckpt.load(straight / "checkpoints" / "latest.pt"), ckpt.load(split / "checkpoints" / "latest.pt")
    assert all(torch.equal(a["agent"][k], b["agent"][k]) for k in a["agent"])
    assert all(torch.equal(x, y) for x, y in zip(a["next_lstm_state"], b["next_lstm_state"]))
    assert json.loads((split / "metadata.json").read_text())["resumes"][0]["envs_restored"] is True

    # the same resume with the memory of the episodes in progress wiped learns something else
    run = only_run(damaged)
    for name in ("latest.pt", "step_512.pt"):
        payload = ckpt.load(run / "checkpoints" / name)
        payload["next_lstm_state"] = tuple(torch.zeros_like(s) for s in payload["next_lstm_state"])
        payload["initial_lstm_state"] = tuple(torch.zeros_like(s) for s in payload["initial_lstm_state"])
        (run / "checkpoints" / name).unlink()
        torch.save(payload, run / "checkpoints" / name)
    ppo_lstm.main(tiny_lstm_args(damaged, resume=str(run)))
    assert json.loads((run / "metadata.json").read_text())["resumes"][0]["from_step"] == 512  # the edited checkpoint
    wiped = ckpt.load(run / "checkpoints" / "latest.pt")
    assert not all(torch.equal(a["agent"][k], wiped["agent"][k]) for k in a["agent"])


# ---------------------------------------------------------------------------------------- eval and export
def _episode_actions(policy, env_id: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One whole episode of a recurrent policy (called as policy(obs, h, c)), its observations and actions."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    state = policy.initial_state(1)
    seen, actions, done = [], [], False
    with torch.inference_mode():
        while not done:
            seen.append(obs)
            action, *state = policy(torch.as_tensor(obs[None], dtype=torch.float32), *state)
            actions.append(int(action[0]))
            obs, _, terminated, truncated, _ = env.step(actions[-1])
            done = terminated or truncated
    env.close()
    return np.stack(seen).astype(np.float32), np.array(actions)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_carries_the_state_and_gives_the_checkpoints_actions_over_an_episode(tmp_path: Path, fmt: str) -> None:
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(module, reason="the export extra is not installed")
    from axiomrl_utils.args import load_args
    from axiomrl_utils.commands.evaluate import evaluate
    from axiomrl_utils.commands.export import export
    from axiomrl_utils.commands.trained_run import open_run

    ppo_lstm.main(tiny_lstm_args(tmp_path / "runs", total_timesteps=512))
    run_dir = only_run(tmp_path / "runs")
    # `axiomrl eval` plays the checkpoint with its memory: it repeats the run's own evaluation
    loaded = open_run(run_dir, "best")
    assert list(evaluate(loaded, append=False).returns) == logged_eval_returns(run_dir, loaded.step)

    written = export(loaded, fmt, tmp_path / f"policy.{fmt}")
    assert written["checked"] > 1
    args = load_args(ppo_lstm.Args, run_dir)
    envs = gym.vector.SyncVectorEnv([ppo_lstm.make_env(args, 0, evaluation=True)])
    policy = ppo_lstm.load_policy(args, ckpt.load(run_dir / "checkpoints" / "best.pt"), envs)
    observations, expected = _episode_actions(policy, "CartPoleNoVel-v1", seed=7)
    assert len(observations) > 5 and len(set(expected.tolist())) == 2  # both actions occur: the check can fail

    # the exported file, used as documented: zeros at the first step, then the state it returns
    h, c = np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)
    got = []
    if fmt == "torchscript":
        module = torch.jit.load(str(written["path"]))
        for obs in observations:
            action, h, c = module(torch.as_tensor(obs[None]), torch.as_tensor(h), torch.as_tensor(c))
            got.append(int(action[0]))
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(written["path"]), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["obs", "state_0", "state_1"]
        for obs in observations:
            action, h, c = session.run(None, {"obs": obs[None], "state_0": h, "state_1": c})
            got.append(int(action[0]))
    assert np.array_equal(np.array(got), expected)
    # and the state matters: without it (zeros every step) the actions differ somewhere
    zero = policy.initial_state(1)
    with torch.inference_mode():
        memoryless = [int(policy(torch.as_tensor(o[None]), *zero)[0][0]) for o in observations]
    assert memoryless != expected.tolist()
    envs.close()


# ---------------------------------------------------------------------------------------- RPO
def test_rpo_smoke_run_and_its_perturbation(tmp_path: Path) -> None:
    args = rpo_continuous_action.Args(env_id="Pendulum-v1", output_dir=str(tmp_path), total_timesteps=384, num_steps=128,
                                      num_minibatches=4, update_epochs=2, eval_every=256, checkpoint_every=256,
                                      eval_episodes=2, keep_checkpoints=2, progress=False)
    assert rpo_continuous_action.Args().rpo_alpha == 0.5 and rpo_continuous_action.Args().total_timesteps == 8_000_000
    rpo_continuous_action.main(args)
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["algo"] == "rpo_continuous_action" and meta["total_steps"] == 384
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert {"agent", "optimizer", "normalization"} <= set(payload)
    best = meta["best_checkpoint"]
    assert reevaluate(rpo_continuous_action, run_dir, best["path"]) == logged_eval_returns(run_dir, best["step"])

    # the update scores the rollout's actions under a mean shifted by U(-alpha, alpha); alpha 0 is PPO
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")])
    agent = rpo_continuous_action.Agent(envs, rpo_alpha=0.5)
    agent.load_state_dict(payload["agent"])
    x, action = torch.randn(64, 3), torch.randn(64, 1)
    torch.manual_seed(0)
    first = agent.get_action_and_value(x, action)[1]
    second = agent.get_action_and_value(x, action)[1]
    assert not torch.allclose(first, second)
    agent.rpo_alpha = 0.0
    from torch.distributions.normal import Normal

    plain = Normal(agent.actor_mean(x), agent.actor_logstd.exp().expand(64, 1)).log_prob(action).sum(1)
    torch.testing.assert_close(agent.get_action_and_value(x, action)[1], plain)
    with torch.no_grad():  # sampling in the rollout is not perturbed: the sampled action's mean is the plain mean
        sampled = agent.get_action_and_value(x)[0]
    assert sampled.shape == (64, 1)
    envs.close()


# ---------------------------------------------------------------------------------------- ppo_atari_lstm
def test_ppo_atari_lstm_smoke_on_pong(tmp_path: Path) -> None:
    needs_atari()
    from axiomrl import ppo_atari_lstm

    defaults = ppo_atari_lstm.Args()
    assert (defaults.num_envs, defaults.num_steps, defaults.num_minibatches, defaults.clip_coef, defaults.learning_rate) == (8, 128, 4, 0.1, 2.5e-4)
    ppo_atari_lstm.main(ppo_atari_lstm.Args(env_id="ALE/Pong-v5", output_dir=str(tmp_path), total_timesteps=128, num_envs=2,
                                            num_steps=32, num_minibatches=2, update_epochs=1, eval_every=128, eval_episodes=1,
                                            checkpoint_every=64, progress=False))
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 128
    evals = read_jsonl(run_dir / "eval_episodes.jsonl")
    assert len(evals) == 1 and evals[0]["length"] > 100  # a whole game, played with the LSTM's memory
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["next_lstm_state"][0].shape == (1, 2, 128)
    assert payload["agent"]["network.0.weight"].shape[1] == 1  # one frame per observation, as CleanRL
    assert reevaluate(ppo_atari_lstm, run_dir, "checkpoints/best.pt") == [evals[0]["return"]]


# ---------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_field_is_documented_and_declares_what_it_refuses(script: str) -> None:
    args_type = importlib.import_module(f"axiomrl.{script}").Args
    check_args(args_type())
    source = Path(REPO / "axiomrl" / f"{script}.py").read_text()
    for name, d in declarations(args_type).items():
        if name in {f.name for f in dataclasses.fields(ppo_lstm.RunArgs)}:
            continue
        assert f"    {name}:" in source and '"""' in source.split(f"    {name}:")[1].splitlines()[1], name
        if d.type is not bool and d.choices is None:
            assert d.checks, f"{script}.Args.{name} declares no check"
        for value in rejected_values(args_type, name, args_type()):
            with pytest.raises(UsageError) as err:
                check_args(dataclasses.replace(args_type(), **{name: value}))
            assert flag(name) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "script, overrides, message",
    [
        ("ppo_lstm", {"num_envs": 6, "num_minibatches": 4}, "num_envs = 6 is not divisible by --num-minibatches 4"),
        ("ppo_lstm", {"env_id": "Pendulum-v1"}, "ppo_lstm.py needs a discrete action space but Pendulum-v1 has"),
        ("ppo_lstm", {"env_id": "ALE/Pong-v5"}, "; use ppo_atari_lstm.py for a recurrent policy on Atari games"),
        ("ppo_atari_lstm", {"env_id": "CartPole-v1"}, "ppo_atari_lstm.py trains on Atari games but CartPole-v1 is not one"),
        ("ppo_atari_lstm", {"num_envs": 8, "num_minibatches": 3}, "num_envs = 8 is not divisible by --num-minibatches 3"),
        ("rpo_continuous_action", {"env_id": "CartPole-v1"}, "rpo_continuous_action.py needs a continuous (Box) action space"),
        ("rpo_continuous_action", {"rpo_alpha": -0.1}, "--rpo-alpha must be"),
    ],
)
def test_bad_input_is_one_sentence_and_creates_nothing(tmp_path: Path, script: str, overrides: dict, message: str) -> None:
    if "ALE/" in overrides.get("env_id", "") or script == "ppo_atari_lstm":
        needs_atari()
    module = importlib.import_module(f"axiomrl.{script}")
    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        module.main(module.Args(output_dir=str(out), progress=False, **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_missing_atari_extra_is_one_sentence_with_exit_1(tmp_path: Path) -> None:
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'ale_py' else real(name, *a)\n"
        "sys.argv = ['ppo_atari_lstm.py', '--env-id', 'ALE/Pong-v5', '--output-dir', sys.argv[1]]\n"
        f"import runpy; runpy.run_path({str(REPO / 'axiomrl' / 'ppo_atari_lstm.py')!r}, run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs")], capture_output=True, text=True, env=script_env(), cwd=REPO, timeout=120)
    assert proc.returncode == 1
    assert "pip install 'axiomrl[atari]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
