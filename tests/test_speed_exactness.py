"""The speed-ups in ppo.py and dqn.py compute what CleanRL's code computes.

- Gumbel-max sampling draws the same actions as `torch.multinomial` from the same RNG state, and
  the log-probabilities and entropies equal those of `torch.distributions.Categorical`.
- Fused Adam makes the same update as the per-tensor Adam CleanRL uses, up to float32 rounding.
(Bit-for-bit equal runs before/after the bitwise-exact changes, and the learning curves, are in
benchmark/README.md; throughput itself is measured by benchmark/speed.py, never here.)
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from torch.distributions import Categorical

from axiomrl import ppo


def cartpole_like(n_actions: int) -> gym.vector.VectorEnv:
    class Spec:
        single_observation_space = gym.spaces.Box(-1.0, 1.0, (4,))
        single_action_space = gym.spaces.Discrete(n_actions)

    return Spec()  # type: ignore[return-value]


@pytest.mark.parametrize("batch, n_actions", [(4, 2), (1000, 2), (64, 6)])
def test_sampling_draws_torch_multinomials_actions(batch: int, n_actions: int) -> None:
    torch.manual_seed(0)
    agent = ppo.Agent(cartpole_like(n_actions))
    with torch.no_grad():  # make the policy far from uniform so a wrong sampler shows
        agent.actor[-1].weight.mul_(300.0)
    x = torch.randn(batch, 4)
    logits = agent.actor(x)
    for seed in range(20):
        torch.manual_seed(seed)
        action, logprob, entropy, value = agent.get_action_and_value(x)
        after = torch.rand(1)
        torch.manual_seed(seed)
        expected = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
        assert torch.equal(action, expected)
        assert torch.equal(after, torch.rand(1)), "sampling must consume the RNG exactly as multinomial does"
        assert entropy is None
        torch.testing.assert_close(logprob, Categorical(logits=logits).log_prob(action))
        torch.testing.assert_close(value, agent.critic(x))


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
