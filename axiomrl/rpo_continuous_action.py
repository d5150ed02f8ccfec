# RPO (Robust Policy Optimization) for continuous actions; docs: docs/algorithms.md#rpo_continuous_action
# Defaults equal CleanRL's rpo_continuous_action.py
# (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/rpo_continuous_action.py; Rahman & Xue, 2022,
# arxiv.org/abs/2212.07536): ppo_continuous_action.py whose update perturbs the action mean with
# uniform noise in [-rpo_alpha, rpo_alpha] before scoring the rollout's actions, which keeps the
# policy's entropy from collapsing. Deliberate differences, as in ppo_continuous_action.py:
# - vector envs autoreset in the SAME step an episode ends (no fake transition per episode);
# - a truncated episode (time limit) bootstraps from the value of its true final observation
#   instead of being treated like a termination;
# - the default env is HalfCheetah-v5 (gymnasium 1.x's MuJoCo; CleanRL used -v4, still accepted);
# - the normalisation statistics are saved in every checkpoint (`EnvNormalization`), and evaluation
#   plays raw envs with the policy normalising observations with the frozen statistics.
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.distributions.normal import Normal

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import AtLeast, CoversProduct, Divides, NonEmpty, Positive, Range, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.normalization import EnvNormalization, normalized_policy
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

