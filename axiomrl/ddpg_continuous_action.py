# DDPG for continuous actions; docs: docs/algorithms.md#ddpg_continuous_actionpy
# Defaults equal CleanRL's ddpg_continuous_action.py
# (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/ddpg_continuous_action.py), so its published MuJoCo
# returns compare. Deliberate differences, for gymnasium 1.x correctness and the run contract:
# - vector envs autoreset in the SAME step an episode ends; the replay buffer stores the true final
#   observation of every ended episode, and only terminations stop the bootstrap;
# - random actions before learning_starts come from the global numpy RNG (saved in checkpoints),
#   so a resumed run draws exactly what an uninterrupted one would;
# - each env draws its own exploration noise (CleanRL shares one draw across envs; it has one env);
# - the default env is Hopper-v5 (gymnasium 1.x's MuJoCo; CleanRL used -v4, still accepted);
# - with several envs, one update per vector step, and policy/target updates counted in updates.
# - speed, same updates to float rounding: fused Adam, the target networks moved by one lerp, the actor
#   loss's backward skips qf1's weight gradients (CleanRL computes and then discards them);
#   --compile/--cudagraphs (off by default) compile and capture the update functions.
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
    learning_rate: Annotated[float, Positive()] = 3e-4
    """the learning rate of the optimizer"""
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
    exploration_noise: Annotated[float, AtLeast(0)] = 0.1
    """the scale of exploration noise"""
    learning_starts: Annotated[int, AtLeast(0), WarnFrom("total_timesteps", "the run never learns")] = 25000
    """timestep to start learning"""
    policy_frequency: Annotated[int, Positive()] = 2
    """the frequency of training policy (delayed)"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        return create_env(args, render_mode=render_mode)

    return thunk


# ALGO LOGIC: initialize agent here:
class QNetwork(nn.Module):
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


class Actor(nn.Module):
    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__()
        self.fc1 = nn.Linear(int(np.prod(env.single_observation_space.shape)), 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc_mu = nn.Linear(256, int(np.prod(env.single_action_space.shape)))
        # action rescaling
        self.register_buffer(
            "action_scale",
            torch.tensor((env.single_action_space.high - env.single_action_space.low) / 2.0, dtype=torch.float32),
        )
        self.register_buffer(
            "action_bias",
            torch.tensor((env.single_action_space.high + env.single_action_space.low) / 2.0, dtype=torch.float32),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = torch.tanh(self.fc_mu(x))
        return x * self.action_scale + self.action_bias

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic policy for evaluation and export: the actor's output, within the action bounds."""
        return self(x)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    actor = Actor(envs)
    actor.load_state_dict(checkpoint["actor"])
    return actor.eval().act


def main(args: Args) -> None:
    check_args(args)
    check_acceleration(args)
    observation_space, action_space = require_env(args, "ddpg_continuous_action.py", action_space="continuous")
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
        qf1 = QNetwork(envs).to(device)
        qf1_target = QNetwork(envs).to(device)
        target_actor = Actor(envs).to(device)
        target_actor.load_state_dict(actor.state_dict())
        qf1_target.load_state_dict(qf1.state_dict())
        # fused: one kernel for the whole Adam step instead of ~10 small ops per parameter tensor (same update)
        q_optimizer = optim.Adam(list(qf1.parameters()), lr=args.learning_rate, **optimizer_options(args, device))
        actor_optimizer = optim.Adam(list(actor.parameters()), lr=args.learning_rate, **optimizer_options(args, device))
        params = list(actor.parameters()) + list(qf1.parameters())
        target_params = list(target_actor.parameters()) + list(qf1_target.parameters())

        rb = make_replay_buffer(
            args.buffer_size, obs_space, envs.single_action_space,
            num_envs=args.num_envs, device=device, save_contents=args.save_buffer,
        )

        def update_critic(observations, actions, next_observations, rewards, terminations):
            with torch.no_grad():
                next_state_actions = target_actor(next_observations)
                qf1_next_target = qf1_target(next_observations, next_state_actions)
                next_q_value = rewards.flatten() + (1 - terminations.flatten()) * args.gamma * (qf1_next_target).view(-1)

            qf1_a_values = qf1(observations, actions).view(-1)
            qf1_loss = F.mse_loss(qf1_a_values, next_q_value)

            # optimize the model
            q_optimizer.zero_grad()
            qf1_loss.backward()
            q_optimizer.step()
            return {"losses/qf1_values": qf1_a_values.detach().mean(), "losses/qf1_loss": qf1_loss.detach()}

        def update_actor(observations):
            # qf1's own weight gradients would be thrown away: skip them (about half of its backward)
            qf1.requires_grad_(False)
            actor_loss = -qf1(observations, actor(observations)).mean()
            qf1.requires_grad_(True)
            actor_optimizer.zero_grad()
            actor_loss.backward()
            actor_optimizer.step()
            return {"losses/actor_loss": actor_loss.detach()}

        def policy(obs):
            with torch.no_grad():
                actions = actor(obs)
                return actions + torch.normal(0.0, (actor.action_scale * args.exploration_noise).expand_as(actions))

        # --compile / --cudagraphs (off by default): see axiomrl_utils/acceleration.py
        update_critic = accelerate(update_critic, args, device)
        update_actor = accelerate(update_actor, args, device)
        policy = accelerate(policy, args, device)

        # start the game, or continue it from the checkpoint (--resume)
        run.declare_state(  # what every checkpoint holds
            actor=actor, qf1=qf1, target_actor=target_actor, qf1_target=qf1_target, q_optimizer=q_optimizer,
            actor_optimizer=actor_optimizer, rb=rb, envs=envs,
        )
        start_step = 0
        obs, _ = envs.reset(seed=args.seed)
        if args.resume:
            saved = run.restore()
            start_step = saved["global_step"]
            obs = saved["obs"] if saved["envs_restored"] else envs.reset(seed=args.seed + start_step)[0]

        # `step`: env steps done before this one (CleanRL's global_step); global_step: after it
        for step in range(start_step, args.total_timesteps - args.num_envs + 1, args.num_envs):
            # ALGO LOGIC: put action logic here
            if step < args.learning_starts:
                actions = np.random.uniform(action_low, action_high, (args.num_envs,) + action_low.shape).astype(np.float32)
            else:
                actions = policy(torch.as_tensor(obs, dtype=torch.float32, device=device))
                actions = actions.cpu().numpy().clip(action_low, action_high)

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
                losses = update_critic(data.observations, data.actions, data.next_observations, data.rewards, data.terminations)

                if (step // args.num_envs) % args.policy_frequency == 0:  # counted in updates
                    losses.update(update_actor(data.observations))

                    # update the target networks (lerp: tau * param + (1 - tau) * target, one fused op)
                    with torch.no_grad():
                        torch._foreach_lerp_(target_params, params, args.tau)

                run.log_metrics(global_step, losses)

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
