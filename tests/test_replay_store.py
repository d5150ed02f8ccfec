"""The replay store: a run's replay buffer kept once on disk beside its checkpoints and written
incrementally. Checked against a straight `state_dict()` across wrap-around for every storage,
under kill -9 at random instants during saves, and on real dqn.py runs (disk use, save cost,
exact resume, an older best.pt that says its buffer is gone)."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl import dqn
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils import replay_store
from axiomrl_utils.jsonl import read_jsonl
from axiomrl_utils.replay_buffer import PrioritizedReplayBuffer, make_replay_buffer
from axiomrl_utils.replay_store import ReplayStore, resolve_state
from axiomrl_utils.run.checkpoints import CheckpointStore

from conftest import REPO, only_run, script_env

FRAMES = gym.spaces.Box(0, 255, (4, 6, 6), np.uint8)
IMAGE = gym.spaces.Box(0, 255, (6, 6), np.uint8)
VECTOR = gym.spaces.Box(-1, 1, (3,), np.float32)
KINDS = ["plain", "image", "frames", "prioritized_frames"]


def _buffer(kind: str, capacity: int = 256, num_envs: int = 2):
    space = {"plain": VECTOR, "image": IMAGE}.get(kind, FRAMES)
    rb = make_replay_buffer(capacity, space, gym.spaces.Discrete(3), num_envs=num_envs)
    return (PrioritizedReplayBuffer(rb, alpha=0.6, n_step=3) if kind.startswith("prioritized") else rb), space


def _steps(space: gym.Space, num_envs: int, count: int, seed: int):
    """`count` vector-env steps with episode ends; frame stacks shift by one frame per step, as Atari's do."""
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 255, (num_envs,) + space.shape).astype(space.dtype)
    for _ in range(count):
        nxt = rng.integers(0, 255, obs.shape).astype(space.dtype)
        if len(space.shape) == 3:
            nxt[:, :-1] = obs[:, 1:]
        term, trunc = rng.random(num_envs) < 0.08, rng.random(num_envs) < 0.04
        yield obs, nxt, rng.integers(0, 3, num_envs), rng.random(num_envs).astype(np.float32), term, trunc
        obs = nxt.copy()
        ended = term | trunc
        obs[ended] = rng.integers(0, 255, (int(ended.sum()),) + space.shape).astype(space.dtype)


def _assert_state_equal(resolved: dict, expected: dict) -> None:
    assert set(resolved) == set(expected)
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert resolved[key].dtype == value.dtype and torch.equal(resolved[key], value), key
        else:
            assert resolved[key] == value, key


@pytest.mark.parametrize("kind", KINDS)
def test_incremental_saves_equal_a_straight_save_across_wrap_around(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_store, "CHUNK_BYTES", 200)  # chunks of a few rows: the ring wraps over many
    rb, space = _buffer(kind)
    store, rng = ReplayStore(tmp_path / "replay"), random.Random(0)
    next_save, saves, small_saves = rng.randint(1, 16), 0, 0
    for i, step in enumerate(_steps(space, 2, 400, seed=1), start=1):  # 128 slots per env: about 3 wraps
        rb.add(*step)
        if kind.startswith("prioritized") and i % 3 == 0:
            data = rb.sample(8, beta=0.4)
            rb.update_priorities(data.indices, np.random.default_rng(i).random(8))
        if i < next_save:
            continue
        manifest, stats = store.stage("rb", rb)
        store.adopt("rb", manifest)
        store.collect([manifest])
        _assert_state_equal(resolve_state(manifest, tmp_path), rb.state_dict())
        saves += 1
        if saves > 1 and i - previous <= 3 and len(rb) == 256:  # full: the ring's rows are all there
            small_saves += 1  # a few adds since the last save: only their chunks (and changed whole arrays) are new
            ring_bytes = sum(a.nbytes for k, a in rb.state_dict().items() if k in rb.ring_array_names())
            assert stats["bytes_written"] <= stats["bytes"] - ring_bytes + 0.25 * ring_bytes, stats
        previous, next_save = i, i + rng.randint(1, 16)
    assert saves > 30 and small_saves > 3
    manifest, _ = store.stage("rb", rb)  # the adds after the last periodic save too
    store.adopt("rb", manifest)
    store.collect([manifest])
    # the files on disk are exactly the last manifest's: one buffer
    named = {c[0] for a in manifest["arrays"].values() for c in a["chunks"]}
    assert {p.name for p in (tmp_path / "replay" / "rb").iterdir()} == named
    # and a buffer loaded from the store continues exactly as the original
    restored, _ = _buffer(kind)
    restored.load_state_dict(resolve_state(manifest, tmp_path))
    np.random.seed(3)
    a = rb.sample(16, beta=0.5) if kind.startswith("prioritized") else rb.sample(16)
    np.random.seed(3)
    b = restored.sample(16, beta=0.5) if kind.startswith("prioritized") else restored.sample(16)
    assert all(torch.equal(x, y) for x, y in zip(a[:7], b[:7]))


