"""`axiomrl eval --record` and `axiomrl export --replay-buffer`: rollouts and replay buffers of real tiny
runs written as Minari datasets and parquet tables, read back, replayed in the env; every bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minari", reason="the data extra (minari) is not installed")
pytest.importorskip("h5py", reason="the data extra (h5py) is not installed")
pytest.importorskip("pyarrow", reason="the data extra (pyarrow) is not installed")

import minari  # noqa: E402
import pandas as pd  # noqa: E402

from axiomrl import dqn  # noqa: E402
from axiomrl_utils import UsageError  # noqa: E402
from axiomrl_utils import checkpoint as ckpt  # noqa: E402
from axiomrl_utils.commands.cli import main as axiomrl_main  # noqa: E402
from axiomrl_utils.commands.replay_dataset import buffer_from_state, chronological_slots  # noqa: E402
from axiomrl_utils.jsonl import read_jsonl  # noqa: E402

from conftest import REPO, only_run, script_env, tree_snapshot  # noqa: E402

TINY_DQN = dict(total_timesteps=500, learning_starts=200, buffer_size=300, batch_size=32, target_network_frequency=100,
                eval_every=0, checkpoint_every=0, progress=False)


@pytest.fixture
def ppo_run(tiny_ppo_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's tiny ppo.py CartPole run."""
    return Path(shutil.copytree(tiny_ppo_run, tmp_path / "runs" / tiny_ppo_run.name))


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dqn.py CartPole run whose 300-transition buffer wrapped around (500 steps), saved in latest.pt."""
    out = tmp_path_factory.mktemp("dqn")
    dqn.main(dqn.Args(output_dir=str(out), **TINY_DQN))
    return only_run(out)


def minari_episodes(target: Path) -> list:
    return list(minari.MinariDataset(target / "data").iterate_episodes())


def recorded_rows(run_dir: Path, target: Path) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "eval_episodes.jsonl") if r.get("dataset") == str(target)]


# --------------------------------------------------------------------------------------------
# eval --record


def test_record_cartpole_minari_and_parquet(ppo_run: Path, tmp_path: Path) -> None:
    """Through the real CLI: 3 episodes whose lengths and returns are the jsonl rows of the same
    recording, that replay in the env to the same rewards, and whose parquet rows are the Minari steps."""
    target = tmp_path / "datasets" / "cartpole-ppo"
    proc = subprocess.run(
        [sys.executable, "-m", "axiomrl_utils.commands.cli", "eval", str(ppo_run), "--record", str(target),
         "--episodes", "3", "--format", "both"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=script_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["data", "steps.parquet"]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no staging left behind

    dataset = minari.MinariDataset(target / "data")
    episodes = list(dataset.iterate_episodes())
    rows = recorded_rows(ppo_run, target)
    assert len(episodes) == len(rows) == 3 and dataset.total_steps == sum(r["length"] for r in rows)
    assert [len(e) for e in episodes] == [r["length"] for r in rows]
    assert [float(e.rewards.sum()) for e in episodes] == [r["return"] for r in rows]
    assert all(r["tag"] == "manual" and r["deterministic"] is True for r in rows)

    meta = dataset.storage.metadata["axiomrl"]
    run_meta = json.loads((ppo_run / "metadata.json").read_text())
    assert meta["run_id"] == run_meta["run_id"] and meta["env_id"] == "CartPole-v1"
    assert meta["checkpoint"] == "checkpoints/best.pt" and meta["global_step"] == rows[0]["global_step"]
    assert meta["episode_seeds"] == [r["seed"] for r in rows] == [100001, 100002, 100003]
    assert meta["axiomrl_version"] and meta["policy_outputs"] == ["log_prob", "value"]

    # the recorded observations and actions replay in the env, seeded the same, to the same rewards
    env = gym.make("CartPole-v1")
    for episode, row in zip(episodes, rows):
        obs, _ = env.reset(seed=row["seed"])
        np.testing.assert_array_equal(obs, episode.observations[0])
        for t, action in enumerate(episode.actions):
            obs, reward, terminated, truncated, _ = env.step(int(action))
            np.testing.assert_array_equal(obs, episode.observations[t + 1])
            assert reward == episode.rewards[t] and terminated == episode.terminations[t] and truncated == episode.truncations[t]
        assert terminated or truncated
        assert episode.infos["policy"]["log_prob"].shape == (len(episode),)
        assert np.all(episode.infos["policy"]["log_prob"] <= 0)

    # readback the way Minari finds datasets: by id under MINARI_DATASETS_PATH
    os.environ["MINARI_DATASETS_PATH"] = str(target.parent)
    try:
        assert minari.load_dataset(target.name).total_episodes == 3
    finally:
        del os.environ["MINARI_DATASETS_PATH"]

    table = pd.read_parquet(target / "steps.parquet")
    assert len(table) == dataset.total_steps
    assert table["episode"].tolist() == [i for i, e in enumerate(episodes) for _ in range(len(e))]
    assert table["step"].tolist() == [t for e in episodes for t in range(len(e))]
    steps = {
        "observation": np.concatenate([e.observations[:-1] for e in episodes]),
        "next_observation": np.concatenate([e.observations[1:] for e in episodes]),
        "action": np.concatenate([e.actions for e in episodes]),
        "reward": np.concatenate([e.rewards for e in episodes]),
        "terminated": np.concatenate([e.terminations for e in episodes]),
        "truncated": np.concatenate([e.truncations for e in episodes]),
        "log_prob": np.concatenate([e.infos["policy"]["log_prob"] for e in episodes]),
    }
    for column, expected in steps.items():
        got = np.stack(table[column].to_numpy()) if expected.ndim > 1 else table[column].to_numpy()
        np.testing.assert_array_equal(got, expected, err_msg=column)


def test_record_stochastic_samples_and_repeats_with_the_seed(ppo_run: Path, tmp_path: Path) -> None:
    """--stochastic samples from ppo.py's policy: log-probabilities below the greedy ones somewhere,
    the same dataset again with the same --seed."""
    for name in ("a", "b"):
        axiomrl_main(["eval", str(ppo_run), "--record", str(tmp_path / name), "--episodes", "2", "--stochastic", "--no-append"])
    first, second = minari_episodes(tmp_path / "a"), minari_episodes(tmp_path / "b")
    assert [len(e) for e in first] == [len(e) for e in second]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.actions, b.actions)
    meta = minari.MinariDataset(tmp_path / "a" / "data").storage.metadata["axiomrl"]
    assert meta["deterministic"] is False and meta["sampling_seed"] == 1
    log_probs = np.concatenate([e.infos["policy"]["log_prob"] for e in first])
    assert log_probs.min() < np.log(0.5)  # a nearly uniform tiny policy picks the less likely action sometimes
    assert not recorded_rows(ppo_run, tmp_path / "a")  # --no-append


def test_record_pong_keeps_uint8_frames(tmp_path: Path) -> None:
    """A tiny real ppo_atari.py Pong run, recorded through a script whose eval games stop at 60 steps."""
    pytest.importorskip("ale_py", reason="the atari extra (ale-py) is not installed")
    pytest.importorskip("cv2", reason="the atari extra (opencv) is not installed")
    from axiomrl import ppo_atari

    ppo_atari.main(ppo_atari.Args(env_id="ALE/Pong-v5", output_dir=str(tmp_path / "runs"), total_timesteps=32, num_envs=1,
                                  num_steps=32, num_minibatches=1, update_epochs=1, eval_every=0, checkpoint_every=32,
                                  progress=False))
    run_dir = only_run(tmp_path / "runs")
    script = tmp_path / "short_pong.py"
    script.write_text(
        "import gymnasium as gym\nfrom axiomrl import ppo_atari\nfrom axiomrl.ppo_atari import *  # noqa\n\n\n"
        "def make_env(args, idx, evaluation=False, render_mode=None):\n"
        "    return lambda: gym.wrappers.TimeLimit(ppo_atari.make_env(args, idx, evaluation, render_mode)(), max_episode_steps=60)\n"
    )
    target = tmp_path / "pong"
    axiomrl_main(["eval", str(run_dir), "--checkpoint", "latest", "--record", str(target), "--episodes", "1",
                  "--format", "both", "--script", str(script)])
    (episode,) = minari_episodes(target)
    assert episode.observations.dtype == np.uint8 and episode.observations.shape == (61, 4, 84, 84)
    assert episode.truncations[-1] and len(episode) == 60
    assert episode.infos["lives"].shape == (60,)  # Atari's numeric info fields are kept
    table = pd.read_parquet(target / "steps.parquet")
    frames = np.stack(table["observation"].to_numpy())
    assert frames.dtype == np.uint8
    np.testing.assert_array_equal(frames.reshape(-1, 4, 84, 84), episode.observations[:-1])


# --------------------------------------------------------------------------------------------
# export --replay-buffer


def test_replay_buffer_export_has_the_buffers_transitions(dqn_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "buffer"
    axiomrl_main(["export", str(dqn_run), "--replay-buffer", str(target)])
    dataset = minari.MinariDataset(target / "data")
    episodes = list(dataset.iterate_episodes())

    state = ckpt.load(dqn_run / "checkpoints" / "latest.pt")["rb"]
    rb = buffer_from_state(state)
    assert rb.full and dataset.total_steps == len(rb) == 300  # 500 steps in a 300-transition ring
    order = chronological_slots(rb)  # oldest first: the ring starts at pos
    np.testing.assert_array_equal(order, (state["pos"] + np.arange(300)) % 300)
    expected = {
        "observations": state["observations"].numpy()[order, 0],
        "next_observations": state["next_observations"].numpy()[order, 0],
        "actions": state["actions"].numpy()[order, 0],
        "rewards": state["rewards"].numpy()[order, 0],
        "terminations": state["terminations"].numpy()[order, 0],
    }
    got = {
        "observations": np.concatenate([e.observations[:-1] for e in episodes]),
        "next_observations": np.concatenate([e.observations[1:] for e in episodes]),
        "actions": np.concatenate([e.actions for e in episodes]),
        "rewards": np.concatenate([e.rewards for e in episodes]),
        "terminations": np.concatenate([e.terminations for e in episodes]),
    }
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    # within an episode each next observation is the following observation; every episode ends once
    for e in episodes:
        assert (e.terminations | e.truncations).sum() == 1 and (e.terminations[-1] or e.truncations[-1])
    meta = dataset.storage.metadata["axiomrl"]
    assert meta["kind"] == "replay_buffer" and meta["transitions"] == 300 and meta["checkpoint"] == "checkpoints/latest.pt"
    assert meta["episodes_missing_their_start"] == [0] and meta["episodes_cut_at_buffer_end"] == [len(episodes) - 1]
    assert "truncations are not" in meta["episode_boundaries"]


# --------------------------------------------------------------------------------------------
# bad input: one sentence, nothing written


def refused(argv: list[str], *fragments: str) -> str:
    with pytest.raises(UsageError) as info:
        axiomrl_main(argv)
    message = info.value.message
    assert info.value.code == f"error: {message}" and "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_bad_record_input_writes_nothing(ppo_run: Path, dqn_run: Path, tmp_path: Path) -> None:
    before = {run: tree_snapshot(run) for run in (ppo_run, dqn_run)}
    target = tmp_path / "ds"
    refused(["eval", str(ppo_run), "--record", str(target), "--checkpoint", "step_7"], "'step_7' does not exist", "pass one of")
    refused(["eval", str(dqn_run), "--record", str(target)], "'best' does not exist", "latest")  # dqn_run saved no best
    refused(["eval", str(ppo_run), "--record", str(target), "--episodes", "0"], "--episodes must be positive")
    refused(["eval", str(dqn_run), "--record", str(target), "--checkpoint", "latest", "--stochastic"],
            "--stochastic is not supported by dqn.py", "--deterministic")
    refused(["eval", str(ppo_run), "--stochastic"], "--stochastic applies to --record DIR only")
    refused(["eval", str(ppo_run), "--record", str(target), "--capture-video"], "do not go together")
    assert not target.exists()

    target.mkdir()
    (target / "keep.txt").write_text("mine")
    refused(["eval", str(ppo_run), "--record", str(target)], "already exists and is not empty", "never overwritten")
    refused(["export", str(dqn_run), "--replay-buffer", str(target)], "already exists and is not empty")
    assert [p.name for p in target.iterdir()] == ["keep.txt"] and (target / "keep.txt").read_text() == "mine"

    # a space Minari cannot store: the same policy in an env whose observations are a Sequence space
    script = tmp_path / "sequence_obs.py"
    script.write_text(
        "import gymnasium as gym\nfrom axiomrl.ppo import *  # noqa\n\n\n"
        "class SequenceObs(gym.ObservationWrapper):\n"
        "    def __init__(self, env):\n"
        "        super().__init__(env)\n"
        "        self.observation_space = gym.spaces.Sequence(gym.spaces.Discrete(3))\n\n"
        "    def observation(self, obs):\n"
        "        return (1, 2)\n\n\n"
        "def make_env(args, idx, evaluation=False, render_mode=None):\n"
        "    return lambda: SequenceObs(gym.make(args.env_id))\n"
    )
    refused(["eval", str(ppo_run), "--record", str(tmp_path / "seq"), "--script", str(script)],
            "cannot be written", "cannot store a Sequence space")
    assert not (tmp_path / "seq").exists()

    refused(["export", str(ppo_run), "--replay-buffer", str(tmp_path / "rb")], "holds no replay buffer")
    refused(["export", str(ppo_run)], "pass --format torchscript or --format onnx")
    assert not (tmp_path / "rb").exists()
    assert {run: tree_snapshot(run) for run in (ppo_run, dqn_run)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "runs", "sequence_obs.py"]


def test_buffer_saved_without_contents_is_refused(tmp_path: Path) -> None:
    dqn.main(dqn.Args(output_dir=str(tmp_path / "runs"), **{**TINY_DQN, "total_timesteps": 220, "save_buffer": False}))
    run_dir = only_run(tmp_path / "runs")
    refused(["export", str(run_dir), "--replay-buffer", str(tmp_path / "rb")], "--no-save-buffer")
    assert not (tmp_path / "rb").exists()


def test_missing_data_extra_is_one_sentence(ppo_run: Path, tmp_path: Path) -> None:
    """With minari and pyarrow not found (find_spec says so in a fresh interpreter), one sentence names the extra."""
    probe = (
        "import importlib.util, sys\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a, **k: None if name.split('.')[0] in ('minari', 'pyarrow') else _find(name, *a, **k)\n"
        "from axiomrl_utils.commands.cli import main\n"
        f"sys.exit(main(['eval', {str(ppo_run)!r}, '--record', {str(tmp_path / 'ds')!r}, '--format', 'both']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO, env=script_env())
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: writing a both dataset needs minari, pyarrow; install them with `pip install 'axiomrl[data]'`"
    ]
    assert not (tmp_path / "ds").exists()


# d3rlpy cannot be an extra (it pins an older gymnasium); CI installs it apart, with --no-deps into
# a directory of its own (.ci/run), and names that directory here.
D3RLPY_PATH = os.environ.get("AXIOMRL_D3RLPY_PATH", "")


def test_d3rlpy_builds_its_dataset(ppo_run: Path, tmp_path: Path) -> None:
    """The docs' d3rlpy snippet: an MDPDataset from the recorded Minari episodes."""
    env = {**script_env(), "PYTHONPATH": os.pathsep.join(p for p in (D3RLPY_PATH, str(REPO)) if p)}
    probe = subprocess.run([sys.executable, "-c", "import d3rlpy"], capture_output=True, text=True, env=env, timeout=120)
    if probe.returncode != 0 and D3RLPY_PATH:  # the variable says it was installed there (CI): a failure, not a skip
        pytest.fail(f"d3rlpy does not import from AXIOMRL_D3RLPY_PATH={D3RLPY_PATH}: {probe.stderr.strip()[-500:]}")
    if probe.returncode != 0:
        pytest.skip("d3rlpy is not importable (not an extra: it pins an older gymnasium; .ci/run installs it apart)")
    axiomrl_main(["eval", str(ppo_run), "--record", str(tmp_path / "ds"), "--episodes", "2", "--no-append"])
    episodes = minari_episodes(tmp_path / "ds")
    snippet = f"""
import numpy as np, d3rlpy
from minari import MinariDataset
episodes = list(MinariDataset({str(tmp_path / "ds" / "data")!r}).iterate_episodes())
dataset = d3rlpy.dataset.MDPDataset(
    observations=np.concatenate([e.observations[:-1] for e in episodes]),
    actions=np.concatenate([e.actions for e in episodes]),
    rewards=np.concatenate([e.rewards for e in episodes]),
    terminals=np.concatenate([e.terminations for e in episodes]),
    timeouts=np.concatenate([e.truncations for e in episodes]),
)
print(len(dataset.episodes), [int(e.rewards.sum()) for e in dataset.episodes])
"""
    proc = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, sums = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) == 2
    assert json.loads(sums) == [int(e.rewards.sum()) for e in episodes]
