"""The shared replay buffer: true next observations, truncation, memory-efficient storage, exact save/load."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.replay_buffer import (
    FrameStackReplayBuffer,
    ObservationStoreReplayBuffer,
    ReplayBuffer,
    check_replay_buffer,
    make_replay_buffer,
)

IMAGE = gym.spaces.Box(0, 255, (4, 6, 6), np.uint8)  # a small frame stack
VECTOR = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(5)
BOX_ACTION = gym.spaces.Box(-1, 1, (2,), np.float32)


class StackedEpisodes:
    """num_envs fake environments whose observations are frame stacks stamped with a unique id.

    Frame stacking makes consecutive observations share frames, as Atari's do; an episode ends by
    termination or truncation at random. `step()` returns what a same-step-autoreset vector env
    gives plus the true next observation, and `log` keeps every transition for checking.
    """

    def __init__(self, num_envs: int, seed: int = 0, end_prob: float = 0.1) -> None:
        self.n, self.rng, self.end_prob = num_envs, np.random.default_rng(seed), end_prob
        self.counter = 0
        self.obs = np.stack([self._reset() for _ in range(num_envs)])
        self.log: dict[bytes, dict] = {}

    def _frame(self) -> np.ndarray:
        self.counter += 1
        frame = np.zeros((6, 6), np.uint8)
        frame[0, 0], frame[0, 1], frame[0, 2] = self.counter % 256, self.counter // 256 % 256, self.counter // 65536
        return frame

    def _reset(self) -> np.ndarray:
        # four distinct frames (gymnasium pads with copies of the first; distinct ones test more)
        return np.stack([self._frame() for _ in range(4)])

    def step(self):
        obs = self.obs.copy()
        actions = self.rng.integers(0, 5, self.n)
        rewards = self.rng.normal(size=self.n).astype(np.float32)
        ends = self.rng.random(self.n) < self.end_prob
        terminations = ends & (self.rng.random(self.n) < 0.5)
        truncations = ends & ~terminations
        true_next = np.stack([np.concatenate([o[1:], self._frame()[None]]) for o in obs])
        for e in range(self.n):
            self.log[obs[e].tobytes()] = dict(next=true_next[e], action=actions[e], reward=rewards[e], term=terminations[e])
        self.obs = true_next.copy()
        for e in np.flatnonzero(ends):
            self.obs[e] = self._reset()  # the autoreset observation replaces the final one
        return obs, true_next, actions, rewards, terminations, truncations


def check_samples(rb: ReplayBuffer, world: StackedEpisodes, batch_size: int = 256) -> int:
    """Every sampled transition is exactly one that was added; returns how many distinct were seen."""
    data = rb.sample(batch_size)
    seen = set()
    for i in range(batch_size):
        key = data.observations[i].numpy().tobytes()
        t = world.log[key]
        assert np.array_equal(data.next_observations[i].numpy(), t["next"])
        assert data.actions[i].item() == t["action"]
        assert data.rewards[i].item() == pytest.approx(float(t["reward"]))
        assert data.terminations[i].item() == float(t["term"])
        seen.add(key)
    return len(seen)


@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_samples_are_the_added_transitions(memory_efficient: bool, num_envs: int) -> None:
    np.random.seed(0)
    world = StackedEpisodes(num_envs)
    rb = make_replay_buffer(60, IMAGE, DISCRETE, num_envs=num_envs, memory_efficient=memory_efficient)
    for step in range(150):  # wraps around the ring more than twice
        rb.add(*world.step())
        assert len(rb) == min(step + 1, 60 // num_envs) * num_envs
        if step % 7 == 0:
            check_samples(rb, world, 64)
    # every stored transition is reachable, the newest included; frame-stacked storage skips the
    # K-1 oldest slots of a full ring (their older frames were just overwritten)
    skipped = 3 * num_envs if rb.frame_stacked and rb.full else 0
    assert check_samples(rb, world, 2000) == len(rb) - skipped


def test_sample_types_and_shapes() -> None:
    rb = make_replay_buffer(100, VECTOR, BOX_ACTION, num_envs=2)
    assert not rb.memory_efficient
    obs = np.arange(6, dtype=np.float32).reshape(2, 3)
    for _ in range(5):
        rb.add(obs, obs + 1, np.ones((2, 2), np.float32), np.array([1.0, 2.0]), np.array([False, True]), np.array([False, False]))
    data = rb.sample(8)
    assert data.observations.shape == (8, 3) and data.observations.dtype == torch.float32
    assert data.actions.shape == (8, 2) and data.actions.dtype == torch.float32
    assert data.rewards.shape == (8,) and data.rewards.dtype == torch.float32
    assert data.terminations.shape == (8,) and data.terminations.dtype == torch.float32
    assert set(data.terminations.tolist()) <= {0.0, 1.0}

    images = make_replay_buffer(10, IMAGE, DISCRETE)
    assert images.memory_efficient
    world = StackedEpisodes(1)
    images.add(*world.step())
    data = images.sample(4)
    assert data.observations.dtype == torch.uint8 and data.observations.shape == (4, 4, 6, 6)
    assert data.actions.dtype == torch.int64 and data.actions.shape == (4,)


def test_truncation_keeps_the_final_observation_and_bootstraps() -> None:
    """A truncated step is stored as not terminated, with the real final observation, not the reset one."""
    for memory_efficient in (True, False):
        rb = make_replay_buffer(10, IMAGE, DISCRETE, memory_efficient=memory_efficient)
        world = StackedEpisodes(1)
        obs, true_next, actions, rewards, _, _ = world.step()
        rb.add(obs, true_next, actions, rewards, np.array([False]), np.array([True]))
        reset_obs = np.stack([world._frame()] * 4)[None]
        rb.add(reset_obs, reset_obs, actions, rewards, np.array([False]), np.array([False]))
        np.random.seed(1)
        data = rb.sample(32)
        first = [i for i in range(32) if np.array_equal(data.observations[i].numpy(), obs[0])]
        assert first
        for i in first:
            assert data.terminations[i].item() == 0.0
            assert np.array_equal(data.next_observations[i].numpy(), true_next[0])
            assert not np.array_equal(data.next_observations[i].numpy(), reset_obs[0])


def test_frame_stacks_store_each_frame_once() -> None:
    """Atari-like frame stacks: one frame per transition, plus whole observations only where an
    episode starts (keyframes) or ends (final observations)."""
    world = StackedEpisodes(2, end_prob=0.05)
    compact = make_replay_buffer(1000, IMAGE, DISCRETE, num_envs=2)
    plain = make_replay_buffer(1000, IMAGE, DISCRETE, num_envs=2, memory_efficient=False)
    ends = 0
    for _ in range(400):
        step = world.step()
        compact.add(*step)
        plain.add(*step)
        ends += int((step[4] | step[5]).sum())
    assert compact.frame_stacked and compact.observations is None and compact.next_observations is None
    assert compact.frames.shape == (500, 2, 6, 6)
    assert int((compact.next_index >= 0).sum()) == len(compact.side) == ends > 0
    assert len(compact.keyframes) == ends + 2  # the first observation of every episode
    assert int((compact.chain[:400] == 0).sum()) == ends + 2
    frame_bytes = 400 * 2 * 6 * 6
    assert compact.state_dict()["frames"].numpy().nbytes == frame_bytes  # 1/8 of obs + next_obs
    assert plain.state_dict()["observations"].numpy().nbytes == 4 * frame_bytes


def test_image_without_frame_stack_stores_each_observation_once() -> None:
    """2-D uint8 images (no stack axis): the observation-level memory-efficient mode."""
    space = gym.spaces.Box(0, 255, (6, 6), np.uint8)
    rb = make_replay_buffer(100, space, DISCRETE)
    assert rb.memory_efficient and not rb.frame_stacked and rb.next_observations is None
    rng = np.random.default_rng(0)
    log = {}
    obs = rng.integers(0, 256, (1, 6, 6), dtype=np.uint8)
    for _ in range(250):
        nxt = rng.integers(0, 256, (1, 6, 6), dtype=np.uint8)
        end = rng.random() < 0.1
        log[obs.tobytes()] = nxt.copy()
        rb.add(obs, nxt, [1], [0.0], [end], [False])
        obs = rng.integers(0, 256, (1, 6, 6), dtype=np.uint8) if end else nxt
    data = rb.sample(500)
    for o, n in zip(data.observations.numpy(), data.next_observations.numpy()):
        assert np.array_equal(log[o[None].tobytes()], n[None])


def test_stacks_that_do_not_continue_are_stored_whole() -> None:
    """3-D uint8 observations that are not shifted frame stacks still come back exactly."""
    rb = make_replay_buffer(40, IMAGE, DISCRETE)
    rng = np.random.default_rng(0)
    log = {}
    obs = rng.integers(0, 256, (1,) + IMAGE.shape, dtype=np.uint8)
    for _ in range(100):
        nxt = rng.integers(0, 256, (1,) + IMAGE.shape, dtype=np.uint8)
        log[obs.tobytes()] = nxt.copy()
        rb.add(obs, nxt, [0], [0.0], [False], [False])
        obs = nxt
    assert (rb.chain == 0).all() and len(rb.keyframes) <= 40
    data = rb.sample(300)
    for o, n in zip(data.observations.numpy(), data.next_observations.numpy()):
        assert np.array_equal(log[o[None].tobytes()], n[None])


def test_side_stores_are_recycled_when_slots_are_overwritten() -> None:
    world = StackedEpisodes(1, end_prob=0.2)
    rb = make_replay_buffer(50, IMAGE, DISCRETE)
    for _ in range(2000):
        rb.add(*world.step())
        assert len(rb.side) == int((rb.next_index >= 0).sum()) <= 50
        assert len(rb.keyframes) == int((rb.chain[: rb._filled] == 0).sum()) <= 50
    assert len(rb.side.data) <= 64 and len(rb.keyframes.data) <= 64  # bounded by the slots, not the episodes


def test_discontinuity_keeps_the_real_next_observation() -> None:
    """When the next add does not start from the previous next_obs (envs reset after a resume
    without their state), the previous transition still gets its true next observation."""
    rb = make_replay_buffer(10, IMAGE, DISCRETE)
    world = StackedEpisodes(1, end_prob=0.0)
    first = world.step()
    rb.add(*first)
    world.obs = np.stack([world._reset()])  # a fresh episode, no done flag in between
    second = world.step()
    rb.add(*second)
    np.random.seed(0)
    data = rb.sample(64)
    for i in range(64):
        if np.array_equal(data.observations[i].numpy(), first[0][0]):
            assert np.array_equal(data.next_observations[i].numpy(), first[1][0])
        else:
            assert np.array_equal(data.next_observations[i].numpy(), second[1][0])


def test_sampling_follows_the_global_numpy_rng() -> None:
    world = StackedEpisodes(2)
    rb = make_replay_buffer(100, IMAGE, DISCRETE, num_envs=2)
    for _ in range(80):
        rb.add(*world.step())
    np.random.seed(3)
    a = rb.sample(32)
    state = np.random.get_state()
    b = rb.sample(32)
    np.random.set_state(state)
    c = rb.sample(32)
    np.random.seed(3)
    a2 = rb.sample(32)
    assert torch.equal(a.observations, a2.observations) and torch.equal(b.next_observations, c.next_observations)
    assert not torch.equal(a.observations, b.observations)


def _states_equal(a: ReplayBuffer, b: ReplayBuffer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
        else:
            assert sa[key] == sb[key], key


@pytest.mark.parametrize("memory_efficient", [True, False])
@pytest.mark.parametrize("steps", [30, 130])  # partly filled, wrapped around
def test_save_load_round_trip_is_exact(tmp_path: Path, memory_efficient: bool, steps: int) -> None:
    world = StackedEpisodes(2)
    rb = make_replay_buffer(100, IMAGE, DISCRETE, num_envs=2, memory_efficient=memory_efficient)
    for _ in range(steps):
        rb.add(*world.step())
    path = tmp_path / "rb.pt"
    torch.save(rb.state_dict(), path)
    restored = make_replay_buffer(100, IMAGE, DISCRETE, num_envs=2, memory_efficient=memory_efficient)
    restored.load_state_dict(torch.load(path, weights_only=False))
    _states_equal(rb, restored)
    assert len(restored) == len(rb)
    # both continue identically: same samples from the same RNG, same state after more adds
    follow = StackedEpisodes(2, seed=5)
    for _ in range(40):
        step = follow.step()
        rb.add(*step)
        restored.add(*step)
        np.random.seed(len(rb))
        x = rb.sample(16)
        np.random.seed(len(rb))
        y = restored.sample(16)
        assert all(torch.equal(u, v) for u, v in zip(x, y))
    _states_equal(rb, restored)


def test_state_dict_shares_memory_and_saves_only_filled_slots() -> None:
    rb = make_replay_buffer(1000, IMAGE, DISCRETE)
    world = StackedEpisodes(1)
    for _ in range(10):
        rb.add(*world.step())
    state = rb.state_dict()
    assert state["frames"].shape[0] == 10
    assert np.shares_memory(state["frames"].numpy(), rb.frames)
    plain = make_replay_buffer(1000, VECTOR, DISCRETE)
    plain.add(np.zeros((1, 3)), np.ones((1, 3)), [1], [1.0], [False], [False])
    assert plain.state_dict()["observations"].shape[0] == 1
    assert np.shares_memory(plain.state_dict()["observations"].numpy(), plain.observations)


def test_checkpoint_records_the_buffer_size(tmp_path: Path) -> None:
    """Through the real checkpoint code: resume_state names the buffer with its bytes; the file holds it."""
    rb = make_replay_buffer(5000, IMAGE, DISCRETE)
    world = StackedEpisodes(1)
    for _ in range(3000):
        rb.add(*world.step())
    payload, resume_state = ckpt.build_payload({"rb": rb, "global_step": 3000}, None, {"global_step": 3000})
    expected = 3000 * (6 * 6 + 8 + 4 + 1 + 8 + 2 + 8)  # frame, action, reward, termination, next_index, chain, chain_key
    assert resume_state["modules"]["rb"] >= expected
    size = ckpt.save_atomic(payload, tmp_path / "step_3000.pt")
    assert size >= expected
    restored = make_replay_buffer(5000, IMAGE, DISCRETE)
    ckpt.load_into(ckpt.load(tmp_path / "step_3000.pt"), {"rb": restored})
    _states_equal(rb, restored)


def test_without_contents_a_resume_starts_empty_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rb = make_replay_buffer(100, VECTOR, DISCRETE, save_contents=False)
    for _ in range(20):
        rb.add(np.zeros((1, 3)), np.ones((1, 3)), [1], [1.0], [False], [False])
    payload, resume_state = ckpt.build_payload({"rb": rb}, None, {"global_step": 20})
    assert resume_state["modules"]["rb"] == 0
    fresh = make_replay_buffer(100, VECTOR, DISCRETE)
    for _ in range(3):
        fresh.add(np.zeros((1, 3)), np.ones((1, 3)), [1], [1.0], [False], [False])
    fresh.load_state_dict(payload["rb"])
    assert len(fresh) == 0
    assert capsys.readouterr().out.count("holds no replay buffer") == 1


def test_loading_into_a_different_buffer_is_refused() -> None:
    rb = make_replay_buffer(100, VECTOR, DISCRETE)
    with pytest.raises(ValueError, match="capacity: saved 100, now 200"):
        make_replay_buffer(200, VECTOR, DISCRETE).load_state_dict(rb.state_dict())


def test_make_replay_buffer_picks_the_storage_from_the_spaces() -> None:
    flat_image = gym.spaces.Box(0, 255, (6, 6), np.uint8)
    assert type(make_replay_buffer(100, VECTOR, DISCRETE)) is ReplayBuffer
    assert type(make_replay_buffer(100, IMAGE, DISCRETE, memory_efficient=False)) is ReplayBuffer
    assert type(make_replay_buffer(100, flat_image, DISCRETE)) is ObservationStoreReplayBuffer
    assert type(make_replay_buffer(100, VECTOR, DISCRETE, memory_efficient=True)) is ObservationStoreReplayBuffer
    assert type(make_replay_buffer(8, IMAGE, DISCRETE, num_envs=2)) is ObservationStoreReplayBuffer  # 4 slots: no room to stack
    assert type(make_replay_buffer(100, IMAGE, DISCRETE, num_envs=2)) is FrameStackReplayBuffer
    with pytest.raises(ValueError, match="capacity >= num_envs >= 1"):
        make_replay_buffer(10, IMAGE, DISCRETE, num_envs=0)


FORMAT1 = Path(__file__).parent / "fixtures" / "replay_buffer_format1.pt"


@pytest.mark.parametrize("kind", ["plain", "store", "stack"])
def test_state_saved_by_the_single_class_buffer_loads_and_continues_exactly(kind: str) -> None:
    """tests/fixtures/replay_buffer_format1.pt was written by the one-class ReplayBuffer (see
    make_replay_buffer_format1.py next to it): its state dicts load into today's classes, which
    sample the same batches, and after the same adds hold a bit-identical state."""
    import hashlib

    fixture = torch.load(FORMAT1, weights_only=False)[kind]
    layout = fixture["layout"]
    space = gym.spaces.Box(0, 255, layout["shape"], np.dtype(layout["dtype"]))
    rb = make_replay_buffer(layout["capacity"], space, gym.spaces.Discrete(3), num_envs=layout["num_envs"],
                            memory_efficient=kind != "plain")
    rb.load_state_dict(fixture["state"])
    assert rb.memory_efficient == (kind != "plain") and rb.frame_stacked == (kind == "stack") and rb.full
    np.random.seed(7)
    assert all(torch.equal(u, v) for u, v in zip(rb.sample(16), fixture["sample_before"]))
    for step in zip(*fixture["more"]):
        rb.add(*step)
    np.random.seed(8)
    assert all(torch.equal(u, v) for u, v in zip(rb.sample(16), fixture["sample_after"]))
    state = rb.state_dict()
    # one key joined the format since: the add counter the replay store compares saves by
    assert [k for k in state if k != "adds"] == list(fixture["final_digest"])
    assert state["adds"] == len(fixture["more"][0])  # counted from the load of a state that had none
    for key, expected in fixture["final_digest"].items():
        value = state[key]
        got = hashlib.sha256(value.numpy().tobytes()).hexdigest() if isinstance(value, torch.Tensor) else value
        assert got == expected, key


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(buffer_size=64, batch_size=128), "--buffer-size 64 is smaller than --batch-size 128"),
        (dict(buffer_size=2, batch_size=1, num_envs=4), "--buffer-size 2 is smaller than --num-envs 4"),
        (dict(buffer_size=0, batch_size=1), "must be positive"),
        (dict(buffer_size=10**9, batch_size=32, observation_space=gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
              action_space=DISCRETE), "a replay buffer of 1,000,000,000 transitions needs 7087.0 GB but this machine has"),
    ],
)
def test_bad_buffer_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        check_replay_buffer(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)
