# Rainbow for Atari games (Hessel et al. 2018): double Q-learning, a dueling network with noisy
# linear layers (the exploration), n-step returns, a categorical (C51) return distribution and
# prioritized replay with importance-sampling weights annealed to 1; docs: docs/algorithms.md#rainbow_atari
# Defaults equal CleanRL's rainbow_atari.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/rainbow_atari.py),
# so its published returns compare. The DeepMind preprocessing is axiomrl_utils.atari.make_atari_env
# (as dqn_atari.py); prioritized replay is axiomrl_utils.replay_buffer.PrioritizedReplayBuffer (a
# numpy sum tree over the frame-stack storage, which keeps each 84x84 frame once). Deliberate
# differences, all for gymnasium 1.x correctness or exact resume:
# - the env autoresets in the SAME step an episode ends, and the transition stores the true final
#   observation from infos["final_obs"]: a truncated episode (time limit) bootstraps from it, only a
#   termination stops the bootstrap;
# - n-step returns are built when a batch is sampled, from the one-step transitions stored: every
#   transition is replayed, also the last n-1 of an episode (CleanRL's n-step queue drops them),
#   with a return over the steps left and a bootstrap discounted by gamma**(steps used);
# - CleanRL's Args list start_e, end_e and exploration_fraction, which its loop never reads (the
#   noisy layers explore): they are left out;
# - the networks (noise included), optimizer, replay buffer with its priorities and sum tree, and
#   the RNGs are all in the checkpoint, so a resumed run samples and explores exactly as an
#   uninterrupted one; ALE games cannot be saved mid-episode, so a resume starts new games;
# - the projection onto the support adds the whole batch with one index_add_ instead of one per row.
import math
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.atari import make_atari_env, require_atari_env
from axiomrl_utils.checks import Above, AtLeast, Finite, NonEmpty, Positive, Range, WarnFrom, check_args
from axiomrl_utils.replay_buffer import PrioritizedReplayBuffer, check_replay_buffer, make_replay_buffer
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

LOG_EVERY = 100  # environment steps between metrics.jsonl rows, as CleanRL


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "BreakoutNoFrameskip-v4"
    """the id of the environment (an Atari game: ALE/Breakout-v5, BreakoutNoFrameskip-v4, ...)"""
    total_timesteps: Annotated[int, Positive()] = 10000000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 0.0000625
    """the learning rate of the optimizer"""
    buffer_size: Annotated[int, Positive()] = 1000000
    """the replay memory buffer size (about 7 KB per transition: one 84x84 frame and bookkeeping)"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    tau: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    """the target network update rate"""
    target_network_frequency: Annotated[int, Positive()] = 8000
    """the timesteps it takes to update the target network"""
    batch_size: Annotated[int, Positive()] = 32
    """the batch size of sample from the reply memory"""
    learning_starts: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "the run never learns")] = 80000
    """timestep to start learning"""
    train_frequency: Annotated[int, Positive()] = 4
    """the frequency of training"""
    n_step: Annotated[int, Positive()] = 3
    """the number of steps to look ahead for n-step Q learning"""
    prioritized_replay_alpha: Annotated[float, Range(0, 1)] = 0.5
    """alpha parameter for prioritized replay buffer (0: uniform, 1: proportional to the loss)"""
    prioritized_replay_beta: Annotated[float, Range(0, 1)] = 0.4
    """beta parameter for prioritized replay buffer (importance sampling at the start, annealed to 1)"""
    prioritized_replay_eps: Annotated[float, Positive()] = 1e-6
    """epsilon parameter for prioritized replay buffer (added to every priority)"""
    n_atoms: Annotated[int, AtLeast(2)] = 51
    """the number of atoms"""
    v_min: Annotated[float, Finite()] = -10
    """the return lower bound"""
    v_max: Annotated[float, Finite(), Above("v_min")] = 10
    """the return upper bound"""
    save_buffer: bool = True
    """if toggled, checkpoints include the replay buffer and its priorities (exact resume); otherwise a resume starts empty"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        # evaluation envs drop episodic life and reward clipping: evaluation returns are game scores
        return make_atari_env(args, evaluation=evaluation, render_mode=render_mode)

    return thunk


