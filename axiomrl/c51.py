# C51 (categorical distributional DQN) for discrete actions and vector observations; docs: docs/algorithms.md#c51
# Defaults equal CleanRL's c51.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/c51.py), so its
# published returns compare. Deliberate differences, all for gymnasium 1.x correctness, exact resume or speed:
# - the env autoresets in the SAME step an episode ends, and the transition stores the true final
#   observation from infos["final_obs"]: a truncated episode (time limit) bootstraps from it, only a
#   termination stops the bootstrap;
# - exploration draws from the global numpy RNG instead of the action space's own RNG, so a resumed
#   run (which restores the global RNGs) explores exactly as an uninterrupted one;
# - the replay buffer, target network, optimizer, environments and RNGs are all in the checkpoint;
# - the projection onto the support adds the whole batch with one index_add_ instead of one per row;
# - acting reads the Q-network's weights through numpy (numpy_forward) and takes the expectation over
#   the atoms in numpy (greedy_action): for one observation PyTorch's per-call overhead, not
#   arithmetic, is the cost (benchmark/README.md).
import random
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import Above, AtLeast, Finite, NonEmpty, Positive, Range, WarnFrom, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.numpy_forward import numpy_forward
from axiomrl_utils.replay_buffer import check_replay_buffer, make_replay_buffer
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

LOG_EVERY = 100  # environment steps between metrics.jsonl rows, as CleanRL


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "CartPole-v1"
    """the id of the environment"""
    total_timesteps: Annotated[int, Positive()] = 500000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 2.5e-4
    """the learning rate of the optimizer"""
    n_atoms: Annotated[int, AtLeast(2)] = 101
    """the number of atoms"""
    v_min: Annotated[float, Finite()] = -100
    """the return lower bound"""
    v_max: Annotated[float, Finite(), Above("v_min")] = 100
    """the return upper bound"""
    buffer_size: Annotated[int, Positive()] = 10000
    """the replay memory buffer size"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    target_network_frequency: Annotated[int, Positive()] = 500
    """the timesteps it takes to update the target network"""
    batch_size: Annotated[int, Positive()] = 128
    """the batch size of sample from the reply memory"""
    start_e: Annotated[float, Range(0, 1)] = 1
    """the starting epsilon for exploration"""
    end_e: Annotated[float, Range(0, 1)] = 0.05
    """the ending epsilon for exploration"""
    exploration_fraction: Annotated[float, Positive()] = 0.5
    """the fraction of `total-timesteps` it takes from start-e to go end-e"""
    learning_starts: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "the run never learns")] = 10000
    """timestep to start learning"""
    train_frequency: Annotated[int, Positive()] = 10
    """the frequency of training"""
    save_buffer: bool = True
    """if toggled, checkpoints include the replay buffer (exact resume); otherwise a resume starts with an empty buffer"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        env = create_env(args, render_mode=render_mode)
        if evaluation:  # evaluation sums its own returns
            return env
        # one recorder per env, as CleanRL: the vector recorder's numpy work per step is a large share of a
        # CartPole step (benchmark/README.md, "dqn.py")
        return gym.wrappers.RecordEpisodeStatistics(env)

    return thunk


