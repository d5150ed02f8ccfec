"""Exact resume, crash safety, interruption and the config-drift guard, on real ppo.py runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from axiomrl import ppo
from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.jsonl import read_jsonl

from conftest import REPO, only_run, run_dirs, run_script, script_env, strip_wall_clock, tiny_ppo_args, tree_snapshot

LOGS = ("metrics.jsonl", "train_episodes.jsonl", "eval_episodes.jsonl")


def meta_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metadata.json").read_text())


def assert_same_training(a: Path, b: Path, keys: tuple[str, ...] = ("agent", "optimizer")) -> None:
    """Two runs learned exactly the same: logs equal but for wall-clock fields, the checkpoint entries `keys` equal."""
    for name in LOGS:
        rows_a, rows_b = strip_wall_clock(read_jsonl(a / name)), strip_wall_clock(read_jsonl(b / name))
        assert rows_a == rows_b, name
    pa, pb = ckpt.load(a / "checkpoints" / "latest.pt"), ckpt.load(b / "checkpoints" / "latest.pt")
    for key in keys:
        flat_a, flat_b = _tensors(pa[key]), _tensors(pb[key])
        assert len(flat_a) == len(flat_b) and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b)), key


def _tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in _tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def assert_clean_history(run_dir: Path) -> None:
    """After any number of crashes and resumes: every line parses, no step is logged twice."""
    for name in LOGS + ("checkpoints/checkpoints.jsonl",):
        for line in (run_dir / name).read_text().splitlines():
            json.loads(line)
    steps = [row["global_step"] for row in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps))
    saves = [row["step"] for row in read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")]
    assert saves == sorted(set(saves))
    episode_steps = [row["global_step"] for row in read_jsonl(run_dir / "train_episodes.jsonl")]
    assert episode_steps == sorted(episode_steps)
    assert meta_of(run_dir)["total_episodes"] == len(episode_steps)


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path / "straight"))
    ppo.main(tiny_ppo_args(tmp_path / "split", pause_at_step=640))
    split = only_run(tmp_path / "split")
    meta = meta_of(split)
    assert meta["status"] == "interrupted" and meta["stop_reason"] == "pause_at_step" and meta["total_steps"] == 640
    ppo.main(tiny_ppo_args(tmp_path / "split", resume=str(split)))
    assert run_dirs(tmp_path / "split") == [split]  # continued in place, no new directory
    assert_same_training(only_run(tmp_path / "straight"), split)
    meta = meta_of(split)
    assert meta["status"] == "finished" and meta["total_steps"] == 1280
    (resume,) = meta["resumes"]
    assert resume["from_step"] == 640 and resume["envs_restored"] is True
    assert resume["checkpoint"] == "checkpoints/latest.pt"
    assert resume["config_changes"] == {"pause_at_step": [640, None]}
    index = read_jsonl(split / "checkpoints" / "checkpoints.jsonl")
    assert index[-1]["resume_state"]["modules"].keys() == {"agent", "optimizer"}
    assert set(index[-1]["resume_state"]["values"]) == {"iteration", "next_obs", "next_done"}


def _wait_for(predicate, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _checkpoint_count(output_dir: Path) -> int:
    index = list(output_dir.glob("*/checkpoints/checkpoints.jsonl"))
    return len(index[0].read_text().splitlines()) if index else 0


LONG = ["--total-timesteps", "12800", "--num-envs", "2", "--num-steps", "64", "--checkpoint-every", "512",
        "--eval-every", "2048", "--eval-episodes", "2", "--no-progress"]


def _start(output_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "axiomrl" / "ppo.py"), "--output-dir", str(output_dir), *LONG, *extra],
        env=script_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigkill_then_resume_completes_with_a_clean_history(tmp_path: Path) -> None:
    proc = _start(tmp_path / "killed")
    _wait_for(lambda: _checkpoint_count(tmp_path / "killed") >= 2 or proc.poll() is not None, what="two checkpoints")
    proc.kill()
    proc.wait()
    run_dir = only_run(tmp_path / "killed")
    assert meta_of(run_dir)["status"] == "running", "the run finished before it could be killed"
    for name in LOGS:  # readable right after the kill (a torn last line is skipped by readers)
        read_jsonl(run_dir / name)
    # the last step the killed session logged (metadata.json is rewritten after a checkpoint is indexed,
    # so a kill in between leaves it one checkpoint behind)
    killed_at = read_jsonl(run_dir / "metrics.jsonl")[-1]["global_step"]

    done = run_script("ppo.py", "--resume", str(run_dir), timeout=600)
    assert done.returncode == 0, done.stderr
    meta = meta_of(run_dir)
    assert meta["status"] == "finished" and meta["total_steps"] == 12800
    assert meta["resumes"][0]["from_step"] <= killed_at
    assert_clean_history(run_dir)

    # TensorBoard continues at the restored step: one point per step, no overlap from the dead session
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    steps = [event.step for event in acc.Scalars("charts/SPS")]
    assert steps == [row["global_step"] for row in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and len(steps) == 12800 // 128

    # and nothing was lost or changed by the crash: same learning as a run never interrupted
    straight = run_script("ppo.py", "--output-dir", str(tmp_path / "straight"), *LONG, timeout=600)
    assert straight.returncode == 0, straight.stderr
    assert_same_training(only_run(tmp_path / "straight"), run_dir)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_marks_interrupted(tmp_path: Path, signum: int, code: int) -> None:
    proc = _start(tmp_path)
    _wait_for(lambda: _checkpoint_count(tmp_path) >= 1 or proc.poll() is not None, what="a checkpoint")
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == code, proc.stderr.read()
    run_dir = only_run(tmp_path)
    meta = meta_of(run_dir)
    assert meta["status"] == "interrupted" and meta["stop_reason"] == signal.Signals(signum).name
    latest = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert latest["_axiomrl"]["global_step"] == meta["total_steps"] < 12800
    assert read_jsonl(run_dir / "metrics.jsonl")[-1]["global_step"] == meta["total_steps"]
    short = str(meta["total_steps"] + 512)  # finish soon after the stop: what matters is that it continues
    resumed = run_script("ppo.py", "--resume", str(run_dir), "--total-timesteps", short, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert meta_of(run_dir)["status"] == "finished"
    assert_clean_history(run_dir)


def test_corrupt_latest_falls_back_to_an_older_checkpoint(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path, pause_at_step=1024, keep_checkpoints=3))
    run_dir = only_run(tmp_path)
    latest = run_dir / "checkpoints" / "latest.pt"
    with open(latest, "r+b") as f:  # damage it in place (latest.pt shares its bytes with step_1024.pt)
        f.truncate(latest.stat().st_size // 2)
    with pytest.warns(UserWarning, match="cannot be read"):
        ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir)))
    meta = meta_of(run_dir)
    assert meta["status"] == "finished"
    assert meta["resumes"][0]["from_step"] == 768 and meta["resumes"][0]["checkpoint"] == "checkpoints/step_768.pt"
    assert_clean_history(run_dir)
    ppo.main(tiny_ppo_args(tmp_path / "straight"))
    assert_same_training(only_run(tmp_path / "straight"), run_dir)


def test_torn_last_lines_are_dropped_on_resume(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path, pause_at_step=640))
    run_dir = only_run(tmp_path)
    for name in LOGS:
        with open(run_dir / name, "a") as f:
            f.write('{"global_step": 99999, "ret')  # what kill -9 mid-write leaves
    ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir)))
    assert_clean_history(run_dir)
    ppo.main(tiny_ppo_args(tmp_path / "straight"))
    assert_same_training(only_run(tmp_path / "straight"), run_dir)


def test_config_drift_is_refused_then_accepted(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path, pause_at_step=640))
    run_dir = only_run(tmp_path)
    before = tree_snapshot(run_dir)
    with pytest.raises(UsageError) as err:
        ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir), learning_rate=1e-3, clip_coef=0.3))
    assert "learning_rate: 0.00025 -> 0.001" in str(err.value) and "clip_coef: 0.2 -> 0.3" in str(err.value)
    assert "--allow-config-change learning_rate clip_coef" in str(err.value)
    assert tree_snapshot(run_dir) == before

    ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir), learning_rate=1e-3, allow_config_change=["learning_rate"]))
    meta = meta_of(run_dir)
    assert meta["status"] == "finished"
    assert meta["resumes"][0]["config_changes"]["learning_rate"] == [0.00025, 0.001]
    assert json.loads((run_dir / "config.yaml").read_text())["learning_rate"] == 0.001


def test_finished_run_extends_with_a_larger_budget(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=640))
    run_dir = only_run(tmp_path)
    before = tree_snapshot(run_dir)
    with pytest.raises(UsageError, match="already finished its 640 steps; pass --total-timesteps larger than 640"):
        ppo.main(tiny_ppo_args(tmp_path, total_timesteps=640, resume=str(run_dir)))
    assert tree_snapshot(run_dir) == before
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=1280, resume=str(run_dir)))
    meta = meta_of(run_dir)
    assert meta["status"] == "finished" and meta["total_steps"] == 1280 and meta["total_timesteps"] == 1280
    assert meta["resumes"][0]["config_changes"] == {"total_timesteps": [640, 1280]}
    assert_clean_history(run_dir)


def test_resume_from_the_shell_uses_the_runs_config(tmp_path: Path) -> None:
    """`ppo.py --resume RUN` needs no other flag: every default comes from the run's config.yaml."""
    first = run_script("ppo.py", "--output-dir", str(tmp_path), "--env-id", "Acrobot-v1", "--seed", "7",
                       *LONG[:6], "--pause-at-step", "1024", "--eval-every", "0", "--no-progress")
    assert first.returncode == 0, first.stderr
    run_dir = only_run(tmp_path)
    resumed = run_script("ppo.py", "--resume", str(tmp_path), "--seed", "7", "--total-timesteps", "2048")
    assert resumed.returncode == 0, resumed.stderr
    meta = meta_of(run_dir)
    assert meta["env_id"] == "Acrobot-v1" and meta["status"] == "finished" and meta["total_steps"] == 2048
    assert meta["resumes"][0]["argv"][1:] == ["--resume", str(tmp_path), "--seed", "7", "--total-timesteps", "2048"]
    assert json.loads((run_dir / "config.yaml").read_text())["num_envs"] == 2


