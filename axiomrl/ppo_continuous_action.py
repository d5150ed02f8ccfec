# PPO for continuous actions; docs: docs/algorithms.md#ppo_continuous_actionpy
# Defaults equal CleanRL's ppo_continuous_action.py
# (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/ppo_continuous_action.py), so its published MuJoCo
# returns compare. Deliberate differences, for gymnasium 1.x correctness and the run contract:
# - vector envs autoreset in the SAME step an episode ends (no fake transition per episode);
# - a truncated episode (time limit; the only way a HalfCheetah episode ends) bootstraps from the
#   value of its true final observation instead of being treated like a termination;
# - the default env is HalfCheetah-v5 (gymnasium 1.x's MuJoCo; CleanRL used -v4, still accepted);
# - the normalisation statistics are saved in every checkpoint (`EnvNormalization`), and evaluation
#   plays raw envs with the policy normalising observations with the frozen statistics, so
#   evaluation returns are true returns and best.pt acts exactly as it was evaluated;
# - the rollout acts through numpy views of the networks' weights and draws its Gaussian noise from
#   numpy's global RNG (the same distribution and log-probabilities): on one observation at a time
#   PyTorch's per-call overhead, not arithmetic, is the cost (benchmark/README.md). The update is
#   CleanRL's, with fused Adam (float32 rounding) and Normal's formulas written out (bitwise);
#   --compile/--cudagraphs (off by default) compile and capture the minibatch update.
import math
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

from axiomrl_utils.acceleration import AccelerationArgs, accelerate, check_acceleration, optimizer_options, set_learning_rate
from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import AtLeast, CoversProduct, Divides, NonEmpty, Positive, Range, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.normalization import EnvNormalization, normalized_policy
from axiomrl_utils.numpy_forward import numpy_forward
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run

OBS_CLIP = 10.0
REWARD_CLIP = 10.0
LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # torch.distributions.Normal's constant, computed the same way


