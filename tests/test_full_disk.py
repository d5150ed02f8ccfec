"""A full disk: real small tmpfs mounts (root only; the tests skip, saying so, where mounting is not
permitted), real ppo.py processes, a real sweep.

ppo.py runs from a copy outside the git checkout, so no code.diff of a dirty tree changes how much
space a run takes. A "full" disk is a tmpfs filled by a filler file until the kernel says ENOSPC.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from axiomrl_utils.commands import sweep as launcher
from axiomrl_utils.jsonl import read_json, read_jsonl

from conftest import REPO, script_env, tree_snapshot

PAGE = 4096
TINY = ["--env-id", "CartPole-v1", "--num-envs", "2", "--num-steps", "64", "--eval-every", "0", "--checkpoint-every", "128",
        "--no-progress"]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted at tmp_path/disk, unmounted at the end whatever happened."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    _mount(mount_point, 4 << 20)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=False)


def _mount(mount_point: Path, size: int) -> None:
    if shutil.which("mount") is None:
        pytest.skip("the full-disk tests mount a tmpfs and this system has no `mount` command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the full-disk tests mount a tmpfs, which needs root here ({done.stderr.strip() or 'mount failed'})")


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` until the kernel refuses (ENOSPC), then give back `leave` bytes (whole pages)."""
    filler = disk / "filler"
    chunk = b"\0" * PAGE
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size // PAGE * PAGE - leave))
    return filler


@pytest.fixture(scope="module")
def ppo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ppo.py outside the git checkout (no code.diff), importing axiomrl_utils from the repo."""
    script = tmp_path_factory.mktemp("scripts") / "ppo.py"
    shutil.copy(REPO / "axiomrl" / "ppo.py", script)
    return script


def ppo(script: Path, *args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300,
                          env=script_env(), cwd=REPO, **popen)


def one_sentence(stderr: str) -> str:
    """The `error: ...` line a UsageError prints; no traceback before it."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: cannot write "), stderr
    return lines[-1]


def test_a_full_disk_at_start_leaves_no_run_directory(tmpfs: Path, ppo_copy: Path) -> None:
    out = tmpfs / "runs"
    out.mkdir()
    fill(tmpfs)
    done = ppo(ppo_copy, *TINY, "--total-timesteps", "256", "--output-dir", str(out))
    assert done.returncode == 1
    sentence = one_sentence(done.stderr)
    assert f"{out}/ppo__CartPole-v1__seed1__" in sentence and "(No space left on device)" in sentence
    assert sentence.endswith("so no run was created; free space on that disk or pass another --output-dir")
    assert list(out.iterdir()) == []  # no half-created run directory, no temp file


