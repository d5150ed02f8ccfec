"""benchmark/speed.py runs end to end at a tiny size and writes its tables (the figures themselves are not tested)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_speed_benchmark_writes_its_tables(tmp_path: Path) -> None:
    out = tmp_path / "speed.md"
    cmd = [sys.executable, str(REPO / "benchmark" / "speed.py"), "--systems", "ppo", "ppo-bare", "sb3-ppo", "env",
           "--rounds", "1", "--total-timesteps", "1024", "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for row in ("| ppo |", "| ppo-bare |", "| sb3-ppo |", "| env |", "ppo.py / SB3 PPO", "ppo.py run management on / off"):
        assert row in text, row
    results = {r["system"]: r for r in json.loads(out.with_suffix(".json").read_text())}
    assert results["ppo"]["steps"] == results["ppo-bare"]["steps"] == results["sb3-ppo"]["steps"] == 1024
    # run management was timed from the inside: some of the run, never more than all of it
    assert 0 < results["ppo"]["run_management_s"] < results["ppo"]["wall_s"]
    assert results["ppo-bare"]["run_management_s"] is None and results["sb3-ppo"]["run_management_s"] is None
    assert "| ppo.py |" in text and "≤ 3%" in text
    # the loop leaves the setup out: shorter than the whole call, and it is where the steps were taken
    for name in ("ppo", "ppo-bare", "sb3-ppo", "env"):
        assert 0 < results[name]["loop_s"] < results[name]["wall_s"], name
    assert "ppo.py / SB3 PPO, loop |" in text


def test_rounds_alternate_the_order_of_the_systems() -> None:
    """ABBA: a system's place in the sequence must not favour it in every round."""
    sys.path.insert(0, str(REPO / "benchmark"))
    try:
        import speed
    finally:
        sys.path.remove(str(REPO / "benchmark"))
    systems = ["ppo", "ppo-bare", "sb3-ppo"]
    assert [speed.round_order(systems, r) for r in (1, 2, 3)] == [systems, systems[::-1], systems]
