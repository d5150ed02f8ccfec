"""The run-directory contract (docs/run-directory.md), checked on real ppo.py runs."""

from __future__ import annotations

import dataclasses
import filecmp
import importlib.metadata
import json
import os
import pickle
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from axiomrl import ppo
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import load_args
from axiomrl_utils.evaluation import make_eval_envs
from axiomrl_utils.jsonl import read_jsonl
from axiomrl_utils.provenance import git_state
from axiomrl_utils.rundir import create_run_dir, sanitize_env_id

from conftest import TINY_PPO, logged_eval_returns, only_run, reevaluate, run_dirs, run_script, strip_wall_clock, tiny_ppo_args

METADATA_TYPES = {
    "schema_version": int,
    "algo": str,
    "env_id": str,
    "seed": int,
    "run_id": str,
    "output_dir": str,
    "script": str,
    "created_at_utc": str,
    "command": list,
    "system": dict,
    "versions": dict,
    "git": (dict, type(None)),
    "benchmark": dict,
    "status": str,
    "error": (str, type(None)),
    "stop_reason": (str, type(None)),
    "pid": int,
    "hostname": str,
    "total_timesteps": int,
    "total_steps": int,
    "total_episodes": int,
    "wall_time_s": float,
    "last_updated_utc": str,
    "latest_checkpoint_path": (str, type(None)),
    "latest_metrics": dict,
    "best_checkpoint": (dict, type(None)),
    "summary": dict,
    "resumes": list,
    "wandb": (dict, type(None)),
}
TB_TAGS = {
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
    "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl",
    "losses/old_approx_kl", "losses/clipfrac", "losses/explained_variance", "eval/return_mean",
}


def test_layout(tiny_ppo_run: Path) -> None:
    assert tiny_ppo_run.name.startswith("ppo__CartPole-v1__seed1__")
    for name in ("metadata.json", "config.yaml", "metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl"):
        assert (tiny_ppo_run / name).is_file(), name
    for name in ("latest.pt", "best.pt", "checkpoints.jsonl"):
        assert (tiny_ppo_run / "checkpoints" / name).is_file(), name
    assert any((tiny_ppo_run / "tensorboard").glob("events.out.tfevents.*"))


def test_metadata_fields_and_types(tiny_ppo_run: Path) -> None:
    meta = json.loads((tiny_ppo_run / "metadata.json").read_text())
    for key, kind in METADATA_TYPES.items():
        assert key in meta, key
        assert isinstance(meta[key], kind), (key, meta[key])
    assert meta["status"] == "finished" and meta["error"] is None
    assert meta["output_dir"] == str(tiny_ppo_run.resolve()) and os.path.isabs(meta["output_dir"])
    assert meta["run_id"] == tiny_ppo_run.name
    assert meta["total_steps"] == 1280 and meta["total_timesteps"] == 1280
    assert meta["total_episodes"] == len(read_jsonl(tiny_ppo_run / "train_episodes.jsonl")) > 0
    assert {"python_version", "platform", "cpu_count", "hostname", "gpu"} <= set(meta["system"])
    assert {"axiomrl", "torch", "gymnasium", "numpy", "tyro"} <= set(meta["versions"])
    for name, version in meta["versions"].items():  # read from METADATA's Version line: what importlib reports
        assert version == importlib.metadata.version(name), name
    assert set(meta["benchmark"]) >= {"best_metric", "best_mode", "eval_every", "eval_episodes", "checkpoint_every", "keep_checkpoints"}
    assert meta["latest_checkpoint_path"] == "checkpoints/latest.pt"
    best = meta["best_checkpoint"]
    assert set(best) >= {"path", "step", "metric", "value"} and best["metric"] == "eval/return_mean"
    summary = meta["summary"]
    returns = [row["return"] for row in read_jsonl(tiny_ppo_run / "train_episodes.jsonl")][-100:]
    assert summary["train_return_last100"] == pytest.approx(np.mean(returns))
    assert summary["eval_return_best"] == pytest.approx(best["value"])


def test_config_round_trips_into_args(tiny_ppo_run: Path) -> None:
    args = load_args(ppo.Args, tiny_ppo_run)
    assert args == tiny_ppo_args(Path(args.output_dir))
    # config.yaml is JSON, which is also YAML
    assert json.loads((tiny_ppo_run / "config.yaml").read_text())["num_steps"] == TINY_PPO["num_steps"]


