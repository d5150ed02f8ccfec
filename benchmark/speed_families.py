"""Training speed per algorithm family: AxiomRL's scripts against CleanRL's, whole processes, with ceilings.

    python benchmark/speed_families.py --cleanrl /path/to/cleanrl             # every family, 3 pairs
    python benchmark/speed_families.py --cleanrl /path/to/cleanrl --families sac td3 --pairs 5
    python benchmark/speed_families.py --cleanrl /path/to/cleanrl --commit HEAD   # ours as committed
    python benchmark/speed_families.py --cleanrl /path/to/cleanrl --steps-scale 0.05  # smoke run

`--cleanrl` is a checkout of https://github.com/vwxyzjn/cleanrl (or a bare clone of it). CleanRL is
written for gymnasium 0.29; the benchmark copies the scripts it runs into a temporary directory and
applies the minimal text patches in `CLEANRL_PATCHES` (listed in benchmark/README.md), each of
which must match exactly, so a CleanRL that moved on fails loudly instead of being mis-patched.

Each pair runs the family's AxiomRL script and its CleanRL twin once each, same seed (the pair's
number), same hyperparameters (each side's defaults, which are CleanRL's, plus the family's flags
below), in the order A B on odd pairs and B A on even ones (`speed.round_order`). Each run is a
whole `python script.py ...` process with OMP_NUM_THREADS=1 in a fresh working directory: its wall
time (imports, setup, training, teardown) and CPU time (user + sys of the process). Ours runs with
evaluation off (`--eval-every 0`) and its default checkpointing, logs and TensorBoard on; CleanRL
with its defaults (no tracking, no video, no model saving). SPS = steps / wall seconds.

Ceilings, measured once per family in a one-thread subprocess, in CPU seconds (so that they do not
depend on who else had the core, and compare with each side's CPU SPS):
- env: the vector env of our script (its `make_env`, SyncVectorEnv, episode statistics) stepped
  with random actions drawn in advance: the SPS of the environment stack alone;
- compute: the family's networks (CleanRL's architectures) at its batch sizes, one update as the
  algorithm does it (losses, backward, gradient clipping where the algorithm clips, fused Adam,
  target updates) and one acting forward (the faster of torch and numpy for MLPs), each timed in a
  tight loop (best of 5 chunks), multiplied by how many of each the run does: the SPS if the env
  were free;
- FLOP floor: the same work's floating-point operations (torch's FlopCounterMode) at this
  machine's single-thread float32 matmul speed: what the arithmetic alone would allow;
- best: the start-up every process pays (importing torch and gymnasium, building an Adam
  optimizer), then env and compute one after the other: the most an eager one-thread
  implementation of the family could reach here, whole process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmark"))
from speed import export_commit, median, round_order, uptime  # noqa: E402

RESULT = REPO / "benchmark" / "results" / "speed_families.md"


@dataclass(frozen=True)
class Family:
    """One row of the table: our script and CleanRL's, the same flags on both sides."""

    name: str
    script: str  # axiomrl/<script> and cleanrl/<script>
    env_id: str
    steps: int
    flags: tuple[str, ...] = ()  # besides --env-id, --total-timesteps and --seed, passed to both
    learning_starts: int = 0  # off-policy: steps of random actions before the first update (scaled with steps)
    rollout: int = 0  # on-policy: steps per rollout (num_envs x num_steps); total steps are a multiple of it
    ceiling: dict = field(default_factory=dict)  # what one update does, for the compute ceiling


FAMILIES = {
    f.name: f
    for f in (
        Family("ppo", "ppo.py", "CartPole-v1", 100_000, rollout=512,
               ceiling=dict(kind="ppo", num_envs=4, num_steps=128, minibatch=128, epochs=4, hidden=64)),
        Family("dqn", "dqn.py", "CartPole-v1", 60_000, learning_starts=10_000,
               ceiling=dict(kind="dqn", batch=128, train_frequency=10, hidden=(120, 84), end_e=0.05, fraction=0.5)),
        Family("ppo_continuous_action", "ppo_continuous_action.py", "HalfCheetah-v4", 20_480, rollout=2048,
               ceiling=dict(kind="ppo", num_envs=1, num_steps=2048, minibatch=64, epochs=10, hidden=64)),
        Family("sac", "sac_continuous_action.py", "HalfCheetah-v4", 8_000, learning_starts=5_000,
               ceiling=dict(kind="sac", batch=256, hidden=256)),
        Family("td3", "td3_continuous_action.py", "HalfCheetah-v4", 8_000, learning_starts=5_000,
               ceiling=dict(kind="td3", batch=256, hidden=256)),
        Family("ddpg", "ddpg_continuous_action.py", "HalfCheetah-v4", 8_000, learning_starts=5_000,
               ceiling=dict(kind="ddpg", batch=256, hidden=256)),
        Family("ppo_atari", "ppo_atari.py", "BreakoutNoFrameskip-v4", 4_096, rollout=1024,
               ceiling=dict(kind="ppo", num_envs=8, num_steps=128, minibatch=256, epochs=4, cnn=True)),
        # CleanRL's 1M-frame buffer and 80 000 random steps would make a short run all acting; both
        # sides get a small buffer and learning start instead
        Family("dqn_atari", "dqn_atari.py", "BreakoutNoFrameskip-v4", 3_000, flags=("--buffer-size", "10000"),
               learning_starts=1_000,
               ceiling=dict(kind="dqn", batch=32, train_frequency=4, cnn=True, end_e=0.01, fraction=0.1)),
    )
}


