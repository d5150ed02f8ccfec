"""How fast is `axiomrl compare` over 10 000 runs? Builds report_speed.py's synthetic set (10 algos x
20 envs x 50 seeds), times `axiomrl compare RUNS --normalize minmax` in a fresh interpreter (median
of --repeats after a warm-up), prints a table and writes benchmark/results/compare_speed.md.

    python benchmark/compare_speed.py                # 10 000 runs
    python benchmark/compare_speed.py --runs 2000
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmark"))

from report_speed import make_runs, time_command  # noqa: E402

CASES = {
    "compare (10 algos, 45 pairs)": ["compare", "{root}", "--normalize", "minmax"],
    "compare --algo ppo --algo dqn": ["compare", "{root}", "--normalize", "minmax", "--algo", "ppo", "--algo", "dqn"],
    "leaderboard (for scale)": ["leaderboard", "{root}"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        make_runs(root, args.runs)
        results = {name: time_command([a.format(root=root) for a in argv], args.repeats) for name, argv in CASES.items()}
    lines = [f"# `axiomrl compare` over {args.runs} synthetic runs", "",
             f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}, median of {args.repeats} after a warm-up; 2000 bootstrap resamples.", "",
             "| command | wall s | cpu s |", "|---|---:|---:|"]
    lines += [f"| {name} | {wall:.2f} | {cpu:.2f} |" for name, (wall, cpu) in results.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    (REPO / "benchmark" / "results" / "compare_speed.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