def test_parent_directory_picks_the_newest_matching_run(tmp_path: Path) -> None:
    for seed in (1, 2, 1):
        ppo.main(tiny_ppo_args(tmp_path, seed=seed, total_timesteps=256, eval_every=0, pause_at_step=128))
    newest_seed1 = [d for d in run_dirs(tmp_path) if meta_of(d)["seed"] == 1][-1]
    seed2 = [d for d in run_dirs(tmp_path) if meta_of(d)["seed"] == 2][0]
    from axiomrl_utils.rundir import find_run_to_resume

    assert find_run_to_resume(str(tmp_path), "ppo", seed=1) == newest_seed1.resolve()
    assert find_run_to_resume(str(tmp_path), "ppo", seed=2) == seed2.resolve()
    newest = max(run_dirs(tmp_path), key=lambda d: meta_of(d)["created_at_utc"])
    assert newest == newest_seed1
    assert find_run_to_resume(str(tmp_path), "ppo") == newest.resolve()


def test_wandb_resumes_the_same_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=512, eval_every=0, track=True, pause_at_step=256))
    run_dir = only_run(tmp_path)
    wandb_id = meta_of(run_dir)["wandb"]["id"]
    ppo.main(tiny_ppo_args(tmp_path, total_timesteps=512, eval_every=0, track=True, resume=str(run_dir)))
    assert meta_of(run_dir)["wandb"]["id"] == wandb_id
    # wandb names a second run started within the same second "...-<id>-1"
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}*"))) == 2


