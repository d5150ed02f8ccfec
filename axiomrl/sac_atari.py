# SAC for discrete actions on Atari games (Christodoulou 2019: a categorical actor, twin soft Q
# networks over all actions, exact expectations instead of sampled actions; Nature-CNN on 4
# stacked 84x84 grayscale frames); docs: docs/algorithms.md#sac_atari
# Defaults equal CleanRL's sac_atari.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/sac_atari.py),
# so its published returns compare. The DeepMind preprocessing is axiomrl_utils.atari.make_atari_env
# (as dqn_atari.py); the replay buffer stores each 84x84 frame once. Deliberate differences, all for
# gymnasium 1.x correctness or exact resume:
# - the env autoresets in the SAME step an episode ends, and the transition stores the true final
#   observation from infos["final_obs"]: a truncated episode (time limit) bootstraps from it, only a
#   termination stops the bootstrap;
# - random actions before learning_starts come from the global numpy RNG instead of the action
#   space's own RNG, so a resumed run (which restores the global RNGs) draws exactly the same ones;
# - the networks, target networks, optimizers, log_alpha, replay buffer and RNGs are all in the
#   checkpoint; ALE games cannot be saved mid-episode, so a resume starts new games (the run says so);
# - evaluation and `axiomrl eval` play the actor's most likely action (training samples from it).
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.distributions.categorical import Categorical

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.atari import make_atari_env, require_atari_env
from axiomrl_utils.checks import AtLeast, NonEmpty, Positive, Range, WarnFrom, check_args
from axiomrl_utils.replay_buffer import check_replay_buffer, make_replay_buffer
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

LOG_EVERY = 100  # environment steps between metrics.jsonl rows, as CleanRL


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "BeamRiderNoFrameskip-v4"
    """the id of the environment (an Atari game: ALE/BeamRider-v5, BeamRiderNoFrameskip-v4, ...)"""
    total_timesteps: Annotated[int, Positive()] = 5000000
    """total timesteps of the experiments"""
    buffer_size: Annotated[int, Positive()] = int(1e6)
    """the replay memory buffer size (about 7 KB per transition: one 84x84 frame and bookkeeping)"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    tau: Annotated[float, Range(0, 1, lo_open=True)] = 1.0
    """target smoothing coefficient (default: 1)"""
    batch_size: Annotated[int, Positive()] = 64
    """the batch size of sample from the reply memory"""
    learning_starts: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "the run never learns")] = 20000
    """timestep to start learning"""
    policy_lr: Annotated[float, Positive()] = 3e-4
    """the learning rate of the policy network optimizer"""
    q_lr: Annotated[float, Positive()] = 3e-4
    """the learning rate of the Q network network optimizer"""
    update_frequency: Annotated[int, Positive()] = 4
    """the frequency of training updates"""
    target_network_frequency: Annotated[int, Positive()] = 8000
    """the frequency of updates for the target networks"""
    alpha: Annotated[float, AtLeast(0)] = 0.2
    """Entropy regularization coefficient."""
    autotune: bool = True
    """automatic tuning of the entropy coefficient"""
    target_entropy_scale: Annotated[float, Range(0, 1)] = 0.89
    """coefficient for scaling the autotune entropy target"""
    save_buffer: bool = True
    """if toggled, checkpoints include the replay buffer (exact resume); otherwise a resume starts with an empty buffer"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        # evaluation envs drop episodic life and reward clipping: evaluation returns are game scores
        return make_atari_env(args, evaluation=evaluation, render_mode=render_mode)

    return thunk


def layer_init(layer: nn.Module, bias_const: float = 0.0) -> nn.Module:
    nn.init.kaiming_normal_(layer.weight)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


