"""ppo_atari.py, dqn_atari.py and the Atari preprocessing, on real ALE ROMs (the `atari` extra)."""

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

pytest.importorskip("ale_py", reason="the atari extra (ale-py) is not installed")
pytest.importorskip("cv2", reason="the atari extra (opencv) is not installed")

from axiomrl import dqn_atari, ppo_atari  # noqa: E402
from axiomrl_utils import UsageError  # noqa: E402
from axiomrl_utils import checkpoint as ckpt  # noqa: E402
from axiomrl_utils.args import parse_args  # noqa: E402
from axiomrl_utils.atari import EpisodicLifeEnv, FireOnLifeLossEnv, FireResetEnv, make_atari_env  # noqa: E402
from axiomrl_utils.jsonl import read_jsonl  # noqa: E402

from conftest import REPO, only_run, run_script  # noqa: E402

FRAME = 4 * 84 * 84


def wrappers(env: gym.Env) -> list[type]:
    found = []
    while isinstance(env, gym.Wrapper):
        found.append(type(env))
        env = env.env
    return found


def test_training_envs_end_at_each_lost_life_and_log_whole_games() -> None:
    """Breakout has 5 lives: a training env terminates 5 times per game, while the per-env
    statistics report one episode per game (its real score); rewards are clipped to their sign."""
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_atari_env("ALE/Breakout-v5") for _ in range(2)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    obs, _ = envs.reset(seed=3)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    terminations_since_game = np.zeros(2, dtype=int)
    games, rng = 0, np.random.default_rng(0)
    for _ in range(4000):
        obs, rewards, terminations, truncations, infos = envs.step(rng.integers(0, 4, 2))
        assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
        terminations_since_game += terminations
        final = infos.get("final_info", {})
        for i in np.flatnonzero(final.get("_episode", [])):
            assert terminations_since_game[i] == 5  # four lost lives, then game over
            assert final["episode"]["r"][i] >= 0 and final["episode"]["l"][i] > 5
            terminations_since_game[i] = 0
            games += 1
        if games >= 3:
            break
    assert games >= 3
    envs.close()


def test_evaluation_envs_play_whole_games_with_real_rewards() -> None:
    train, evaluation = make_atari_env("ALE/Breakout-v5"), make_atari_env("ALE/Breakout-v5", evaluation=True)
    assert EpisodicLifeEnv in wrappers(train) and gym.wrappers.TransformReward in wrappers(train)
    assert EpisodicLifeEnv not in wrappers(evaluation) and gym.wrappers.TransformReward not in wrappers(evaluation)
    assert FireResetEnv in wrappers(evaluation) and gym.wrappers.FrameStackObservation in wrappers(evaluation)
    assert FireOnLifeLossEnv in wrappers(evaluation) and FireOnLifeLossEnv not in wrappers(train)
    assert evaluation.observation_space == train.observation_space
    evaluation.reset(seed=1)
    rng = np.random.default_rng(1)
    for _ in range(20000):
        _, _, terminated, truncated, _ = evaluation.step(int(rng.integers(0, 4)))
        if terminated or truncated:
            break
    assert terminated and evaluation.unwrapped.ale.lives() == 0  # the game ended, not a life
    # v5 ids run at frameskip 1 under AtariPreprocessing (which skips 4); v4 NoFrameskip ids too
    assert evaluation.unwrapped._frameskip == 1
    assert make_atari_env("PongNoFrameskip-v4").unwrapped._frameskip == 1


def test_an_evaluation_game_goes_on_after_a_lost_life_without_the_policy_pressing_fire() -> None:
    """A training env presses FIRE at the start of every life (the learner's episode restarts there),
    so a policy need never learn to; evaluation plays whole games and must do the same, or a greedy
    Breakout agent waits for the ball until the game's time limit (27 000 agent steps)."""
    evaluation = make_atari_env("ALE/Breakout-v5", evaluation=True)
    evaluation.reset(seed=2)
    lives_seen = []
    for step in range(5000):
        _, _, terminated, truncated, _ = evaluation.step(0)  # NOOP only: never FIRE
        lives_seen.append(evaluation.unwrapped.ale.lives())
        if terminated or truncated:
            break
    assert terminated and not truncated and evaluation.unwrapped.ale.lives() == 0
    assert set(lives_seen) == {5, 4, 3, 2, 1, 0} and step < 5000  # every life played: without the wrapper,
    # the ball of the second life never comes and this loop runs out waiting