def test_bad_resume_inputs_change_nothing(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path / "runs", pause_at_step=640))
    run_dir = only_run(tmp_path / "runs")
    empty = tmp_path / "empty"
    empty.mkdir()
    before = tree_snapshot(tmp_path)

    with pytest.raises(UsageError, match="no such directory"):
        ppo.main(tiny_ppo_args(tmp_path, resume=str(tmp_path / "nope")))
    with pytest.raises(UsageError, match="is not a run directory and holds no ppo run"):
        ppo.main(tiny_ppo_args(tmp_path, resume=str(empty)))

    other = tmp_path / "runs" / "dqn__CartPole-v1__seed1__20260101-000000-000000"
    other.mkdir()
    (other / "metadata.json").write_text(json.dumps({"algo": "dqn", "env_id": "CartPole-v1", "seed": 1}))
    before = tree_snapshot(tmp_path)
    with pytest.raises(UsageError, match="is a run of dqn; resume it with dqn.py, not ppo.py"):
        ppo.main(tiny_ppo_args(tmp_path, resume=str(other)))
    (run_dir / "metadata.json").write_text((run_dir / "metadata.json").read_text()[:100])
    before = tree_snapshot(tmp_path)
    with pytest.raises(UsageError, match="metadata.json is not valid JSON"):
        ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir)))
    assert tree_snapshot(tmp_path) == before