def test_a_full_disk_mid_run_fails_the_run_which_resumes_once_space_is_free(tmpfs: Path, ppo_copy: Path) -> None:
    """The disk fills up after the first checkpoint: the next save fails, the run ends `failed` with
    one sentence; a resume on the still-full disk changes nothing; once the filler is gone, --resume
    finishes the run with one metrics row per iteration."""
    out = tmpfs / "runs"
    child = subprocess.Popen([sys.executable, str(ppo_copy), *TINY, "--total-timesteps", "100000", "--keep-checkpoints", "100",
                              "--output-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=script_env(), cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/checkpoints/step_*.pt")):
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.02)
        filler = fill(tmpfs, leave=16 * PAGE)  # room for the logs, not for a 170 kB checkpoint
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 1
    sentence = one_sentence(stderr)
    (run_dir,) = list(out.iterdir())
    meta = read_json(run_dir / "metadata.json")
    assert meta["status"] == "failed" and "error: " + meta["error"] == sentence
    checkpoints = run_dir / "checkpoints"
    (good,) = [int(p.stem[5:]) for p in checkpoints.glob("step_*.pt") if os.path.samefile(p, checkpoints / "latest.pt")]
    # the file that did not fit, how much a checkpoint needs, and how to go on
    assert f"cannot write {run_dir}/" in sentence and "(No space left on device; a checkpoint of this run needs about " in sentence
    size = (checkpoints / "latest.pt").stat().st_size
    assert f"about {size / 1e3:.0f} kB)" in sentence
    assert sentence.endswith(f"free space on that disk, then continue it from step {good:,} with --resume {run_dir}")
    assert not [p for p in run_dir.rglob(".*.tmp")]  # the failed write's temp files: the space the user needs back

    # still full: the resume says so in one sentence and leaves the run as it was
    fill(tmpfs)
    before = tree_snapshot(run_dir)
    done = ppo(ppo_copy, "--resume", str(run_dir), "--total-timesteps", str(good + 256))
    assert done.returncode == 1 and one_sentence(done.stderr).endswith(f"to reopen the run; free space on that disk, then resume again with --resume {run_dir}")
    assert tree_snapshot(run_dir) == before

    filler.unlink()
    done = ppo(ppo_copy, "--resume", str(run_dir), "--total-timesteps", str(good + 256))
    assert done.returncode == 0, done.stderr
    meta = read_json(run_dir / "metadata.json")
    assert meta["status"] == "finished" and meta["error"] is None and meta["total_steps"] == good + 256
    assert [r["from_step"] for r in meta["resumes"]] == [good]
    assert [r["global_step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(128, good + 256 + 1, 128))
    assert [r["step"] for r in read_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl")] == list(range(128, good + 256 + 1, 128))


def test_a_sweep_records_the_run_on_a_full_disk_as_failed_and_finishes_the_others(tmp_path: Path, ppo_copy: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                                  capsys: pytest.CaptureFixture) -> None:
    """Seed 2's slot is a full tmpfs (a few pages left for the launcher's own status file): its run
    fails with the full-disk sentence, which reaches sweep.json and report.md; seed 3 finishes."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    command = f"python {ppo_copy}"
    argv = ["--env-ids", "CartPole-v1", "--command", command, "--workers", "1", "--output-dir", str(tmp_path / "out"),
            "--name", "disk", "--", "--total-timesteps", "128", *TINY[2:]]
    assert launcher.main([*argv[:2], "--num-seeds", "1", *argv[2:]]) == 0  # the sweep exists: a slot can be mounted
    sweep_dir = tmp_path / "out" / "sweeps" / "disk"
    slot = sweep_dir / "runs" / "ppo__CartPole-v1__seed2"
    slot.mkdir()
    _mount(slot, 1 << 20)
    try:
        fill(slot, leave=12 * PAGE)  # the launcher's sweep-run.json and the logs fit, a 170 kB checkpoint does not
        capsys.readouterr()
        assert launcher.main([*argv[:2], "--num-seeds", "3", *argv[2:]]) == 1
    finally:
        subprocess.run(["umount", "--lazy", str(slot)], check=False)
    err = capsys.readouterr().err
    runs = {r["key"]: r for r in read_json(sweep_dir / "sweep.json")["runs"]}
    assert {k: r["status"] for k, r in runs.items()} == {
        "ppo__CartPole-v1__seed1": "finished", "ppo__CartPole-v1__seed2": "failed", "ppo__CartPole-v1__seed3": "finished"}
    error = runs["ppo__CartPole-v1__seed2"]["error"]
    assert error.startswith(f"cannot write {slot}/") and "(No space left on device" in error
    assert f"ppo__CartPole-v1__seed2 ({error}; log " in err
    assert f"## Failed runs\n\n- ppo__CartPole-v1__seed2: {error} (exit 1;" in (sweep_dir / "report.md").read_text()


def test_a_log_flush_that_fails_leaves_whole_lines_and_keeps_the_rest_pending(tmpfs: Path) -> None:
    """What a resume relies on: a failed flush cuts the file back to whole lines (a buffered file
    object would leave a torn line that its next flush buries mid-file), and nothing is lost or
    reordered once space is free."""
    from axiomrl_utils.jsonl import JsonlWriter, check_jsonl

    filler = fill(tmpfs, leave=PAGE)
    writer = JsonlWriter(tmpfs / "metrics.jsonl")
    written = 0
    with pytest.raises(OSError) as failed:
        for written in range(1, 10_000):
            writer.write({"global_step": written, "padding": "x" * 100})
            if written % 7 == 0:
                writer.flush()
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(tmpfs / "metrics.jsonl")
    on_disk = (tmpfs / "metrics.jsonl").read_bytes()
    assert 0 < len(on_disk) <= PAGE and on_disk.endswith(b"\n")
    check_jsonl(tmpfs / "metrics.jsonl", "global_step")
    filler.unlink()
    writer.close()
    assert [r["global_step"] for r in read_jsonl(tmpfs / "metrics.jsonl")] == list(range(1, written + 1))