# ALGO LOGIC: initialize agent here:
# The actor and the critics each have their own CNN: the actor's gradients would disturb a shared
# encoder's representation (SAC+AE, arxiv.org/abs/1910.01741).
class SoftQNetwork(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
        obs_shape = envs.single_observation_space.shape
        self.conv = nn.Sequential(
            layer_init(nn.Conv2d(obs_shape[0], 32, kernel_size=8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, kernel_size=4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, kernel_size=3, stride=1)),
            nn.Flatten(),
        )
        with torch.inference_mode():
            output_dim = self.conv(torch.zeros(1, *obs_shape)).shape[1]
        self.fc1 = layer_init(nn.Linear(output_dim, 512))
        self.fc_q = layer_init(nn.Linear(512, envs.single_action_space.n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x / 255.0))
        x = F.relu(self.fc1(x))
        return self.fc_q(x)


class Actor(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
        obs_shape = envs.single_observation_space.shape
        self.conv = nn.Sequential(
            layer_init(nn.Conv2d(obs_shape[0], 32, kernel_size=8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, kernel_size=4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, kernel_size=3, stride=1)),
            nn.Flatten(),
        )
        with torch.inference_mode():
            output_dim = self.conv(torch.zeros(1, *obs_shape)).shape[1]
        self.fc1 = layer_init(nn.Linear(output_dim, 512))
        self.fc_logits = layer_init(nn.Linear(512, envs.single_action_space.n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = F.relu(self.fc1(x))
        return self.fc_logits(x)

    def get_action(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sampled action, log-probabilities of every action, probabilities of every action)."""
        logits = self(x / 255.0)
        policy_dist = Categorical(logits=logits)
        action = policy_dist.sample()
        # Action probabilities for calculating the adapted soft-Q loss
        action_probs = policy_dist.probs
        log_prob = F.log_softmax(logits, dim=1)
        return action, log_prob, action_probs

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """The most likely action for a batch of observations (evaluation and export)."""
        return self(x / 255.0).argmax(-1)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    actor = Actor(envs)
    actor.load_state_dict(checkpoint["actor"])
    return actor.eval().act


def main(args: Args) -> None:
    check_args(args)
    _, action_space = require_atari_env(args, "sac_atari.py")
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

        actor = Actor(envs).to(device)
        qf1 = SoftQNetwork(envs).to(device)
        qf2 = SoftQNetwork(envs).to(device)
        qf1_target = SoftQNetwork(envs).to(device)
        qf2_target = SoftQNetwork(envs).to(device)
        qf1_target.load_state_dict(qf1.state_dict())
        qf2_target.load_state_dict(qf2.state_dict())
        # eps=1e-4 increases numerical stability
        q_optimizer = optim.Adam(list(qf1.parameters()) + list(qf2.parameters()), lr=args.q_lr, eps=1e-4)
        actor_optimizer = optim.Adam(list(actor.parameters()), lr=args.policy_lr, eps=1e-4)

        # Automatic entropy tuning
        if args.autotune:
            target_entropy = -args.target_entropy_scale * torch.log(1 / torch.tensor(envs.single_action_space.n))
            log_alpha = torch.zeros(1, requires_grad=True, device=device)
            alpha = log_alpha.exp().item()
            a_optimizer = optim.Adam([log_alpha], lr=args.q_lr, eps=1e-4)
        else:
            alpha = args.alpha

        rb = make_replay_buffer(
            args.buffer_size, envs.single_observation_space, envs.single_action_space,
            device=device, save_contents=args.save_buffer,
        )

        # start the game, or continue it from the checkpoint (--resume)
        autotuned = {"a_optimizer": a_optimizer, "log_alpha": log_alpha} if args.autotune else {}
        run.declare_state(  # what every checkpoint holds
            actor=actor, qf1=qf1, qf2=qf2, qf1_target=qf1_target, qf2_target=qf2_target, q_optimizer=q_optimizer,
            actor_optimizer=actor_optimizer, rb=rb, envs=envs, **autotuned,
        )
        start_step = 0
        obs, _ = envs.reset(seed=args.seed)
        if args.resume:
            saved = run.restore()
            start_step = saved["global_step"]
            if args.autotune:
                alpha = log_alpha.exp().item()  # log_alpha was restored in place (a_optimizer holds it)
            obs = saved["obs"] if saved["envs_restored"] else envs.reset(seed=args.seed + start_step)[0]

        for step in range(start_step, args.total_timesteps):  # `step`: env steps before this one (CleanRL's global_step)
            # ALGO LOGIC: put action logic here
            if step < args.learning_starts:
                actions = np.random.randint(envs.single_action_space.n, size=envs.num_envs)
            else:
                with torch.no_grad():
                    actions, _, _ = actor.get_action(torch.as_tensor(obs, dtype=torch.float32, device=device))
                actions = actions.cpu().numpy()

            # execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + 1
            run.log_episodes(global_step, infos.get("final_info", {}))  # whole games, real scores

            # the true next observation: an episode that ended was reset in this step, its last observation is in final_obs
            real_next_obs = next_obs.copy()
            for idx in np.flatnonzero(infos.get("_final_obs", ())):
                real_next_obs[idx] = infos["final_obs"][idx]
            rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)

            # CRUCIAL step easy to overlook
            obs = next_obs

            # ALGO LOGIC: training. (a resume with --no-save-buffer waits for one batch)
            if step > args.learning_starts and len(rb) >= args.batch_size:
                if step % args.update_frequency == 0:
                    data = rb.sample(args.batch_size)
                    observations = data.observations.float()
                    next_observations = data.next_observations.float()
                    # CRITIC training
                    with torch.no_grad():
                        _, next_state_log_pi, next_state_action_probs = actor.get_action(next_observations)
                        qf1_next_target = qf1_target(next_observations)
                        qf2_next_target = qf2_target(next_observations)
                        # the action probabilities give the expectation over next actions exactly (no sampling)
                        min_qf_next_target = next_state_action_probs * (
                            torch.min(qf1_next_target, qf2_next_target) - alpha * next_state_log_pi
                        )
                        # adapt Q-target for discrete Q-function
                        min_qf_next_target = min_qf_next_target.sum(dim=1)
                        next_q_value = data.rewards + (1 - data.terminations) * args.gamma * min_qf_next_target

                    # use Q-values only for the taken actions
                    qf1_values = qf1(observations)
                    qf2_values = qf2(observations)
                    qf1_a_values = qf1_values.gather(1, data.actions.unsqueeze(1)).view(-1)
                    qf2_a_values = qf2_values.gather(1, data.actions.unsqueeze(1)).view(-1)
                    qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
                    qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
                    qf_loss = qf1_loss + qf2_loss

                    q_optimizer.zero_grad()
                    qf_loss.backward()
                    q_optimizer.step()

                    # ACTOR training
                    _, log_pi, action_probs = actor.get_action(observations)
                    with torch.no_grad():
                        qf1_values = qf1(observations)
                        qf2_values = qf2(observations)
                        min_qf_values = torch.min(qf1_values, qf2_values)
                    # no need for reparameterization, the expectation can be calculated for discrete actions
                    actor_loss = (action_probs * ((alpha * log_pi) - min_qf_values)).mean()

                    actor_optimizer.zero_grad()
                    actor_loss.backward()
                    actor_optimizer.step()

                    if args.autotune:
                        # reuse action probabilities for temperature loss
                        alpha_loss = (action_probs.detach() * (-log_alpha.exp() * (log_pi + target_entropy).detach())).mean()

                        a_optimizer.zero_grad()
                        alpha_loss.backward()
                        a_optimizer.step()
                        alpha = log_alpha.exp().item()
                        run.log_metrics(global_step, {"losses/alpha_loss": alpha_loss.detach()})

                    run.log_metrics(global_step, {
                        "losses/qf1_values": qf1_a_values.detach().mean(),
                        "losses/qf2_values": qf2_a_values.detach().mean(),
                        "losses/qf1_loss": qf1_loss.detach(),
                        "losses/qf2_loss": qf2_loss.detach(),
                        "losses/qf_loss": qf_loss.detach() / 2.0,
                        "losses/actor_loss": actor_loss.detach(),
                        "losses/alpha": alpha,
                    })

                # update the target networks
                if step % args.target_network_frequency == 0:
                    for param, target_param in zip(qf1.parameters(), qf1_target.parameters()):
                        target_param.data.copy_(args.tau * param.data + (1 - args.tau) * target_param.data)
                    for param, target_param in zip(qf2.parameters(), qf2_target.parameters()):
                        target_param.data.copy_(args.tau * param.data + (1 - args.tau) * target_param.data)

            # evaluation, checkpoints (run management: see axiomrl_utils/run/__init__.py)
            if run.due("eval", global_step):
                run.evaluate(global_step, actor.act, make_env)
            if run.due("checkpoint", global_step):
                run.save(global_step, obs=obs)
            if run.stop_requested:
                break

        envs.close()


if __name__ == "__main__":
    main(parse_args(Args, __file__))
