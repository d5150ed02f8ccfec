"""The speed-ups in ppo.py and dqn.py compute what CleanRL's code computes.

- ppo.py's rollout samples in numpy with Gumbel-max: the same distribution as
  `torch.distributions.Categorical`, the same log-probabilities, drawn from numpy's global RNG
  only (which checkpoints carry). The networks' numpy forward itself is tested in
  test_numpy_forward.py.
- The update scores the rollout's actions with the log-probabilities and entropies of a Categorical.
- Fused Adam makes the same update as the per-tensor Adam CleanRL uses, up to float32 rounding.
(The learning curves before/after are in benchmark/README.md; throughput itself is measured by
benchmark/speed.py, never here.)
"""

from __future__ import annotations

import random

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from axiomrl import ppo


def cartpole_like(n_actions: int) -> gym.vector.VectorEnv:
    class Spec:
        single_observation_space = gym.spaces.Box(-1.0, 1.0, (4,))
        single_action_space = gym.spaces.Discrete(n_actions)

    return Spec()  # type: ignore[return-value]


@pytest.mark.parametrize(
    "logits",
    [[0.0, 0.0], [2.0, -1.0, 0.5, 0.0, -3.0, 1.0], [40.0, 0.0, -40.0], [1e4, 1e4 - 1.0]],  # the last: no overflow
    ids=["uniform", "six-actions", "near-deterministic", "huge-logits"],
)
def test_sampling_draws_from_the_categorical(logits: list[float]) -> None:
    draws = 200_000
    row = np.asarray(logits, dtype=np.float32)
    np.random.seed(0)
    action, logprob = ppo.sample_action(np.tile(row, (draws, 1)))
    assert action.shape == logprob.shape == (draws,) and action.dtype == np.int64 and logprob.dtype == np.float32
    p = torch.softmax(torch.as_tensor(row, dtype=torch.float64), -1).numpy()
    frequency = np.bincount(action, minlength=len(row)) / draws
    # binomial standard error per action; 5 of them is a false alarm once in ~3 million
    assert np.all(np.abs(frequency - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1e-12), (frequency, p)
    # float64 reference: at |logits| ~ 1e4 a float32 Categorical itself is off by ~2e-4
    expected = Categorical(logits=torch.as_tensor(row, dtype=torch.float64)).log_prob(torch.as_tensor(action)).numpy()
    np.testing.assert_allclose(logprob, expected, rtol=1e-6, atol=1e-6)


def test_sampling_uses_numpys_global_rng_only() -> None:
    """A checkpoint restores numpy's global RNG, so a resumed rollout draws what an uninterrupted one would."""
    logits = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    np.random.seed(7)
    first = ppo.sample_action(logits)
    np.random.seed(7)
    second = ppo.sample_action(logits)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def test_scoring_given_actions_matches_categorical() -> None:
    torch.manual_seed(1)
    agent = ppo.Agent(cartpole_like(5))
    x, action = torch.randn(128, 4), torch.randint(0, 5, (128,))
    got_action, logprob, entropy, value = agent.get_action_and_value(x, action)
    dist = Categorical(logits=agent.actor(x))
    assert torch.equal(got_action, action)
    torch.testing.assert_close(logprob, dist.log_prob(action))
    torch.testing.assert_close(entropy, dist.entropy())
    torch.testing.assert_close(value, agent.critic(x))
    (logprob.sum() + entropy.sum()).backward()  # and both carry gradients to the actor
    assert agent.actor[0].weight.grad is not None and agent.actor[0].weight.grad.abs().sum() > 0


def test_fused_adam_makes_the_same_update() -> None:
    """PPO's optimizer settings, 300 steps of real PPO-sized gradients with annealed lr: fused vs per-tensor."""
    torch.manual_seed(2)
    agents = [ppo.Agent(cartpole_like(2)) for _ in range(2)]
    agents[1].load_state_dict(agents[0].state_dict())
    initial = [p.detach().clone() for p in agents[0].parameters()]
    fused = torch.optim.Adam(agents[0].parameters(), lr=2.5e-4, eps=1e-5, fused=True)
    reference = torch.optim.Adam(agents[1].parameters(), lr=2.5e-4, eps=1e-5, foreach=False, fused=False)
    for step in range(300):
        x, action = torch.randn(128, 4), torch.randint(0, 2, (128,))
        for agent, optimizer in zip(agents, (fused, reference)):
            optimizer.param_groups[0]["lr"] = 2.5e-4 * (1 - step / 300)
            _, logprob, entropy, value = agent.get_action_and_value(x, action)
            loss = -logprob.mean() - 0.01 * entropy.mean() + 0.5 * (value**2).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
            optimizer.step()
    for a, b in zip(agents[0].parameters(), agents[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(p, p0) for p, p0 in zip(agents[0].parameters(), initial))  # it did train
