"""Benchmark of the tuned presets: every `axiomrl/presets/<script>/<env>.yaml` over seeds, beside the
script's CleanRL defaults on the same env at the same step budget.

    python benchmark/presets.py                    # run what is missing (2 at a time), write the table
    python benchmark/presets.py --seeds 5          # more seeds
    python benchmark/presets.py --no-launch        # only the table of what has finished

Each side is an `axiomrl sweep` (so interrupted runs resume, finished ones are kept) under
benchmark/runs/presets/sweeps/. Per seed the score is CleanRL's: the mean return of the last 100
training episodes (metadata summary.train_return_last100); the table gives mean ± population std
over seeds, plus the final evaluation return (10 deterministic episodes). Writes
benchmark/results/presets.md and presets.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmark" / "runs" / "presets"
RESULT = REPO / "benchmark" / "results" / "presets.md"


def presets() -> list[tuple[str, str, dict]]:
    """(script stem, preset name, its values) of every shipped preset."""
    found = []
    for path in sorted((REPO / "axiomrl" / "presets").glob("*/*.yaml")):
        found.append((path.parent.name, path.stem, yaml.safe_load(path.read_text())))
    return found


def sweep_name(script: str, name: str, side: str) -> str:
    return f"{script}__{name}__{side}"


def launch(script: str, name: str, values: dict, seeds: int, workers: int) -> None:
    """The preset's sweep, then the defaults' sweep at the preset's step budget (continued if interrupted)."""
    total = str(values["total_timesteps"])
    sides = {
        "preset": [f"python axiomrl/{script}.py --preset {name}", ["--no-progress"]],
        "defaults": [f"python axiomrl/{script}.py", ["--no-progress", "--total-timesteps", total]],
    }
    for side, (command, extra) in sides.items():
        subprocess.run(
            ["nice", "-n", "10", sys.executable, "-m", "axiomrl_utils.commands.cli", "sweep",
             "--env-ids", values["env_id"], "--command", command, "--num-seeds", str(seeds), "--workers", str(workers),
             "--output-dir", str(OUT), "--name", sweep_name(script, name, side), "--", *extra],
            cwd=REPO, check=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        )


def scores(script: str, name: str, side: str) -> dict[str, list[float]]:
    """Per finished run of a sweep: last-100 training return and final evaluation return."""
    train, final_eval = [], []
    for meta_path in sorted((OUT / "sweeps" / sweep_name(script, name, side)).rglob("metadata.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("status") != "finished":
            continue
        summary = meta.get("summary", {})
        train.append(summary.get("train_return_last100"))
        final_eval.append(summary.get("eval_return_last"))
    return {"train": [x for x in train if x is not None], "eval": [x for x in final_eval if x is not None]}


def fmt(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if values else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-launch", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="script/name pairs to run, e.g. ppo/MountainCar-v0")
    args = parser.parse_args()

    rows, records = [], []
    for script, name, values in presets():
        if args.only and f"{script}/{name}" not in args.only:
            continue
        if not args.no_launch:
            launch(script, name, values, args.seeds, args.workers)
        preset, defaults = scores(script, name, "preset"), scores(script, name, "defaults")
        rows.append(
            f"| {script}.py | {name} | {values['total_timesteps']:,} | {fmt(preset['train'])} | {fmt(defaults['train'])} "
            f"| {fmt(preset['eval'])} | {fmt(defaults['eval'])} | {len(preset['train'])} / {len(defaults['train'])} |"
        )
        records.append({"script": script, "preset": name, "total_timesteps": values["total_timesteps"],
                        "preset_scores": preset, "default_scores": defaults})
    table = "\n".join([
        "| script | env (preset) | steps | preset: last-100 train return | CleanRL defaults: last-100 train return "
        "| preset: final eval | defaults: final eval | seeds (preset / defaults) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    print(table)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(
        "# Presets vs CleanRL defaults\n\n"
        "`python benchmark/presets.py`: each preset and the script's defaults on the same env at the preset's step "
        "budget; per seed the mean return of the last 100 training episodes and the final evaluation "
        "(10 deterministic episodes), mean ± population std over seeds. 2-core VM, `OMP_NUM_THREADS=1`.\n\n"
        + table + "\n"
    )
    RESULT.with_suffix(".json").write_text(json.dumps(records, indent=2) + "\n")


if __name__ == "__main__":
    main()