OBS_CLIP = 10.0
REWARD_CLIP = 10.0


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "HalfCheetah-v5"
    """the id of the environment (MuJoCo ids need `pip install 'axiomrl[mujoco]'`)"""
    total_timesteps: Annotated[int, Positive(), CoversProduct("num_envs", "num_steps", what="one rollout")] = 8000000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 3e-4
    """the learning rate of the optimizer"""
    num_envs: Annotated[int, Positive()] = 1
    """the number of parallel game environments"""
    num_steps: Annotated[int, Positive()] = 2048
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """Toggle learning rate annealing for policy and value networks"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    gae_lambda: Annotated[float, Range(0, 1)] = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: Annotated[int, Positive(), Divides("num_envs", "num_steps")] = 32
    """the number of mini-batches"""
    update_epochs: Annotated[int, Positive()] = 10
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: Annotated[float, Positive()] = 0.2
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """Toggles whether or not to use a clipped loss for the value function, as per the paper."""
    ent_coef: Annotated[float, AtLeast(0)] = 0.0
    """coefficient of the entropy"""
    vf_coef: Annotated[float, AtLeast(0)] = 0.5
    """coefficient of the value function"""
    max_grad_norm: Annotated[float, Positive()] = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: Annotated[Optional[float], Positive()] = None
    """the target KL divergence threshold (stop the epoch loop early when exceeded)"""
    rpo_alpha: Annotated[float, AtLeast(0)] = 0.5
    """the alpha parameter for RPO: the half-width of the uniform noise added to the action mean in the update"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        env = create_env(args, render_mode=render_mode)
        env = gym.wrappers.FlattenObservation(env)  # dm_control-style Dict observations
        if evaluation:  # raw observations and true rewards: the policy normalises with frozen statistics
            return env
        # Per-env statistics come before normalisation, so logged returns are true returns.
        env = gym.wrappers.RecordEpisodeStatistics(env)
        env = gym.wrappers.ClipAction(env)
        env = gym.wrappers.NormalizeObservation(env)
        env = gym.wrappers.TransformObservation(env, lambda obs: np.clip(obs, -OBS_CLIP, OBS_CLIP), env.observation_space)
        env = gym.wrappers.NormalizeReward(env, gamma=args.gamma)
        env = gym.wrappers.TransformReward(env, lambda reward: np.clip(reward, -REWARD_CLIP, REWARD_CLIP))
        return env

    return thunk


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv, rpo_alpha: float = 0.5):
        super().__init__()
        self.rpo_alpha = rpo_alpha
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        action_dim = int(np.prod(envs.single_action_space.shape))
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, action_dim), std=0.01),
        )
        self.actor_logstd = nn.Parameter(torch.zeros(1, action_dim))
        # not persistent: the state dict stays CleanRL's, the bounds come from the env
        self.register_buffer("action_low", torch.as_tensor(envs.single_action_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("action_high", torch.as_tensor(envs.single_action_space.high, dtype=torch.float32), persistent=False)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: Optional[torch.Tensor] = None):
        action_mean = self.actor_mean(x)
        action_logstd = self.actor_logstd.expand_as(action_mean)
        action_std = torch.exp(action_logstd)
        probs = Normal(action_mean, action_std)
        if action is None:
            action = probs.sample()
        else:  # new to RPO: score the rollout's action under a randomly shifted mean (global torch RNG)
            z = torch.empty_like(action_mean).uniform_(-self.rpo_alpha, self.rpo_alpha)
            probs = Normal(action_mean + z, action_std)
        return action, probs.log_prob(action).sum(1), probs.entropy().sum(1), self.critic(x)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic policy for evaluation and export: the mean action, clipped to the bounds
        (as ClipAction does to the sampled actions in training). `x` is a normalised observation."""
        return torch.max(torch.min(self.actor_mean(x), self.action_high), self.action_low)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy stored in a checkpoint, on raw observations (for `axiomrl eval`/`export`):
    the observations are normalised with the statistics saved with it."""
    agent = Agent(envs, args.rpo_alpha)
    agent.load_state_dict(checkpoint["agent"])
    return normalized_policy(agent.eval().act, checkpoint["normalization"])


def main(args: Args) -> None:
    check_args(args)
    batch_size = args.num_envs * args.num_steps
    require_env(args, "rpo_continuous_action.py", action_space="continuous")
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size

    with start_run(args, __file__) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)

        # env setup
        envs = gym.vector.SyncVectorEnv(
            [make_env(args, i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        normalization = EnvNormalization(envs, obs_clip=OBS_CLIP)  # the wrappers' statistics, for checkpoints

        agent = Agent(envs, args.rpo_alpha).to(device)
        optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

        # storage (numpy: the env speaks numpy, and torch.as_tensor shares the memory on the CPU)
        obs = np.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, dtype=np.float32)
        actions = np.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape, dtype=np.float32)
        logprobs = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        dones = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

        # start the game, or continue it from the checkpoint (--resume)
        run.declare_state(agent=agent, optimizer=optimizer, normalization=normalization, envs=envs)
        global_step, start_iteration = 0, 1
        next_obs, _ = envs.reset(seed=args.seed)
        next_done = np.zeros(args.num_envs, dtype=np.float32)
        if args.resume:
            saved = run.restore()
            global_step, start_iteration = saved["global_step"], saved["iteration"] + 1
            if saved["envs_restored"]:
                next_obs, next_done = saved["next_obs"], saved["next_done"]
            else:
                next_obs, _ = envs.reset(seed=args.seed + global_step)

        for iteration in range(start_iteration, num_iterations + 1):
            # Annealing the rate if instructed to do so.
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / num_iterations
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate

            with torch.inference_mode():
                for step in range(args.num_steps):
                    global_step += args.num_envs
                    obs[step] = next_obs
                    dones[step] = next_done

                    action, logprob, _, value = agent.get_action_and_value(torch.as_tensor(next_obs, dtype=torch.float32, device=device))
                    action = action.cpu().numpy()
                    actions[step] = action
                    logprobs[step] = logprob.cpu().numpy()
                    values[step] = value.flatten().cpu().numpy()

                    next_obs, reward, terminations, truncations, infos = envs.step(action)
                    next_done = np.logical_or(terminations, truncations).astype(np.float32)
                    # A time limit is not a terminal state: bootstrap from the true final observation
                    # (already normalised by the env's wrappers, like every observation the agent sees).
                    reward = np.asarray(reward, dtype=np.float32)
                    truncated = truncations & ~terminations
                    if truncated.any():
                        final_obs = torch.as_tensor(np.stack(infos["final_obs"][truncated]), dtype=torch.float32, device=device)
                        reward[truncated] += args.gamma * agent.get_value(final_obs).flatten().cpu().numpy()
                    rewards[step] = reward
                    run.log_episodes(global_step, infos.get("final_info", {}))  # per-env statistics of the ended episodes

                # bootstrap value if not done
                next_value = agent.get_value(torch.as_tensor(next_obs, dtype=torch.float32, device=device)).reshape(1, -1).cpu().numpy()
                advantages = np.zeros_like(rewards)
                lastgaelam = 0
                for t in reversed(range(args.num_steps)):
                    if t == args.num_steps - 1:
                        nextnonterminal = 1.0 - next_done
                        nextvalues = next_value
                    else:
                        nextnonterminal = 1.0 - dones[t + 1]
                        nextvalues = values[t + 1]
                    delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                    advantages[t] = lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                returns = advantages + values

            # flatten the batch
            b_obs = torch.as_tensor(obs.reshape((-1,) + envs.single_observation_space.shape), device=device)
            b_logprobs = torch.as_tensor(logprobs.reshape(-1), device=device)
            b_actions = torch.as_tensor(actions.reshape((-1,) + envs.single_action_space.shape), device=device)
            b_advantages = torch.as_tensor(advantages.reshape(-1), device=device)
            b_returns = torch.as_tensor(returns.reshape(-1), device=device)
            b_values = torch.as_tensor(values.reshape(-1), device=device)

            # Optimizing the policy and value network
            b_inds = np.arange(batch_size)
            clipfracs = []
            for epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = torch.as_tensor(b_inds[start : start + minibatch_size], device=device)

                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb_inds], b_actions[mb_inds])
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()

                    with torch.no_grad():
                        # calculate approx_kl http://joschu.net/blog/kl-approx.html
                        old_approx_kl = (-logratio).mean()
                        approx_kl = ((ratio - 1) - logratio).mean()
                        clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean())

                    mb_advantages = b_advantages[mb_inds]
                    if args.norm_adv:
                        mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                    # Policy loss
                    pg_loss1 = -mb_advantages * ratio
                    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                    # Value loss
                    newvalue = newvalue.view(-1)
                    if args.clip_vloss:
                        v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                        v_clipped = b_values[mb_inds] + torch.clamp(
                            newvalue - b_values[mb_inds],
                            -args.clip_coef,
                            args.clip_coef,
                        )
                        v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                        v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)
                        v_loss = 0.5 * v_loss_max.mean()
                    else:
                        v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                    entropy_loss = entropy.mean()
                    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()

                if args.target_kl is not None and approx_kl > args.target_kl:
                    break

            y_pred, y_true = values.reshape(-1), returns.reshape(-1)
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

            run.log_metrics(
                global_step,
                {
                    "iteration": iteration,
                    "charts/learning_rate": optimizer.param_groups[0]["lr"],
                    "losses/value_loss": v_loss.item(),
                    "losses/policy_loss": pg_loss.item(),
                    "losses/entropy": entropy_loss.item(),
                    "losses/old_approx_kl": old_approx_kl.item(),
                    "losses/approx_kl": approx_kl.item(),
                    "losses/clipfrac": torch.stack(clipfracs).mean().item(),
                    "losses/explained_variance": float(explained_var),
                },
            )

            # evaluation, checkpoints (run management: see axiomrl_utils/run/__init__.py)
            if run.due("eval", global_step):
                run.evaluate(global_step, normalized_policy(agent.act, normalization.state_dict()), make_env)
            if run.due("checkpoint", global_step):
                run.save(global_step, iteration=iteration, next_obs=next_obs, next_done=next_done)
            if run.stop_requested:
                break

        envs.close()


if __name__ == "__main__":
    main(parse_args(Args, __file__))
