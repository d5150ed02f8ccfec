"""Training throughput: AxiomRL's ppo.py / dqn.py against stable-baselines3 at identical settings.

    python benchmark/speed.py                        # 3 rounds, 100 000 steps each, writes benchmark/results/speed.md
    python benchmark/speed.py --rounds 5             # more pairs when the machine is noisy
    python benchmark/speed.py --systems ppo sb3-ppo  # a subset
    python benchmark/speed.py --commits 3ebc00f HEAD # ppo.py at each git commit, alternately (what a change bought)

Every measurement is its own subprocess with OMP_NUM_THREADS=1 (so every system runs torch on
one thread), and times only the training call (`main(args)`, or SB3's model construction +
`learn()`), after the imports. Each round runs every system once with the same seed, in the
given order on odd rounds and reversed on even ones (A B, B A, A B, ...), so that a position
effect cannot bias the medians (with a fixed order, ppo.py with run management came out 0.91x
its bare twin in 9 of 9 rounds, while the same pair alternated by hand showed no consistent gap).
Each ratio is taken between measurements made seconds apart. SPS is
steps / wall seconds; CPU SPS is steps / CPU seconds (user + sys) of the process, the steadier
figure when other jobs share the cores. Loop SPS leaves out the setup (building the envs, the
networks and the optimizer, whose construction imports torch._dynamo: ~1.5 s here, paid by both
libraries): steps / seconds from the first environment step (SB3: from `learn()`, which also
resets the env) to the end, close to what CleanRL's and SB3's own SPS counters report (ours also
counts the run management inside the loop: evaluations, checkpoints, logs).

Systems (`--systems`):
- ppo, dqn: the scripts at their defaults, run management on (run directory, jsonl logs,
  TensorBoard, evaluation and checkpoints every 50 000 steps and at the end).
- ppo-bare, dqn-bare: the same scripts with run management switched off: `start_run` is
  replaced by `NoRunManagement`, whose calls do nothing, so the loop is the script's own code
  minus the run machinery. The on/off ratio is the cost of run management.
- sb3-ppo, sb3-dqn: stable-baselines3 (`pip install 'axiomrl[bench]'`) configured like the
  scripts' defaults (CleanRL's): see `sb3_ppo` and `sb3_dqn` for the exact settings.
- env: the environment ceiling, 4 CartPole-v1 in a SyncVectorEnv with episode statistics (as
  ppo.py builds them), stepped with random actions drawn in advance.
CleanRL's own ppo.py is not measured: it is not installed, and copying it here would put
third-party code into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmark" / "results" / "speed.md"
SYSTEMS = ("ppo", "sb3-ppo", "ppo-bare", "env", "dqn", "sb3-dqn", "dqn-bare")
# (numerator, denominator, label, target): ratios of per-round SPS
RATIOS = (
    ("ppo", "sb3-ppo", "ppo.py / SB3 PPO", "≥ 2 (stretch 3)"),
    ("ppo", "ppo-bare", "ppo.py run management on / off", "≥ 0.97"),
    ("ppo", "env", "ppo.py / env ceiling", "-"),
    ("dqn", "sb3-dqn", "dqn.py / SB3 DQN", "≥ 1.5"),
    ("dqn", "dqn-bare", "dqn.py run management on / off", "≥ 0.97"),
)
NUM_ENVS = 4  # ppo.py's default, and the env ceiling's


# ---------------------------------------------------------------------------------------------
# workers: one measurement each, in a fresh interpreter


class NoRunManagement:
    """Stands in for `axiomrl_utils.run.Run` with every call a no-op: a script's loop without its run.

    No directory, no logs, no TensorBoard, no evaluation, no checkpoints; `due` is always False.
    It remembers the last global_step it saw, which is the number of steps trained.
    """

    stop_requested = False

    def __init__(self) -> None:
        self.global_step = 0

    def __enter__(self) -> "NoRunManagement":
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def declare_state(self, envs: Any = None, **objects: Any) -> None:
        pass

    def restore(self) -> dict:
        raise RuntimeError("NoRunManagement cannot resume")

    def log_episodes(self, global_step: int, infos: dict) -> None:
        pass

    def log_metrics(self, global_step: int, metrics: dict) -> None:
        self.global_step = global_step

    def due(self, kind: str, global_step: int) -> bool:
        self.global_step = global_step
        return False

    def evaluate(self, *args: Any, **kwargs: Any) -> dict:
        raise RuntimeError("NoRunManagement does not evaluate")

    def save(self, *args: Any, **kwargs: Any) -> None:
        pass


# Every entry point of run management a script calls: start_run, then these methods of the Run it returns.
RUN_METHODS = ("__enter__", "__exit__", "declare_state", "restore", "log_episodes", "log_metrics", "due", "evaluate", "save")


def _timed(fn: Callable, spent: list[float]) -> Callable:
    """`fn`, adding its wall seconds to spent[0] and counting its calls in spent[1]."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start
            spent[1] += 1

    return wrapper


