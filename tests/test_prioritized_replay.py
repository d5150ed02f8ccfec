"""Prioritized replay: the numpy sum tree against brute force, the sampling distribution, the
importance-sampling weights, n-step returns, frame-stack slots, and exact checkpoints."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.replay_buffer import PrioritizedReplayBuffer, SumTree, make_replay_buffer

from test_replay_buffer import DISCRETE, IMAGE, StackedEpisodes

VECTOR = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


def brute_find(priorities: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The leaf whose interval [sum(p[:i]), sum(p[:i+1])) holds each value, by a linear scan of the prefix sums."""
    return np.searchsorted(np.cumsum(priorities), values, side="right")


@pytest.mark.parametrize("capacity", [1, 2, 37, 64])
def test_sum_tree_matches_brute_force_under_batched_updates(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    tree, reference = SumTree(capacity), np.zeros(capacity)
    for _ in range(50):
        # integer priorities (many zeros, repeated indices) keep every sum exact
        idx = rng.integers(0, capacity, rng.integers(1, 2 * capacity + 1))
        values = rng.integers(0, 4, len(idx)).astype(np.float64)
        tree.update(idx, values)
        for i, v in zip(idx, values):  # a repeated index keeps its last value
            reference[i] = v
        assert np.array_equal(tree.leaves, reference)
        assert tree.total() == reference.sum()
        internal = np.arange(1, tree.size)
        assert np.array_equal(tree.tree[internal], tree.tree[2 * internal] + tree.tree[2 * internal + 1])
        if reference.sum() > 0:
            probes = np.arange(int(reference.sum())) + rng.random(int(reference.sum()))  # every unit of mass
            found = tree.find(probes)
            assert np.array_equal(found, brute_find(reference, probes))
            assert (reference[found] > 0).all()
    # real-valued priorities: the same leaves wherever a value is not within rounding of a boundary
    values = rng.random(capacity) * (rng.random(capacity) < 0.7)
    tree.update(np.arange(capacity), values)
    if values.sum() > 0:
        probes = rng.random(1000) * values.sum()
        cums = np.cumsum(values)
        clear = np.min(np.abs(probes[:, None] - cums[None, :]), axis=1) > 1e-9
        assert np.array_equal(tree.find(probes)[clear], brute_find(values, probes)[clear])
        # at or past the end by rounding: still a leaf with mass
        edge = tree.find(np.array([values.sum(), np.nextafter(values.sum(), 0), 0.0]))
        assert (values[edge] > 0).all()


def filled_buffer(n: int = 40, alpha: float = 0.7, **kwargs) -> PrioritizedReplayBuffer:
    rb = PrioritizedReplayBuffer(make_replay_buffer(n, VECTOR, DISCRETE), alpha=alpha, **kwargs)
    for t in range(n):
        rb.add(np.array([[t, 0]], np.float32), np.array([[t + 1, 0]], np.float32), [t % 5], [float(t)], [False], [False])
    return rb


def test_sampling_follows_the_priorities() -> None:
    """Stratified draws: the frequency of each transition is p_i^alpha / sum p^alpha."""
    rb = filled_buffer()
    rng = np.random.default_rng(0)
    td = rng.exponential(size=40) * (rng.random(40) < 0.8)
    rb.update_priorities(np.arange(40), td)
    expected = (np.abs(td) + rb.eps) ** rb.alpha
    expected /= expected.sum()
    np.random.seed(0)
    counts = np.zeros(40)
    for _ in range(400):
        data = rb.sample(64, beta=0.4)
        counts += np.bincount(data.indices, minlength=40)
        # the batch is the stored transitions at those indices (observation t was stored in slot t)
        assert np.array_equal(data.observations[:, 0].numpy(), data.indices.astype(np.float32))
    freq = counts / counts.sum()
    assert 0.5 * np.abs(freq - expected).sum() < 0.02  # total variation distance
    assert counts[expected < 1e-4].sum() <= 5  # priority ~0 (only eps): practically never drawn


def test_importance_sampling_weights_follow_the_formula() -> None:
    rb = filled_buffer()
    rb.update_priorities(np.arange(40), np.linspace(0.1, 4.0, 40))
    np.random.seed(1)
    for beta in (0.0, 0.4, 1.0):
        data = rb.sample(32, beta)
        p = rb.tree.leaves[data.indices] / rb.tree.total()
        w = (len(rb) * p) ** -beta
        assert np.allclose(data.weights.numpy(), w / w.max(), rtol=1e-6)
        assert data.weights.dtype == torch.float32 and data.weights.max() == 1.0


def test_priority_updates_and_new_transitions_take_the_largest_priority() -> None:
    rb = filled_buffer(n=10, alpha=0.5, eps=0.01)
    assert np.allclose(rb.tree.leaves, 1.0)  # max priority starts at 1
    rb.update_priorities(np.array([2, 5, 5]), np.array([-3.0, 1.0, 8.0]))
    assert rb.tree.leaves[2] == pytest.approx(3.01**0.5) and rb.tree.leaves[5] == pytest.approx(8.01**0.5)
    assert rb.max_priority == pytest.approx(8.01)
    rb.add(np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32), [0], [0.0], [False], [False])  # overwrites slot 0
    assert rb.tree.leaves[0] == pytest.approx(8.01**0.5)
    assert rb.tree.total() == pytest.approx(rb.tree.leaves.sum())


