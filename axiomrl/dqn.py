# DQN for discrete actions and vector observations; docs: docs/algorithms.md#dqn
# Defaults equal CleanRL's dqn.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/dqn.py), so its
# published returns compare. Deliberate differences, all for gymnasium 1.x correctness or exact resume:
# - the env autoresets in the SAME step an episode ends, and the transition stores the true final
#   observation from infos["final_obs"]: a truncated episode (time limit) bootstraps from it, only a
#   termination stops the bootstrap;
# - exploration draws from the global numpy RNG instead of the action space's own RNG, so a resumed
#   run (which restores the global RNGs) explores exactly as an uninterrupted one;
# - the replay buffer, target network, optimizer, environments and RNGs are all in the checkpoint,
#   so epsilon (a function of the step) and everything else continue where they stopped;
# - acting reads the Q-network's weights through numpy (numpy_forward): for one observation
#   PyTorch's per-call overhead, not arithmetic, is the cost (benchmark/README.md).
# `--prioritized` (off by default; not in CleanRL's dqn.py) replays by TD error through
# axiomrl_utils.replay_buffer.PrioritizedReplayBuffer (docs/algorithms.md, "Prioritized replay").
import random
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import AtLeast, NonEmpty, Positive, Range, WarnFrom, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.numpy_forward import numpy_forward
from axiomrl_utils.replay_buffer import PrioritizedReplayBuffer, check_replay_buffer, make_replay_buffer
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
    buffer_size: Annotated[int, Positive()] = 10000
    """the replay memory buffer size"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    tau: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    """the target network update rate"""
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
    prioritized: bool = False
    """if toggled, replay transitions in proportion to their TD error (prioritized replay, importance-sampling weights)"""
    prioritized_replay_alpha: Annotated[float, Range(0, 1)] = 0.6
    """with --prioritized: how much priorities shape sampling (0: uniform, 1: proportional to |TD error|)"""
    prioritized_replay_beta: Annotated[float, Range(0, 1)] = 0.4
    """with --prioritized: the importance-sampling exponent at the start, annealed linearly to 1 at the end"""
    prioritized_replay_eps: Annotated[float, Positive()] = 1e-6
    """with --prioritized: added to |TD error| so that every transition keeps a chance to be replayed"""
    save_buffer: bool = True
    """if toggled, checkpoints include the replay buffer (exact resume); otherwise a resume starts with an empty buffer"""
    torch_threads: Annotated[int, AtLeast(0)] = 1
    """CPU threads torch may use (0: torch's default, one per core); 1 is fastest for networks this small"""


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
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(int(np.prod(envs.single_observation_space.shape)), 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, envs.single_action_space.n),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy action for a batch of observations (evaluation and export)."""
        return self(x).argmax(-1)


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    slope = (end_e - start_e) / duration
    return max(slope * t + start_e, end_e)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The greedy policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    q_network = QNetwork(envs)
    q_network.load_state_dict(checkpoint["q_network"])
    return q_network.eval().act


def main(args: Args) -> None:
    check_args(args)
    observation_space, action_space = require_env(args, "dqn.py", action_space="discrete")
    check_replay_buffer(args.buffer_size, args.batch_size, 1, observation_space, action_space)

    with start_run(args, __file__, log_every=LOG_EVERY) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)
        if args.torch_threads:  # a thread hand-off costs more than it saves on layers this small
            torch.set_num_threads(args.torch_threads)

        # env setup
        envs = gym.vector.SyncVectorEnv([make_env(args, 0)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

        q_network = QNetwork(envs).to(device)
        # fused: one kernel for the whole Adam step instead of ~10 small ops per parameter tensor (same update)
        optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
        target_network = QNetwork(envs).to(device)
        target_network.load_state_dict(q_network.state_dict())
        # acting's forward pass, in numpy on the same (live) weights: torch's per-call cost dominates one observation
        q_network_numpy = numpy_forward(q_network.network)

        rb = make_replay_buffer(
            args.buffer_size, envs.single_observation_space, envs.single_action_space,
            device=device, save_contents=args.save_buffer,
        )
        if args.prioritized:  # the same storage, sampled through a sum tree of priorities
            rb = PrioritizedReplayBuffer(rb, args.prioritized_replay_alpha, args.prioritized_replay_eps, gamma=args.gamma)

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
                actions = q_network_numpy(obs).argmax(axis=1)

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + 1
            if "final_info" in infos:  # per-env statistics of the episodes that ended (most steps end none)
                run.log_episodes(global_step, infos["final_info"])
            if global_step % LOG_EVERY == 0:  # a metrics row keeps one epsilon per LOG_EVERY steps (CleanRL's cadence)
                run.log_metrics(global_step, {"charts/epsilon": epsilon})

            # the true next observation: an episode that ended was reset in this step, its last observation is in final_obs
            real_next_obs = next_obs.copy()
            if "_final_obs" in infos:  # (most steps end no episode)
                for idx in np.flatnonzero(infos["_final_obs"]):
                    real_next_obs[idx] = infos["final_obs"][idx]
            rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)

            # TRY NOT TO MODIFY: CRUCIAL step easy to overlook
            obs = next_obs

            # ALGO LOGIC: training.
            if step > args.learning_starts:
                if step % args.train_frequency == 0:
                    if args.prioritized:
                        beta = min(1.0, args.prioritized_replay_beta + step * (1.0 - args.prioritized_replay_beta) / args.total_timesteps)
                        data = rb.sample(args.batch_size, beta)
                    else:
                        data = rb.sample(args.batch_size)
                    with torch.no_grad():
                        target_max, _ = target_network(data.next_observations).max(dim=1)
                        td_target = data.rewards + args.gamma * target_max * (1 - data.terminations)
                    old_val = q_network(data.observations).gather(1, data.actions.unsqueeze(1)).squeeze(1)
                    if args.prioritized:  # importance-sampling weights undo the bias of prioritized sampling
                        loss = (data.weights * (td_target - old_val) ** 2).mean()
                        rb.update_priorities(data.indices, (td_target - old_val).detach().cpu().numpy())
                        run.log_metrics(global_step, {"charts/beta": beta})
                    else:
                        loss = F.mse_loss(td_target, old_val)
                    run.log_metrics(global_step, {"losses/td_loss": loss.detach(), "losses/q_values": old_val.detach().mean()})

                    # optimize the model
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()

                # update target network
                if step % args.target_network_frequency == 0:
                    for target_network_param, q_network_param in zip(target_network.parameters(), q_network.parameters()):
                        target_network_param.data.copy_(
                            args.tau * q_network_param.data + (1.0 - args.tau) * target_network_param.data
                        )

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
