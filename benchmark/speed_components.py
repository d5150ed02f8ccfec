"""What each speed change in ppo.py / dqn.py / axiomrl_utils buys, component by component.

    python benchmark/speed_components.py              # writes benchmark/results/speed_components.md
    python benchmark/speed_components.py --rounds 9   # steadier on a busy machine

Whole-run SPS moves by a few percent per change, which a shared machine's noise hides; the
component a change touches moves by much more. Each row times the code before and after a change
in the same process, alternating (before, after, before, after, ... for --rounds rounds), and
reports CPU microseconds per call: the minimum over rounds (the least disturbed) and the median.
Torch runs on one thread (as benchmark/speed.py's workers) except in the threads row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULT = REPO / "benchmark" / "results" / "speed_components.md"


def timed(fn: Callable[[], object], calls: int) -> float:
    """CPU seconds per call of `fn`, after a short warm-up."""
    for _ in range(max(1, calls // 10)):
        fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def compare(before: Callable[[], object], after: Callable[[], object], calls: int, rounds: int) -> tuple[list[float], list[float]]:
    b, a = [], []
    for _ in range(rounds):
        b.append(timed(before, calls))
        a.append(timed(after, calls))
    return b, a


def rows(rounds: int) -> list[tuple[str, str, str, list[float], list[float]]]:
    import numpy as np
    import torch
    import torch.nn as nn

    import gymnasium as gym

    from axiomrl import c51, dqn, ppo
    from axiomrl_utils.numpy_forward import numpy_forward

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the scripts run (seed_everything)
    torch.manual_seed(0)
    agent = ppo.Agent(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(4)]))
    out = []

    # --- rollout step: Categorical-style sampling with multinomial + entropy, vs Gumbel-max without entropy
    obs = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)

    def rollout_before() -> None:
        with torch.inference_mode():
            x = torch.as_tensor(obs, dtype=torch.float32)
            log_probs = agent.actor(x).log_softmax(-1)
            action = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)  # noqa: F841 (computed, never read)
            logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            value = agent.critic(x)
            action.cpu().numpy(), logprob.cpu().numpy(), value.flatten().cpu().numpy()

    def rollout_gumbel() -> None:
        with torch.inference_mode():
            x = torch.as_tensor(obs, dtype=torch.float32)
            log_probs = agent.actor(x).log_softmax(-1)
            action = (log_probs - torch.empty_like(log_probs).exponential_().log()).argmax(-1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)  # noqa: F841
            logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            value = agent.critic(x)
            action.cpu().numpy(), logprob.cpu().numpy(), value.flatten().cpu().numpy()

    def rollout_torch() -> None:  # ppo.py's rollout from feba65a until numpy acting
        with torch.inference_mode():
            x = torch.as_tensor(obs, dtype=torch.float32)
            log_probs = agent.actor(x).log_softmax(-1)
            action = (log_probs - torch.empty_like(log_probs).exponential_().log()).argmax(-1)
            logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
            value = agent.critic(x)
            action.cpu().numpy(), logprob.cpu().numpy(), value.flatten().cpu().numpy()

    actor_logits, critic_value = numpy_forward(agent.actor), numpy_forward(agent.critic)

    def rollout_numpy() -> None:  # ppo.py's rollout now
        ppo.sample_action(actor_logits(obs)), critic_value(obs)[:, 0]

    b, a = compare(rollout_before, rollout_gumbel, 2000, rounds)
    out.append(("ppo: Gumbel-max instead of torch.multinomial", "rollout step (policy + conversions)", "68c3f61", b, a))
    b, a = compare(rollout_gumbel, rollout_torch, 2000, rounds)
    out.append(("ppo: the rollout skips the entropy", "rollout step (policy + conversions)", "feba65a", b, a))
    b, a = compare(rollout_torch, rollout_numpy, 2000, rounds)
    out.append(("ppo: the rollout acts in numpy (numpy_forward, sample_action as it is now)", "rollout step (policy + conversions)", "1aff76c", b, a))

    def sample_take_along_axis(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # sample_action until 5cb2b29
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        action = (log_probs + np.random.gumbel(size=log_probs.shape)).argmax(-1)
        return action, np.take_along_axis(log_probs, action[:, None], -1)[:, 0]

    logits = actor_logits(obs)
    b, a = compare(lambda: sample_take_along_axis(logits), lambda: ppo.sample_action(logits), 4000, rounds)
    out.append(("ppo: sample_action indexes the log-probability directly", "sampling 4 actions and their log-probabilities", "5cb2b29", b, a))

    # --- dqn acting: the Q-network through torch vs numpy_forward on one observation
    q_network = dqn.QNetwork(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")]))
    q_network_numpy, one_obs = numpy_forward(q_network.network), obs[:1]

    def act_torch() -> None:
        with torch.no_grad():
            q_network(torch.as_tensor(one_obs, dtype=torch.float32)).argmax(dim=1).cpu().numpy()

    b, a = compare(act_torch, lambda: q_network_numpy(one_obs).argmax(axis=1), 4000, rounds)
    out.append(("dqn: acting in numpy (numpy_forward)", "greedy action for one observation", "1aff76c", b, a))

    c51_network = c51.QNetwork(gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")]))
    c51_numpy, atoms = numpy_forward(c51_network.network), c51_network.atoms.numpy()

    def c51_act_torch() -> None:
        with torch.no_grad():
            c51_network.get_action(torch.as_tensor(one_obs, dtype=torch.float32))[0].cpu().numpy()

    b, a = compare(c51_act_torch, lambda: c51.greedy_action(c51_numpy(one_obs), atoms), 4000, rounds)
    out.append(("c51: acting in numpy (numpy_forward, greedy_action)", "greedy action for one observation", "df450b5", b, a))

    # --- one PPO minibatch update: per-tensor Adam vs fused Adam
    batch = 512
    b_obs, b_actions = torch.randn(batch, 4), torch.randint(0, 2, (batch,))
    b_logprobs, b_adv, b_ret, b_val = torch.randn(batch) * 0.1 - 0.7, torch.randn(batch), torch.randn(batch), torch.randn(batch)
    inds = np.arange(batch)

    def minibatch(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        def update() -> None:
            np.random.shuffle(inds)
            mb = torch.as_tensor(inds[:128])
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
            ratio = (newlogprob - b_logprobs[mb]).exp()
            adv = b_adv[mb]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2)).mean()
            newvalue = newvalue.view(-1)
            v_clipped = b_val[mb] + torch.clamp(newvalue - b_val[mb], -0.2, 0.2)
            v_loss = 0.5 * torch.max((newvalue - b_ret[mb]) ** 2, (v_clipped - b_ret[mb]) ** 2).mean()
            loss = pg_loss - 0.01 * entropy.mean() + 0.5 * v_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
            optimizer.step()

        return update

    per_tensor = torch.optim.Adam(agent.parameters(), lr=1e-9, eps=1e-5)  # tiny lr: the agent stays put
    fused = torch.optim.Adam(agent.parameters(), lr=1e-9, eps=1e-5, fused=True)
    minibatch(per_tensor)()  # gradients for the optimizers to use
    b, a = compare(per_tensor.step, fused.step, 500, rounds)
    out.append(("ppo/dqn: fused Adam", "optimizer.step() (PPO agent)", "5a5cc3c", b, a))
    b, a = compare(minibatch(per_tensor), minibatch(fused), 200, rounds)
    out.append(("ppo/dqn: fused Adam", "one PPO minibatch (forward, loss, backward, clip, step)", "5a5cc3c", b, a))

    # --- GAE over one rollout: CleanRL's loop vs all TD errors at once
    rng = np.random.default_rng(1)
    rewards, values = rng.random((128, 4), dtype=np.float32), rng.random((128, 4), dtype=np.float32)
    dones = (rng.random((128, 4)) < 0.05).astype(np.float32)
    next_value, next_done = rng.random((1, 4), dtype=np.float32), np.zeros(4, dtype=np.float32)

    def gae_before() -> np.ndarray:
        advantages, lastgaelam = np.zeros_like(rewards), 0
        for t in reversed(range(128)):
            if t == 127:
                nextnonterminal, nextvalues = 1.0 - next_done, next_value
            else:
                nextnonterminal, nextvalues = 1.0 - dones[t + 1], values[t + 1]
            delta = rewards[t] + 0.99 * nextvalues * nextnonterminal - values[t]
            advantages[t] = lastgaelam = delta + 0.99 * 0.95 * nextnonterminal * lastgaelam
        return advantages

    def gae_after() -> np.ndarray:
        nextnonterminal = 1.0 - np.concatenate([dones[1:], next_done[None]])
        nextvalues = np.concatenate([values[1:], next_value])
        deltas = rewards + 0.99 * nextvalues * nextnonterminal - values
        advantages, lastgaelam = np.zeros_like(rewards), 0
        for t in reversed(range(128)):
            advantages[t] = lastgaelam = deltas[t] + 0.99 * 0.95 * nextnonterminal[t] * lastgaelam
        return advantages

    assert np.array_equal(gae_before(), gae_after())
    b, a = compare(gae_before, gae_after, 200, rounds)
    out.append(("ppo: GAE with all TD errors at once", "GAE of one 128 x 4 rollout", "ed33497", b, a))

    # --- TensorBoard: one event per scalar vs one event per row (incl. the writer thread's CPU)
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    with tempfile.TemporaryDirectory() as tmp:
        writer = SummaryWriter(tmp)
        row = {f"losses/metric_{i}": 0.5 * i for i in range(12)}
        step = iter(range(10**9))

        def per_scalar() -> None:
            s = next(step)
            for tag, value in row.items():
                writer.add_scalar(tag, value, s)

        def per_row() -> None:
            values = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in row.items()]
            writer._get_file_writer().add_summary(Summary(value=values), next(step))

        b, a = compare(per_scalar, per_row, 300, rounds)
        out.append(("logger: one TensorBoard event per row", "a 12-metric row to TensorBoard", "5c7cf1d", b, a))

        from axiomrl_utils.tensorboard_writer import TensorBoardWriter

        own = TensorBoardWriter(Path(tmp))
        b, a = compare(per_row, lambda: own.add_scalars(row, next(step)), 300, rounds)
        out.append(("logger: own event writer instead of SummaryWriter", "a 12-metric row to TensorBoard", "8ebee30", b, a))
        writer.close()
        own.close()
    return out


def tensorboard_import_row(rounds: int) -> tuple[str, str, str, list[float], list[float]]:
    """CPU time to open a run's TensorBoard writer in a fresh process (torch already imported): SummaryWriter vs ours."""
    code = (
        "import sys, tempfile, time, pathlib, torch; sys.path.insert(0, %r); t = time.process_time()\n"
        "if sys.argv[1] == 'summarywriter':\n"
        "    from torch.utils.tensorboard import SummaryWriter; SummaryWriter(tempfile.mkdtemp()).close()\n"
        "else:\n"
        "    from axiomrl_utils.tensorboard_writer import TensorBoardWriter; TensorBoardWriter(pathlib.Path(tempfile.mkdtemp())).close()\n"
        "print(time.process_time() - t)"
    ) % str(REPO)
    before, after = alternate_in_subprocesses(code, ("summarywriter", "own"), rounds)
    return ("logger: own event writer instead of SummaryWriter", "import + open the writer, once per run", "8ebee30", before, after)