# ---------------------------------------------------------------------------------------------
# CleanRL for gymnasium 1.x: (file, old text, new text, how many times old occurs)

_FINAL_INFOS = '''"""gymnasium 0.29's `infos["final_info"]` layout (one dict per env, None where no episode ended) from
gymnasium 1.x's (a dict of arrays with `_key` masks). Added by AxiomRL's benchmark/speed_families.py."""


def final_infos(infos):
    final, ended = infos["final_info"], infos["_final_info"]
    return [
        {k: ({kk: vv[i] for kk, vv in v.items()} if isinstance(v, dict) else v[i]) for k, v in final.items() if not k.startswith("_")}
        if ended[i] else None
        for i in range(len(ended))
    ]
'''
_VECTOR = ("gym.vector.SyncVectorEnv(", "gym.vector.SyncVectorEnv(autoreset_mode=gym.vector.AutoresetMode.SAME_STEP, env_fns=")
_IMPORT = ("import gymnasium as gym\n", "import gymnasium as gym\nfrom cleanrl_utils.gymnasium1 import final_infos\n")
_LOOP = ('for info in infos["final_info"]:', "for info in final_infos(infos):")
_FINAL_OBS = ('infos["final_observation"]', 'infos["final_obs"]')
_ALE = ("import gymnasium as gym\n", "import ale_py\nimport gymnasium as gym\n\ngym.register_envs(ale_py)\n")
_ATARI_OBS = [
    ("gym.wrappers.GrayScaleObservation(env)", "gym.wrappers.GrayscaleObservation(env)"),
    ("gym.wrappers.FrameStack(env, 4)", "gym.wrappers.FrameStackObservation(env, 4)"),
]


def _patches() -> list[tuple[str, str, str, int]]:
    patches = [("cleanrl_utils/gymnasium1.py", "", _FINAL_INFOS, 0)]  # a new file
    for family in FAMILIES.values():
        path = f"cleanrl/{family.script}"
        # same-step autoreset: gymnasium 0.29's behaviour (1.x defaults to resetting on the next step)
        patches += [(path, *_VECTOR, 1), (path, *_IMPORT, 1), (path, *_LOOP, 1)]
        if family.learning_starts:
            patches.append((path, *_FINAL_OBS, 1))
        if "atari" in family.name:  # gymnasium 1.x no longer finds ALE's ids by itself; renamed wrappers
            patches += [(path, *_ALE, 1)] + [(path, *p, 1) for p in _ATARI_OBS]
    patches.append(("cleanrl/ppo_continuous_action.py", "lambda obs: np.clip(obs, -10, 10))",
                    "lambda obs: np.clip(obs, -10, 10), env.observation_space)", 1))  # 1.x requires the space
    return patches


CLEANRL_PATCHES = _patches()


class BenchmarkError(SystemExit):
    """One sentence naming the problem and the fix; exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def prepare_cleanrl(source: Path, dest: Path, families: list[Family]) -> Optional[str]:
    """Copy what the families need of the CleanRL checkout (or bare clone) at `source` into `dest`, patched.

    Returns CleanRL's commit when `source` is a git repository, else None.
    """
    if not source.exists():
        raise BenchmarkError(f"--cleanrl {source} does not exist; pass a checkout of https://github.com/vwxyzjn/cleanrl")
    commit = None
    git = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True)
    if git.returncode == 0:
        commit = git.stdout.strip()
    if not (source / "cleanrl").is_dir() and commit is not None:  # a bare clone: take its HEAD's tree
        archive = subprocess.run(["git", "-C", str(source), "archive", "HEAD", "cleanrl", "cleanrl_utils"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        for part in ("cleanrl", "cleanrl_utils"):
            if not (source / part).is_dir():
                raise BenchmarkError(f"--cleanrl {source} has no {part}/ directory; pass the root of a CleanRL checkout")
            shutil.copytree(source / part, dest / part)
    wanted = {f"cleanrl/{f.script}" for f in families}
    for file, old, new, count in CLEANRL_PATCHES:
        if file.startswith("cleanrl/") and file not in wanted:
            continue
        path = dest / file
        if not old:
            path.write_text(new)
            continue
        if not path.exists():
            raise BenchmarkError(f"CleanRL has no {file}; this benchmark's patches were written for commit fe8d8a0 of vwxyzjn/cleanrl")
        text = path.read_text()
        if text.count(old) != count:
            raise BenchmarkError(f"CleanRL's {file} contains {old.strip()!r} {text.count(old)} times, not {count}: it differs "
                                 "from commit fe8d8a0 of vwxyzjn/cleanrl that the patches in benchmark/speed_families.py were written for")
        path.write_text(text.replace(old, new))
    return commit


# ---------------------------------------------------------------------------------------------
# whole-process runs


def scaled(family: Family, scale: float) -> tuple[int, int]:
    """(total steps, learning starts) of `family` at `scale`: PPO runs stay whole rollouts, at least one."""
    steps = max(1, round(family.steps * scale))
    if family.rollout:
        steps = max(family.rollout, steps // family.rollout * family.rollout)
    starts = round(family.learning_starts * scale)
    return steps, starts


def family_flags(family: Family, steps: int, starts: int, seed: int) -> list[str]:
    flags = ["--env-id", family.env_id, "--total-timesteps", str(steps), "--seed", str(seed), *family.flags]
    if family.learning_starts:
        flags += ["--learning-starts", str(starts)]
    return flags


def run_process(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, float, int]:
    """Run `cmd` to the end; (wall seconds, CPU seconds of the process and its children, exit status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "wb") as out:
        returncode = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, returncode


