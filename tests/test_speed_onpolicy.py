"""The CPU speed changes of issue 26 in ppo_continuous_action.py, ppo_atari.py and the Atari envs compute
what they replaced: numpy Gaussian sampling, Normal's formulas written out, channels-last CNN weights,
the grayscale ALE observation nobody reads."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from torch.distributions.normal import Normal

from axiomrl import ppo_continuous_action


def test_numpy_sampling_has_normals_distribution_and_log_probabilities() -> None:
    rng_state = np.random.get_state()
    try:
        np.random.seed(0)
        mean = np.array([[0.5, -1.0, 2.0]] * 20000, dtype=np.float32)
        logstd = np.array([[0.0, -0.5, 0.3]], dtype=np.float32)
        action, logprob = ppo_continuous_action.sample_action(mean, logstd)
    finally:
        np.random.set_state(rng_state)
    assert action.dtype == np.float32 and logprob.shape == (20000,)
    np.testing.assert_allclose(action.mean(0), mean[0], atol=0.03)
    np.testing.assert_allclose(action.std(0), np.exp(logstd[0]), rtol=0.03)
    torch_logprob = Normal(torch.as_tensor(mean), torch.as_tensor(np.exp(logstd))).log_prob(torch.as_tensor(action)).sum(1)
    np.testing.assert_allclose(logprob, torch_logprob.numpy(), rtol=1e-5, atol=1e-5)


def test_written_out_normal_equals_torch_distribution_bitwise() -> None:
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")])
    torch.manual_seed(0)
    agent = ppo_continuous_action.Agent(envs)
    with torch.no_grad():
        agent.actor_logstd.fill_(-0.7)
    x, action = torch.randn(32, 3), torch.randn(32, 1)
    _, logprob, entropy, value = agent.get_action_and_value(x, action)
    probs = Normal(agent.actor_mean(x), agent.actor_logstd.expand(32, 1).exp())
    assert torch.equal(logprob, probs.log_prob(action).sum(1))
    assert torch.equal(entropy, probs.entropy().sum(1))
    assert torch.equal(value, agent.critic(x))
    assert ppo_continuous_action.LOG_SQRT_2PI == math.log(math.sqrt(2 * math.pi))


needs_ale = pytest.mark.skipif(
    importlib.util.find_spec("ale_py") is None or importlib.util.find_spec("cv2") is None,
    reason="needs the atari extra (ale-py, OpenCV)",
)


@needs_ale
def test_channels_last_atari_update_equals_the_contiguous_one() -> None:
    import gymnasium as gym

    from axiomrl import ppo_atari

    envs = gym.vector.SyncVectorEnv([ppo_atari.make_env(ppo_atari.Args(env_id="ALE/Pong-v5"), 0)])
    torch.manual_seed(0)
    plain = ppo_atari.Agent(envs)
    fast = ppo_atari.Agent(envs)
    fast.load_state_dict(plain.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    assert fast.network[0].weight.is_contiguous(memory_format=torch.channels_last)
    obs = torch.randint(0, 256, (16, 4, 84, 84), dtype=torch.uint8)
    actions = torch.randint(0, envs.single_action_space.n, (16,))
    for agent in (plain, fast):
        _, logprob, entropy, value = agent.get_action_and_value(obs, actions)
        (logprob.sum() + entropy.sum() + value.sum()).backward()
    for p, q in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)
    # a channels-last checkpoint loads into the plain agent that load_policy builds
    reloaded = ppo_atari.Agent(envs)
    reloaded.load_state_dict(fast.state_dict())
    torch.testing.assert_close(reloaded.act(obs), plain.act(obs))


@needs_ale
@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "ALE/Pong-v5"])
def test_grayscale_ale_observation_leaves_the_preprocessed_frames_unchanged(env_id: str) -> None:
    from axiomrl_utils.atari import make_atari_env

    class RgbArgs:  # the env as before the change: ALE's default RGB observation
        def __init__(self) -> None:
            self.env_id, self.env_kwargs, self.env_module = env_id, {"obs_type": "rgb"}, []

    frames = {}
    for name, env in (("grayscale", make_atari_env(env_id)), ("rgb", make_atari_env(RgbArgs()))):
        assert env.unwrapped._obs_type == name
        obs, _ = env.reset(seed=3)
        rng, seen = np.random.default_rng(0), [obs]
        for _ in range(200):
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            seen.append(obs)
            if terminated or truncated:
                seen.append(env.reset()[0])
        frames[name] = np.stack(seen)
        env.close()
    assert np.array_equal(frames["grayscale"], frames["rgb"])
    assert frames["rgb"].std() > 0  # real frames, not blanks
