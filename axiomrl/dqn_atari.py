# DQN for Atari games (Nature-CNN on 4 stacked 84x84 grayscale frames); docs: docs/algorithms.md#dqn_atari
# Defaults equal CleanRL's dqn_atari.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/dqn_atari.py),
# so its published returns compare. The DeepMind preprocessing (no-op starts, frame skip 4, episodic
# life, fire reset, reward sign, 4-frame stack) is axiomrl_utils.atari.make_atari_env, built from
# gymnasium's wrappers; the replay buffer stores each 84x84 frame once (not 8 times, as 4-frame
# observation/next-observation pairs would), so the default 1M buffer needs about 7 GB, not 56 GB.
# Deliberate differences, all for gymnasium 1.x correctness or exact resume:
# - the env autoresets in the SAME step an episode ends, and the transition stores the true final
#   observation from infos["final_obs"]: a truncated episode (time limit) bootstraps from it, only a
#   termination stops the bootstrap;
# - exploration draws from the global numpy RNG instead of the action space's own RNG, so a resumed
#   run (which restores the global RNGs) explores exactly as an uninterrupted one;
# - the replay buffer, target network, optimizer and RNGs are all in the checkpoint, so epsilon (a
#   function of the step) and everything else continue where they stopped; ALE games cannot be
#   saved mid-episode, so a resume starts new games (the run says so);
# - for speed, with the same update up to float32 rounding: the networks' weights are channels-last
#   (the CPU's oneDNN convolutions run faster in that layout) and Adam is fused (benchmark/README.md).
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
    learning_rate: Annotated[float, Positive()] = 1e-4
    """the learning rate of the optimizer"""
    buffer_size: Annotated[int, Positive()] = 1000000
    """the replay memory buffer size (about 7 KB per transition: one 84x84 frame and bookkeeping)"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    tau: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    """the target network update rate"""
    target_network_frequency: Annotated[int, Positive()] = 1000
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
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
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
            nn.Linear(512, envs.single_action_space.n),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x / 255.0)

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
    _, action_space = require_atari_env(args, "dqn_atari.py")
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

        # channels-last: the convolutions (forward and backward) take the faster oneDNN path on the CPU
        q_network = QNetwork(envs).to(device, memory_format=torch.channels_last)
        # fused: one kernel for the whole Adam step instead of ~10 small ops per parameter tensor (same update)
        optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
        target_network = QNetwork(envs).to(device, memory_format=torch.channels_last)
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
                    actions = q_network(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + 1
            run.log_episodes(global_step, infos.get("final_info", {}))  # whole games, real scores
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
                    data = rb.sample(args.batch_size)
                    with torch.no_grad():
                        target_max, _ = target_network(data.next_observations).max(dim=1)
                        td_target = data.rewards + args.gamma * target_max * (1 - data.terminations)
                    old_val = q_network(data.observations).gather(1, data.actions.unsqueeze(1)).squeeze(1)
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
