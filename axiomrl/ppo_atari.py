# PPO for Atari games (Nature-CNN on 4 stacked 84x84 grayscale frames); docs: docs/algorithms.md#ppo_atari
# Defaults equal CleanRL's ppo_atari.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/ppo_atari.py),
# so its published returns compare. The DeepMind preprocessing (no-op starts, frame skip 4, episodic
# life, fire reset, reward sign, 4-frame stack) is axiomrl_utils.atari.make_atari_env, built from
# gymnasium's wrappers. Deliberate differences, all for gymnasium 1.x correctness or speed:
# - vector envs autoreset in the SAME step an episode ends (gymnasium 1.x defaults to the next
#   step, which would put one fake transition per episode into the rollout);
# - a truncated episode (time limit) bootstraps from the value of its true final observation
#   instead of being treated like a termination;
# - actions are sampled from the softmax directly rather than through a Categorical per step
#   (same distribution, a fraction of the Python overhead);
# - for speed, with the same update up to float32 rounding: the network's weights are channels-last
#   (the CPU's oneDNN convolutions run faster in that layout) and Adam is fused (benchmark/README.md);
#   --compile/--cudagraphs (off by default) compile and capture the minibatch update.
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
from axiomrl_utils.atari import make_atari_env, require_atari_env
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run


@dataclass
class Args(AccelerationArgs, RunArgs):
    env_id: Annotated[str, NonEmpty()] = "BreakoutNoFrameskip-v4"
    """the id of the environment (an Atari game: ALE/Breakout-v5, BreakoutNoFrameskip-v4, ...)"""
    total_timesteps: Annotated[int, Positive(), CoversProduct("num_envs", "num_steps", what="one rollout")] = 10000000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: Annotated[int, Positive()] = 8
    """the number of parallel game environments"""
    num_steps: Annotated[int, Positive()] = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """Toggle learning rate annealing for policy and value networks"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    gae_lambda: Annotated[float, Range(0, 1)] = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: Annotated[int, Positive(), Divides("num_envs", "num_steps")] = 4
    """the number of mini-batches"""
    update_epochs: Annotated[int, Positive()] = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """Toggles advantages normalization"""
    clip_coef: Annotated[float, Positive()] = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """Toggles whether or not to use a clipped loss for the value function, as per the paper."""
    ent_coef: Annotated[float, AtLeast(0)] = 0.01
    """coefficient of the entropy"""
    vf_coef: Annotated[float, AtLeast(0)] = 0.5
    """coefficient of the value function"""
    max_grad_norm: Annotated[float, Positive()] = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: Annotated[Optional[float], Positive()] = None
    """the target KL divergence threshold (stop the epoch loop early when exceeded)"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        # evaluation envs drop episodic life and reward clipping: evaluation returns are game scores
        return make_atari_env(args, evaluation=evaluation, render_mode=render_mode)

    return thunk


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(4, 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, envs.single_action_space.n), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.network(x / 255.0))

    def get_action_and_value(self, x: torch.Tensor, action: Optional[torch.Tensor] = None):
        hidden = self.network(x / 255.0)
        log_probs = self.actor(hidden).log_softmax(-1)  # what Categorical(logits=...) normalises to
        if action is None:
            action = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), entropy, self.critic(hidden)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic policy for evaluation and export: the most probable action."""
        return self.actor(self.network(x / 255.0)).argmax(-1)

    def act_with_details(
        self, x: torch.Tensor, deterministic: bool = True, generator: Optional[torch.Generator] = None
    ) -> dict[str, torch.Tensor]:
        """For `axiomrl eval --record`: the action (`act`'s, or sampled), its log-probability and the value."""
        hidden = self.network(x / 255.0)
        logits = self.actor(hidden)
        log_probs = logits.log_softmax(-1)
        action = logits.argmax(-1) if deterministic else torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(-1)
        log_prob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return {"action": action, "log_prob": log_prob, "value": self.critic(hidden).squeeze(-1)}


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deterministic policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    agent = Agent(envs)
    agent.load_state_dict(checkpoint["agent"])
    return agent.eval().act


def load_recording_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> Callable[..., dict]:
    """`load_policy`'s agent with log-probabilities, values and sampling (`axiomrl eval --record`)."""
    agent = Agent(envs)
    agent.load_state_dict(checkpoint["agent"])
    return agent.eval().act_with_details


def main(args: Args) -> None:
    check_args(args)
    check_acceleration(args)
    batch_size = args.num_envs * args.num_steps
    require_atari_env(args, "ppo_atari.py")
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size

    with start_run(args, __file__) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)

        # env setup
        # each env records its own whole-game statistics (see make_atari_env): no vector-level recorder
        envs = gym.vector.SyncVectorEnv(
            [make_env(args, i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )

        # channels-last: the convolutions (forward and backward) take the faster oneDNN path on the CPU
        agent = Agent(envs).to(device, memory_format=torch.channels_last)
        # fused: one kernel for the whole Adam step instead of ~10 small ops per parameter tensor (same update)
        optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, **optimizer_options(args, device))

        # storage (numpy: the env speaks numpy, and torch.as_tensor shares the memory on the CPU)
        obs = np.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, dtype=np.uint8)
        actions = np.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape, dtype=np.int64)
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
        run.declare_state(agent=agent, optimizer=optimizer, envs=envs)  # what every checkpoint holds
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

            with torch.inference_mode():
                for step in range(args.num_steps):
                    global_step += args.num_envs
                    obs[step] = next_obs
                    dones[step] = next_done

                    action, logprob, _, value = agent.get_action_and_value(torch.as_tensor(next_obs, device=device))
                    action = action.cpu().numpy()
                    actions[step] = action
                    logprobs[step] = logprob.cpu().numpy()
                    values[step] = value.flatten().cpu().numpy()

                    next_obs, reward, terminations, truncations, infos = envs.step(action)
                    next_done = np.logical_or(terminations, truncations).astype(np.float32)
                    # A time limit is not a terminal state: bootstrap from the true final observation.
                    truncated = truncations & ~terminations
                    if truncated.any():
                        final_obs = torch.as_tensor(np.stack(infos["final_obs"][truncated]), device=device)
                        reward = reward.astype(np.float32)
                        reward[truncated] += args.gamma * agent.get_value(final_obs).flatten().cpu().numpy()
                    rewards[step] = reward
                    run.log_episodes(global_step, infos.get("final_info", {}))  # whole games, real scores

                # bootstrap value if not done
                next_value = agent.get_value(torch.as_tensor(next_obs, device=device)).reshape(1, -1).cpu().numpy()
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
            b_actions = torch.as_tensor(actions.reshape(-1), device=device)
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
                run.evaluate(global_step, agent.act, make_env)
            if run.due("checkpoint", global_step):
                run.save(global_step, iteration=iteration, next_obs=next_obs, next_done=next_done)
            if run.stop_requested:
                break

        envs.close()


if __name__ == "__main__":
    main(parse_args(Args, __file__))
