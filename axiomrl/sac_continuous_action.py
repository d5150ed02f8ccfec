# SAC for continuous actions; docs: docs/algorithms.md#sac_continuous_actionpy
# Defaults equal CleanRL's sac_continuous_action.py
# (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/sac_continuous_action.py), so its published MuJoCo
# returns compare. Deliberate differences, for gymnasium 1.x correctness and the run contract:
# - vector envs autoreset in the SAME step an episode ends; the replay buffer stores the true final
#   observation of every ended episode, and only terminations stop the bootstrap;
# - random actions before learning_starts come from the global numpy RNG (saved in checkpoints),
#   so a resumed run draws exactly what an uninterrupted one would;
# - the default env is Hopper-v5 (gymnasium 1.x's MuJoCo; CleanRL used -v4, still accepted);
# - with several envs, one update per vector step, and policy/target updates counted in updates.
# - speed, same updates to float rounding: fused Adam, the target networks moved by one lerp, the actor
#   loss's backward skips the critics' weight gradients (CleanRL computes and then discards them), alpha
#   stays a tensor; --compile/--cudagraphs (off by default) compile and capture the update functions.
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from axiomrl_utils.acceleration import AccelerationArgs, accelerate, check_acceleration, optimizer_options
from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import AtLeast, NonEmpty, Positive, Range, WarnFrom, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.replay_buffer import check_replay_buffer, make_replay_buffer
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

LOG_EVERY = 100  # environment steps between metrics.jsonl rows, as CleanRL


@dataclass
class Args(AccelerationArgs, RunArgs):
    env_id: Annotated[str, NonEmpty()] = "Hopper-v5"
    """the id of the environment (MuJoCo ids need `pip install 'axiomrl[mujoco]'`)"""
    total_timesteps: Annotated[int, Positive()] = 1000000
    """total timesteps of the experiments"""
    num_envs: Annotated[int, Positive()] = 1
    """the number of parallel game environments"""
    buffer_size: Annotated[int, Positive()] = int(1e6)
    """the replay memory buffer size"""
    save_buffer: bool = True
    """if toggled, checkpoints include the replay buffer (exact resume; large files). --no-save-buffer: a resume refills it"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    tau: Annotated[float, Range(0, 1, lo_open=True)] = 0.005
    """target smoothing coefficient (default: 0.005)"""
    batch_size: Annotated[int, Positive()] = 256
    """the batch size of sample from the reply memory"""
    learning_starts: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "the run never learns")] = 5000
    """timestep to start learning"""
    policy_lr: Annotated[float, Positive()] = 3e-4
    """the learning rate of the policy network optimizer"""
    q_lr: Annotated[float, Positive()] = 1e-3
    """the learning rate of the Q network network optimizer"""
    policy_frequency: Annotated[int, Positive()] = 2
    """the frequency of training policy (delayed)"""
    target_network_frequency: Annotated[int, Positive()] = 1  # Denis Yarats' implementation delays this by 2.
    """the frequency of updates for the target nerworks"""
    alpha: Annotated[float, AtLeast(0)] = 0.2
    """Entropy regularization coefficient."""
    autotune: bool = True
    """automatic tuning of the entropy coefficient"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        return create_env(args, render_mode=render_mode)

    return thunk


# ALGO LOGIC: initialize agent here:
class SoftQNetwork(nn.Module):
    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__()
        self.fc1 = nn.Linear(
            int(np.prod(env.single_observation_space.shape)) + int(np.prod(env.single_action_space.shape)),
            256,
        )
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x, a], 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


LOG_STD_MAX = 2
LOG_STD_MIN = -5