def time_run_management(script: Any, spent: list[float]) -> None:
    """Make every run-management call of `script` add its wall seconds to spent[0] (and count it in spent[1]).

    The direct measure of what run management costs, free of the run-to-run noise that the on/off
    pair of separate processes carries (±5-10% per pair here).
    """
    from axiomrl_utils import run as run_module

    script.start_run = _timed(script.start_run, spent)
    for name in RUN_METHODS:
        if hasattr(run_module.Run, name):  # --commits may time a Run from before a method existed
            setattr(run_module.Run, name, _timed(getattr(run_module.Run, name), spent))


def mark_first_call(cls: type, name: str, marks: list[float]) -> None:
    """Make the first call of `cls.name` append its perf_counter time to `marks`. On a run's
    `log_episodes`, which the scripts call right after their first env step: where the loop starts."""
    fn = getattr(cls, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        marks.append(time.perf_counter())
        setattr(cls, name, fn)  # once is enough: the other calls go straight to fn
        return fn(*args, **kwargs)

    setattr(cls, name, wrapper)


def wrapper_overhead(calls: int = 200_000) -> float:
    """Seconds one `_timed` wrapper adds to a call (timed on a no-op, best of 5): what the
    instrumentation itself adds to the run-management share, per call."""

    def noop() -> None:
        pass

    wrapped, best = _timed(noop, [0.0, 0]), float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            wrapped()
        middle = time.perf_counter()
        for _ in range(calls):
            noop()
        best = min(best, ((middle - start) - (time.perf_counter() - middle)) / calls)
    return max(best, 0.0)


Trained = tuple[int, Optional[list], float]  # (steps, [seconds, calls] in run management or None, loop start)


def axiomrl_script(name: str, bare: bool, steps: int, seed: int, out: str) -> Callable[[], Trained]:
    """`main(args)` of axiomrl/<name>.py at its defaults; returns (steps trained, [seconds, calls] in run
    management, None when bare; the perf_counter time of the first env step). The caller subtracts the
    timing wrappers' own cost, after its timer stops."""
    import importlib

    script = importlib.import_module(f"axiomrl.{name}")
    # only after the script: imported first, it made start_run's package lookups ~80 ms slower than
    # in a real run (the script's own import order: gymnasium and torch first)
    from axiomrl_utils import run as run_module

    args = script.Args(total_timesteps=steps, seed=seed, output_dir=out, progress=False)
    loop_start: list[float] = []

    def train() -> Trained:
        if bare:
            run = NoRunManagement()
            mark_first_call(NoRunManagement, "log_episodes", loop_start)
            script.start_run = lambda args, file, **options: run
            script.main(args)
            return run.global_step, None, loop_start[0]
        spent = [0.0, 0]
        time_run_management(script, spent)
        mark_first_call(run_module.Run, "log_episodes", loop_start)
        script.main(args)
        (run_dir,) = Path(out).iterdir()
        meta = json.loads((run_dir / "metadata.json").read_text())
        assert meta["status"] == "finished", meta["status"]
        return meta["total_steps"], spent, loop_start[0]

    return train


def sb3_ppo(steps: int, seed: int) -> Callable[[], Trained]:
    """SB3 PPO as ppo.py's defaults (CleanRL's): 4 envs x 128 steps, 4 epochs of 4 minibatches of 128,
    lr 2.5e-4 annealed linearly to 0, separate 64-64 tanh actor and critic with orthogonal init
    (gains sqrt(2), 0.01 actor head, 1 critic head), Adam eps 1e-5, gamma 0.99, GAE 0.95, clip 0.2,
    value clipping 0.2, entropy 0.01, value 0.5, max grad norm 0.5, per-minibatch advantage
    normalisation. (SB3's clipped value loss takes the clipped prediction alone, not the max with the
    unclipped one: the same work.)"""
    import torch.nn as nn
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def train() -> Trained:
        env = make_vec_env("CartPole-v1", n_envs=NUM_ENVS, seed=seed)
        model = PPO(
            "MlpPolicy", env, learning_rate=lambda progress_remaining: 2.5e-4 * progress_remaining,
            n_steps=128, batch_size=128, n_epochs=4, gamma=0.99, gae_lambda=0.95, clip_range=0.2,
            clip_range_vf=0.2, normalize_advantage=True, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
            policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh, ortho_init=True,
                               optimizer_kwargs=dict(eps=1e-5)),
            seed=seed, device="cpu", verbose=0,
        )
        loop_start = time.perf_counter()
        model.learn(total_timesteps=steps)
        return model.num_timesteps, None, loop_start

    return train