class QNetwork(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv, n_atoms: int = 101, v_min: float = -100, v_max: float = 100):
        super().__init__()
        self.n_atoms = n_atoms
        self.register_buffer("atoms", torch.linspace(v_min, v_max, steps=n_atoms))
        self.n = envs.single_action_space.n
        self.network = nn.Sequential(
            nn.Linear(int(np.prod(envs.single_observation_space.shape)), 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, self.n * n_atoms),
        )

    def get_action(self, x: torch.Tensor, action: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(greedy or given action, its probabilities over the atoms) for a batch of observations."""
        logits = self.network(x)
        # probability mass function for each action
        pmfs = torch.softmax(logits.view(len(x), self.n, self.n_atoms), dim=2)
        q_values = (pmfs * self.atoms).sum(2)
        if action is None:
            action = torch.argmax(q_values, 1)
        return action, pmfs[torch.arange(len(x)), action]

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy action (highest expected return) for a batch of observations (evaluation and export)."""
        return self.get_action(x)[0]


def greedy_action(logits: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """QNetwork.get_action's greedy action in numpy, from the network's output (batch, actions * atoms)."""
    logits = logits.reshape(len(logits), -1, len(atoms))
    pmfs = np.exp(logits - logits.max(-1, keepdims=True))  # softmax over the atoms
    pmfs /= pmfs.sum(-1, keepdims=True)
    return (pmfs * atoms).sum(-1).argmax(1)


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    slope = (end_e - start_e) / duration
    return max(slope * t + start_e, end_e)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The greedy policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    q_network = QNetwork(envs, n_atoms=args.n_atoms, v_min=args.v_min, v_max=args.v_max)
    q_network.load_state_dict(checkpoint["q_network"])
    return q_network.eval().act


def main(args: Args) -> None:
    check_args(args)
    observation_space, action_space = require_env(args, "c51.py", action_space="discrete")
    check_replay_buffer(args.buffer_size, args.batch_size, 1, observation_space, action_space)

    with start_run(args, __file__, log_every=LOG_EVERY) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)

        # env setup
        envs = gym.vector.SyncVectorEnv([make_env(args, 0)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

        q_network = QNetwork(envs, n_atoms=args.n_atoms, v_min=args.v_min, v_max=args.v_max).to(device)
        optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=0.01 / args.batch_size)
        target_network = QNetwork(envs, n_atoms=args.n_atoms, v_min=args.v_min, v_max=args.v_max).to(device)
        target_network.load_state_dict(q_network.state_dict())

        rb = make_replay_buffer(
            args.buffer_size, envs.single_observation_space, envs.single_action_space,
            device=device, save_contents=args.save_buffer,
        )

        # start the game, or continue it from the checkpoint (--resume)
        run.declare_state(q_network=q_network, target_network=target_network, optimizer=optimizer, rb=rb, envs=envs)
        start_step = 0
        obs, _ = envs.reset(seed=args.seed)
        if args.resume:
            saved = run.restore()
            start_step = saved["global_step"]
            obs = saved["obs"] if saved["envs_restored"] else envs.reset(seed=args.seed + start_step)[0]
        # acting in numpy on the live weights (every optimizer step is seen); the support is fixed from here on
        q_network_numpy, atoms = numpy_forward(q_network.network), q_network.atoms.cpu().numpy()

        for step in range(start_step, args.total_timesteps):  # `step`: env steps before this one (CleanRL's global_step)
            # ALGO LOGIC: put action logic here
            epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, step)
            if random.random() < epsilon:
                actions = np.random.randint(envs.single_action_space.n, size=envs.num_envs)
            else:
                actions = greedy_action(q_network_numpy(obs), atoms)

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + 1
            if "final_info" in infos:  # per-env statistics of the episodes that ended (most steps end none)
                run.log_episodes(global_step, infos["final_info"])
            if global_step % LOG_EVERY == 0:  # a metrics row keeps one epsilon per LOG_EVERY steps (CleanRL's cadence)
                run.log_metrics(global_step, {"charts/epsilon": epsilon})

            # the true next observation: an episode that ended was reset in this step, its last observation is in final_obs
            real_next_obs = next_obs.copy()
            for idx in np.flatnonzero(infos.get("_final_obs", ())):
                real_next_obs[idx] = infos["final_obs"][idx]
            rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)

            # TRY NOT TO MODIFY: CRUCIAL step easy to overlook
            obs = next_obs

            # ALGO LOGIC: training.
            if step > args.learning_starts:
                if step % args.train_frequency == 0:
                    data = rb.sample(args.batch_size)
                    with torch.no_grad():
                        _, next_pmfs = target_network.get_action(data.next_observations)
                        next_atoms = data.rewards.unsqueeze(1) + args.gamma * target_network.atoms * (1 - data.terminations.unsqueeze(1))
                        # projection
                        delta_z = target_network.atoms[1] - target_network.atoms[0]
                        tz = next_atoms.clamp(args.v_min, args.v_max)

                        b = (tz - args.v_min) / delta_z
                        l = b.floor().clamp(0, args.n_atoms - 1)
                        u = b.ceil().clamp(0, args.n_atoms - 1)
                        # (l == u).float() handles the case where bj is exactly an integer
                        # example bj = 1, then the upper ceiling should be uj= 2, and lj= 1
                        d_m_l = (u + (l == u).float() - b) * next_pmfs
                        d_m_u = (b - l) * next_pmfs
                        # row i's atoms live at i * n_atoms ... in the flattened target
                        offset = (torch.arange(len(b), device=device) * args.n_atoms).unsqueeze(1)
                        target_pmfs = torch.zeros_like(next_pmfs)
                        target_pmfs.view(-1).index_add_(0, (l.long() + offset).view(-1), d_m_l.view(-1))
                        target_pmfs.view(-1).index_add_(0, (u.long() + offset).view(-1), d_m_u.view(-1))

                    _, old_pmfs = q_network.get_action(data.observations, data.actions)
                    loss = (-(target_pmfs * old_pmfs.clamp(min=1e-5, max=1 - 1e-5).log()).sum(-1)).mean()
                    q_values = (old_pmfs.detach() * q_network.atoms).sum(1).mean()
                    run.log_metrics(global_step, {"losses/loss": loss.detach(), "losses/q_values": q_values})

                    # optimize the model
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()

                # update target network
                if step % args.target_network_frequency == 0:
                    target_network.load_state_dict(q_network.state_dict())

            # evaluation, checkpoints (run management: see axiomrl_utils/run/__init__.py)
            if run.due("eval", global_step):
                run.evaluate(global_step, q_network.act, make_env)
            if run.due("checkpoint", global_step):
                run.save(global_step, obs=obs)
            if run.stop_requested:
                break

        envs.close()


if __name__ == "__main__":
    main(parse_args(Args, __file__))