def one_thread_env(pythonpath: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(pythonpath),
            "PYTHONWARNINGS": "ignore"}


def measure_side(side: str, family: Family, steps: int, starts: int, seed: int, ours: Path, cleanrl: Path) -> dict[str, Any]:
    """One whole training process of `side` ("axiomrl" or "cleanrl"); its wall and CPU time and the load around it."""
    with tempfile.TemporaryDirectory(prefix=f"speed-families-{side}-") as tmp:
        work = Path(tmp)
        flags = family_flags(family, steps, starts, seed)
        if side == "axiomrl":
            cmd = [sys.executable, str(ours / "axiomrl" / family.script), *flags, "--eval-every", "0",
                   "--output-dir", str(work / "runs"), "--no-progress"]
            env = one_thread_env(ours)
        else:
            cmd = [sys.executable, str(cleanrl / "cleanrl" / family.script), *flags]
            env = one_thread_env(cleanrl)
        load = os.getloadavg()[0]
        wall, cpu, returncode = run_process(cmd, work, env, work / "output.log")
        if returncode != 0:
            tail = (work / "output.log").read_text(errors="replace")[-3000:]
            raise BenchmarkError(f"{side} {family.script} (seed {seed}) exited with status {returncode}:\n{tail}")
        done = steps
        if side == "axiomrl":  # the run says how many steps it trained
            (run_dir,) = (work / "runs").iterdir()
            meta = json.loads((run_dir / "metadata.json").read_text())
            if meta["status"] != "finished":
                raise BenchmarkError(f"axiomrl {family.script} (seed {seed}) ended with status {meta['status']}")
            done = meta["total_steps"]
    return {"family": family.name, "side": side, "seed": seed, "steps": done, "wall_s": wall, "cpu_s": cpu,
            "sps": done / wall, "cpu_sps": done / cpu, "load_before": load, "load_after": os.getloadavg()[0]}


# ---------------------------------------------------------------------------------------------
# ceilings (in a worker subprocess with one thread)


def _best_time(fn: Callable[[], Any], budget: float) -> float:
    """CPU seconds per call of `fn`: the fastest of 5 chunks of calls, the chunks together about `budget` seconds.
    CPU time, not wall time: on a shared machine a ceiling must not depend on who else had the core."""
    for _ in range(2):
        fn()
    start = time.process_time()
    fn()
    per_chunk = max(1, int(budget / 5 / max(time.process_time() - start, 1e-7)))
    best = math.inf
    for _ in range(5):
        start = time.process_time()
        for _ in range(per_chunk):
            fn()
        best = min(best, (time.process_time() - start) / per_chunk)
    return best


