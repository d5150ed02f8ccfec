"""Issue 23, parts 4-5: outputs that never clobber, and malformed-but-parseable files read as one
sentence (or a skip with a warning) instead of a traceback. Hand-built fixtures, no training."""

import json
import os
import stat
import threading
import warnings
import zipfile
from pathlib import Path

import pytest

from axiomrl_utils import UsageError
from axiomrl_utils.args import read_config
from axiomrl_utils.commands import cli
from axiomrl_utils.commands import sweep as launcher
from axiomrl_utils.commands.pack import unpack
from axiomrl_utils.commands.runs import load_runs, run_metric
from axiomrl_utils.jsonl import JsonlDamage, check_jsonl, iter_jsonl, truncate_jsonl
from axiomrl_utils.rundir import read_metadata
from axiomrl_utils.run.resume import check_logs

from fake_runs import write_run

PPO = "python axiomrl/ppo.py"


def _runs(root: Path, n: int = 2) -> list[Path]:
    return [write_run(root, seed=s, train=[(10 * i, float(s)) for i in range(5)]) for s in range(1, n + 1)]


def _set_meta(run: Path, **fields) -> None:
    meta = json.loads((run / "metadata.json").read_text())
    meta.update(fields)
    (run / "metadata.json").write_text(json.dumps(meta))


# --------------------------------------------------------------------------------------------
# --output never replaces what is not a regular file


@pytest.mark.parametrize("command", ["report", "leaderboard"])
def test_output_refuses_symlink_and_directory_and_writes_through_a_file(tmp_path, command, capsys):
    runs = tmp_path / "runs"
    _runs(runs)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    link = tmp_path / "link.txt"
    link.symlink_to(precious)
    directory = tmp_path / "dir"
    directory.mkdir()
    for target, kind in ((link, "symbolic link"), (directory, "directory")):
        with pytest.raises(UsageError, match=f"--output {target} is a {kind}, not a regular file"):
            cli.main([command, str(runs), "--output", str(target)])
    assert link.is_symlink() and precious.read_text() == "keep me" and directory.is_dir() and not any(directory.iterdir())
    old = tmp_path / "old.txt"
    old.write_text("previous report")
    assert cli.main([command, str(runs), "--output", str(old), "--format", "json"]) == 0
    assert isinstance(json.loads(old.read_text()), list)


def test_output_refuses_a_character_device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    runs = tmp_path / "runs"
    _runs(runs)
    device = tmp_path / "null"
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(UsageError, match="is a character device, not a regular file"):
        cli.main(["report", str(runs), "--output", str(device)])
    assert stat.S_ISCHR(os.lstat(device).st_mode)


# --------------------------------------------------------------------------------------------
# malformed metadata.json: a skip with one warning naming the file (reports), one sentence (one run)