@dataclass
class Args(AccelerationArgs, RunArgs):
    env_id: Annotated[str, NonEmpty()] = "HalfCheetah-v5"
    """the id of the environment (MuJoCo ids need `pip install 'axiomrl[mujoco]'`)"""
    total_timesteps: Annotated[int, Positive(), CoversProduct("num_envs", "num_steps", what="one rollout")] = 1000000
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
    torch_threads: Annotated[int, AtLeast(0)] = 1
    """CPU threads torch may use (0: torch's default, one per core); 1 is fastest for networks this small"""


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
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
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
        """(action, its log-probability, entropy, value); the rollout acts in numpy (`sample_action`).

        Normal(action_mean, action_std)'s sample, log_prob and entropy, written out: the same
        operations without building a Distribution (and checking its arguments) per minibatch.
        """
        action_mean = self.actor_mean(x)
        action_logstd = self.actor_logstd.expand_as(action_mean)
        action_std = torch.exp(action_logstd)
        if action is None:
            with torch.no_grad():
                action = torch.normal(action_mean, action_std)
        log_std = action_std.log()
        log_prob = -((action - action_mean) ** 2) / (2 * action_std**2) - log_std - LOG_SQRT_2PI
        entropy = 0.5 + LOG_SQRT_2PI + log_std
        return action, log_prob.sum(1), entropy.sum(1), self.critic(x)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic policy for evaluation and export: the mean action, clipped to the bounds
        (as ClipAction does to the sampled actions in training). `x` is a normalised observation."""
        return torch.max(torch.min(self.actor_mean(x), self.action_high), self.action_low)


def sample_action(action_mean: np.ndarray, logstd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One draw from Normal(mean, exp(logstd)) per row, and its log-probability (summed over the action).

    The noise comes from numpy's global RNG, which checkpoints carry.
    """
    noise = np.random.standard_normal(action_mean.shape).astype(action_mean.dtype)
    action = action_mean + np.exp(logstd) * noise
    # (action - mean) / std is the noise itself
    return action, (-0.5 * noise**2 - logstd - LOG_SQRT_2PI).sum(1)


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy stored in a checkpoint, on raw observations (for `axiomrl eval`/`export`):
    the observations are normalised with the statistics saved with it."""
    agent = Agent(envs)
    agent.load_state_dict(checkpoint["agent"])
    return normalized_policy(agent.eval().act, checkpoint["normalization"])


def main(args: Args) -> None:
    check_args(args)
    check_acceleration(args)
    batch_size = args.num_envs * args.num_steps
    require_env(args, "ppo_continuous_action.py", action_space="continuous")
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size

    with start_run(args, __file__) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)
        if args.torch_threads:  # a thread hand-off costs more than it saves on 64-unit layers
            torch.set_num_threads(args.torch_threads)

        # env setup
        envs = gym.vector.SyncVectorEnv(
            [make_env(args, i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        normalization = EnvNormalization(envs, obs_clip=OBS_CLIP)  # the wrappers' statistics, for checkpoints

        agent = Agent(envs).to(device)
        # the rollout's forward passes, in numpy on the same (live) weights: torch's per-call cost dominates 1 observation
        actor_mean, critic_value = numpy_forward(agent.actor_mean), numpy_forward(agent.critic)
        # fused: one kernel for the whole Adam step instead of ~10 small ops per parameter tensor (same update)
        optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, **optimizer_options(args, device))

        # storage (numpy: the env speaks numpy, and torch.as_tensor shares the memory on the CPU)
        obs = np.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, dtype=np.float32)
        actions = np.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape, dtype=np.float32)
        logprobs = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        dones = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

        def update(mb_obs, mb_actions, mb_logprobs, mb_advantages, mb_returns, mb_values):
            """One PPO minibatch step: clipped surrogate, clipped value loss, entropy bonus, Adam."""
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(mb_obs, mb_actions)
            logratio = newlogprob - mb_logprobs
            ratio = logratio.exp()

            with torch.no_grad():
                # calculate approx_kl http://joschu.net/blog/kl-approx.html
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()

            if args.norm_adv:
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

            # Policy loss
            pg_loss1 = -mb_advantages * ratio
            pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
            pg_loss = torch.max(pg_loss1, pg_loss2).mean()

            # Value loss
            newvalue = newvalue.view(-1)
            if args.clip_vloss:
                v_loss_unclipped = (newvalue - mb_returns) ** 2
                v_clipped = mb_values + torch.clamp(newvalue - mb_values, -args.clip_coef, args.clip_coef)
                v_loss_clipped = (v_clipped - mb_returns) ** 2
                v_loss_max = torch.max(v_loss_unclipped, v_loss_clipped)
                v_loss = 0.5 * v_loss_max.mean()
            else:
                v_loss = 0.5 * ((newvalue - mb_returns) ** 2).mean()

            entropy_loss = entropy.mean()
            loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef

            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()
            return {"pg_loss": pg_loss.detach(), "v_loss": v_loss.detach(), "entropy": entropy_loss.detach(),
                    "old_approx_kl": old_approx_kl, "approx_kl": approx_kl, "clipfrac": clipfrac}

        # --compile / --cudagraphs (off by default): see axiomrl_utils/acceleration.py
        update = accelerate(update, args, device)

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
                set_learning_rate(optimizer, frac * args.learning_rate, args)  # a float, or a tensor under --compile

            logstd = agent.actor_logstd.detach().cpu().numpy()  # fixed during the rollout
            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step] = next_obs
                dones[step] = next_done

                action, logprobs[step] = sample_action(actor_mean(next_obs), logstd)
                actions[step] = action
                values[step] = critic_value(next_obs)[:, 0]

                next_obs, reward, terminations, truncations, infos = envs.step(action)
                next_done = np.logical_or(terminations, truncations).astype(np.float32)
                # A time limit is not a terminal state: bootstrap from the true final observation
                # (already normalised by the env's wrappers, like every observation the agent sees).
                reward = np.asarray(reward, dtype=np.float32)
                truncated = truncations & ~terminations
                if truncated.any():
                    reward[truncated] += args.gamma * critic_value(np.stack(infos["final_obs"][truncated]))[:, 0]
                rewards[step] = reward
                run.log_episodes(global_step, infos.get("final_info", {}))  # per-env statistics of the ended episodes

            # bootstrap value if not done
            next_value = critic_value(next_obs).reshape(1, -1)
            # GAE: every step's TD error at once, then only the recursion runs step by step
            nextnonterminal = 1.0 - np.concatenate([dones[1:], next_done[None]])
            nextvalues = np.concatenate([values[1:], next_value])
            deltas = rewards + args.gamma * nextvalues * nextnonterminal - values
            advantages = np.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                advantages[t] = lastgaelam = deltas[t] + args.gamma * args.gae_lambda * nextnonterminal[t] * lastgaelam
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

                    losses = update(
                        b_obs[mb_inds], b_actions[mb_inds], b_logprobs[mb_inds], b_advantages[mb_inds], b_returns[mb_inds], b_values[mb_inds]
                    )
                    clipfracs.append(losses["clipfrac"])

                if args.target_kl is not None and losses["approx_kl"] > args.target_kl:
                    break

            y_pred, y_true = values.reshape(-1), returns.reshape(-1)
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y

            run.log_metrics(
                global_step,
                {
                    "iteration": iteration,
                    "charts/learning_rate": float(optimizer.param_groups[0]["lr"]),
                    "losses/value_loss": losses["v_loss"].item(),
                    "losses/policy_loss": losses["pg_loss"].item(),
                    "losses/entropy": losses["entropy"].item(),
                    "losses/old_approx_kl": losses["old_approx_kl"].item(),
                    "losses/approx_kl": losses["approx_kl"].item(),
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