def _flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flops_per_s(budget: float) -> float:
    """This thread's float32 matmul speed: the best of square products of 256, 512 and 1024."""
    import torch

    rates = []
    for n in (256, 512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        rates.append(2 * n**3 / _best_time(lambda: a @ b, budget))
    return max(rates)


def env_seconds_per_step(family: Family, ours: Path, env_steps: int, seed: int) -> tuple[float, Any, Any, int]:
    """CPU seconds per environment step of our script's vector env with random actions; and its spaces and num_envs."""
    import importlib

    import gymnasium as gym
    import numpy as np

    script = importlib.import_module(f"axiomrl.{family.script[:-3]}")
    args = script.Args(env_id=family.env_id, seed=seed)
    num_envs = getattr(args, "num_envs", 1)
    envs = gym.vector.SyncVectorEnv([script.make_env(args, i) for i in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    if "wrappers.vector.RecordEpisodeStatistics(envs)" in (ours / "axiomrl" / family.script).read_text():
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    envs.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    space = envs.single_action_space
    count = max(1, env_steps // num_envs)
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(0, space.n, size=(count, num_envs))
    else:
        # ClipAction leaves the space unbounded; MuJoCo's actions lie in [-1, 1]
        low, high = np.maximum(space.low, -1), np.minimum(space.high, 1)
        actions = rng.uniform(low, high, size=(count, num_envs) + space.shape).astype(space.dtype)
    envs.reset(seed=seed)
    start = time.process_time()
    for action in actions:
        envs.step(action)
    seconds = (time.process_time() - start) / (count * num_envs)
    spaces = (envs.single_observation_space, envs.single_action_space)
    envs.close()
    return seconds, spaces[0], spaces[1], num_envs


def _mlp(sizes: list[int], activation: Any, out_activation: Any = None) -> Any:
    import torch.nn as nn

    layers: list[Any] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    if out_activation is not None:
        layers.append(out_activation())
    return nn.Sequential(*layers)


def _nature_cnn(out: int) -> Any:
    """CleanRL's Atari network (the DQN paper's): 4x84x84 frames / 255 -> 3 convolutions -> 512 -> out."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, out),
    )


def _numpy_mlp(module: Any) -> Callable[[Any], Any]:
    """A forward of an nn.Sequential of Linear/Tanh/ReLU layers in numpy (the way acting can avoid torch)."""
    import numpy as np
    import torch.nn as nn

    steps = []
    for layer in module:
        if isinstance(layer, nn.Linear):
            steps.append(("linear", layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()))
        elif isinstance(layer, nn.Tanh):
            steps.append(("tanh", None, None))
        elif isinstance(layer, nn.ReLU):
            steps.append(("relu", None, None))

    def forward(x: Any) -> Any:
        for kind, w, b in steps:
            x = x @ w + b if kind == "linear" else (np.tanh(x) if kind == "tanh" else np.maximum(x, 0))
        return x

    return forward


def _adam(params: Any, lr: float) -> Any:
    import torch

    return torch.optim.Adam(params, lr=lr, eps=1e-5, fused=True)


def compute_workload(c: dict, obs_space: Any, action_space: Any, num_envs: int) -> dict[str, Callable[[], Any]]:
    """The family's acting call and update, on random data of the right shapes: {"act": ..., "update": ...}
    (and "act_numpy" for MLP policies). One "update" is the work done per update event of the algorithm:
    a PPO minibatch, a DQN gradient step, or an off-policy env step's share of critic and actor updates."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    kind, cnn = c["kind"], c.get("cnn", False)
    obs_dim = int(np.prod(obs_space.shape))
    discrete = hasattr(action_space, "n")
    act_dim = int(action_space.n) if discrete else int(np.prod(action_space.shape))

    def observations(n: int) -> torch.Tensor:
        if cnn:
            return torch.randint(0, 256, (n, *obs_space.shape), dtype=torch.uint8)
        return torch.randn(n, obs_dim)

    def features(x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 if cnn else x

    work: dict[str, Callable[[], Any]] = {}
    if kind == "ppo":
        if cnn:  # one trunk, two heads (CleanRL's ppo_atari)
            trunk = _nature_cnn(512)[:-1]
            actor, critic = nn.Linear(512, act_dim), nn.Linear(512, 1)
            modules = nn.ModuleList([trunk, actor, critic])

            def heads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                h = trunk(features(x))
                return actor(h), critic(h)
        else:
            h = c["hidden"]
            actor = _mlp([obs_dim, h, h, act_dim], nn.Tanh)
            critic = _mlp([obs_dim, h, h, 1], nn.Tanh)
            logstd = nn.Parameter(torch.zeros(1, act_dim))
            modules = nn.ModuleList([actor, critic])
            if not discrete:
                modules.register_parameter("logstd", logstd)

            def heads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return actor(x), critic(x)

            work["act_numpy"] = (lambda fa, fc, o: lambda: (fa(o), fc(o)))(
                _numpy_mlp(actor), _numpy_mlp(critic), np.random.randn(num_envs, obs_dim).astype(np.float32))
        optimizer = _adam(modules.parameters(), 2.5e-4)
        b = c["minibatch"]
        obs = observations(b)
        actions = torch.randint(0, act_dim, (b,)) if discrete else torch.randn(b, act_dim)
        old_logp, adv, returns, old_values = torch.randn(b), torch.randn(b), torch.randn(b), torch.randn(b)
        act_obs = observations(num_envs)

        def log_prob_entropy(out: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if discrete:
                logits = out - out.logsumexp(-1, keepdim=True)
                return logits.gather(1, a[:, None])[:, 0], -(logits.exp() * logits).sum(-1)
            std = logstd.exp()
            logp = (-((a - out) ** 2) / (2 * std**2) - logstd - 0.5 * math.log(2 * math.pi)).sum(1)
            return logp, (0.5 + 0.5 * math.log(2 * math.pi) + logstd).sum(1).expand(len(a))

        def update() -> None:
            out, value = heads(obs)
            logp, entropy = log_prob_entropy(out, actions)
            ratio = (logp - old_logp).exp()
            a = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg = torch.max(-a * ratio, -a * ratio.clamp(0.8, 1.2)).mean()
            v = value[:, 0]
            v_clipped = old_values + (v - old_values).clamp(-0.2, 0.2)
            v_loss = 0.5 * torch.max((v - returns) ** 2, (v_clipped - returns) ** 2).mean()
            loss = pg - 0.01 * entropy.mean() + 0.5 * v_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(modules.parameters(), 0.5)
            optimizer.step()

        @torch.no_grad()
        def act() -> None:
            out, value = heads(act_obs)
            if discrete:
                torch.distributions.Categorical(logits=out).sample()
            else:
                out + logstd.exp() * torch.randn_like(out)

        work.update(act=act, update=update)
    elif kind == "dqn":
        q = _nature_cnn(act_dim) if cnn else _mlp([obs_dim, *c["hidden"], act_dim], nn.ReLU)
        target = _nature_cnn(act_dim) if cnn else _mlp([obs_dim, *c["hidden"], act_dim], nn.ReLU)
        optimizer = _adam(q.parameters(), 1e-4 if cnn else 2.5e-4)
        b = c["batch"]
        obs, next_obs = observations(b), observations(b)
        actions, rewards, dones = torch.randint(0, act_dim, (b, 1)), torch.randn(b), torch.zeros(b)
        act_obs = observations(1)

        def update() -> None:
            with torch.no_grad():
                td_target = rewards + 0.99 * target(features(next_obs)).max(1).values * (1 - dones)
            old = q(features(obs)).gather(1, actions)[:, 0]
            loss = F.mse_loss(td_target, old)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        @torch.no_grad()
        def act() -> None:
            q(features(act_obs)).argmax(1)

        if not cnn:
            work["act_numpy"] = (lambda f, o: lambda: f(o).argmax(1))(_numpy_mlp(q), np.random.randn(1, obs_dim).astype(np.float32))
        work.update(act=act, update=update)
    else:  # sac, td3, ddpg: 256-256 ReLU networks on float observations
        h, b = c["hidden"], c["batch"]
        twin = kind in ("sac", "td3")
        critics = [_mlp([obs_dim + act_dim, h, h, 1], nn.ReLU) for _ in range(2 if twin else 1)]
        targets = [_mlp([obs_dim + act_dim, h, h, 1], nn.ReLU) for _ in critics]
        q_params = [p for net in critics for p in net.parameters()]
        q_optimizer = _adam(q_params, 1e-3 if kind == "sac" else 3e-4)
        obs, next_obs = torch.randn(b, obs_dim), torch.randn(b, obs_dim)
        actions, rewards, dones = torch.rand(b, act_dim) * 2 - 1, torch.randn(b), torch.zeros(b)
        act_obs = torch.randn(1, obs_dim)
        if kind == "sac":
            trunk = _mlp([obs_dim, h, h], nn.ReLU, out_activation=nn.ReLU)
            heads = nn.Linear(h, 2 * act_dim)
            actor = nn.ModuleList([trunk, heads])
            log_alpha = torch.zeros(1, requires_grad=True)
            alpha_optimizer = _adam([log_alpha], 1e-3)

            def sample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                mean, log_std = heads(trunk(x)).chunk(2, dim=-1)
                log_std = -5 + 0.5 * (2 - -5) * (torch.tanh(log_std) + 1)
                std = log_std.exp()
                noise = torch.randn_like(mean)
                x_t = mean + std * noise
                y_t = torch.tanh(x_t)
                logp = (-0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)) - torch.log(1 - y_t.pow(2) + 1e-6)
                return y_t, logp.sum(1, keepdim=True)
        else:
            actor = _mlp([obs_dim, h, h, act_dim], nn.ReLU, out_activation=nn.Tanh)
            target_actor = _mlp([obs_dim, h, h, act_dim], nn.ReLU, out_activation=nn.Tanh)
        actor_optimizer = _adam(actor.parameters(), 3e-4)
        pairs = [(t, n) for t, n in zip(targets, critics)] + ([] if kind == "sac" else [(target_actor, actor)])
        target_params = [p for t, _ in pairs for p in t.parameters()]
        online_params = [p for _, n in pairs for p in n.parameters()]

        def critic_update() -> None:
            with torch.no_grad():
                if kind == "sac":
                    next_a, next_logp = sample(next_obs)
                else:
                    next_a = target_actor(next_obs)
                    if kind == "td3":
                        next_a = (next_a + (torch.randn_like(next_a) * 0.2).clamp(-0.5, 0.5)).clamp(-1, 1)
                sa = torch.cat([next_obs, next_a], 1)
                next_q = torch.min(*[t(sa) for t in targets]) if twin else targets[0](sa)
                if kind == "sac":
                    next_q = next_q - 0.2 * next_logp
                y = rewards + 0.99 * (1 - dones) * next_q[:, 0]
            sa = torch.cat([obs, actions], 1)
            loss = sum(F.mse_loss(net(sa)[:, 0], y) for net in critics)
            q_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            q_optimizer.step()

        def actor_update() -> None:
            if kind == "sac":
                a, logp = sample(obs)
                sa = torch.cat([obs, a], 1)
                loss = (log_alpha.exp().detach() * logp - torch.min(critics[0](sa), critics[1](sa))).mean()
            else:
                loss = -critics[0](torch.cat([obs, actor(obs)], 1)).mean()
            actor_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            actor_optimizer.step()
            if kind == "sac":  # entropy temperature (CleanRL's autotune default)
                with torch.no_grad():
                    _, logp = sample(obs)
                alpha_loss = (-log_alpha.exp() * (logp + act_dim)).mean()
                alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss.backward()
                alpha_optimizer.step()

        def polyak() -> None:
            with torch.no_grad():
                torch._foreach_lerp_(target_params, online_params, 0.005)

        # per env step: SAC updates the critics and the target critics at every step and the actor twice
        # every second step; TD3 and DDPG the critic(s) at every step, the actor and all targets every second
        def update() -> None:
            if kind == "sac":
                critic_update()
                actor_update()
                polyak()
            else:
                critic_update()
                critic_update()
                actor_update()
                polyak()

        work["update_steps"] = 1 if kind == "sac" else 2  # env steps one `update` call stands for

        @torch.no_grad()
        def act() -> None:
            sample(act_obs) if kind == "sac" else actor(act_obs)

        work.update(act=act, update=update)
    return work


def counts(family: Family, steps: int, starts: int, updates_steps: int) -> tuple[float, float]:
    """(acting calls, update calls) a run of `steps` makes: PPO acts once per vector step on all envs;
    DQN greedily only when its epsilon draw says so (the expected count); SAC/TD3/DDPG after `starts`."""
    c = family.ceiling
    if c["kind"] == "ppo":
        iterations = steps // (c["num_envs"] * c["num_steps"])
        return iterations * c["num_steps"], iterations * c["epochs"] * (c["num_envs"] * c["num_steps"] // c["minibatch"])
    if c["kind"] == "dqn":
        duration = c["fraction"] * steps
        greedy = sum(1 - max(c["end_e"], 1 - (1 - c["end_e"]) * t / duration) for t in range(steps))
        updates = sum(1 for t in range(starts + 1, steps) if t % c["train_frequency"] == 0)
        return greedy, updates
    return steps - starts, (steps - starts) / updates_steps


def ceiling_worker(family: Family, steps: int, starts: int, ours: Path, budget: float, env_steps: int) -> dict[str, Any]:
    """The three ceilings of `family` at `steps` (run in a one-thread subprocess)."""
    sys.path.insert(0, str(ours))
    import torch

    torch.manual_seed(1)
    env_s, obs_space, action_space, num_envs = env_seconds_per_step(family, ours, env_steps, seed=1)
    work = compute_workload(family.ceiling, obs_space, action_space, num_envs)
    update_steps = work.pop("update_steps", 1)
    act_s = _best_time(work["act"], budget)
    if "act_numpy" in work:
        act_s = min(act_s, _best_time(work["act_numpy"], budget))
    update_s = _best_time(work["update"], budget)
    acts, updates = counts(family, steps, starts, update_steps)
    compute_s = acts * act_s + updates * update_s
    flops = acts * _flops(work["act"]) + updates * _flops(work["update"])
    rate = matmul_flops_per_s(budget)
    return {"family": family.name, "steps": steps, "env_s_per_step": env_s, "act_s": act_s, "update_s": update_s,
            "acts": acts, "updates": updates, "flops": flops, "matmul_flops_per_s": rate,
            "env_sps": 1 / env_s, "compute_sps": steps / compute_s}


def measure_ceilings(family: Family, steps: int, starts: int, ours: Path, scale: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker-ceiling", family.name, "--steps", str(steps), "--starts", str(starts),
           "--ours", str(ours), "--budget", str(max(0.05, min(1.0, scale))),
           "--env-steps", str(max(64, min(steps, round(20_000 * min(1.0, scale)))))]
    proc = subprocess.run(cmd, env=one_thread_env(ours), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchmarkError(f"the ceilings of {family.name} could not be measured:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the report


def startup_seconds(ours: Path, repeats: int) -> float:
    """CPU seconds of a process that only imports torch and gymnasium and builds an Adam optimizer (whose
    construction imports torch._dynamo): the fixed cost every run of either side pays; best of `repeats`."""
    code = "import gymnasium, torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"
    best = math.inf
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            _, cpu, returncode = run_process([sys.executable, "-c", code], Path(tmp), one_thread_env(ours), Path(tmp) / "log")
        if returncode == 0:
            best = min(best, cpu)
    return best


def _git(*args: str, cwd: Path = REPO) -> Optional[str]:
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def summarise(family: Family, runs: list[dict], ceiling: Optional[dict], startup: float, peak: float) -> dict[str, Any]:
    ours = [r for r in runs if r["side"] == "axiomrl"]
    theirs = [r for r in runs if r["side"] == "cleanrl"]
    ratios = [a["sps"] / b["sps"] for a, b in zip(ours, theirs)]
    cpu_ratios = [a["cpu_sps"] / b["cpu_sps"] for a, b in zip(ours, theirs)]
    row = {"family": family.name, "script": family.script, "env_id": family.env_id, "steps": ours[0]["steps"] if ours else None,
           "ours_sps": median([r["sps"] for r in ours]), "cleanrl_sps": median([r["sps"] for r in theirs]),
           "ratio": median(ratios), "ratio_min": min(ratios, default=math.nan), "ratio_max": max(ratios, default=math.nan),
           "ratios": ratios, "cpu_ratio": median(cpu_ratios), "cpu_ratios": cpu_ratios,
           "ours_cpu_sps": median([r["cpu_sps"] for r in ours]), "cleanrl_cpu_sps": median([r["cpu_sps"] for r in theirs])}
    if ceiling:
        steps = ceiling["steps"]
        env_s, compute_s = steps / ceiling["env_sps"], steps / ceiling["compute_sps"]
        row.update(env_sps=ceiling["env_sps"], compute_sps=ceiling["compute_sps"],
                   flop_sps=steps / (ceiling["flops"] / peak),
                   best_sps=steps / (startup + env_s + compute_s))
    return row


def render(rows: list[dict], meta: dict) -> str:
    def num(x: Optional[float]) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.0f}"

    lines = [
        "# Training speed per family: AxiomRL vs CleanRL, with ceilings",
        "",
        f"Measured {meta['finished_utc']} UTC by `{meta['command']}`: {meta['pairs']} pairs per family, "
        "each pair one whole process of each side (same seed, same hyperparameters, OMP_NUM_THREADS=1), "
        "in the order AxiomRL, CleanRL on odd pairs and the reverse on even ones. AxiomRL with evaluation off "
        "(`--eval-every 0`) and its default checkpoints, logs and TensorBoard; CleanRL with its defaults, "
        "patched only for gymnasium 1.x (benchmark/README.md lists the patches).",
        "",
        f"Machine: {meta['machine']}. Load average before: `{meta['uptime_before']}`; after: `{meta['uptime_after']}`. "
        f"torch {meta['torch']}, gymnasium {meta['gymnasium']}, AxiomRL {meta['axiomrl_commit']}, "
        f"CleanRL {meta['cleanrl_commit']}.",
        "",
        "| family | env | steps | AxiomRL SPS | CleanRL SPS | AxiomRL / CleanRL (min-max) | AxiomRL CPU SPS | "
        "CleanRL CPU SPS | CPU-time ratio | env ceiling | compute ceiling | FLOP floor | best | AxiomRL CPU SPS / best |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        best = r.get("best_sps")
        lines.append(
            f"| {r['script']} | {r['env_id']} | {num(r['steps'])} | {num(r['ours_sps'])} | {num(r['cleanrl_sps'])} | "
            f"**{r['ratio']:.2f}** ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {num(r['ours_cpu_sps'])} | "
            f"{num(r['cleanrl_cpu_sps'])} | {r['cpu_ratio']:.2f} | "
            f"{num(r.get('env_sps'))} | {num(r.get('compute_sps'))} | {num(r.get('flop_sps'))} | {num(best)} | "
            f"{'-' if not best else format(r['ours_cpu_sps'] / best, '.2f')} |"
        )
    ceilings = (
        "Ceilings were not measured (--no-ceilings): they time CleanRL's networks and our env stacks, which a change "
        "to the scripts does not move; take them from a run with ceilings. Per-pair figures are in the .json file."
        if meta.get("matmul_gflops") is None or meta["matmul_gflops"] != meta["matmul_gflops"] else
        "Ceilings, in CPU time of one thread "
        "(so comparable with CPU SPS): env = the env stack alone with random actions; compute = acting forwards and "
        "updates at the family's batch sizes in a tight loop (eager PyTorch, fused Adam), as many as the run does; FLOP "
        "floor = the same work's FLOPs at this thread's float32 matmul speed "
        f"({meta['matmul_gflops']:.1f} GFLOP/s, the best square product of 256, 512 or 1024 measured by any family's "
        "worker; a rough floor: the compute ceiling comes close to it where big matmuls or convolutions dominate); "
        "best = the fixed start-up of a process that imports torch and gymnasium and builds an Adam optimizer "
        f"({meta['startup_s']:.1f} s of CPU), then env and compute one after the other: "
        "the whole-process SPS an eager one-thread implementation could reach here. Per-pair figures are in the .json file."
    )
    lines += [
        "",
        "SPS: steps / wall seconds of the whole process (median over pairs); the ratio is the median of the per-pair "
        "ratios; CPU SPS: steps / CPU seconds (user + sys) of the process, the steadier figure on a shared machine; "
        "CPU-time ratio: CleanRL's CPU seconds / AxiomRL's, median over pairs. " + ceilings,
        "",
    ]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    sys.path.insert(0, str(REPO))
    from axiomrl_utils.jsonl import write_text_atomic

    write_text_atomic(path, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cleanrl", help="a checkout (or bare clone) of https://github.com/vwxyzjn/cleanrl")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--pairs", type=int, default=3, help="AxiomRL/CleanRL pairs per family (seeds 1..pairs)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every family's steps (and learning starts)")
    parser.add_argument("--commit", help="time AxiomRL as committed at this git revision instead of the working tree")
    parser.add_argument("--no-ceilings", action="store_true", help="skip the ceilings")
    parser.add_argument("--output", default=str(RESULT), help="result file (.md; the .json goes beside it)")
    parser.add_argument("--worker-ceiling", choices=list(FAMILIES), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--starts", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ours", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--env-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker_ceiling:
        result = ceiling_worker(FAMILIES[args.worker_ceiling], args.steps, args.starts, Path(args.ours), args.budget, args.env_steps)
        print(json.dumps(result))
        return
    if not args.cleanrl:
        raise BenchmarkError("--cleanrl is required: the path of a checkout of https://github.com/vwxyzjn/cleanrl")
    if args.pairs < 1 or not args.steps_scale > 0:
        raise BenchmarkError("--pairs must be at least 1 and --steps-scale above 0")
    families = [FAMILIES[name] for name in args.families]
    output = Path(args.output)
    meta: dict[str, Any] = {
        "command": "python benchmark/speed_families.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "pairs": args.pairs, "steps_scale": args.steps_scale,
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
                   f"Python {platform.python_version()}",
        "uptime_before": uptime(),
        "cleanrl_patches": [{"file": f, "old": o, "new": n} for f, o, n, _ in CLEANRL_PATCHES],
    }
    results: list[dict] = []
    ceilings: dict[str, dict] = {}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="speed-families-") as tmp:
        cleanrl = Path(tmp) / "cleanrl"
        cleanrl.mkdir()
        meta["cleanrl_commit"] = prepare_cleanrl(Path(args.cleanrl).resolve(), cleanrl, families) or "(not a git checkout)"
        import gymnasium
        import torch

        meta.update(torch=torch.__version__, gymnasium=gymnasium.__version__)
        if args.commit:
            (Path(tmp) / "ours").mkdir()
            meta["axiomrl_commit"], ours = export_commit(args.commit, Path(tmp) / "ours")
        else:
            ours = REPO
            dirty = bool(_git("status", "--porcelain", "--", "axiomrl", "axiomrl_utils"))
            meta["axiomrl_commit"] = f"{_git('log', '-1', '--format=%h %s')}{' + uncommitted changes' if dirty else ''}"
        meta["startup_s"] = startup_seconds(ours, repeats=3 if args.steps_scale >= 1 else 1)
        for family in families:
            steps, starts = scaled(family, args.steps_scale)
            if not args.no_ceilings:
                ceilings[family.name] = c = measure_ceilings(family, steps, starts, ours, args.steps_scale)
                print(f"{family.name}: ceilings env {c['env_sps']:,.0f}, compute {c['compute_sps']:,.0f} SPS",
                      file=sys.stderr, flush=True)
            runs = []
            for pair in range(1, args.pairs + 1):
                for side in round_order(["axiomrl", "cleanrl"], pair):
                    r = measure_side(side, family, steps, starts, pair, ours, cleanrl)
                    print(f"{family.name} pair {pair}: {side:8s} {r['sps']:8,.0f} SPS  {r['cpu_sps']:8,.0f} CPU SPS  "
                          f"({r['steps']:,} steps in {r['wall_s']:.1f} s, load {r['load_before']:.1f})", file=sys.stderr, flush=True)
                    runs.append(r)
            results += runs
            # the machine's matmul speed: the best any family's worker measured (the others were slowed down)
            peak = max((c["matmul_flops_per_s"] for c in ceilings.values()), default=math.nan)
            meta["matmul_gflops"] = peak / 1e9
            rows = [summarise(f, [r for r in results if r["family"] == f.name], ceilings.get(f.name), meta["startup_s"], peak)
                    for f in families if any(r["family"] == f.name for r in results)]
            # written after every family, so that a long measurement stopped half-way keeps what it measured
            meta["uptime_after"], meta["finished_utc"] = uptime(), f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M}"
            text = render(rows, meta)
            output.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(output, text)
            write_atomic(output.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows, "ceilings": ceilings,
                                                                   "runs": results}, indent=1) + "\n")
    print(text)
    print(f"wrote {output}", file=sys.stderr)

if __name__ == "__main__":
    main()