def test_malformed_metadata_is_skipped_with_one_warning(tmp_path, capsys):
    good = _runs(tmp_path)
    bad_seed, no_env, not_object, a_dir = _runs(tmp_path / "bad", 4)
    _set_meta(bad_seed, seed=[1])
    _set_meta(no_env, env_id=None)
    (not_object / "metadata.json").write_text("[1, 2]")
    (a_dir / "metadata.json").unlink()
    (a_dir / "metadata.json").mkdir()
    assert cli.main(["leaderboard", str(tmp_path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)[0]["seeds"] == len(good)
    for run, problem in ((bad_seed, "has seed [1], not an int"), (no_env, "lacks env_id"),
                         (not_object, "is not a JSON object"), (a_dir, "cannot be read")):
        lines = [line for line in err.splitlines() if str(run / "metadata.json") in line]
        assert len(lines) == 1 and problem in lines[0] and lines[0].startswith("warning:")


def test_one_run_readers_refuse_malformed_metadata_in_one_sentence(tmp_path):
    run = _runs(tmp_path, 1)[0]
    for fields, problem in (({"seed": [1]}, "has seed [1], not an int"), ({"resumes": {}}, "has resumes {}, not a list"),
                            ({"seed": True}, "has seed true, not an int")):
        _set_meta(run, **fields)
        with pytest.raises(UsageError, match=r"metadata.json " + problem.replace("[", r"\[").replace("]", r"\]")) as err:
            read_metadata(run)  # what eval, export, pack and resume read the run with
        assert "\n" not in str(err.value)
        _set_meta(run, seed=1, resumes=[])
    (run / "config.yaml").unlink()
    (run / "config.yaml").mkdir()  # a file replaced by a directory
    with pytest.raises(UsageError, match=r"config.yaml cannot be read \(Is a directory\)"):
        read_config(run)


# --------------------------------------------------------------------------------------------
# jsonl: a line that is valid JSON but no object, a directory in a log's place


def test_non_object_jsonl_line_is_skipped_with_a_warning(tmp_path):
    run = _runs(tmp_path, 1)[0]
    log = run / "train_episodes.jsonl"
    log.write_text('{"global_step": 1, "return": 5.0}\n[1, 2]\n"text"\n{"global_step": 2, "return": 7.0}\n')
    with pytest.warns(UserWarning) as warned:
        assert [r["return"] for r in iter_jsonl(log)] == [5.0, 7.0]
    assert [str(w.message).split("/")[-1] for w in warned] == [
        "train_episodes.jsonl:2 is not a JSON object; skipped", "train_episodes.jsonl:3 is not a JSON object; skipped",
    ]
    (run / "eval_episodes.jsonl").unlink()
    (run / "eval_episodes.jsonl").mkdir()
    _set_meta(run, summary={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [record] = load_runs([tmp_path])
        assert run_metric(record, "train") == 6.0 and run_metric(record, "best_eval") is None
    assert any("eval_episodes.jsonl cannot be read" in str(w.message) for w in caught)


def test_resume_refuses_a_damaged_middle_line_but_drops_a_torn_last_one(tmp_path):
    run = _runs(tmp_path, 1)[0]
    metrics = run / "metrics.jsonl"
    metrics.write_text('{"global_step": 1}\n{"global_st\n{"global_step": 3}\n')
    before = metrics.read_bytes()
    with pytest.raises(UsageError, match=r"metrics.jsonl:2 does not parse, so the log is damaged; repair or remove that line"):
        check_logs(run)
    with pytest.raises(JsonlDamage):
        truncate_jsonl(metrics, lambda row: True)
    assert metrics.read_bytes() == before  # nothing dropped silently
    metrics.write_text('{"global_step": 1}\n"not an object"\n')
    with pytest.raises(UsageError, match=r"metrics.jsonl:2 is not a JSON object"):
        check_logs(run)
    metrics.write_text('{"global_step": "1"}\n')
    with pytest.raises(UsageError, match=r"metrics.jsonl:1 has global_step '1', not an integer"):
        check_logs(run)
    metrics.write_text('{"global_step": 1}\n{"global_step": 5}\n{"global_st')  # a crash mid-write
    check_jsonl(metrics, "global_step")
    check_logs(run)
    assert truncate_jsonl(metrics, lambda row: row["global_step"] <= 1, "global_step") == 1
    assert metrics.read_text() == '{"global_step": 1}\n'


# --------------------------------------------------------------------------------------------
# unpack: clashing entries, over-long names


def _zip(path: Path, entries: dict[str, str]) -> Path:
    meta = json.dumps({"schema_version": 1, "algo": "ppo", "env_id": "CartPole-v1", "seed": 1})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("run/metadata.json", meta)
        for name, text in entries.items():
            zf.writestr(name, text)
    return path


@pytest.mark.parametrize("entries, problem", [
    ({"run/logs": "a file", "run/logs/x.txt": "needs logs/ as a directory"}, "'run/logs' is a file, but another entry needs it"),
    ({"run/a.txt": "1", "run/./a.txt": "2"}, "it holds 'run/./a.txt' twice"),
    ({"run/" + "x" * 300: "long"}, "has a name over 255 bytes"),
])
def test_unpack_refuses_zips_whose_entries_cannot_coexist(tmp_path, entries, problem):
    archive = _zip(tmp_path / "bad.zip", entries)
    with pytest.raises(UsageError, match=problem):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_refuses_malformed_metadata(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("run/metadata.json", json.dumps({"schema_version": 1, "algo": "ppo", "env_id": "CartPole-v1", "seed": [1]}))
    with pytest.raises(UsageError, match=r"run/metadata.json has seed \[1\], not an int"):
        unpack(archive, tmp_path / "out")


# --------------------------------------------------------------------------------------------
# sweeps: tyro's spellings of reserved flags, same-name sweeps, a malformed sweep.json


@pytest.mark.parametrize("extra, reserved", [(["--env_id", "X"], "--env-id"), (["--env-id=X"], "--env-id"),
                                             (["--output_dir", "x"], "--output-dir"), (["--dry_run"], "--dry-run")])
def test_sweep_refuses_every_spelling_of_a_reserved_flag(tmp_path, extra, reserved):
    with pytest.raises(UsageError, match=f"^the sweep sets {reserved} for each run itself"):
        launcher.main(["--env-ids", "CartPole-v1", "--command", PPO, "--output-dir", str(tmp_path / "out"),
                       "--", "--total-timesteps", "100", *extra])
    assert not (tmp_path / "out").exists()


def test_two_sweeps_with_the_same_name_at_the_same_instant(tmp_path):
    barrier = threading.Barrier(2)
    results: list[object] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(launcher.new_sweep_dir(tmp_path / "sweeps", "same", ["ppo"]))
        except UsageError as e:
            results.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, UsageError)]
    assert len(errors) == 1 and results.count(tmp_path / "sweeps" / "same") == 1
    assert "a sweep named same was started at the same time" in str(errors[0]) and "pick another --name" in str(errors[0])


def test_malformed_sweep_record_is_one_sentence(tmp_path):
    sweep_dir = tmp_path / "sweeps" / "s"
    sweep_dir.mkdir(parents=True)
    record = {"name": "s", "status": "finished", "settings": {"commands": [PPO], "env_ids": ["CartPole-v1"], "seeds": [1],
                                                               "extra_args": []},
              "runs": [{"key": "k", "algo": "ppo", "command": PPO, "env_id": "CartPole-v1", "seed": "1", "slot": "runs/k",
                        "log_file": "logs/k.log", "status": "finished"}]}
    (sweep_dir / "sweep.json").write_text(json.dumps(record))
    with pytest.raises(UsageError, match=r"sweep.json has runs\[0\].seed \"1\", not an int; the sweep record is damaged"):
        launcher.main(["--resume-sweep", str(sweep_dir)])


def test_a_second_ctrl_c_during_a_save_waits_for_the_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C, then Ctrl-C again while the checkpoint is being written: the checkpoint completes and
    loads, then the run leaves with one line and exit status 130, not a traceback."""
    import json
    import os
    import signal

    from axiomrl import dqn
    from axiomrl_utils import checkpoint as ckpt
    from axiomrl_utils.run import start_run

    args = dqn.Args(output_dir=str(tmp_path), progress=False, total_timesteps=1000, eval_every=0, checkpoint_every=0)
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(SystemExit) as stopped:
        with start_run(args, dqn.__file__) as run:
            run.declare_state()
            write = run.checkpoints.write

            def write_interrupted(*a, **k):
                os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C arrives mid-save
                return write(*a, **k)

            run.checkpoints.write = write_interrupted
            os.kill(os.getpid(), signal.SIGINT)  # the first: save, then stop
            assert run.due("checkpoint", 10)
            run.save(10)
            pytest.fail("the save should have ended the run")
    assert stopped.value.code == 130
    run_dir = run.dir
    assert ckpt.load(run_dir / "checkpoints" / "latest.pt")[ckpt.RESERVED]["global_step"] == 10
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "interrupted" and meta["latest_checkpoint_path"] == "checkpoints/latest.pt"
    assert signal.getsignal(signal.SIGINT) is handler_before  # the run's handlers are gone
