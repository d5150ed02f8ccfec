# C51 (categorical distributional DQN) for Atari games (Nature-CNN on 4 stacked 84x84 grayscale
# frames, a 51-atom return distribution per action); docs: docs/algorithms.md#c51_atari
# Defaults equal CleanRL's c51_atari.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/c51_atari.py),
# so its published returns compare. The DeepMind preprocessing is axiomrl_utils.atari.make_atari_env
# (as dqn_atari.py); the replay buffer stores each 84x84 frame once. Deliberate differences, all for
# gymnasium 1.x correctness, exact resume or speed:
# - the env autoresets in the SAME step an episode ends, and the transition stores the true final
#   observation from infos["final_obs"]: a truncated episode (time limit) bootstraps from it, only a
#   termination stops the bootstrap;
# - exploration draws from the global numpy RNG instead of the action space's own RNG, so a resumed
#   run (which restores the global RNGs) explores exactly as an uninterrupted one;
# - the replay buffer, target network, optimizer and RNGs are all in the checkpoint; ALE games
#   cannot be saved mid-episode, so a resume starts new games (the run says so);
# - the projection onto the support adds the whole batch with one index_add_ instead of one per row.
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
from axiomrl_utils.atari import make_atari_env, require_atari_env
from axiomrl_utils.replay_buffer import check_replay_buffer, make_replay_buffer
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

LOG_EVERY = 100  # environment steps between metrics.jsonl rows, as CleanRL


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "BreakoutNoFrameskip-v4"
    """the id of the environment (an Atari game: ALE/Breakout-v5, BreakoutNoFrameskip-v4, ...)"""
    total_timesteps: Annotated[int, Positive()] = 10000000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 2.5e-4
    """the learning rate of the optimizer"""
    n_atoms: Annotated[int, AtLeast(2)] = 51
    """the number of atoms"""
    v_min: Annotated[float, Finite()] = -10
    """the return lower bound"""
    v_max: Annotated[float, Finite(), Above("v_min")] = 10
    """the return upper bound"""
    buffer_size: Annotated[int, Positive()] = 1000000
    """the replay memory buffer size (about 7 KB per transition: one 84x84 frame and bookkeeping)"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    target_network_frequency: Annotated[int, Positive()] = 10000
    """the timesteps it takes to update the target network"""
    batch_size: Annotated[int, Positive()] = 32
    """the batch size of sample from the reply memory"""
    start_e: Annotated[float, Range(0, 1)] = 1
    """the starting epsilon for exploration"""
    end_e: Annotated[float, Range(0, 1)] = 0.01
    """the ending epsilon for exploration"""
    exploration_fraction: Annotated[float, Positive()] = 0.10
    """the fraction of `total-timesteps` it takes from start-e to go end-e"""
    learning_starts: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "the run never learns")] = 80000
    """timestep to start learning"""
    train_frequency: Annotated[int, Positive()] = 4
    """the frequency of training"""
    save_buffer: bool = True
    """if toggled, checkpoints include the replay buffer (exact resume); otherwise a resume starts with an empty buffer"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        # evaluation envs drop episodic life and reward clipping: evaluation returns are game scores
        return make_atari_env(args, evaluation=evaluation, render_mode=render_mode)

    return thunk


class QNetwork(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv, n_atoms: int = 51, v_min: float = -10, v_max: float = 10):
        super().__init__()
        self.n_atoms = n_atoms
        self.register_buffer("atoms", torch.linspace(v_min, v_max, steps=n_atoms))
        self.n = envs.single_action_space.n
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(3136, 512),
            nn.ReLU(),
            nn.Linear(512, self.n * n_atoms),
        )

    def get_action(self, x: torch.Tensor, action: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(greedy or given action, its probabilities over the atoms) for a batch of observations."""
        logits = self.network(x / 255.0)
        # probability mass function for each action
        pmfs = torch.softmax(logits.view(len(x), self.n, self.n_atoms), dim=2)
        q_values = (pmfs * self.atoms).sum(2)
        if action is None:
            action = torch.argmax(q_values, 1)
        return action, pmfs[torch.arange(len(x)), action]

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy action (highest expected return) for a batch of observations (evaluation and export)."""
        return self.get_action(x)[0]


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
    _, action_space = require_atari_env(args, "c51_atari.py")
    probe = make_env(args, 0)()  # the preprocessed observation space sizes the buffer
    observation_space = probe.observation_space
    probe.close()
    check_replay_buffer(args.buffer_size, args.batch_size, 1, observation_space, action_space)

    with start_run(args, __file__, log_every=LOG_EVERY) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)

        # env setup
        # the env records its own whole-game statistics (see make_atari_env): no vector-level recorder
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

        for step in range(start_step, args.total_timesteps):  # `step`: env steps before this one (CleanRL's global_step)
            # ALGO LOGIC: put action logic here
            epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, step)
            if random.random() < epsilon:
                actions = np.random.randint(envs.single_action_space.n, size=envs.num_envs)
            else:
                with torch.no_grad():
                    actions, _ = q_network.get_action(torch.as_tensor(obs, device=device))
                actions = actions.cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + 1
            run.log_episodes(global_step, infos.get("final_info", {}))  # whole games, real scores
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
