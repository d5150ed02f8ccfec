"""benchmark/speed_families.py end to end on its cheapest family, against a stand-in for CleanRL.

CI has no CleanRL checkout, so the stand-in's ppo.py is a small random-action CartPole loop that
holds exactly the texts the benchmark patches in CleanRL's ppo.py; it exits non-zero unless the
patched episode loop (gymnasium 1.x infos read through the benchmark's `final_infos` helper)
saw finished episodes. The figures themselves are not tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmark" / "speed_families.py"

FAKE_PPO = '''import argparse
import gymnasium as gym

parser = argparse.ArgumentParser()
parser.add_argument("--env-id")
parser.add_argument("--total-timesteps", type=int)
parser.add_argument("--seed", type=int)
args = parser.parse_args()
envs = gym.vector.SyncVectorEnv(
    [lambda: gym.wrappers.RecordEpisodeStatistics(gym.make(args.env_id)) for _ in range(4)],
)
envs.reset(seed=args.seed)
envs.action_space.seed(args.seed)
lengths = []
for _ in range(args.total_timesteps // 4):
    next_obs, rewards, terminations, truncations, infos = envs.step(envs.action_space.sample())
    if "final_info" in infos:
        for info in infos["final_info"]:
            if info and "episode" in info:
                lengths.append(int(info["episode"]["l"]))
assert lengths and all(length > 0 for length in lengths), lengths
'''


def fake_cleanrl(root: Path, ppo: str = FAKE_PPO) -> Path:
    (root / "cleanrl").mkdir(parents=True)
    (root / "cleanrl_utils").mkdir()
    (root / "cleanrl_utils" / "__init__.py").write_text("")
    (root / "cleanrl" / "ppo.py").write_text(ppo)
    return root


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_one_family_is_measured_against_patched_cleanrl_with_ceilings(tmp_path: Path) -> None:
    out = tmp_path / "results" / "families.md"
    proc = run("--cleanrl", str(fake_cleanrl(tmp_path / "cleanrl")), "--families", "ppo", "--pairs", "1",
               "--steps-scale", "0.001", "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "| ppo.py | CartPole-v1 | 512 |" in text
    data = json.loads(out.with_suffix(".json").read_text())
    runs = data["runs"]
    assert [r["side"] for r in runs] == ["axiomrl", "cleanrl"]  # pair 1: ours first
    for r in runs:
        assert r["steps"] == 512 and r["seed"] == 1
        assert r["wall_s"] > 0 and r["cpu_s"] > 0
    (row,) = data["rows"]
    assert row["ratio"] == runs[0]["sps"] / runs[1]["sps"]
    # every ceiling measured, and the best is below each of its two parts
    assert 0 < row["best_sps"] < min(row["env_sps"], row["compute_sps"])
    assert row["flop_sps"] > 0 and data["ceilings"]["ppo"]["updates"] == 16  # 4 epochs x 4 minibatches, one rollout
    assert data["meta"]["cleanrl_commit"] == "(not a git checkout)"


def test_bad_cleanrl_paths_fail_with_one_sentence_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "families.md"
    proc = run("--cleanrl", str(tmp_path / "missing"), "--families", "ppo", "--output", str(out))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: --cleanrl {tmp_path / 'missing'} does not exist; "
                                                "pass a checkout of https://github.com/vwxyzjn/cleanrl"]
    # a CleanRL whose script no longer holds a text a patch replaces is refused, naming the file
    other = fake_cleanrl(tmp_path / "other", ppo=FAKE_PPO.replace("gym.vector.SyncVectorEnv(", "make_vector("))
    proc = run("--cleanrl", str(other), "--families", "ppo", "--output", str(out))
    assert proc.returncode == 1 and "CleanRL's cleanrl/ppo.py contains 'gym.vector.SyncVectorEnv(' 0 times, not 1" in proc.stderr
    assert not out.exists() and not out.with_suffix(".json").exists()