class Actor(nn.Module):
    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__()
        self.fc1 = nn.Linear(int(np.prod(env.single_observation_space.shape)), 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc_mean = nn.Linear(256, int(np.prod(env.single_action_space.shape)))
        self.fc_logstd = nn.Linear(256, int(np.prod(env.single_action_space.shape)))
        # action rescaling
        self.register_buffer(
            "action_scale",
            torch.tensor((env.single_action_space.high - env.single_action_space.low) / 2.0, dtype=torch.float32),
        )
        self.register_buffer(
            "action_bias",
            torch.tensor((env.single_action_space.high + env.single_action_space.low) / 2.0, dtype=torch.float32),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        mean = self.fc_mean(x)
        log_std = self.fc_logstd(x)
        log_std = torch.tanh(log_std)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)  # From SpinUp / Denis Yarats

        return mean, log_std

    def get_action(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_std = self(x)
        std = log_std.exp()
        # no argument checks: they sync with the GPU (no CUDA graph can hold them), and std = exp(.) > 0 anyway
        normal = torch.distributions.Normal(mean, std, validate_args=False)
        x_t = normal.rsample()  # for reparameterization trick (mean + std * N(0,1))
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = normal.log_prob(x_t)
        # Enforcing Action Bound
        log_prob -= torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6)
        log_prob = log_prob.sum(1, keepdim=True)
        mean = torch.tanh(mean) * self.action_scale + self.action_bias
        return action, log_prob, mean

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic policy for evaluation and export: tanh(mean) scaled to the action bounds."""
        mean, _ = self(x)
        return torch.tanh(mean) * self.action_scale + self.action_bias


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    actor = Actor(envs)
    actor.load_state_dict(checkpoint["actor"])
    return actor.eval().act


def main(args: Args) -> None:
    check_args(args)
    check_acceleration(args)
    observation_space, action_space = require_env(args, "sac_continuous_action.py", action_space="continuous")
    # the buffer stores float32 observations (MuJoCo's are float64): what the networks take
    obs_space = gym.spaces.Box(-np.inf, np.inf, observation_space.shape, np.float32)
    check_replay_buffer(args.buffer_size, args.batch_size, args.num_envs, obs_space, action_space)

    with start_run(args, __file__, log_every=LOG_EVERY) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)

        # env setup
        envs = gym.vector.SyncVectorEnv(
            [make_env(args, i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
        action_low, action_high = envs.single_action_space.low, envs.single_action_space.high

        actor = Actor(envs).to(device)
        qf1 = SoftQNetwork(envs).to(device)
        qf2 = SoftQNetwork(envs).to(device)
        qf1_target = SoftQNetwork(envs).to(device)
        qf2_target = SoftQNetwork(envs).to(device)
        qf1_target.load_state_dict(qf1.state_dict())
        qf2_target.load_state_dict(qf2.state_dict())
        q_params = list(qf1.parameters()) + list(qf2.parameters())
        q_target_params = list(qf1_target.parameters()) + list(qf2_target.parameters())
        # fused: one kernel for the whole Adam step instead of ~10 small ops per parameter tensor (same update)
        q_optimizer = optim.Adam(q_params, lr=args.q_lr, **optimizer_options(args, device))
        actor_optimizer = optim.Adam(list(actor.parameters()), lr=args.policy_lr, **optimizer_options(args, device))

        # Automatic entropy tuning; alpha is a tensor changed in place: no .item() sync per update
        if args.autotune:
            target_entropy = -float(np.prod(envs.single_action_space.shape))
            log_alpha = torch.zeros(1, requires_grad=True, device=device)
            alpha = log_alpha.detach().exp()
            a_optimizer = optim.Adam([log_alpha], lr=args.q_lr, **optimizer_options(args, device))
        else:
            alpha = torch.tensor([args.alpha], device=device)

        rb = make_replay_buffer(
            args.buffer_size, obs_space, envs.single_action_space,
            num_envs=args.num_envs, device=device, save_contents=args.save_buffer,
        )

        def update_critics(observations, actions, next_observations, rewards, terminations):
            with torch.no_grad():
                next_state_actions, next_state_log_pi, _ = actor.get_action(next_observations)
                qf1_next_target = qf1_target(next_observations, next_state_actions)
                qf2_next_target = qf2_target(next_observations, next_state_actions)
                min_qf_next_target = torch.min(qf1_next_target, qf2_next_target) - alpha * next_state_log_pi
                next_q_value = rewards.flatten() + (1 - terminations.flatten()) * args.gamma * (min_qf_next_target).view(-1)

            qf1_a_values = qf1(observations, actions).view(-1)
            qf2_a_values = qf2(observations, actions).view(-1)
            qf1_loss = F.mse_loss(qf1_a_values, next_q_value)
            qf2_loss = F.mse_loss(qf2_a_values, next_q_value)
            qf_loss = qf1_loss + qf2_loss

            # optimize the model
            q_optimizer.zero_grad()
            qf_loss.backward()
            q_optimizer.step()
            return {
                "losses/qf1_values": qf1_a_values.detach().mean(),
                "losses/qf2_values": qf2_a_values.detach().mean(),
                "losses/qf1_loss": qf1_loss.detach(),
                "losses/qf2_loss": qf2_loss.detach(),
                "losses/qf_loss": qf_loss.detach() / 2.0,
            }

        def update_actor(observations):
            pi, log_pi, _ = actor.get_action(observations)
            # the critics' own weight gradients would be thrown away: skip them (about half of their backward)
            for p in q_params:
                p.requires_grad_(False)
            qf1_pi = qf1(observations, pi)
            qf2_pi = qf2(observations, pi)
            for p in q_params:
                p.requires_grad_(True)
            min_qf_pi = torch.min(qf1_pi, qf2_pi)
            actor_loss = ((alpha * log_pi) - min_qf_pi).mean()

            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()
            losses = {"losses/actor_loss": actor_loss.detach()}

            if args.autotune:
                with torch.no_grad():
                    _, log_pi, _ = actor.get_action(observations)
                alpha_loss = (-log_alpha.exp() * (log_pi + target_entropy)).mean()

                a_optimizer.zero_grad()
                alpha_loss.backward()
                a_optimizer.step()
                alpha.copy_(log_alpha.detach().exp())
                losses["losses/alpha_loss"] = alpha_loss.detach()
            return losses

        def policy(obs):
            with torch.no_grad():
                return actor.get_action(obs)[0]

        # --compile / --cudagraphs (off by default): see axiomrl_utils/acceleration.py
        update_critics = accelerate(update_critics, args, device)
        update_actor = accelerate(update_actor, args, device)
        policy = accelerate(policy, args, device)

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
                alpha.copy_(log_alpha.detach().exp())  # log_alpha was restored in place (a_optimizer holds it)
            obs = saved["obs"] if saved["envs_restored"] else envs.reset(seed=args.seed + start_step)[0]

        # `step`: env steps done before this one (CleanRL's global_step); global_step: after it
        for step in range(start_step, args.total_timesteps - args.num_envs + 1, args.num_envs):
            # ALGO LOGIC: put action logic here
            if step < args.learning_starts:
                actions = np.random.uniform(action_low, action_high, (args.num_envs,) + action_low.shape).astype(np.float32)
            else:
                actions = policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

            # execute the game and log data.
            next_obs, rewards, terminations, truncations, infos = envs.step(actions)
            global_step = step + args.num_envs
            run.log_episodes(global_step, infos)

            # save data to the replay buffer: the true final observation of an ended episode
            real_next_obs = next_obs.copy()
            if "_final_obs" in infos:
                for idx in np.flatnonzero(infos["_final_obs"]):
                    real_next_obs[idx] = infos["final_obs"][idx]
            rb.add(obs, real_next_obs, actions, rewards, terminations, truncations)

            # CRUCIAL step easy to overlook
            obs = next_obs

            # ALGO LOGIC: training. (a resume with --no-save-buffer waits for one batch)
            if step > args.learning_starts and len(rb) >= args.batch_size:
                data = rb.sample(args.batch_size)
                losses = update_critics(data.observations, data.actions, data.next_observations, data.rewards, data.terminations)

                if (step // args.num_envs) % args.policy_frequency == 0:  # TD 3 Delayed update support
                    for _ in range(args.policy_frequency):  # compensate for the delay by doing 'actor_update_interval' instead of 1
                        losses.update(update_actor(data.observations))

                # update the target networks (lerp: tau * param + (1 - tau) * target, one fused op)
                if (step // args.num_envs) % args.target_network_frequency == 0:
                    with torch.no_grad():
                        torch._foreach_lerp_(q_target_params, q_params, args.tau)

                run.log_metrics(global_step, {**losses, "losses/alpha": alpha.clone()})

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
