"""The continuous-control scripts: ppo/sac/td3/ddpg_continuous_action.py on real Pendulum-v1 and MuJoCo runs."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import load_args
from axiomrl_utils.evaluation import eval_seeds, make_eval_envs, run_episodes
from axiomrl_utils.jsonl import read_jsonl
from axiomrl_utils.normalization import EnvNormalization, normalized_policy

from conftest import only_run, reevaluate, run_script, strip_wall_clock

SCRIPTS = ["ppo_continuous_action", "sac_continuous_action", "td3_continuous_action", "ddpg_continuous_action"]
OFF_POLICY = SCRIPTS[1:]
PPO_TINY = dict(num_steps=128, num_minibatches=4, update_epochs=2)
OFF_POLICY_TINY = dict(learning_starts=100, batch_size=32, buffer_size=10_000)
RUN_TINY = dict(eval_episodes=2, keep_checkpoints=2, progress=False)


def module(script: str) -> Any:
    return importlib.import_module(f"axiomrl.{script}")


def tiny_args(script: str, output_dir: Path, **overrides: Any) -> Any:
    """Args for a run of a few hundred steps that trains, evaluates and checkpoints."""
    algo = PPO_TINY if script == "ppo_continuous_action" else OFF_POLICY_TINY
    defaults = dict(env_id="Pendulum-v1", total_timesteps=384, eval_every=256, checkpoint_every=256, **RUN_TINY, **algo)
    return module(script).Args(output_dir=str(output_dir), **{**defaults, **overrides})


def needs_mujoco() -> None:
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed")


# ---------------------------------------------------------------------------------------- smoke runs
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "HalfCheetah-v5"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_keeps_the_contract(tmp_path: Path, script: str, env_id: str) -> None:
    if env_id != "Pendulum-v1":
        needs_mujoco()
    module(script).main(tiny_args(script, tmp_path, env_id=env_id))
    run_dir = only_run(tmp_path)
    assert run_dir.name.startswith(f"{script}__{env_id}__seed1__")
    for name in ("metadata.json", "config.yaml", "metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["error"] is None
    assert meta["algo"] == script and meta["env_id"] == env_id
    assert meta["total_steps"] == 384 and meta["latest_checkpoint_path"] == "checkpoints/latest.pt"
    assert [row["step"] for row in read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")] == [256, 384]

    # the checkpoints reload into the script's networks, and best.pt acts as it was evaluated
    best = meta["best_checkpoint"]
    logged = [r["return"] for r in read_jsonl(run_dir / "eval_episodes.jsonl") if r["global_step"] == best["step"]]
    assert len(logged) == 2 and reevaluate(module(script), run_dir, best["path"]) == logged
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["_axiomrl"]["global_step"] == 384
    if script == "ppo_continuous_action":
        assert {"agent", "optimizer", "normalization"} <= set(payload)
    else:
        assert {"actor", "qf1", "qf1_target", "actor_optimizer", "q_optimizer", "rb"} <= set(payload)
        assert payload["rb"]["observations"].shape[0] == 384  # --save-buffer (default): the whole buffer
    # envs pickle with their state, MuJoCo's simulator included (axiomrl_utils/env_state.py)
    assert payload["_axiomrl"]["envs"] is not None


def test_off_policy_logs_every_100_steps(tmp_path: Path) -> None:
    module("td3_continuous_action").main(tiny_args("td3_continuous_action", tmp_path, total_timesteps=450, eval_every=0))
    rows = read_jsonl(only_run(tmp_path) / "metrics.jsonl")
    assert [r["global_step"] for r in rows] == [100, 200, 300, 400, 450]  # and the last step
    assert "losses/qf1_loss" not in rows[0] and "losses/qf1_loss" in rows[1]  # learning starts after step 100
    assert {"losses/qf1_values", "losses/qf2_values", "losses/qf_loss", "losses/actor_loss"} <= set(rows[-1])


def test_sac_logs_its_entropy_tuning(tmp_path: Path) -> None:
    module("sac_continuous_action").main(tiny_args("sac_continuous_action", tmp_path, total_timesteps=300, eval_every=0))
    last = read_jsonl(only_run(tmp_path) / "metrics.jsonl")[-1]
    assert {"losses/qf_loss", "losses/actor_loss", "losses/alpha", "losses/alpha_loss"} <= set(last)
    assert 0 < last["losses/alpha"] < 1  # autotune moved alpha down from exp(0) = 1
    payload = ckpt.load(only_run(tmp_path) / "checkpoints" / "latest.pt")
    assert float(payload["log_alpha"].exp()) == pytest.approx(last["losses/alpha"])


# ---------------------------------------------------------------------------------------- act()
@pytest.mark.parametrize("script", SCRIPTS)
def test_act_is_deterministic_and_within_bounds(script: str) -> None:
    """Far-out observations push every policy to its extremes; act() must stay within the bounds."""
    from gymnasium.envs.classic_control.continuous_mountain_car import Continuous_MountainCarEnv

    mod = module(script)

    class Asymmetric(Continuous_MountainCarEnv):  # bounds [0.5, 3]: scale and bias both matter
        def __init__(self) -> None:
            super().__init__()
            self.action_space = gym.spaces.Box(np.float32(0.5), np.float32(3.0), (1,), np.float32)

    envs = gym.vector.SyncVectorEnv([Asymmetric])
    torch.manual_seed(0)
    net = mod.Agent(envs) if script == "ppo_continuous_action" else mod.Actor(envs)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 3)
    obs = torch.randn(512, 2) * 100
    actions = net.act(obs)
    assert actions.shape == (512, 1)
    assert torch.all(actions >= 0.5) and torch.all(actions <= 3.0)
    assert actions.min() < 0.6 and actions.max() > 2.9  # it reaches both ends: scaled, not squashed to one
    assert torch.equal(net.act(obs), actions)
    envs.close()


def test_sac_act_is_the_squashed_mean() -> None:
    mod = module("sac_continuous_action")
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")])
    actor = mod.Actor(envs)
    obs = torch.randn(8, 3)
    _, _, mean_action = actor.get_action(obs)
    assert torch.allclose(actor.act(obs), mean_action)
    assert actor.action_scale.tolist() == [2.0] and actor.action_bias.tolist() == [0.0]
    envs.close()


# ---------------------------------------------------------------------------------------- normalisation
def test_normaliser_statistics_round_trip_through_best(tmp_path: Path) -> None:
    """PPO's obs/return statistics are in best.pt, equal the wrappers' at that step, and load back."""
    mod = module("ppo_continuous_action")
    mod.main(tiny_args("ppo_continuous_action", tmp_path, total_timesteps=512, eval_every=128, checkpoint_every=128, keep_checkpoints=5))
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text())
    best = ckpt.load(run_dir / "checkpoints" / "best.pt")
    saved = best["normalization"]
    assert best["_axiomrl"]["global_step"] == meta["best_checkpoint"]["step"]

    # equal to the statistics inside the environments pickled in the same checkpoint (Pendulum pickles)
    envs = pickle.loads(best["_axiomrl"]["envs"])
    inner = envs.unwrapped.envs[0]
    obs_wrapper = inner
    while not isinstance(obs_wrapper, gym.wrappers.NormalizeObservation):
        obs_wrapper = obs_wrapper.env
    reward_wrapper = inner
    while not isinstance(reward_wrapper, gym.wrappers.NormalizeReward):
        reward_wrapper = reward_wrapper.env
    entry = saved["envs"][0]
    np.testing.assert_array_equal(entry["obs"]["mean"], obs_wrapper.obs_rms.mean)
    np.testing.assert_array_equal(entry["obs"]["var"], obs_wrapper.obs_rms.var)
    assert entry["obs"]["count"] == obs_wrapper.obs_rms.count
    assert entry["reward"]["var"] == reward_wrapper.return_rms.var
    # one observation per step plus one per reset (Pendulum: 200-step episodes), 1e-4 initial count
    step = best["_axiomrl"]["global_step"]
    assert entry["obs"]["count"] == pytest.approx(1e-4 + step + 1 + step // 200, abs=1e-3)
    assert saved["obs_clip"] == 10.0

    # into fresh training envs and out again, unchanged
    args = load_args(mod.Args, run_dir)
    fresh = gym.vector.SyncVectorEnv([mod.make_env(args, 0)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    normalization = EnvNormalization(fresh)
    before = normalization.state_dict()
    assert not np.array_equal(before["envs"][0]["obs"]["mean"], entry["obs"]["mean"])
    normalization.load_state_dict(saved)
    after = normalization.state_dict()
    for key in ("mean", "var", "count"):
        np.testing.assert_array_equal(after["envs"][0]["obs"][key], entry["obs"][key])
        np.testing.assert_array_equal(after["envs"][0]["reward"][key], entry["reward"][key])
    fresh.close()

    # evaluating best.pt (raw env, frozen statistics) reproduces the logged evaluation; without the
    # statistics the same weights act differently
    logged = [r["return"] for r in read_jsonl(run_dir / "eval_episodes.jsonl") if r["global_step"] == step]
    assert reevaluate(module("ppo_continuous_action"), run_dir, "checkpoints/best.pt") == logged
    eval_envs = make_eval_envs([mod.make_env(args, i, evaluation=True) for i in range(args.eval_episodes)])
    agent = mod.Agent(eval_envs)
    agent.load_state_dict(best["agent"])
    raw = [e["return"] for e in run_episodes(agent.act, eval_envs, eval_seeds(args.seed, args.eval_episodes))]
    assert raw != logged
    eval_envs.close()


def test_evaluation_and_training_returns_are_true_returns(tmp_path: Path) -> None:
    """InvertedPendulum-v5 pays 1 per step and 0 on the step it falls: logged returns are whole numbers,
    length - 1 (or length when cut by the time limit), only if rewards reach the logs unnormalised."""
    needs_mujoco()
    module("ppo_continuous_action").main(
        tiny_args("ppo_continuous_action", tmp_path, env_id="InvertedPendulum-v5", total_timesteps=256, eval_every=256)
    )
    run_dir = only_run(tmp_path)
    episodes = read_jsonl(run_dir / "train_episodes.jsonl")
    evals = read_jsonl(run_dir / "eval_episodes.jsonl")
    assert len(episodes) > 5 and evals
    assert all(e["return"] in (e["length"] - 1, e["length"]) for e in episodes + evals)


def test_normalizer_statistics_resume_from_mujoco_checkpoint(tmp_path: Path) -> None:
    """The statistics come back with the MuJoCo envs, and keep counting from where they were."""
    needs_mujoco()
    mod = module("ppo_continuous_action")
    args = tiny_args("ppo_continuous_action", tmp_path, env_id="HalfCheetah-v5", total_timesteps=512, eval_every=0, pause_at_step=256)
    mod.main(args)
    run_dir = only_run(tmp_path)
    paused = ckpt.load(run_dir / "checkpoints" / "latest.pt")["normalization"]["envs"][0]
    assert paused["obs"]["count"] == pytest.approx(1e-4 + 256 + 1)  # HalfCheetah episodes last 1000 steps
    mod.main(dataclasses.replace(args, resume=str(run_dir), pause_at_step=None))
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["resumes"][0]["envs_restored"] is True
    final = ckpt.load(run_dir / "checkpoints" / "latest.pt")["normalization"]["envs"][0]
    # the paused statistics plus 256 more steps (the episode continues: no reset): nothing was lost
    assert final["obs"]["count"] == pytest.approx(paused["obs"]["count"] + 256)
    assert final["reward"]["count"] == pytest.approx(paused["reward"]["count"] + 256)


def test_normalized_policy_matches_gymnasium_wrapper() -> None:
    """The frozen evaluation normaliser computes what NormalizeObservation + clip gave in training."""
    env = gym.wrappers.NormalizeObservation(gym.make("Pendulum-v1"))
    env = gym.wrappers.TransformObservation(env, lambda o: np.clip(o, -10, 10), env.observation_space)
    envs = gym.vector.SyncVectorEnv([lambda: env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.reset(seed=0)
    wrapper = env.env
    wrapper.obs_rms.var[2] = 1e-4  # so that some observations hit the clip
    state = EnvNormalization(envs).state_dict()
    wrapper.update_running_mean = False
    raw = np.random.default_rng(0).uniform(-8, 8, (64, 3)).astype(np.float32)
    expected = np.stack([env.observation(wrapper.observation(o)) for o in raw])
    got = normalized_policy(lambda x: x, state)(torch.as_tensor(raw)).numpy()
    assert (np.abs(expected) == 10).any()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    envs.close()


# ---------------------------------------------------------------------------------------- resume
def final_parameters(run_dir: Path) -> dict[str, torch.Tensor]:
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    return {
        f"{name}.{key}": value
        for name, state in payload.items()
        if name != "_axiomrl" and isinstance(state, dict) and name != "rb"
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }


def assert_same_run(a: Path, b: Path) -> None:
    """Identical logs except wall-clock fields, identical final parameters and optimizer states."""
    for name in ("metrics.jsonl", "train_episodes.jsonl"):
        assert strip_wall_clock(read_jsonl(a / name)) == strip_wall_clock(read_jsonl(b / name)), name
    eval_a, eval_b = ([{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(d / "eval_episodes.jsonl")] for d in (a, b))
    assert eval_a and eval_a == eval_b
    params_a, params_b = final_parameters(a), final_parameters(b)
    assert params_a.keys() == params_b.keys() and len(params_a) > 4
    for key in params_a:
        assert torch.equal(params_a[key], params_b[key]), key
    norm_a, norm_b = (ckpt.load(d / "checkpoints" / "latest.pt").get("normalization") for d in (a, b))
    if norm_a is not None:  # the statistics the resumed wrappers kept updating, not a stale copy
        for part in ("obs", "reward"):
            for key in ("mean", "var", "count"):
                np.testing.assert_array_equal(norm_a["envs"][0][part][key], norm_b["envs"][0][part][key])


def test_sac_resume_equals_uninterrupted_from_the_shell(tmp_path: Path) -> None:
    """N steps, --pause-at-step N, --resume RUN (flags from config.yaml) == 2N straight."""
    common = [
        "--env-id", "Pendulum-v1", "--total-timesteps", "400", "--eval-every", "200", "--eval-episodes", "2",
        "--checkpoint-every", "200", "--learning-starts", "100", "--batch-size", "32", "--buffer-size", "10000",
    ]
    straight = run_script("sac_continuous_action.py", *common, "--output-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    paused = run_script("sac_continuous_action.py", *common, "--output-dir", str(tmp_path / "paused"), "--pause-at-step", "200")
    assert paused.returncode == 0, paused.stderr
    run_dir = only_run(tmp_path / "paused")
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "interrupted" and meta["total_steps"] == 200
    resumed = run_script("sac_continuous_action.py", "--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 400 and meta["resumes"][0]["envs_restored"] is True
    assert_same_run(only_run(tmp_path / "straight"), run_dir)


@pytest.mark.parametrize("script", ["ppo_continuous_action", "td3_continuous_action", "ddpg_continuous_action"])
def test_resume_equals_uninterrupted_on_pendulum(tmp_path: Path, script: str) -> None:
    mod = module(script)
    args = tiny_args(script, tmp_path / "straight", total_timesteps=512, eval_every=256, checkpoint_every=256)
    mod.main(args)
    paused = dataclasses.replace(args, output_dir=str(tmp_path / "paused"), pause_at_step=256)
    mod.main(paused)
    run_dir = only_run(tmp_path / "paused")
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "interrupted"
    mod.main(dataclasses.replace(paused, resume=str(run_dir), pause_at_step=None))
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "finished"
    assert_same_run(only_run(tmp_path / "straight"), run_dir)


def test_resume_without_saved_buffer_refills_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mod = module("sac_continuous_action")
    args = tiny_args("sac_continuous_action", tmp_path, total_timesteps=512, eval_every=0, save_buffer=False, pause_at_step=256)
    mod.main(args)
    run_dir = only_run(tmp_path)
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["rb"]["contents_saved"] is False and "observations" not in payload["rb"]
    capsys.readouterr()
    mod.main(dataclasses.replace(args, resume=str(run_dir), pause_at_step=None))
    assert "training continues from an empty buffer" in capsys.readouterr().out
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "finished"
    assert rows[-1]["global_step"] == 512 and "losses/qf_loss" in rows[-1]


# ---------------------------------------------------------------------------------------- bad input
def register_unbounded() -> str:
    from gymnasium.envs.classic_control.pendulum import PendulumEnv

    class Unbounded(PendulumEnv):
        def __init__(self) -> None:
            super().__init__()
            self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    env_id = "AxiomTestUnboundedPendulum-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=Unbounded, max_episode_steps=200)
    return env_id


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "case, message",
    [
        ("discrete", "needs a continuous (Box) action space but CartPole-v1 has Discrete(2); use a discrete-action script"),
        ("unbounded", "scales actions to the action bounds but AxiomTestUnboundedPendulum-v0's action space"),
        ("no_mujoco", "HalfCheetah-v5 is a MuJoCo environment; install it with `pip install 'axiomrl[mujoco]'`"),
        ("unknown", "unknown environment id 'Pendulum-v9'; did you mean"),
    ],
)
def test_bad_env_is_one_sentence_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, case: str, message: str
) -> None:
    env_id = {"discrete": "CartPole-v1", "unbounded": register_unbounded(), "no_mujoco": "HalfCheetah-v5", "unknown": "Pendulum-v9"}[case]
    if case == "no_mujoco":
        monkeypatch.setitem(sys.modules, "mujoco", None)  # what importlib sees when the extra is not installed
    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        module(script).main(tiny_args(script, out, env_id=env_id))
    assert message in str(err.value)
    if case in ("discrete", "unbounded"):
        assert str(err.value).startswith(f"{script}.py ")
    assert "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "script, overrides, message",
    [
        ("sac_continuous_action", {"batch_size": 512, "buffer_size": 100}, "--buffer-size 100 is smaller than --batch-size 512"),
        ("sac_continuous_action", {"tau": 0.0}, "--tau must be in (0, 1]"),
        ("td3_continuous_action", {"policy_noise": -0.1}, "--policy-noise must be 0 or positive"),
        ("ddpg_continuous_action", {"learning_starts": -1}, "--learning-starts must be 0 or positive"),
        ("ppo_continuous_action", {"num_minibatches": 3}, "is not divisible by --num-minibatches 3"),
        ("ppo_continuous_action", {"gamma": 1.5}, "--gamma must be in [0, 1]"),
    ],
)
def test_bad_hyperparameters(tmp_path: Path, script: str, overrides: dict, message: str) -> None:
    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        module(script).main(tiny_args(script, out, env_id="Pendulum-v1", **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_v4_mujoco_ids_are_accepted() -> None:
    needs_mujoco()
    from axiomrl_utils.envs import require_env

    obs_space, action_space = require_env("HalfCheetah-v4", "sac_continuous_action.py", "continuous")
    assert obs_space.shape == (17,) and action_space.shape == (6,)


def test_bad_env_from_the_shell_is_one_line(tmp_path: Path) -> None:
    proc = run_script("td3_continuous_action.py", "--env-id", "CartPole-v1", "--output-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: td3_continuous_action.py needs a continuous (Box) action space but CartPole-v1 has Discrete(2); "
        "use a discrete-action script such as ppo.py or dqn.py"
    ]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_documents_every_field(script: str) -> None:
    proc = run_script(f"{script}.py", "--help")
    assert proc.returncode == 0, proc.stderr
    for field in dataclasses.fields(module(script).Args):
        assert "--" + field.name.replace("_", "-") in proc.stdout, field.name


@pytest.mark.parametrize(
    "script, expected",
    [
        ("ppo_continuous_action", dict(num_envs=1, num_steps=2048, num_minibatches=32, update_epochs=10, learning_rate=3e-4, ent_coef=0.0,
                                       clip_coef=0.2, gae_lambda=0.95, max_grad_norm=0.5, anneal_lr=True, total_timesteps=1_000_000)),
        ("sac_continuous_action", dict(policy_lr=3e-4, q_lr=1e-3, policy_frequency=2, target_network_frequency=1, learning_starts=5000,
                                       tau=0.005, batch_size=256, buffer_size=1_000_000, autotune=True, alpha=0.2, gamma=0.99)),
        ("td3_continuous_action", dict(learning_rate=3e-4, exploration_noise=0.1, policy_noise=0.2, noise_clip=0.5, learning_starts=25_000,
                                       policy_frequency=2, tau=0.005, batch_size=256, buffer_size=1_000_000)),
        ("ddpg_continuous_action", dict(learning_rate=3e-4, exploration_noise=0.1, learning_starts=25_000, policy_frequency=2,
                                        tau=0.005, batch_size=256, buffer_size=1_000_000)),
    ],
)
def test_defaults_are_cleanrls(script: str, expected: dict) -> None:
    args = module(script).Args()
    assert {k: getattr(args, k) for k in expected} == expected
    assert args.env_id.endswith("-v5")
    if script != "ppo_continuous_action":
        assert args.save_buffer is True
