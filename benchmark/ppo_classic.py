"""ppo.py on CartPole-v1, Acrobot-v1 and MountainCar-v0 beside CleanRL's published returns.

    python benchmark/ppo_classic.py                      # 3 seeds x 500k steps, 2 at a time
    python benchmark/ppo_classic.py --num-seeds 5 --workers 1

A seed sweep (`axiomrl sweep`, so a second call skips finished runs and resumes unfinished ones)
followed by `axiomrl leaderboard --reference benchmark/reference/cleanrl.json`: per env the mean
of each seed's last 100 training episodes (CleanRL's aggregation), mean ± std, IQM with its
bootstrap CI, and pass/fail against the published mean - 2 std. The table goes to
benchmark/results/ppo_classic_latest.md; exit 1 when a row regresses.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-seeds", type=int, default=3, help="seeds per env (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--total-timesteps", type=int, default=500_000, help="steps per run (default 500 000)")
    parser.add_argument("--output-dir", default=str(REPO / "benchmark" / "runs"), help="where the sweep goes")
    args = parser.parse_args()

    sweep_dir = Path(args.output_dir) / "sweeps" / "ppo_classic"
    sweep = [
        sys.executable, "-m", "axiomrl_utils.benchmark", "--command", f"{sys.executable} axiomrl/ppo.py",
        "--env-ids", *ENVS, "--num-seeds", str(args.num_seeds), "--workers", str(args.workers),
        "--output-dir", args.output_dir, "--name", "ppo_classic", "--", "--total-timesteps", str(args.total_timesteps),
    ]
    if subprocess.run(sweep, cwd=REPO).returncode != 0:
        print("some runs failed; the leaderboard below covers the finished ones", file=sys.stderr)
    result = REPO / "benchmark" / "results" / "ppo_classic_latest.md"
    board = [
        sys.executable, "-m", "axiomrl_utils.commands.cli", "leaderboard", str(sweep_dir),
        "--reference", str(REPO / "benchmark" / "reference" / "cleanrl.json"), "--format", "markdown", "--output", str(result),
    ]
    code = subprocess.run(board, cwd=REPO).returncode
    print(result.read_text() if result.exists() else "no leaderboard written")
    return code


if __name__ == "__main__":
    sys.exit(main())
