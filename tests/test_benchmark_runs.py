"""benchmark/spec_runs.py's launcher (used by value_based_returns.py and the other returns benchmarks):
a deadline stops the runs still going with SIGTERM, so each saves a checkpoint and a later launch
resumes it; and value_based_returns.py refuses a game it has no random-policy score for."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmark"))

from spec_runs import Spec, SpecRuns  # noqa: E402


def test_a_deadline_interrupts_runs_with_a_checkpoint_and_the_next_launch_resumes_them(tmp_path: Path) -> None:
    spec = Spec("dqn", "CartPole-v1", 2_000_000, "returns", (1,), ("--learning-starts", "100", "--eval-every", "0"))
    runs = SpecRuns(tmp_path)
    start = time.monotonic()
    runs.launch(runs.missing([spec]), workers=1, deadline=time.monotonic() + 8, stagger_s=1)
    assert time.monotonic() - start < 60  # stopped at the deadline, far from its 2M steps

    run_dir, meta = runs.find_run(spec, 1)
    assert meta["status"] == "interrupted" and 0 < meta["total_steps"] < spec.steps
    assert (run_dir / "checkpoints" / "latest.pt").is_file()
    assert (tmp_path / "returns" / "dqn__CartPole-v1__seed1.load.json").is_file()

    assert runs.missing([spec]) == [(spec, 1)]  # not finished, not running: to be launched again
    command = runs.command(spec, 1)
    assert command[command.index("--resume") + 1] == str(run_dir)


def test_value_based_returns_refuses_a_game_without_a_random_score(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmark" / "value_based_returns.py"), "--no-launch", "--only", "atari",
         "--atari-env", "ALE/NoSuchGame-v5", "--runs-dir", str(tmp_path), "--result", "should_not_exist"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "ALE/NoSuchGame-v5 has no random-policy score in benchmark/reference/scores.json" in proc.stderr
    assert not (REPO / "benchmark" / "results" / "should_not_exist.md").exists() and not any(tmp_path.iterdir())


def test_value_based_returns_tables_an_empty_runs_directory(tmp_path: Path) -> None:
    result = tmp_path / "tables" / "value_based"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmark" / "value_based_returns.py"), "--no-launch", "--atari-env", "ALE/Breakout-v5",
         "--runs-dir", str(tmp_path / "runs"), "--result", str(result)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    table = result.with_suffix(".md").read_text()
    assert "## Atari scripts on ALE/Breakout-v5" in table and "random-policy score is 1.7" in table
    assert json.loads(result.with_suffix(".json").read_text())["atari"] == []