def test_pruning_keeps_exactly_n_step_files(tiny_ppo_run: Path) -> None:
    steps = [step for step, _ in ckpt.step_files(tiny_ppo_run / "checkpoints")]
    index = read_jsonl(tiny_ppo_run / "checkpoints" / "checkpoints.jsonl")
    saved = [row["step"] for row in index]
    assert saved == [256, 512, 768, 1024, 1280]  # every 256 steps; strictly increasing
    assert steps == saved[-2:]  # keep_checkpoints=2
    assert all(row["resume_state"]["envs"] for row in index)
    assert filecmp.cmp(tiny_ppo_run / "checkpoints" / "latest.pt", tiny_ppo_run / "checkpoints" / "step_1280.pt", shallow=False)


def test_best_is_the_checkpoint_metadata_names(tiny_ppo_run: Path) -> None:
    meta = json.loads((tiny_ppo_run / "metadata.json").read_text())
    best = meta["best_checkpoint"]
    payload = ckpt.load(tiny_ppo_run / best["path"])
    assert payload["_axiomrl"]["global_step"] == best["step"]
    source = tiny_ppo_run / best["source"]
    if source.exists():  # it may have been pruned; best.pt is its own file
        assert filecmp.cmp(tiny_ppo_run / best["path"], source, shallow=False)
    evals = [r for r in read_jsonl(tiny_ppo_run / "eval_episodes.jsonl") if r["global_step"] == best["step"]]
    assert np.mean([r["return"] for r in evals]) == pytest.approx(best["value"])
    all_means = {}
    for r in read_jsonl(tiny_ppo_run / "eval_episodes.jsonl"):
        all_means.setdefault(r["global_step"], []).append(r["return"])
    assert best["value"] == pytest.approx(max(np.mean(v) for v in all_means.values()))


def test_checkpoint_reloads_into_agent_and_acts_the_same(tiny_ppo_run: Path) -> None:
    """Re-evaluating best.pt on the same seeds reproduces the evaluation logged at its step."""
    meta = json.loads((tiny_ppo_run / "metadata.json").read_text())
    logged = logged_eval_returns(tiny_ppo_run, meta["best_checkpoint"]["step"])
    assert logged and reevaluate(ppo, tiny_ppo_run, "checkpoints/best.pt") == logged
    # and the state dict is exactly the Agent's
    args = load_args(ppo.Args, tiny_ppo_run)
    payload = ckpt.load(tiny_ppo_run / "checkpoints" / "best.pt")
    envs = make_eval_envs([ppo.make_env(args, 0, evaluation=True)])
    policy = ppo.load_policy(args, payload, envs)
    agent = ppo.Agent(envs)
    agent.load_state_dict(payload["agent"])
    obs = torch.randn(16, 4)
    assert torch.equal(agent.act(obs), policy(obs))