def test_ppo_atari_smoke_on_pong(tmp_path: Path) -> None:
    ppo_atari.main(ppo_atari.Args(env_id="ALE/Pong-v5", output_dir=str(tmp_path), total_timesteps=256, num_envs=2,
                                  num_steps=64, eval_every=256, eval_episodes=1, checkpoint_every=128, progress=False))
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 256 and meta["env_id"] == "ALE/Pong-v5"
    assert run_dir.name.startswith("ppo_atari__ALE-Pong-v5__seed1__")
    assert [row["global_step"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [128, 256]
    evals = read_jsonl(run_dir / "eval_episodes.jsonl")
    assert len(evals) == 1 and -21 <= evals[0]["return"] <= 21 and evals[0]["length"] > 100  # a whole game
    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    assert [row["step"] for row in index] == [128, 256]
    assert index[-1]["resume_state"]["envs"] is True  # the games in progress, emulator state included
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    envs = gym.vector.SyncVectorEnv([ppo_atari.make_env(ppo_atari.Args(env_id="ALE/Pong-v5"), 0, evaluation=True)])
    policy = ppo_atari.load_policy(ppo_atari.Args(env_id="ALE/Pong-v5"), payload, envs)
    obs, _ = envs.reset(seed=0)
    assert policy(torch.as_tensor(obs, dtype=torch.float32)).shape == (1,)


def test_dqn_atari_smoke_and_resume_on_pong(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A tiny real run paused at 200 and resumed to 400: the buffer (uint8, each frame stack stored
    once) and the game in progress come back (tests/test_env_resume.py checks it is exact)."""
    args = dqn_atari.Args(env_id="ALE/Pong-v5", output_dir=str(tmp_path), total_timesteps=400, buffer_size=300,
                          learning_starts=100, batch_size=16, target_network_frequency=50, eval_every=400,
                          eval_episodes=1, checkpoint_every=200, pause_at_step=200, progress=False)
    dqn_atari.main(args)
    run_dir = only_run(tmp_path)
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "interrupted"
    capsys.readouterr()
    dqn_atari.main(parse_args(dqn_atari.Args, dqn_atari.__file__, ["--resume", str(run_dir), "--pause-at-step", "None"]))
    assert "they restart from a reset" not in capsys.readouterr().out
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 400 and meta["resumes"][0]["envs_restored"] is True
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [row["global_step"] for row in metrics] == [100, 200, 300, 400]
    assert "losses/td_loss" in metrics[-1] and "eval/return_mean" in metrics[-1]
    index = read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")
    # the buffer keeps one 84x84 frame per transition (plus a few whole stacks at episode and
    # session boundaries), not a 4x84x84 observation and its next one
    rb_bytes = [row["resume_state"]["modules"]["rb"] for row in index]
    assert 200 * FRAME / 4 < rb_bytes[0] < 0.35 * 200 * FRAME
    assert 300 * FRAME / 4 < rb_bytes[1] < 0.35 * 300 * FRAME
    rb = ckpt.load(run_dir / "checkpoints" / "latest.pt")["rb"]
    assert rb["frames"].dtype == torch.uint8 and rb["frames"].shape == (300, 1, 84, 84)
    assert "observations" not in rb and "next_observations" not in rb


@pytest.mark.parametrize(
    "module, overrides, message",
    [
        (ppo_atari, {"env_id": "CartPole-v1"}, "ppo_atari.py trains on Atari games but CartPole-v1 is not one"),
        (dqn_atari, {"env_id": "Acrobot-v1"}, "dqn_atari.py trains on Atari games but Acrobot-v1 is not one"),
        (dqn_atari, {"env_id": "ALE/Pong-v5", "buffer_size": 16, "batch_size": 32}, "--buffer-size 16 is smaller than --batch-size 32"),
        (dqn_atari, {"env_id": "ALE/Pong-v5", "buffer_size": 10**8}, "needs 708.7 GB but this machine has"),
    ],
)
def test_bad_input(tmp_path: Path, module, overrides: dict, message: str) -> None:
    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        module.main(module.Args(output_dir=str(out), progress=False, **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "blocked, message",
    [
        ("ale_py", "error: Atari environments need ale-py; install it with `pip install 'axiomrl[atari]'`"),
        ("cv2", "error: Atari preprocessing needs OpenCV; install it with `pip install 'axiomrl[atari]'`"),
    ],
)
@pytest.mark.parametrize("script", ["ppo_atari.py", "dqn_atari.py"])
def test_missing_extra_names_it(tmp_path: Path, blocked: str, message: str, script: str) -> None:
    """Without the extra (the module made unimportable, as when it is not installed): one line, exit 1."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(f"import sys\nsys.modules[{blocked!r}] = None\n")
    env = {**subprocess.os.environ, "PYTHONPATH": f"{tmp_path / 'site'}:{REPO}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "axiomrl" / script), "--env-id", "ALE/Pong-v5", "--output-dir",
                           str(tmp_path / "runs")], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("module", [ppo_atari, dqn_atari])
def test_help_documents_every_field(module) -> None:
    proc = run_script(Path(module.__file__).name, "--help")
    assert proc.returncode == 0
    for field in dataclasses.fields(module.Args):
        assert "--" + field.name.replace("_", "-") in proc.stdout, field.name
