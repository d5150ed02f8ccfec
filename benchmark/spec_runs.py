"""The runs of a benchmark that lists (script, env, steps, seeds) specs: find them, launch the
missing ones (a run that stopped early is resumed), a few at a time, and keep the machine's load
average beside each, since SPS on a shared machine means little without it.

Used by continuous_returns.py, recurrent_returns.py and value_based_returns.py:

    runs = SpecRuns(REPO / "benchmark" / "runs" / "mine")
    runs.launch(runs.missing(specs), workers=2)
    run_dir, metadata = runs.find_run(spec, seed)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from axiomrl_utils.host import pid_alive  # noqa: E402
from axiomrl_utils.jsonl import write_text_atomic  # noqa: E402


@dataclass(frozen=True)
class Spec:
    script: str
    env_id: str
    steps: int
    kind: str  # "returns" or "sps": the sub-directory of the benchmark's runs
    seeds: tuple[int, ...] = (1, 2, 3)
    extra: tuple[str, ...] = field(default=())


class SpecRuns:
    """The runs of specs under `out/<kind>/`."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def spec_dir(self, spec: Spec) -> Path:
        return self.out / spec.kind

    def find_run(self, spec: Spec, seed: int) -> tuple[Path, dict] | None:
        """The newest run of this spec and seed in its output directory, with its metadata."""
        root = self.spec_dir(spec)
        if not root.is_dir():
            return None
        found = []
        for run_dir in root.iterdir():
            try:
                meta = json.loads((run_dir / "metadata.json").read_text())
            except (OSError, ValueError):
                continue
            if meta.get("algo") == spec.script and meta.get("env_id") == spec.env_id and meta.get("seed") == seed:
                found.append((meta.get("created_at_utc", ""), run_dir, meta))
        if not found:
            return None
        _, run_dir, meta = max(found)
        return run_dir, meta

    def command(self, spec: Spec, seed: int) -> list[str]:
        """The training command of one seed: resume a stopped run, else start a new one."""
        base = ["nice", "-n", "10", sys.executable, str(REPO / "axiomrl" / f"{spec.script}.py")]
        existing = self.find_run(spec, seed)
        if existing is not None and existing[1].get("latest_checkpoint_path"):
            return base + ["--resume", str(existing[0]), "--no-progress"]
        return base + [
            "--env-id", spec.env_id, "--seed", str(seed), "--total-timesteps", str(spec.steps),
            "--output-dir", str(self.spec_dir(spec)), "--no-progress", *spec.extra,
        ]

    def needs_run(self, spec: Spec, seed: int) -> bool:
        """No finished run of this seed, and none in progress (by this launcher or another one)."""
        existing = self.find_run(spec, seed)
        if existing is None:
            return True
        meta = existing[1]
        running = meta.get("status") == "running" and pid_alive(meta.get("pid"))
        return meta.get("status") != "finished" and not running

    def missing(self, specs: list[Spec]) -> list[tuple[Spec, int]]:
        return [
            (spec, seed)
            for spec in specs
            if (REPO / "axiomrl" / f"{spec.script}.py").exists()
            for seed in spec.seeds
            if self.needs_run(spec, seed)
        ]

    def running_elsewhere(self, own: set[int]) -> int:
        """Benchmark runs alive under `out` that this launcher did not start (another launcher's)."""
        count = 0
        for meta_file in self.out.glob("*/*/metadata.json"):
            try:
                meta = json.loads(meta_file.read_text())
            except (OSError, ValueError):
                continue
            if meta.get("status") == "running" and meta.get("pid") not in own and pid_alive(meta.get("pid")):
                count += 1
        return count

    def _stem(self, spec: Spec, seed: int) -> Path:
        return self.spec_dir(spec) / f"{spec.script}__{spec.env_id.replace('/', '-')}__seed{seed}"  # ALE/... ids

    def launch(self, todo: list[tuple[Spec, int]], workers: int, deadline: float | None = None, stagger_s: float = 20) -> None:
        """Run `todo`, keeping at most `workers` benchmark runs alive, counting other launchers' runs;
        the load average sampled during each run is written next to its log. At `deadline` (a
        time.monotonic() value) nothing more starts and the runs still going get SIGTERM: each saves
        a checkpoint and ends as interrupted, so a later launch resumes it. `stagger_s`: the pause after
        each start, for the run to write its metadata before runs are counted again."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.out.mkdir(parents=True, exist_ok=True)
        queue, active, stopped = list(todo), [], False
        while queue or active:
            if deadline is not None and not stopped and time.monotonic() >= deadline:
                stopped = True
                print(f"deadline: stopping {len(active)} runs, {len(queue)} not started", flush=True)
                queue.clear()
                for proc, *_ in active:
                    proc.send_signal(signal.SIGTERM)
            while queue and len(active) + self.running_elsewhere({a[0].pid for a in active}) < workers:
                spec, seed = queue.pop(0)
                if not self.needs_run(spec, seed):  # another launcher took it meanwhile
                    continue
                self.spec_dir(spec).mkdir(parents=True, exist_ok=True)
                stem = self._stem(spec, seed)
                log = open(stem.with_suffix(".log"), "a")
                cmd = self.command(spec, seed)
                print(f"launch: {' '.join(cmd[3:])}", flush=True)
                proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.spec_dir(spec))
                active.append((proc, log, spec, seed, stem, []))
                time.sleep(stagger_s)
            time.sleep(5)
            for item in list(active):
                proc, log, spec, seed, stem, loads = item
                loads.append(os.getloadavg()[0])
                if proc.poll() is not None:
                    log.close()
                    active.remove(item)
                    write_text_atomic(
                        Path(f"{stem}.load.json"),
                        json.dumps({"load_mean": float(np.mean(loads)), "load_max": float(np.max(loads)), "samples": len(loads)}),
                    )
                    print(f"done ({proc.returncode}): {spec.script} {spec.env_id} seed{seed}", flush=True)

    def load_during(self, spec: Spec, seed: int) -> float | None:
        """The mean load average while this run trained, if the launcher recorded it."""
        try:
            return json.loads(Path(f"{self._stem(spec, seed)}.load.json").read_text())["load_mean"]
        except (OSError, ValueError, KeyError):
            return None


def phase_sps(run_dir: Path, start: int, end: int) -> float | None:
    """Steps per wall-clock second between the metrics lines nearest to `start` and `end` (a phase of
    a run: before learning starts, while learning)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if start <= r["global_step"] <= end]
    if len(rows) < 2 or rows[-1]["wall_time"] <= rows[0]["wall_time"]:
        return None
    return (rows[-1]["global_step"] - rows[0]["global_step"]) / (rows[-1]["wall_time"] - rows[0]["wall_time"])