def test_n_step_returns_match_a_reference_walk() -> None:
    """n=3 over two envs with terminations and truncations, the ring wrapped: reward sums, discounts,
    termination and next observation equal a step-by-step walk of the stored transitions."""
    gamma, n_step, n_envs = 0.9, 3, 2
    world = StackedEpisodes(n_envs, seed=3, end_prob=0.25)
    rb = PrioritizedReplayBuffer(make_replay_buffer(60, IMAGE, DISCRETE, num_envs=n_envs), alpha=0.6, n_step=n_step, gamma=gamma)
    steps = []
    for _ in range(75):  # 30 slots per env: wrapped around
        step = world.step()
        steps.append(step)
        rb.add(*step)
    np.random.seed(2)
    data = rb.sample(256, beta=0.5)
    slot, env = np.divmod(data.indices, n_envs)
    for i in range(256):
        t = 75 - ((rb.storage.pos - slot[i]) % rb.storage.slots)  # which add() stored this slot
        e = env[i]
        reward, discount, done = 0.0, 1.0, False
        for k in range(n_step):
            if t + k >= 75:
                break
            obs, true_next, actions, rewards, terms, truncs = steps[t + k]
            reward += discount * rewards[e]
            discount *= gamma
            next_obs, done = true_next[e], bool(terms[e])
            if terms[e] or truncs[e]:
                break
        assert np.array_equal(data.observations[i].numpy(), steps[t][0][e])
        assert data.rewards[i].item() == pytest.approx(reward, rel=1e-5, abs=1e-6)
        assert data.discounts[i].item() == pytest.approx(discount, rel=1e-6)
        assert data.terminations[i].item() == float(done)
        assert np.array_equal(data.next_observations[i].numpy(), next_obs)


def test_frame_stack_slots_that_cannot_be_sampled_keep_priority_zero() -> None:
    world = StackedEpisodes(1)
    rb = PrioritizedReplayBuffer(make_replay_buffer(20, IMAGE, DISCRETE), alpha=0.5)
    for _ in range(47):
        rb.add(*world.step())
        rb.update_priorities(np.arange(20), np.ones(20))  # also an update must not revive them
        blocked = rb.storage._unsampleable_slots()
        assert len(blocked) == (3 if rb.storage.full else 0)
        assert (rb.tree.leaves[blocked] == 0).all()
    np.random.seed(0)
    assert not np.isin(rb.sample(500, 0.4).indices, rb.storage._unsampleable_slots()).any()


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    """Through the real checkpoint code: the sum tree, priorities, episode ends and largest priority
    come back, and the restored buffer samples, updates and grows exactly as the original."""
    world = StackedEpisodes(2, seed=1)
    make = lambda: PrioritizedReplayBuffer(make_replay_buffer(50, IMAGE, DISCRETE, num_envs=2), alpha=0.5, n_step=3, gamma=0.99)  # noqa: E731
    rb = make()
    np.random.seed(0)
    for _ in range(60):
        rb.add(*world.step())
        data = rb.sample(8, 0.5)
        rb.update_priorities(data.indices, np.random.standard_normal(8) * 3)
    payload, resume_state = ckpt.build_payload({"rb": rb}, None, {"global_step": 60})
    assert resume_state["modules"]["rb"] >= rb.tree.tree.nbytes
    ckpt.save_atomic(payload, tmp_path / "step_60.pt")
    restored = make()
    ckpt.load_into(ckpt.load(tmp_path / "step_60.pt"), {"rb": restored})
    assert restored.tree.total() == rb.tree.total() and np.array_equal(restored.tree.tree, rb.tree.tree)
    assert np.array_equal(restored.episode_ends, rb.episode_ends) and restored.max_priority == rb.max_priority
    follow = StackedEpisodes(2, seed=9)
    for i in range(30):
        step = follow.step()
        for buffer in (rb, restored):
            buffer.add(*step)
        np.random.seed(i)
        a = rb.sample(16, 0.6)
        np.random.seed(i)
        b = restored.sample(16, 0.6)
        assert np.array_equal(a.indices, b.indices)
        assert all(torch.equal(x, y) for x, y in zip(a[:-1], b[:-1]))
        td = np.random.default_rng(i).standard_normal(16)
        rb.update_priorities(a.indices, td)
        restored.update_priorities(b.indices, td)
    assert np.array_equal(restored.tree.tree, rb.tree.tree) and restored.max_priority == rb.max_priority


def test_a_different_prioritized_setting_is_refused() -> None:
    rb = filled_buffer(n=10, alpha=0.5)
    other = PrioritizedReplayBuffer(make_replay_buffer(10, VECTOR, DISCRETE), alpha=0.6)
    with pytest.raises(ValueError, match="not a prioritized one"):
        other.load_state_dict(rb.state_dict())
    with pytest.raises(ValueError, match="0 <= alpha <= 1"):
        PrioritizedReplayBuffer(make_replay_buffer(10, VECTOR, DISCRETE), alpha=1.5)