def sb3_dqn(steps: int, seed: int) -> Callable[[], Trained]:
    """SB3 DQN as dqn.py's defaults (CleanRL's): 1 env, 120-84 ReLU Q-network, Adam lr 2.5e-4,
    buffer 10 000, batch 128, gamma 0.99, learning starts at 10 000, one gradient step every 10
    env steps, hard target update (tau 1) every 500 steps, epsilon 1 -> 0.05 over half the run.
    (SB3 always clips gradients, here at an infinite norm, i.e. not at all, and its TD loss is
    Huber where CleanRL's is MSE: the same work.)"""
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env

    def train() -> Trained:
        env = make_vec_env("CartPole-v1", n_envs=1, seed=seed)
        model = DQN(
            "MlpPolicy", env, learning_rate=2.5e-4, buffer_size=10_000, learning_starts=10_000, batch_size=128,
            tau=1.0, gamma=0.99, train_freq=10, gradient_steps=1, target_update_interval=500,
            exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.05,
            max_grad_norm=float("inf"), policy_kwargs=dict(net_arch=[120, 84]),
            seed=seed, device="cpu", verbose=0,
        )
        loop_start = time.perf_counter()
        model.learn(total_timesteps=steps)
        return model.num_timesteps, None, loop_start

    return train


def env_ceiling(steps: int, seed: int) -> Callable[[], Trained]:
    """4 CartPole-v1 in a SyncVectorEnv with episode statistics, as ppo.py builds them, random actions."""
    import gymnasium as gym
    import numpy as np

    actions = np.random.default_rng(seed).integers(0, 2, size=(steps // NUM_ENVS, NUM_ENVS))

    def train() -> Trained:
        envs = gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1") for _ in range(NUM_ENVS)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
        envs.reset(seed=seed)
        loop_start = time.perf_counter()
        for action in actions:
            envs.step(action)
        envs.close()
        return len(actions) * NUM_ENVS, None, loop_start

    return train


def worker(system: str, steps: int, seed: int, repo: Path) -> dict[str, Any]:
    """Build `system`, then time its training call; returns steps, wall and CPU seconds."""
    sys.path.insert(0, str(repo))
    out = tempfile.mkdtemp(prefix="axiomrl-speed-")
    try:
        if system in ("ppo", "ppo-bare", "dqn", "dqn-bare"):
            train = axiomrl_script(system.split("-")[0], system.endswith("-bare"), steps, seed, out)
        else:
            train = {"sb3-ppo": sb3_ppo, "sb3-dqn": sb3_dqn, "env": env_ceiling}[system](steps, seed)
        start, cpu = time.perf_counter(), time.process_time()
        done = train()
        end, cpu = time.perf_counter(), time.process_time() - cpu
    finally:
        shutil.rmtree(out, ignore_errors=True)
    done, spent, loop_start = done
    # the wrappers' own time (~0.3 µs a call, 300 000 calls in dqn.py) is not run management; timing
    # it takes ~0.5 s, which must stay outside the measured training call
    run_management = None if spent is None else spent[0] - spent[1] * wrapper_overhead()
    return {"system": system, "seed": seed, "steps": done, "wall_s": end - start, "loop_s": end - loop_start, "cpu_s": cpu,
            "run_management_s": run_management}


# ---------------------------------------------------------------------------------------------
# the driver


def measure(system: str, steps: int, seed: int, repo: Path) -> dict[str, Any]:
    """Run one worker subprocess (nice, one thread) and return its measurement plus the load around it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    cmd = [sys.executable, __file__, "--worker", system, "--total-timesteps", str(steps), "--seed", str(seed),
           "--repo", str(repo)]
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{system} (seed {seed}) failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(load_before=load, load_after=os.getloadavg()[0])
    result["sps"] = result["steps"] / result["wall_s"]
    result["cpu_sps"] = result["steps"] / result["cpu_s"]
    result["loop_sps"] = result["steps"] / result["loop_s"]
    return result


def missing_systems(systems: list[str]) -> dict[str, str]:
    """Systems that cannot run here, with the reason."""
    import importlib.util

    reasons = {}
    for system in systems:
        if system.startswith("sb3") and importlib.util.find_spec("stable_baselines3") is None:
            reasons[system] = "stable-baselines3 is not installed (`pip install 'axiomrl[bench]'`)"
        elif system.startswith("dqn") and not (REPO / "axiomrl" / "dqn.py").exists():
            reasons[system] = "axiomrl/dqn.py does not exist on this branch yet"
    return reasons


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(results: list[dict], systems: list[str], skipped: dict[str, str], args: argparse.Namespace,
           loads: tuple[str, str]) -> str:
    by = {s: [r for r in results if r["system"] == s] for s in systems}
    rounds = max((len(v) for v in by.values()), default=0)
    lines = [
        "# Training speed: AxiomRL vs stable-baselines3",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmark/speed.py"
        f"{''.join(f' {a}' for a in sys.argv[1:])}`: CartPole-v1, {args.total_timesteps:,} steps per PPO "
        f"measurement and {args.dqn_total_timesteps:,} per DQN one, {rounds} rounds (seed = round number), "
        "each measurement in its own `nice -n 10` subprocess with OMP_NUM_THREADS=1, timing the training call only; "
        "the systems run in the listed order on odd rounds, reversed on even rounds.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPU threads shared with other work, Python "
        f"{platform.python_version()}. `uptime` before: `{loads[0]}`; after: `{loads[1]}`.",
        "",
        "| system | SPS median | CPU SPS median | loop SPS median | SPS per round | load (1 min) per round |",
        "|---|---:|---:|---:|---|---|",
    ]
    for s in systems:
        if s in skipped:
            lines.append(f"| {s} | skipped: {skipped[s]} | | | | |")
            continue
        rs = by[s]
        per_round = ", ".join(f"{r['sps']:,.0f}" for r in rs)
        load = ", ".join(f"{r['load_before']:.1f}" for r in rs)
        lines.append(
            f"| {s} | {median([r['sps'] for r in rs]):,.0f} | {median([r['cpu_sps'] for r in rs]):,.0f} | "
            f"{median([r['loop_sps'] for r in rs]):,.0f} | {per_round} | {load} |"
        )
    lines += [
        "",
        "Ratios, round by round (each from two measurements of the same round, same seed):",
        "",
        "| ratio | per round (wall) | median (wall) | per round (CPU) | median (CPU) | target |",
        "|---|---|---:|---|---:|---|",
    ]
    for num, den, label, target in RATIOS:
        if num not in systems or den not in systems or num in skipped or den in skipped:
            continue
        pairs = list(zip(by[num], by[den]))
        wall = [a["sps"] / b["sps"] for a, b in pairs]
        cpu = [a["cpu_sps"] / b["cpu_sps"] for a, b in pairs]
        wall_rounds, cpu_rounds = ", ".join(f"{x:.2f}" for x in wall), ", ".join(f"{x:.2f}" for x in cpu)
        lines.append(
            f"| {label} | {wall_rounds} | **{median(wall):.2f}** | {cpu_rounds} | {median(cpu):.2f} | {target} |"
        )
    loop_rows = [(num, den, label) for num, den, label, _ in RATIOS
                 if den.startswith("sb3") and num in systems and den in systems and not {num, den} & skipped.keys()]
    if loop_rows:
        lines += [
            "",
            "The same pairs, training loop only (loop SPS: from the first env step, SB3 from `learn()`, to the end; "
            "the setup both pay, mostly torch's ~1.5 s import of torch._dynamo when the optimizer is built, left out):",
            "",
            "| ratio | per round | median |",
            "|---|---|---:|",
        ]
        for num, den, label in loop_rows:
            loop = [a["loop_sps"] / b["loop_sps"] for a, b in zip(by[num], by[den])]
            lines.append(f"| {label}, loop | {', '.join(f'{x:.2f}' for x in loop)} | **{median(loop):.2f}** |")
    shares = [(s, [r["run_management_s"] / r["wall_s"] for r in by[s]]) for s in ("ppo", "dqn")
              if s in systems and s not in skipped and by[s]]
    if shares:
        lines += [
            "",
            "Run management measured directly: the wall time spent inside its calls (`start_run` and every `Run` "
            "method the script calls, less the timing wrappers' own cost per call), as a share of the training "
            "call's wall time, in the same measurements:",
            "",
            "| script | share per round | median | target |",
            "|---|---|---:|---|",
        ]
        for s, xs in shares:
            lines.append(f"| {s}.py | {', '.join(f'{100 * x:.1f}%' for x in xs)} | **{100 * median(xs):.1f}%** | ≤ 3% |")
    lines += [
        "",
        "`ppo`/`dqn`: the scripts at their defaults with run management on (run directory, jsonl, TensorBoard, "
        "evaluation and checkpoints every 50 000 steps and at the end); `-bare`: the same scripts with every "
        "run-management call a no-op; `env`: 4 CartPole-v1 in a SyncVectorEnv with episode statistics, random "
        "actions. The SB3 configurations are spelled out in `benchmark/speed.py` (`sb3_ppo`, `sb3_dqn`). "
        "CleanRL's ppo.py is not measured (not installed; its code is not copied here).",
        "",
    ]
    return "\n".join(lines)


def commits_report(results: list[dict], labels: list[str], args: argparse.Namespace, loads: tuple[str, str]) -> str:
    lines = [
        "# ppo.py speed by commit",
        "",
        f"`python benchmark/speed.py{''.join(f' {a}' for a in sys.argv[1:])}`: {args.total_timesteps:,} steps of "
        f"CartPole-v1, {args.rounds} rounds, system `{args.commit_system}`. `uptime` before: `{loads[0]}`; after: `{loads[1]}`.",
        "",
        "| commit | SPS median | CPU SPS median | SPS per round | vs first (wall, median of rounds) | vs first (CPU) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    first = [r for r in results if r["label"] == labels[0]]
    for label in labels:
        rs = [r for r in results if r["label"] == label]
        wall = [a["sps"] / b["sps"] for a, b in zip(rs, first)]
        cpu = [a["cpu_sps"] / b["cpu_sps"] for a, b in zip(rs, first)]
        per_round = ", ".join(f"{r['sps']:,.0f}" for r in rs)
        lines.append(
            f"| {label} | {median([r['sps'] for r in rs]):,.0f} | {median([r['cpu_sps'] for r in rs]):,.0f} | "
            f"{per_round} | {median(wall):.2f} | {median(cpu):.2f} |"
        )
    return "\n".join(lines) + "\n"


def export_commit(commit: str, root: Path) -> tuple[str, Path]:
    """The tree of `commit` in a fresh directory under `root`; returns (short hash + subject, path)."""
    info = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s", commit],
                          capture_output=True, text=True, check=True).stdout.strip()
    path = root / info.split()[0]
    path.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return info, path


def round_order(items: list, round_: int) -> list:
    """`items` in their order on odd rounds, reversed on even rounds (an ABBA design)."""
    return list(items) if round_ % 2 else list(reversed(items))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per system (pairs per ratio)")
    parser.add_argument("--total-timesteps", type=int, default=100_000, help="steps per PPO and env measurement")
    parser.add_argument("--dqn-total-timesteps", type=int, default=100_000, help="steps per DQN measurement")
    parser.add_argument("--commits", nargs="+", help="instead: time --commit-system at each of these git commits")
    parser.add_argument("--commit-system", default="ppo", choices=("ppo", "ppo-bare", "dqn", "dqn-bare"))
    parser.add_argument("--output", default=None, help=f"result file (default {RESULT.relative_to(REPO)})")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--repo", default=str(REPO), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.total_timesteps, args.seed, Path(args.repo))))
        return
    if hasattr(os, "nice"):
        os.nice(10)  # the workers inherit it

    loads = [uptime()]
    if args.commits:
        with tempfile.TemporaryDirectory(prefix="axiomrl-speed-commits-") as tmp:
            trees = [export_commit(c, Path(tmp)) for c in args.commits]
            results = []
            for round_ in range(1, args.rounds + 1):
                for label, tree in round_order(trees, round_):
                    steps = args.dqn_total_timesteps if args.commit_system.startswith("dqn") else args.total_timesteps
                    r = measure(args.commit_system, steps, round_, tree) | {"label": label}
                    print(f"round {round_}: {label[:50]:50s} {r['sps']:8,.0f} SPS  {r['cpu_sps']:8,.0f} CPU SPS  "
                          f"load {r['load_before']:.1f}", file=sys.stderr, flush=True)
                    results.append(r)
        loads.append(uptime())
        text = commits_report(results, [label for label, _ in trees], args, tuple(loads))
        output = Path(args.output) if args.output else REPO / "benchmark" / "results" / "speed_commits.md"
    else:
        skipped = missing_systems(args.systems)
        for system, reason in skipped.items():
            print(f"skipping {system}: {reason}", file=sys.stderr)
        results = []
        for round_ in range(1, args.rounds + 1):
            for system in round_order(args.systems, round_):
                if system in skipped:
                    continue
                steps = args.dqn_total_timesteps if "dqn" in system else args.total_timesteps
                r = measure(system, steps, round_, REPO)
                share = f", run management {100 * r['run_management_s'] / r['wall_s']:.1f}%" if r["run_management_s"] else ""
                print(f"round {round_}: {system:9s} {r['sps']:8,.0f} SPS  {r['cpu_sps']:8,.0f} CPU SPS  "
                      f"({r['steps']:,} steps in {r['wall_s']:.1f} s, load {r['load_before']:.1f}{share})",
                      file=sys.stderr, flush=True)
                results.append(r)
        loads.append(uptime())
        text = report(results, args.systems, skipped, args, tuple(loads))
        output = Path(args.output) if args.output else RESULT
    print(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    (output.with_suffix(".json")).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