class NoisyLinear(nn.Module):
    """A linear layer whose weights are mu + sigma * epsilon with factorised Gaussian noise epsilon
    (Fortunato et al. 2018); in eval mode it uses mu alone. The noise is a registered buffer, so
    checkpoints carry it."""

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.5):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.std_init = std_init

        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.register_buffer("weight_epsilon", torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("bias_epsilon", torch.empty(out_features))
        # factorized gaussian noise
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        mu_range = 1 / math.sqrt(self.in_features)
        self.weight_mu.data.uniform_(-mu_range, mu_range)
        self.weight_sigma.data.fill_(self.std_init / math.sqrt(self.in_features))
        self.bias_mu.data.uniform_(-mu_range, mu_range)
        self.bias_sigma.data.fill_(self.std_init / math.sqrt(self.out_features))

    def reset_noise(self) -> None:
        self.weight_epsilon.normal_()
        self.bias_epsilon.normal_()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training:
            weight = self.weight_mu + self.weight_sigma * self.weight_epsilon
            bias = self.bias_mu + self.bias_sigma * self.bias_epsilon
        else:
            weight = self.weight_mu
            bias = self.bias_mu
        return F.linear(input, weight, bias)


# ALGO LOGIC: initialize agent here:
class NoisyDuelingDistributionalNetwork(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv, n_atoms: int = 51, v_min: float = -10, v_max: float = 10):
        super().__init__()
        self.n_atoms = n_atoms
        self.v_min = v_min
        self.v_max = v_max
        self.delta_z = (v_max - v_min) / (n_atoms - 1)
        self.n_actions = envs.single_action_space.n
        self.register_buffer("support", torch.linspace(v_min, v_max, n_atoms))

        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        conv_output_size = 3136

        self.value_head = nn.Sequential(NoisyLinear(conv_output_size, 512), nn.ReLU(), NoisyLinear(512, n_atoms))

        self.advantage_head = nn.Sequential(
            NoisyLinear(conv_output_size, 512), nn.ReLU(), NoisyLinear(512, n_atoms * self.n_actions)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.network(x / 255.0)
        value = self.value_head(h).view(-1, 1, self.n_atoms)
        advantage = self.advantage_head(h).view(-1, self.n_actions, self.n_atoms)
        q_atoms = value + advantage - advantage.mean(dim=1, keepdim=True)
        q_dist = F.softmax(q_atoms, dim=2)
        return q_dist

    def reset_noise(self) -> None:
        for layer in self.value_head:
            if isinstance(layer, NoisyLinear):
                layer.reset_noise()
        for layer in self.advantage_head:
            if isinstance(layer, NoisyLinear):
                layer.reset_noise()

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Greedy action of the noise-free network (mu weights) for a batch of observations (evaluation and export)."""
        training = self.training
        self.eval()  # noise off, and no random number drawn
        try:
            return (self(x) * self.support).sum(2).argmax(1)
        finally:
            self.train(training)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The greedy noise-free policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    q_network = NoisyDuelingDistributionalNetwork(envs, args.n_atoms, args.v_min, args.v_max)
    q_network.load_state_dict(checkpoint["q_network"])
    return q_network.eval().act


def main(args: Args) -> None:
    check_args(args)
    _, action_space = require_atari_env(args, "rainbow_atari.py")
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

        q_network = NoisyDuelingDistributionalNetwork(envs, args.n_atoms, args.v_min, args.v_max).to(device)
        optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=1.5e-4)
        target_network = NoisyDuelingDistributionalNetwork(envs, args.n_atoms, args.v_min, args.v_max).to(device)
        target_network.load_state_dict(q_network.state_dict())

        rb = PrioritizedReplayBuffer(
            make_replay_buffer(
                args.buffer_size, envs.single_observation_space, envs.single_action_space,
                device=device, save_contents=args.save_buffer,
            ),
            alpha=args.prioritized_replay_alpha,
            eps=args.prioritized_replay_eps,
            n_step=args.n_step,
            gamma=args.gamma,
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
            # anneal PER beta to 1
            beta = min(1.0, args.prioritized_replay_beta + step * (1.0 - args.prioritized_replay_beta) / args.total_timesteps)

            # ALGO LOGIC: put action logic here (the noisy layers explore: no epsilon)
            with torch.no_grad():
                q_dist = q_network(torch.as_tensor(obs, dtype=torch.float32, device=device))
                q_values = torch.sum(q_dist * q_network.support, dim=2)
                actions = torch.argmax(q_values, dim=1).cpu().numpy()

            # TRY NOT TO MODIFY: execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + 1
            run.log_episodes(global_step, infos.get("final_info", {}))  # whole games, real scores

            # the true next observation: an episode that ended was reset in this step, its last observation is in final_obs
            real_next_obs = next_obs.copy()
            for idx in np.flatnonzero(infos.get("_final_obs", ())):
                real_next_obs[idx] = infos["final_obs"][idx]
            rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)

            # TRY NOT TO MODIFY: CRUCIAL step easy to overlook
            obs = next_obs

            # ALGO LOGIC: training. (a resume with --no-save-buffer waits for one batch)
            if step > args.learning_starts and len(rb) >= args.batch_size:
                if step % args.train_frequency == 0:
                    # reset the noise for both networks
                    q_network.reset_noise()
                    target_network.reset_noise()
                    data = rb.sample(args.batch_size, beta)
                    observations = data.observations.float()
                    next_observations = data.next_observations.float()

                    with torch.no_grad():
                        next_dist = target_network(next_observations)  # [B, num_actions, n_atoms]
                        support = target_network.support  # [n_atoms]

                        # double q-learning: the online network picks the next action, the target network rates it
                        next_dist_online = q_network(next_observations)  # [B, num_actions, n_atoms]
                        next_q_online = torch.sum(next_dist_online * support, dim=2)  # [B, num_actions]
                        best_actions = torch.argmax(next_q_online, dim=1)  # [B]
                        next_pmfs = next_dist[torch.arange(args.batch_size, device=device), best_actions]  # [B, n_atoms]

                        # the n-step Bellman update: discounts is gamma ** (steps in the return)
                        next_atoms = data.rewards.unsqueeze(1) + data.discounts.unsqueeze(1) * support * (
                            1 - data.terminations.unsqueeze(1)
                        )
                        tz = next_atoms.clamp(q_network.v_min, q_network.v_max)

                        # projection
                        b = (tz - q_network.v_min) / q_network.delta_z  # shape: [B, n_atoms]
                        l = b.floor().clamp(0, args.n_atoms - 1)
                        u = b.ceil().clamp(0, args.n_atoms - 1)
                        # (l == b).float() handles the case where bj is exactly an integer
                        # example bj = 1, then the upper ceiling should be uj= 2, and lj= 1
                        d_m_l = (u + (l == b).float() - b) * next_pmfs  # [B, n_atoms]
                        d_m_u = (b - l) * next_pmfs  # [B, n_atoms]
                        # row i's atoms live at i * n_atoms ... in the flattened target
                        offset = (torch.arange(len(b), device=device) * args.n_atoms).unsqueeze(1)
                        target_pmfs = torch.zeros_like(next_pmfs)
                        target_pmfs.view(-1).index_add_(0, (l.long() + offset).view(-1), d_m_l.view(-1))
                        target_pmfs.view(-1).index_add_(0, (u.long() + offset).view(-1), d_m_u.view(-1))

                    dist = q_network(observations)  # [B, num_actions, n_atoms]
                    pred_dist = dist[torch.arange(args.batch_size, device=device), data.actions]  # [B, n_atoms]
                    log_pred = torch.log(pred_dist.clamp(min=1e-5, max=1 - 1e-5))

                    loss_per_sample = -(target_pmfs * log_pred).sum(dim=1)
                    loss = (loss_per_sample * data.weights).mean()

                    # update priorities
                    rb.update_priorities(data.indices, loss_per_sample.detach().cpu().numpy())

                    q_values = (pred_dist.detach() * q_network.support).sum(dim=1)  # [B]
                    run.log_metrics(global_step, {"losses/td_loss": loss.detach(), "losses/q_values": q_values.mean(), "charts/beta": beta})

                    # optimize the model
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()

                # update target network
                if step % args.target_network_frequency == 0:
                    for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                        target_param.data.copy_(args.tau * param.data + (1.0 - args.tau) * target_param.data)

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