def test_tensorboard_tags_read_back(tiny_ppo_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tiny_ppo_run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert TB_TAGS <= tags, TB_TAGS - tags
    sps = acc.Scalars("charts/SPS")
    assert [e.step for e in sps] == [row["global_step"] for row in read_jsonl(tiny_ppo_run / "metrics.jsonl")]
    returns = acc.Scalars("charts/episodic_return")
    assert [e.value for e in returns] == [row["return"] for row in read_jsonl(tiny_ppo_run / "train_episodes.jsonl")]


def test_jsonl_lines_parse_and_steps_never_decrease(tiny_ppo_run: Path) -> None:
    for name, key in (
        ("metrics.jsonl", "global_step"),
        ("train_episodes.jsonl", "global_step"),
        ("eval_episodes.jsonl", "global_step"),
        ("checkpoints/checkpoints.jsonl", "step"),
    ):
        lines = (tiny_ppo_run / name).read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        steps = [row[key] for row in rows]
        assert steps and steps == sorted(steps), name
    metrics = read_jsonl(tiny_ppo_run / "metrics.jsonl")
    assert [row["iteration"] for row in metrics] == list(range(1, 11))
    assert sum("eval/return_mean" in row for row in metrics) == 5  # every 256 steps over 1280


def test_every_episode_logged_and_no_reset_transitions(tiny_ppo_run: Path) -> None:
    """Same-step autoreset: every env step belongs to a real episode and every finished one is logged.

    Per env, the logged episode lengths plus the episode still running at the end (read from the
    environments pickled in the final checkpoint) add up to exactly the steps that env took. With
    gymnasium's default next-step autoreset, each episode boundary would cost one extra, fake step.
    """
    payload = ckpt.load(tiny_ppo_run / "checkpoints" / "latest.pt")
    envs = pickle.loads(payload["_axiomrl"]["envs"])
    assert envs.unwrapped.autoreset_mode == gym.vector.AutoresetMode.SAME_STEP
    episodes = read_jsonl(tiny_ppo_run / "train_episodes.jsonl")
    steps_per_env = 1280 // TINY_PPO["num_envs"]
    for i in range(TINY_PPO["num_envs"]):
        logged = sum(e["length"] for e in episodes if e["env_index"] == i)
        assert logged + int(envs.episode_lengths[i]) == steps_per_env
    # CartPole pays 1 per step: an episode's return equals its length
    assert all(e["return"] == e["length"] for e in episodes)


def test_same_seed_same_metrics(tmp_path: Path) -> None:
    for name in ("a", "b"):
        ppo.main(tiny_ppo_args(tmp_path / name, total_timesteps=640, eval_every=0, checkpoint_every=0))
    a, b = only_run(tmp_path / "a"), only_run(tmp_path / "b")
    for name in ("metrics.jsonl", "train_episodes.jsonl"):
        assert strip_wall_clock(read_jsonl(a / name)) == strip_wall_clock(read_jsonl(b / name))
    ppo.main(tiny_ppo_args(tmp_path / "c", total_timesteps=640, eval_every=0, checkpoint_every=0, seed=2))
    c = only_run(tmp_path / "c")
    assert strip_wall_clock(read_jsonl(a / "metrics.jsonl")) != strip_wall_clock(read_jsonl(c / "metrics.jsonl"))


def test_runs_started_together_get_their_own_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from axiomrl_utils import rundir as run_module

    frozen = dt.datetime(2026, 1, 2, 3, 4, 5, 678901)

    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return frozen

    monkeypatch.setattr(run_module.dt, "datetime", FrozenClock)
    made = [create_run_dir(tmp_path, "ppo", "ALE/Pong-v5", 1) for _ in range(3)]
    assert [p.name for p in made] == [
        "ppo__ALE-Pong-v5__seed1__20260102-030405-678901",
        "ppo__ALE-Pong-v5__seed1__20260102-030405-678901_1",
        "ppo__ALE-Pong-v5__seed1__20260102-030405-678901_2",
    ]


def test_two_processes_at_once(tmp_path: Path) -> None:
    from conftest import REPO, script_env

    cmd = [os.sys.executable, str(REPO / "axiomrl" / "ppo.py"), "--output-dir", str(tmp_path), "--total-timesteps", "256",
           "--num-envs", "2", "--num-steps", "64", "--eval-every", "0", "--no-progress"]
    procs = [subprocess.Popen(cmd, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2
    assert all(json.loads((d / "metadata.json").read_text())["status"] == "finished" for d in dirs)


@pytest.mark.parametrize(
    "env_id, expected", [("ALE/Breakout-v5", "ALE-Breakout-v5"), ("CartPole-v1", "CartPole-v1"), ("my env:v0", "my-env-v0")]
)
def test_env_id_sanitization(env_id: str, expected: str) -> None:
    assert sanitize_env_id(env_id) == expected


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def test_git_state_clean_dirty_and_no_git(tmp_path: Path) -> None:
    assert git_state(tmp_path) == (None, None)
    _git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("lr = 1\n")
    _git(tmp_path, "add", "train.py")
    _git(tmp_path, "commit", "-qm", "first")
    info, diff = git_state(tmp_path)
    assert info["is_dirty"] is False and len(info["commit"]) == 40 and diff is None
    (tmp_path / "train.py").write_text("lr = 2\n")
    (tmp_path / "notes.txt").write_text("new\n")
    info, diff = git_state(tmp_path)
    assert info["is_dirty"] is True
    assert "-lr = 1" in diff and "+lr = 2" in diff and "notes.txt" in diff


def test_run_records_git_and_code_diff(tmp_path: Path) -> None:
    """A script inside a dirty checkout writes code.diff; outside git, metadata git is null."""
    import shutil

    repo = tmp_path / "repo"
    (repo / "axiomrl").mkdir(parents=True)
    shutil.copy(ppo.__file__, repo / "axiomrl" / "ppo.py")
    out = tmp_path / "out"
    ppo_copy = repo / "axiomrl" / "ppo.py"

    def run_copy() -> dict:
        from conftest import script_env

        subprocess.run([os.sys.executable, str(ppo_copy), "--output-dir", str(out), "--total-timesteps", "128",
                        "--num-envs", "1", "--num-steps", "128", "--eval-every", "0", "--no-progress"],
                       check=True, env=script_env(), capture_output=True)
        latest = run_dirs(out)[-1]
        return json.loads((latest / "metadata.json").read_text()) | {"_dir": latest}

    meta = run_copy()
    assert meta["git"] is None and not (meta["_dir"] / "code.diff").exists()
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "c")
    meta = run_copy()
    assert meta["git"]["is_dirty"] is False and not (meta["_dir"] / "code.diff").exists()
    ppo_copy.write_text(ppo_copy.read_text().replace('learning_rate: Annotated[float, Positive()] = 2.5e-4', 'learning_rate: float = 3e-4'))
    meta = run_copy()
    assert meta["git"]["is_dirty"] is True
    assert "+    learning_rate: float = 3e-4" in (meta["_dir"] / "code.diff").read_text()


def test_failure_marks_status_failed_with_the_error(tmp_path: Path) -> None:
    from gymnasium.envs.classic_control import CartPoleEnv

    class BreaksAfter300Steps(CartPoleEnv):
        steps = 0

        def step(self, action):
            type(self).steps += 1
            if type(self).steps > 300:
                raise RuntimeError("the simulator lost its license server")
            return super().step(action)

    gym.register("AxiomTestBreaking-v0", entry_point=BreaksAfter300Steps, max_episode_steps=500)
    with pytest.raises(RuntimeError, match="license server"):
        ppo.main(tiny_ppo_args(tmp_path, env_id="AxiomTestBreaking-v0"))
    meta = json.loads((only_run(tmp_path) / "metadata.json").read_text())
    assert meta["status"] == "failed"
    assert "RuntimeError: the simulator lost its license server" in meta["error"]


def test_wandb_offline_writes_its_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=256, eval_every=0, track=True))
    run_dir = only_run(tmp_path)
    meta = json.loads((run_dir / "metadata.json").read_text())
    offline = list((run_dir / "wandb").glob(f"offline-run-*-{meta['wandb']['id']}"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb")) and (offline[0].glob("*.wandb").__next__()).stat().st_size > 0


def test_plain_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    proc = run_script("ppo.py", "--output-dir", str(tmp_path), "--total-timesteps", "512", "--num-envs", "2",
                      "--num-steps", "64", "--eval-every", "256", "--eval-episodes", "2")
    assert proc.returncode == 0, proc.stderr
    assert "[ppo CartPole-v1 seed1] step" in proc.stdout
    assert "finished 512 steps" in proc.stdout and str(only_run(tmp_path)) in proc.stdout


def test_help_documents_every_field() -> None:
    proc = run_script("ppo.py", "--help")
    assert proc.returncode == 0
    for field in dataclasses.fields(ppo.Args):
        assert "--" + field.name.replace("_", "-") in proc.stdout, field.name
    assert "the surrogate clipping coefficient" in proc.stdout
    assert "keep" in proc.stdout and "latest.pt and best.pt are always kept" in proc.stdout


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"env_id": "CartPol-v1"}, "unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
        ({"env_id": "Pendulum-v1"}, "ppo.py needs a discrete action space but Pendulum-v1"),
        ({"num_minibatches": 3}, "is not divisible by --num-minibatches 3"),
        ({"total_timesteps": 0}, "--total-timesteps must be positive"),
        ({"num_steps": -5}, "--num-steps must be positive"),
        ({"eval_episodes": 0}, "--eval-episodes must be positive"),
    ],
)
def test_bad_input_is_one_sentence_and_creates_nothing(tmp_path: Path, overrides: dict, message: str) -> None:
    from axiomrl_utils import UsageError

    out = tmp_path / "runs"
    with pytest.raises(UsageError) as err:
        ppo.main(tiny_ppo_args(out, **overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = run_script("ppo.py", "--output-dir", str(blocker / "runs"), "--total-timesteps", "512")
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: cannot write to --output-dir")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert blocker.read_text() == "not a directory"


def test_bad_input_from_the_shell_is_one_line(tmp_path: Path) -> None:
    proc = run_script("ppo.py", "--env-id", "NoSuchEnv-v0", "--output-dir", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: unknown environment id 'NoSuchEnv-v0'; see `gymnasium.pprint_registry()` for the ids; "
        "for your own env, pass `--env-id your.module:YourEnv-v0` or `--env-module your.module`"
    ]
    assert not any(tmp_path.iterdir())