def test_a_missing_chunk_says_the_buffer_is_gone(tmp_path: Path) -> None:
    rb, space = _buffer("plain")
    for step in _steps(space, 2, 10, seed=2):
        rb.add(*step)
    store = ReplayStore(tmp_path / "replay")
    manifest, _ = store.stage("rb", rb)
    next(iter((tmp_path / "replay" / "rb").iterdir())).unlink()
    state = resolve_state(manifest, tmp_path, "checkpoints/best.pt")
    assert state["contents_saved"] is False and "checkpoints/best.pt" in state["contents_missing"]
    fresh, _ = _buffer("plain")
    fresh.load_state_dict(state)  # loads as an empty buffer, saying why
    assert len(fresh) == 0


WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np, gymnasium as gym
    from axiomrl_utils import checkpoint as ckpt, replay_store
    from axiomrl_utils.replay_buffer import make_replay_buffer
    from axiomrl_utils.replay_store import ReplayStore
    from axiomrl_utils.run.checkpoints import CheckpointStore

    replay_store.CHUNK_BYTES = 64
    root = Path(sys.argv[1])
    rb = make_replay_buffer(40, gym.spaces.Box(-1e9, 1e9, (3,), np.float32), gym.spaces.Discrete(5))
    store = ReplayStore(root / "replay")
    checkpoints = CheckpointStore(root, keep=2, replay=store)
    if (root / "latest.pt").exists():
        payload = ckpt.load(root / "latest.pt")
        rb.load_state_dict(payload["rb"])
        store.adopt("rb", payload[ckpt.RESERVED][replay_store.MANIFEST_KEY]["rb"])
    print("ready", rb.adds, flush=True)
    while True:
        i = rb.adds
        rb.add(np.full((1, 3), i, np.float32), np.full((1, 3), i + 1, np.float32), [i % 5], [i * 0.5], [i % 7 == 0], [False])
        if rb.adds % 3 == 0:
            manifest, stats = store.stage("rb", rb)
            payload = {"rb": manifest, ckpt.RESERVED: {"global_step": rb.adds}}
            checkpoints.write(rb.adds, payload, {"modules": {}}, False, {})
    """
)


def _expected_state(adds: int) -> dict:
    rb = make_replay_buffer(40, gym.spaces.Box(-1e9, 1e9, (3,), np.float32), gym.spaces.Discrete(5))
    for i in range(adds):
        rb.add(np.full((1, 3), i, np.float32), np.full((1, 3), i + 1, np.float32), [i % 5], [i * 0.5], [i % 7 == 0], [False])
    return rb.state_dict()


def test_kill_9_at_random_instants_during_saves_leaves_the_last_committed_buffer(tmp_path: Path) -> None:
    """A worker saves its buffer every 3 adds; it is killed at random instants and restarted from
    latest.pt each time. After every kill, latest.pt and the chunks it names are a consistent
    buffer: exactly the one built by that many adds."""
    rng, seen = random.Random(4), []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=script_env(), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().startswith("ready"), proc.stderr.read()
        deadline = time.monotonic() + 60
        while not (tmp_path / "latest.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.communicate()
        path, payload = ckpt.load_newest(tmp_path)
        state = payload["rb"]
        assert state["contents_saved"] and not state.get("contents_missing"), state
        seen.append(state["adds"])
        _assert_state_equal(state, _expected_state(state["adds"]))
    assert seen == sorted(seen) and seen[-1] > seen[0]  # each restart went on from where the last stopped
    index = read_jsonl(tmp_path / "checkpoints.jsonl")
    assert [row["step"] for row in index] == sorted({row["step"] for row in index})  # no save logged twice


TINY = dict(
    total_timesteps=2400, learning_starts=200, buffer_size=1500, batch_size=32, target_network_frequency=100,
    eval_every=0, checkpoint_every=150, keep_checkpoints=3, progress=False,
)


def _replay_bytes(run_dir: Path) -> int:
    """The array bytes the chunk files hold (a .npy header is 128 bytes: much of a test-sized chunk)."""
    return sum(np.load(p, mmap_mode="r").nbytes for p in (run_dir / "checkpoints" / "replay").rglob("*.npy"))


def test_a_dqn_run_keeps_about_one_buffer_and_saves_only_new_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_store, "CHUNK_BYTES", 512)  # a 1 500-transition CartPole buffer in ~50 chunks per array
    dqn.main(dqn.Args(output_dir=str(tmp_path), **TINY))
    run_dir = only_run(tmp_path)
    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    saves = [row["resume_state"]["replay_store"]["rb"] for row in index]
    full = saves[-1]["bytes"]
    assert len(saves) == 16 and full == 1500 * (4 * 4 * 2 + 8 + 4 + 1)
    # once the buffer is full, a save writes the 150 new transitions' chunks, not the 1 500
    assert all(s["bytes_written"] < 0.3 * full for s in saves[-5:]), saves[-5:]
    # on disk: the newest buffer plus the rows the 2 older kept step files still name
    assert full <= _replay_bytes(run_dir) <= 1.4 * full
    assert sum(s["bytes_written"] for s in saves) < 0.4 * len(saves) * full
    # a step file holds the buffer's manifest, not the buffer
    raw = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["rb"]
    assert replay_store.is_manifest(raw) and len(pickle.dumps(raw)) < 0.2 * full


def test_dqn_resume_from_the_store_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_store, "CHUNK_BYTES", 512)
    dqn.main(dqn.Args(output_dir=str(tmp_path / "straight"), **TINY))
    dqn.main(dqn.Args(output_dir=str(tmp_path / "split"), pause_at_step=1300, **TINY))
    split = only_run(tmp_path / "split")
    dqn.main(dqn.Args(output_dir=str(tmp_path / "split"), resume=str(split), **TINY))
    straight = only_run(tmp_path / "straight")
    a, b = ckpt.load(straight / "checkpoints" / "latest.pt"), ckpt.load(split / "checkpoints" / "latest.pt")
    for key in ("q_network", "target_network"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    _assert_state_equal(a["rb"], b["rb"])
    assert read_jsonl(straight / "metrics.jsonl")[-1]["losses/td_loss"] == read_jsonl(split / "metrics.jsonl")[-1]["losses/td_loss"]


def test_an_older_best_checkpoint_evaluates_but_says_its_buffer_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_store, "CHUNK_BYTES", 512)
    # epsilon only decays: best.pt stays the first checkpoint while the buffer moves on
    dqn.main(dqn.Args(output_dir=str(tmp_path), **{**TINY, "best_metric": "charts/epsilon", "best_mode": "max"}))
    run_dir = only_run(tmp_path)
    best_step = ckpt.load(run_dir / "checkpoints" / "best.pt", replay=False)[ckpt.RESERVED]["global_step"]
    assert best_step < ckpt.step_files(run_dir / "checkpoints")[0][0]  # older than every kept step file
    done = subprocess.run([sys.executable, "-m", "axiomrl_utils.commands", "eval", str(run_dir), "--checkpoint", "best",
                           "--episodes", "2"], capture_output=True, text=True, env=script_env(), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "buffer"
    done = subprocess.run([sys.executable, "-m", "axiomrl_utils.commands", "export", str(run_dir), "--checkpoint", "best",
                           "--replay-buffer", str(out)], capture_output=True, text=True, env=script_env(), cwd=REPO, timeout=300)
    assert done.returncode == 1 and not out.exists()
    assert "the replay buffer of checkpoints/best.pt was replaced by later saves" in done.stderr
    assert "--checkpoint latest" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "axiomrl_utils.commands", "export", str(run_dir), "--replay-buffer", str(out)],
                          capture_output=True, text=True, env=script_env(), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    import minari

    latest = ckpt.load(run_dir / "checkpoints" / "latest.pt")["rb"]
    assert minari.MinariDataset(out / "data").total_steps == latest["pos"] if not latest["full"] else 1500


def test_a_latest_pack_carries_latest_buffer_and_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from axiomrl_utils.commands.pack import pack, pack_files, unpack

    monkeypatch.setattr(replay_store, "CHUNK_BYTES", 512)
    dqn.main(dqn.Args(output_dir=str(tmp_path / "runs"), pause_at_step=1300, **TINY))
    run_dir = only_run(tmp_path / "runs")
    latest = ckpt.load(run_dir / "checkpoints" / "latest.pt", replay=False)["rb"]
    named = {Path("checkpoints", latest["directory"], c[0]) for a in latest["arrays"].values() for c in a["chunks"]}
    on_disk = {p.relative_to(run_dir) for p in (run_dir / "checkpoints" / "replay").rglob("*.npy")}
    assert named < on_disk  # the older kept step files name rows latest.pt no longer holds
    files, _ = pack_files(run_dir, "latest")
    assert {f for f in files if f.suffix == ".npy"} == named
    files, _ = pack_files(run_dir, "all")
    assert {f for f in files if f.suffix == ".npy"} == on_disk
    unpacked = unpack(pack(run_dir, "latest", tmp_path / "run.zip").path, tmp_path / "elsewhere")
    dqn.main(dqn.Args(output_dir=str(tmp_path / "elsewhere"), resume=str(unpacked), **TINY))
    dqn.main(dqn.Args(output_dir=str(tmp_path / "straight"), **TINY))
    a = ckpt.load(only_run(tmp_path / "straight") / "checkpoints" / "latest.pt")
    b = ckpt.load(unpacked / "checkpoints" / "latest.pt")
    assert all(torch.equal(a["q_network"][k], b["q_network"][k]) for k in a["q_network"])
    _assert_state_equal(a["rb"], b["rb"])


def test_a_failed_checkpoint_write_gives_back_its_chunks_and_keeps_the_last_save(tmp_path: Path) -> None:
    rb, space = _buffer("plain")
    steps = _steps(space, 2, 40, seed=5)
    store = ReplayStore(tmp_path / "replay")
    checkpoints = CheckpointStore(tmp_path, keep=2, replay=store)
    for _ in range(20):
        rb.add(*next(steps))
    manifest, _ = store.stage("rb", rb)
    checkpoints.write(20, {"rb": manifest, ckpt.RESERVED: {"global_step": 20}}, {"modules": {}}, False, {})
    before = sorted(p.name for p in (tmp_path / "replay" / "rb").iterdir())
    for _ in range(20):
        rb.add(*next(steps))
    manifest, stats = store.stage("rb", rb)
    assert stats["chunks_written"] > 0
    with pytest.raises(Exception):  # what a full disk does to torch.save: the step file is never written
        checkpoints.write(40, {"rb": manifest, ckpt.RESERVED: {"global_step": 40}, "x": lambda: 0}, {"modules": {}}, False, {})
    assert sorted(p.name for p in (tmp_path / "replay" / "rb").iterdir()) == before
    path, payload = ckpt.load_newest(tmp_path)
    assert path.name == "latest.pt" and payload["rb"]["adds"] == 20 and payload["rb"]["contents_saved"]