def alternate_in_subprocesses(code: str, variants: tuple[str, str], rounds: int, env: Optional[dict] = None) -> tuple[list[float], list[float]]:
    """Run `python -c code <variant>` for both variants, alternately, `rounds` times; the float each prints last."""
    results: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for variant, into in zip(variants, results):
            proc = subprocess.run([sys.executable, "-c", code, variant], env=env, capture_output=True, text=True, check=True)
            into.append(float(proc.stdout.strip().splitlines()[-1]))
    return results


def threads_row(rounds: int) -> tuple[str, str, str, list[float], list[float]]:
    """One PPO minibatch with torch on 2 threads (its default here) vs 1, each in a fresh process."""
    code = (
        "import sys, time, torch, numpy as np; sys.path.insert(0, %r); torch.set_num_threads(int(sys.argv[1]));"
        "from axiomrl import ppo; import gymnasium as gym;"
        "envs = gym.vector.SyncVectorEnv([lambda: gym.make('CartPole-v1')]); agent = ppo.Agent(envs);"
        "opt = torch.optim.Adam(agent.parameters(), lr=1e-9, eps=1e-5, fused=True);"
        "x, a = torch.randn(128, 4), torch.randint(0, 2, (128,))\n"
        "def f():\n"
        "    _, lp, ent, v = agent.get_action_and_value(x, a); loss = -lp.mean() - 0.01 * ent.mean() + (v ** 2).mean()\n"
        "    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5); opt.step()\n"
        "[f() for _ in range(50)]; t = time.process_time(); [f() for _ in range(500)]; print((time.process_time() - t) / 500)"
    ) % str(REPO)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    two, one = alternate_in_subprocesses(code, ("2", "1"), rounds, env)
    return ("ppo/dqn: --torch-threads 1", "one PPO minibatch, CPU time of all threads (2 threads -> 1)", "cf43cf0", two, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", default=str(RESULT))
    args = parser.parse_args()
    if hasattr(os, "nice"):
        os.nice(10)
    load_before = os.getloadavg()[0]
    results = rows(args.rounds) + [threads_row(max(3, args.rounds // 2)), tensorboard_import_row(max(3, args.rounds // 2))]
    load_after = os.getloadavg()[0]

    def fmt(seconds: float) -> str:
        return f"{seconds:.2f} s" if seconds >= 0.05 else f"{seconds * 1e6:,.1f} µs"

    lines = [
        "# Speed changes, component by component",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmark/speed_components.py"
        f"{''.join(f' {a}' for a in sys.argv[1:])}` on {platform.platform()} ({os.cpu_count()} CPU threads, shared; "
        f"load average {load_before:.1f} before, {load_after:.1f} after). CPU time per call, before and after "
        "each change, alternating in one process; minimum over rounds (median in brackets).",
        "",
        "| change | commit | what is timed | before | after | saved |",
        "|---|---|---|---:|---:|---:|",
    ]
    for change, what, commit, before, after in results:
        saved = 1 - min(after) / min(before)
        lines.append(
            f"| {change} | {commit} | {what} | {fmt(min(before))} ({fmt(statistics.median(before))}) | "
            f"{fmt(min(after))} ({fmt(statistics.median(after))}) | {100 * saved:.0f}% |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
