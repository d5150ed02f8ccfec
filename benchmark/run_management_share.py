"""How much of a run's time is run management, per family, measured inside the run as speed.py does
for ppo.py: every call into it (`start_run` and each `Run` method a script calls) is timed, in the
same process as the training loop (issue 26's "run management <= 3% in every family").

    python benchmark/run_management_share.py                       # every family of speed_families.py
    python benchmark/run_management_share.py --families sac dqn_atari

Each family trains its speed_families.py workload (same env, steps and flags) at the scripts'
defaults otherwise: evaluation every 50 000 steps and at the end, checkpoints every 50 000 steps and
at the end, jsonl + TensorBoard. A short run still evaluates and checkpoints once (at its last
step), so the table gives: the share of the loop's wall time in run management without the
evaluation (this includes the final checkpoint, once per run rather than once per 50 000 steps: an
upper bound for long runs), one evaluation's seconds, and the share evaluation takes at the default
cadence (one evaluation per 50 000 steps at this run's speed). Writes
benchmark/results/run_management_share.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmark"))

from speed_families import FAMILIES  # noqa: E402

from axiomrl_utils.jsonl import write_text_atomic  # noqa: E402

EVAL_EVERY = 50_000  # RunArgs' default

# one family in a fresh process: speed.py's instrumentation around the script's own main()
WORKER = """
import json, sys, time
sys.path[:0] = [{repo!r}, {bench!r}]
import importlib
import tyro
from speed import _timed, mark_first_call, time_run_management, wrapper_overhead
script = importlib.import_module("axiomrl.{module}")
from axiomrl_utils import run as run_module
spent, evaluation, marks = [0.0, 0], [0.0, 0], []
time_run_management(script, spent)
run_module.Run.evaluate = _timed(run_module.Run.evaluate, evaluation)  # inside the run-management timer
mark_first_call(run_module.Run, "log_episodes", marks)
args = tyro.cli(script.Args, args={argv!r})
script.main(args)
end = time.perf_counter()
overhead = wrapper_overhead()
print(json.dumps(dict(loop_s=end - marks[0], run_management_s=spent[0] - spent[1] * overhead, calls=spent[1],
                      evaluation_s=evaluation[0], evaluations=evaluation[1], steps=args.total_timesteps)))
"""


def measure(name: str, out: Path) -> dict:
    family = FAMILIES[name]
    steps = family.steps
    argv = ["--env-id", family.env_id, "--total-timesteps", str(steps), "--seed", "1", "--output-dir", str(out),
            "--no-progress", *family.flags]
    if family.learning_starts:
        argv += ["--learning-starts", str(family.learning_starts)]
    code = WORKER.format(repo=str(REPO), bench=str(REPO / "benchmark"), module=family.script[:-3], argv=argv)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    loop, rm, ev = r["loop_s"], r["run_management_s"], r["evaluation_s"]
    per_step = (loop - ev) / r["steps"]
    return {
        "family": name, "script": family.script, "env_id": family.env_id, "steps": r["steps"], **r,
        "share_without_eval": (rm - ev) / (loop - ev),
        "eval_share_at_default_cadence": ev / r["evaluations"] / (ev / r["evaluations"] + EVAL_EVERY * per_step) if r["evaluations"] else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--output", default=str(REPO / "benchmark" / "results" / "run_management_share.md"))
    opts = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in opts.families:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, Path(tmp) / name))
    lines = [
        f"# Run management inside the run, per family\n\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}, `python benchmark/run_management_share.py {' '.join(sys.argv[1:])}`. Defaults: evaluation "
        f"and checkpoints every {EVAL_EVERY:,} steps and at the end, jsonl + TensorBoard.\n",
        "| family | env | steps | loop (s) | run management without evaluation | calls | one evaluation (s) | evaluation at the default cadence | total at the default cadence |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = r["share_without_eval"] + r["eval_share_at_default_cadence"]
        lines.append(
            f"| {r['script']} | {r['env_id']} | {r['steps']:,} | {r['loop_s']:.1f} | {100 * r['share_without_eval']:.2f}% | "
            f"{r['calls']:,} | {r['evaluation_s'] / max(r['evaluations'], 1):.1f} | {100 * r['eval_share_at_default_cadence']:.2f}% | "
            f"{100 * total:.2f}% |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(opts.output)
    write_text_atomic(out, text)
    write_text_atomic(out.with_suffix(".json"), json.dumps({"rows": rows, "load_before": load}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
