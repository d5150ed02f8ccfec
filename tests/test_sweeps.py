"""Seed sweeps (`python -m axiomrl_utils.benchmark`): real sweeps of tiny ppo.py runs.

The launcher runs in-process (`launcher.main`) or as a subprocess (signals); every run is a real
`python axiomrl/ppo.py` process writing a real run directory. Crashes come from a copy of ppo.py
that raises after its first checkpoint for the (env, seed) pairs named in AXIOMRL_TEST_CRASH.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from axiomrl_utils import UsageError
from axiomrl_utils.commands import cli
from axiomrl_utils.commands import sweep as launcher
from axiomrl_utils.commands.sweep_backends import STATUS_FILE, run_dirs_in
from axiomrl_utils.jsonl import read_json

from conftest import REPO, run_script, script_env, tree_snapshot

TINY = ["--total-timesteps", "384", "--num-envs", "2", "--num-steps", "64", "--eval-every", "0", "--checkpoint-every", "128"]
PPO = "python axiomrl/ppo.py"
CRASH_HOOK = '''            if run.stop_requested:
                break
'''


@pytest.fixture(autouse=True)
def _children_find_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs are subprocesses started from the repo root: they import axiomrl_utils from it."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("AXIOMRL_TEST_CRASH", raising=False)


@pytest.fixture
def crashing_ppo(tmp_path: Path) -> str:
    """A copy of ppo.py that raises after a checkpoint for AXIOMRL_TEST_CRASH=ENV:SEED:MODE,...

    MODE `always`: after every checkpoint but the last; `fresh`: after the first checkpoint of a
    session that is not a --resume.
    """
    source = (REPO / "axiomrl" / "ppo.py").read_text()
    assert source.count(CRASH_HOOK) == 1
    crash = '''            crashes = dict(c.rsplit(":", 1) for c in os.environ.get("AXIOMRL_TEST_CRASH", "").split(",") if c)
            mode = crashes.get(f"{args.env_id}:{args.seed}")
            if global_step < args.total_timesteps and (mode == "always" or (mode == "fresh" and not args.resume)):
                raise RuntimeError("simulated crash after the first checkpoint")
'''
    script = tmp_path / "scripts" / "ppo.py"
    script.parent.mkdir()
    script.write_text("import os\n" + source.replace(CRASH_HOOK, crash + CRASH_HOOK))
    return f"python {script}"


def sweep_json(sweep_dir: Path) -> dict[str, Any]:
    return read_json(sweep_dir / "sweep.json")


def records(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in sweep_json(sweep_dir)["runs"]}


def metadata(sweep_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    return read_json(sweep_dir / record["run_dir"] / "metadata.json")


def test_local_sweep_isolates_a_crash_retries_and_reruns(tmp_path: Path, crashing_ppo: str, capsys: pytest.CaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """2 envs x 2 seeds on 2 workers: one run crashes once and is retried from its checkpoint, one
    crashes every time and fails alone; the rerun skips the finished runs and resumes the failed one."""
    argv = ["--env-ids", "CartPole-v1", "CartPole-v0", "--command", crashing_ppo, "--num-seeds", "2", "--workers", "2",
            "--retries", "1", "--output-dir", str(tmp_path / "out"), "--name", "bench", "--", *TINY]
    monkeypatch.setenv("AXIOMRL_TEST_CRASH", "CartPole-v1:1:fresh,CartPole-v0:2:always")
    assert launcher.main(argv) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: 1 of 4 runs failed: ppo__CartPole-v0__seed2 (RuntimeError: simulated crash")

    sweep_dir = tmp_path / "out" / "sweeps" / "bench"
    sweep = sweep_json(sweep_dir)
    assert sweep["status"] == "failed" and sweep["settings"]["seeds"] == [1, 2]
    runs = records(sweep_dir)
    assert {k: r["status"] for k, r in runs.items()} == {
        "ppo__CartPole-v1__seed1": "finished", "ppo__CartPole-v1__seed2": "finished",
        "ppo__CartPole-v0__seed1": "finished", "ppo__CartPole-v0__seed2": "failed",
    }
    threads = max(1, launcher.cpu_cores() // 2)
    for key, r in runs.items():
        meta = metadata(sweep_dir, r)
        assert (meta["env_id"], meta["seed"]) == (r["env_id"], r["seed"])
        assert meta["system"]["torch_threads"] == threads  # OMP_NUM_THREADS = cores // workers
        assert len(run_dirs_in(sweep_dir / r["slot"])) == 1  # a retry resumes in place: one run directory
        assert r["duration_s"] > 0 and r["argv"][1].endswith("scripts/ppo.py")
        log = (sweep_dir / r["log_file"]).read_text()
        assert log.startswith("=== sweep attempt 1") and f"--env-id {r['env_id']} --seed {r['seed']}" in log
        if r["status"] == "finished":
            assert meta["status"] == "finished" and r["exit_code"] == 0
            assert r["final_return"] == meta["summary"]["train_return_last100"]
    # crashed once, retried from its checkpoint, finished: two sessions of the same run directory
    retried = runs["ppo__CartPole-v1__seed1"]
    assert retried["attempts"] == 2 and [x["from_step"] for x in metadata(sweep_dir, retried)["resumes"]] == [128]
    assert "=== sweep attempt 2" in (sweep_dir / retried["log_file"]).read_text() and "--resume" in retried["argv"]
    failed = runs["ppo__CartPole-v0__seed2"]
    assert failed["exit_code"] == 1 and failed["attempts"] == 2
    assert failed["error"] == "RuntimeError: simulated crash after the first checkpoint"
    assert any("simulated crash" in line for line in failed["log_tail"])
    assert metadata(sweep_dir, failed)["status"] == "failed"

    # the report is `axiomrl leaderboard` over the sweep's finished runs, in the sweep directory
    report = read_json(sweep_dir / "report.json")
    by_env = {row["env_id"]: row for row in report["leaderboard"]}
    v1 = [runs[f"ppo__CartPole-v1__seed{s}"]["final_return"] for s in (1, 2)]
    assert by_env["CartPole-v1"]["seeds"] == 2 and by_env["CartPole-v1"]["mean"] == pytest.approx(sum(v1) / 2)
    assert by_env["CartPole-v1"]["std"] == pytest.approx(abs(v1[0] - v1[1]) / 2)
    assert by_env["CartPole-v1"]["iqm_ci_low"] == pytest.approx(min(v1)) and by_env["CartPole-v1"]["iqm_ci_high"] == pytest.approx(max(v1))
    assert by_env["CartPole-v0"]["seeds"] == 1 and by_env["CartPole-v0"]["iqm_ci_low"] is None
    assert {r["key"]: r["status"] for r in report["runs"]} == {k: r["status"] for k, r in runs.items()}
    assert report["leaderboard"] == _leaderboard_cli(sweep_dir, tmp_path)
    markdown = (sweep_dir / "report.md").read_text()
    assert f"| CartPole-v1 | 1 | ppo | 2 | {by_env['CartPole-v1']['mean']:.2f} ± " in markdown
    assert "## Failed runs\n\n- ppo__CartPole-v0__seed2: RuntimeError: simulated crash" in markdown
    assert (sweep_dir / "report.csv").read_text().splitlines()[0].startswith("env_id,rank,algo,metric,seeds,mean,std,median,iqm,")
    assert "IQM [95% CI]" in out and "CartPole-v1     1  ppo       2" in out  # printed as a table too

    # the same command again: finished runs are left alone, the failed one resumes from its checkpoint
    finished = {k: tree_snapshot(sweep_dir / r["run_dir"]) for k, r in runs.items() if r["status"] == "finished"}
    monkeypatch.delenv("AXIOMRL_TEST_CRASH")
    assert launcher.main(argv) == 0
    out = capsys.readouterr().out
    assert "4 runs (3 finished before, 1 to run)" in out
    runs = records(sweep_dir)
    assert all(r["status"] == "finished" for r in runs.values())
    assert {k: tree_snapshot(sweep_dir / runs[k]["run_dir"]) for k in finished} == finished
    resumed = runs["ppo__CartPole-v0__seed2"]
    assert resumed["run_dir"] == failed["run_dir"] and resumed["attempts"] == 3
    assert [x["from_step"] for x in metadata(sweep_dir, resumed)["resumes"]] == [128, 256]
    assert len(sweep_json(sweep_dir)["sessions"]) == 2 and sweep_json(sweep_dir)["status"] == "finished"
    assert {row["env_id"]: row["seeds"] for row in read_json(sweep_dir / "report.json")["leaderboard"]} == {"CartPole-v1": 2, "CartPole-v0": 2}
    assert "4 of 4 runs finished" in (sweep_dir / "report.md").read_text()


def _leaderboard_cli(sweep_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """`axiomrl leaderboard SWEEP/runs --format json` (finished runs only, its default)."""
    out = tmp_path / "leaderboard.json"
    assert cli.main(["leaderboard", str(sweep_dir / "runs"), "--format", "json", "--output", str(out)]) == 0
    return read_json(out)


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _checkpointed(slot: Path) -> bool:
    dirs = run_dirs_in(slot)
    return bool(dirs) and (dirs[-1] / "checkpoints" / "latest.pt").exists()


def test_ctrl_c_stops_runs_with_a_checkpoint_and_records_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "axiomrl_utils.benchmark", "--env-ids", "CartPole-v1", "--command", PPO, "--num-seeds", "2",
         "--workers", "2", "--output-dir", str(out), "--name", "stopme", "--",
         "--total-timesteps", "200000", "--num-envs", "2", "--num-steps", "64", "--eval-every", "0", "--checkpoint-every", "128"],
        cwd=REPO, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    sweep_dir = out / "sweeps" / "stopme"
    slots = [sweep_dir / "runs" / f"ppo__CartPole-v1__seed{s}" for s in (1, 2)]
    try:
        _wait_for(lambda: all(_checkpointed(s) for s in slots), 240, "both runs to checkpoint")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping" in stdout
    assert stderr.strip().splitlines()[-1] == f"error: the sweep was interrupted; continue it with `{launcher.PROG} --resume-sweep {sweep_dir}`"
    sweep = sweep_json(sweep_dir)
    assert sweep["status"] == "interrupted"
    for r in sweep["runs"]:
        meta = metadata(sweep_dir, r)
        assert r["status"] == "interrupted" and meta["status"] == "interrupted" and meta["stop_reason"] == "SIGTERM"
        assert 0 < meta["total_steps"] < 200000 and (sweep_dir / r["run_dir"] / "checkpoints" / "latest.pt").exists()
        assert read_json(sweep_dir / r["slot"] / STATUS_FILE)["state"] == "done"


def test_ray_backend_on_a_real_local_cluster(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Through `axiomrl sweep` (the same launcher as python -m axiomrl_utils.benchmark): a local Ray
    cluster of 2 CPUs (--workers 2 x --cpus-per-run 1) runs each run as a Ray task."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    argv = ["sweep", "--env-ids", "CartPole-v1", "--command", PPO, "--num-seeds", "2", "--workers", "2", "--backend", "ray",
            "--output-dir", str(tmp_path), "--name", "onray", "--", *TINY]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert not ray.is_initialized()  # the launcher shut its local cluster down
    sweep_dir = tmp_path / "sweeps" / "onray"
    runs = records(sweep_dir)
    assert sorted(runs) == ["ppo__CartPole-v1__seed1", "ppo__CartPole-v1__seed2"]
    launchers = set()
    for r in runs.values():
        assert r["status"] == "finished" and r["exit_code"] == 0 and r["attempts"] == 1
        meta = metadata(sweep_dir, r)
        assert meta["status"] == "finished" and meta["system"]["torch_threads"] == 1  # num_cpus per run
        state = read_json(sweep_dir / r["slot"] / STATUS_FILE)
        launchers.add(state["launcher_pid"])
        assert "finished 384 steps" in (sweep_dir / r["log_file"]).read_text()
    assert os.getpid() not in launchers  # each run was launched by a Ray worker, not by the driver
    (session,) = sweep_json(sweep_dir)["sessions"]
    assert session["backend"] == "ray" and session["cpus_per_run"] == 1
    assert [row["seeds"] for row in read_json(sweep_dir / "report.json")["leaderboard"]] == [2]


def test_slurm_backend_requeues_a_preempted_job_which_resumes(tmp_path: Path) -> None:
    """submitit's LocalExecutor runs real jobs; the preemption signal (USR2) to the job makes it stop
    the script (it checkpoints), requeue itself, and the requeued job resumes the same run."""
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "axiomrl_utils.benchmark", "--env-ids", "CartPole-v1", "--command", PPO, "--num-seeds", "1",
         "--backend", "slurm", "--slurm-cluster", "local", "--slurm-time", "30", "--output-dir", str(out), "--name", "onslurm",
         "--", "--total-timesteps", "4096", "--num-envs", "2", "--num-steps", "64", "--eval-every", "0", "--checkpoint-every", "128"],
        cwd=REPO, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    sweep_dir = out / "sweeps" / "onslurm"
    slot = sweep_dir / "runs" / "ppo__CartPole-v1__seed1"
    try:
        _wait_for(lambda: _checkpointed(slot), 240, "the first checkpoint")
        job_process = read_json(slot / STATUS_FILE)["launcher_pid"]
        os.kill(job_process, signal.SIGUSR2)  # what Slurm sends before preempting or timing out the job
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    (r,) = sweep_json(sweep_dir)["runs"]
    assert r["status"] == "finished" and r["job_id"]
    meta = metadata(sweep_dir, r)
    assert meta["status"] == "finished" and meta["total_steps"] == 4096
    assert len(meta["resumes"]) == 1 and meta["resumes"][0]["from_step"] >= 128
    assert run_dirs_in(slot) == [sweep_dir / r["run_dir"]]  # resumed in place
    assert read_json(slot / STATUS_FILE)["launcher_pid"] != job_process  # by the requeued job
    assert list((sweep_dir / "slurm").glob("*_submitted.pkl"))


def test_dry_run_validates_and_creates_nothing(tmp_path: Path) -> None:
    proc = run_script("ppo.py", "--dry-run", "--env-id", "Acrobot-v1", "--output-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dry run ok: ppo on Acrobot-v1 seed 1;")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "args, extra, message",
    [
        (["--env-ids", "CartPole-v1", "--command", PPO, "--num-seeds", "0"], [], "--num-seeds must be at least 1 (got 0)"),
        (["--env-ids", "CartPole-v1", "--command", PPO, "--workers", "0"], [], "--workers must be at least 1 (got 0)"),
        (["--env-ids", "CartPole-v1", "--command", PPO, "--workers", "two"], [], "argument --workers: invalid int value: 'two'"),
        (["--env-ids", "CartPole-v1"], [], "--command is required"),
        (["--env-ids", "CartPole-v1", "--command", "python -c pass"], [], "--command 'python -c pass' is not an AxiomRL script"),
        (["--env-ids", "CartPole-v1", "--command", "python axiomrl/nosuch.py"], [], "no such script axiomrl/nosuch.py"),
        (["--env-ids", "CartPole-v1", "--command", "nosuchprogram x.py"], [], "program 'nosuchprogram' not found"),
        (["--env-ids", "CartPole-v1", "--command", PPO], ["--seed", "3"], "the sweep sets --seed for each run itself"),
        (["--env-ids", "CartPole-v1", "CartPol-v1", "--command", PPO, "--num-seeds", "3"], [],
         "python axiomrl/ppo.py --env-id CartPol-v1: unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
        (["--env-ids", "CartPole-v1", "--command", PPO], ["--learning-rate", "fast"],
         "rejects the arguments (Error parsing --learning-rate: could not convert string to float: 'fast')"),
        (["--env-ids", "CartPole-v1", "--command", PPO, "stray"], [], "unexpected argument 'stray'; put the arguments meant for every run after `--`"),
        (["--resume-sweep", "nowhere"], [], "--resume-sweep nowhere: no such directory"),
        (["--env-ids", "CartPole-v1", "--command", PPO, "--backend", "ray", "--ray-address", "127.0.0.1:9"], [],
         "nothing answers at --ray-address 127.0.0.1:9"),
        (["--env-ids", "CartPole-v1", "--command", PPO, "--backend", "slurm", "--slurm-time", "soon"], [],
         "--slurm-time 'soon' is not a duration"),
    ],
)
def test_bad_input_is_one_sentence_and_creates_nothing(tmp_path: Path, args: list[str], extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(UsageError) as err:
        launcher.main([*args, "--output-dir", str(out), *(["--", *extra] if extra else [])])
    assert message in str(err.value)
    assert "\n" not in str(err.value) and str(err.value).count(message) == 1  # reported once, not once per seed
    assert not out.exists()


def test_axiomrl_sweep_subcommand_checks_input_the_same_way(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=r"^--num-seeds must be at least 1 \(got 0\)$"):
        cli.main(["sweep", "--env-ids", "CartPole-v1", "--command", PPO, "--num-seeds", "0", "--output-dir", str(out)])
    with pytest.raises(UsageError, match="the sweep sets --output-dir for each run itself"):
        cli.main(["sweep", "--env-ids", "CartPole-v1", "--command", PPO, "--output-dir", str(out), "--", "--output-dir", "x"])
    assert not out.exists()


@pytest.mark.parametrize("backend, module, extra", [("ray", "ray", "ray"), ("slurm", "submitit", "slurm")])
def test_missing_extra_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, module: str,
                                                 extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import ray` now raises ImportError, as without the extra
    with pytest.raises(UsageError) as err:
        launcher.main(["--env-ids", "CartPole-v1", "--command", PPO, "--backend", backend, "--output-dir", str(tmp_path / "out")])
    assert str(err.value) == f"--backend {backend} needs {module}; install it with `pip install 'axiomrl[{extra}]'`"
    assert not (tmp_path / "out").exists()


def test_rerun_refuses_other_commands_and_non_sweeps(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweeps" / "mine"
    sweep_dir.mkdir(parents=True)
    with pytest.raises(UsageError, match="holds no sweep.json, so it is not a sweep directory"):
        launcher.main(["--resume-sweep", str(sweep_dir)])
    record = {"schema_version": 1, "name": "mine", "status": "finished", "runs": [],
              "settings": {"commands": [PPO], "env_ids": ["CartPole-v1"], "seeds": [1], "extra_args": ["--total-timesteps", "256"]}}
    (sweep_dir / "sweep.json").write_text(json.dumps(record))
    before = tree_snapshot(tmp_path)
    with pytest.raises(UsageError) as err:
        launcher.main(["--env-ids", "CartPole-v1", "--command", PPO, "--output-dir", str(tmp_path), "--name", "mine",
                       "--", "--total-timesteps", "512"])
    assert "sweep mine was started with the arguments after -- --total-timesteps 256 and this command has --total-timesteps 512" in str(err.value)
    with pytest.raises(UsageError, match="--resume-sweep takes the runs from the sweep's sweep.json; drop --command"):
        launcher.main(["--resume-sweep", str(sweep_dir), "--command", PPO])
    assert tree_snapshot(tmp_path) == before