def test_unreadable_checkpoints_refuse_resume(tmp_path: Path) -> None:
    ppo.main(tiny_ppo_args(tmp_path, pause_at_step=640))
    run_dir = only_run(tmp_path)
    for path in (run_dir / "checkpoints").glob("*.pt"):
        path.write_bytes(b"not a checkpoint")
    before = tree_snapshot(run_dir)
    with pytest.warns(UserWarning), pytest.raises(UsageError, match="can be read .*start a new one instead"):
        ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir)))
    assert tree_snapshot(run_dir) == before


def test_a_live_run_cannot_be_resumed_twice(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    try:
        _wait_for(lambda: _checkpoint_count(tmp_path) >= 1 or proc.poll() is not None, what="a checkpoint")
        run_dir = only_run(tmp_path)
        with pytest.raises(UsageError, match=f"is still being trained by process {proc.pid}"):
            ppo.main(tiny_ppo_args(tmp_path, resume=str(run_dir), total_timesteps=12800))
    finally:
        proc.kill()
        proc.wait()


def test_resume_from_the_shell_bad_path_is_one_line(tmp_path: Path) -> None:
    proc = run_script("ppo.py", "--resume", str(tmp_path / "missing"))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "no such directory" in proc.stderr


PRE_PACKAGE_RUNS = REPO / "tests" / "fixtures" / "runs_d80e42f"  # made by make_runs_d80e42f.sh


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_a_run_paused_before_the_run_package_resumes_exactly(tmp_path: Path, algo: str) -> None:
    """A checkpoint written by the code before axiomrl_utils/run/ (state listed at restore and save,
    rows decided by the script) continues with the current code as an uninterrupted run would."""
    import importlib
    import shutil

    from axiomrl_utils.args import load_args, parse_args

    module = importlib.import_module(f"axiomrl.{algo}")
    source = next(PRE_PACKAGE_RUNS.glob(f"{algo}__*"))
    run_dir = tmp_path / "runs" / source.name
    shutil.copytree(source, run_dir)
    paused_at = meta_of(run_dir)["total_steps"]
    logs_before = {name: read_jsonl(run_dir / name) for name in LOGS}

    module.main(parse_args(module.Args, module.__file__, ["--resume", str(run_dir), "--no-progress"]))
    meta = meta_of(run_dir)
    assert meta["status"] == "finished" and meta["total_steps"] == meta["total_timesteps"] > paused_at
    assert meta["resumes"][-1]["from_step"] == paused_at and meta["resumes"][-1]["envs_restored"] is True

    # the same run without the pause, by the current code
    args = load_args(module.Args, run_dir)
    args.output_dir, args.resume, args.pause_at_step, args.progress = str(tmp_path / "fresh"), None, None, False
    module.main(args)
    fresh = only_run(tmp_path / "fresh")
    for name in LOGS:
        fresh_rows = strip_wall_clock(read_jsonl(fresh / name))
        if strip_wall_clock(logs_before[name]) != [r for r in fresh_rows if r["global_step"] <= paused_at]:
            pytest.skip(f"this CPU's floating point differs from the machine that wrote the fixture ({name} before the pause)")
        assert strip_wall_clock(read_jsonl(run_dir / name)) == fresh_rows, name
