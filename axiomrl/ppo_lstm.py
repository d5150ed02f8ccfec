# Recurrent PPO (MLP encoder -> LSTM) for discrete actions on vector observations; docs: docs/algorithms.md#ppo_lstm
# CleanRL's ppo_atari_lstm.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/ppo_atari_lstm.py) with
# ppo.py's MLP in place of the Nature CNN; CleanRL has no vector-observation LSTM script. The defaults
# are RL Zoo's tuned RecurrentPPO values for CartPoleNoVel-v1 (8 envs x 32 steps, one minibatch,
# 20 epochs, lr 1e-3, gamma 0.98, lambda 0.8, no entropy bonus; without its VecNormalize and clip
# annealing): with ppo.py's (4 x 128, 4 epochs, lr 2.5e-4) the LSTM learns far more slowly
# (benchmark/README.md). What makes it recurrent, as in CleanRL:
# - the LSTM's (h, c) is carried from step to step and zeroed where an episode starts (done-masking);
# - the update replays each env's rollout in order from the state the rollout started with, so
#   minibatches are whole envs (num_minibatches must divide num_envs), never shuffled steps.
# Deliberate differences, for gymnasium 1.x correctness, exact resume and speed:
# - vector envs autoreset in the SAME step an episode ends, and a truncated episode bootstraps from
#   the value of its true final observation (as ppo.py);
# - the live LSTM state and the rollout's initial state are in every checkpoint, so a resume
#   continues the episodes in progress with the memory they had;
# - the update runs the LSTM once per stretch of steps in which no episode of the minibatch ends,
#   instead of once per step (the same recurrence, fewer calls).
# The default env is CartPoleNoVel-v1 (CartPole without velocities, axiomrl_utils/masked_envs.py):
# a feed-forward policy cannot see the velocities, a recurrent one can infer them.
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import AtLeast, CoversProduct, Divides, NonEmpty, Positive, Range, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "CartPoleNoVel-v1"
    """the id of the environment"""
    total_timesteps: Annotated[int, Positive(), CoversProduct("num_envs", "num_steps", what="one rollout")] = 500000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 1e-3
    """the learning rate of the optimizer"""
    num_envs: Annotated[int, Positive()] = 8
    """the number of parallel game environments"""
    num_steps: Annotated[int, Positive()] = 32
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """Toggle learning rate annealing for policy and value networks"""
    gamma: Annotated[float, Range(0, 1)] = 0.98
    """the discount factor gamma"""
    gae_lambda: Annotated[float, Range(0, 1)] = 0.8
    """the lambda for the general advantage estimation"""
    num_minibatches: Annotated[int, Positive(), Divides("num_envs")] = 1
    """the number of mini-batches (each holds num_envs / num_minibatches whole env sequences)"""
    update_epochs: Annotated[int, Positive()] = 20
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
    lstm_hidden_size: Annotated[int, Positive()] = 128
    """the size of the LSTM's hidden and cell states (CleanRL's ppo_atari_lstm.py uses 128)"""
    torch_threads: Annotated[int, AtLeast(0)] = 1
    """CPU threads torch may use (0: torch's default, one per core); 1 is fastest for networks this small"""


def make_env(args: Args, idx: int, evaluation: bool = False, render_mode: Optional[str] = None) -> Callable[[], gym.Env]:
    def thunk() -> gym.Env:
        return create_env(args, render_mode=render_mode)

    return thunk


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv, lstm_hidden_size: int = 128):
        super().__init__()
        obs_dim = int(np.prod(envs.single_observation_space.shape))
        self.network = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
        )
        self.lstm = nn.LSTM(64, lstm_hidden_size)
        for name, param in self.lstm.named_parameters():
            if "bias" in name:
                nn.init.constant_(param, 0)
            elif "weight" in name:
                nn.init.orthogonal_(param, 1.0)
        self.actor = layer_init(nn.Linear(lstm_hidden_size, envs.single_action_space.n), std=0.01)
        self.critic = layer_init(nn.Linear(lstm_hidden_size, 1), std=1)

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The (h, c) of a fresh episode: zeros, [num_layers, batch_size, hidden_size] each."""
        shape = (self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        weight = self.lstm.weight_hh_l0
        return torch.zeros(shape, dtype=weight.dtype, device=weight.device), torch.zeros(shape, dtype=weight.dtype, device=weight.device)

    def get_states(self, x: torch.Tensor, lstm_state: tuple[torch.Tensor, torch.Tensor], done: torch.Tensor):
        """LSTM outputs for a [T * B] batch of T consecutive steps of B envs (time-major), and the final state.

        `done[t, b]` = 1 where env b starts a new episode at step t: its state is zeroed first.
        """
        hidden = self.network(x)
        batch_size = lstm_state[0].shape[1]
        hidden = hidden.reshape((-1, batch_size, self.lstm.input_size))
        done = done.reshape((-1, batch_size))
        # An episode can start only where some done is set: between those steps one LSTM call runs
        # the whole stretch (a Python loop over single steps costs one call per step).
        starts = [0] + (torch.nonzero(done[1:].any(dim=1)).flatten() + 1).tolist() + [len(done)]
        new_hidden = []
        h, c = lstm_state
        for begin, end in zip(starts[:-1], starts[1:]):
            keep = (1.0 - done[begin]).view(1, -1, 1)
            out, (h, c) = self.lstm(hidden[begin:end], (keep * h, keep * c))
            new_hidden.append(out)
        return torch.flatten(torch.cat(new_hidden), 0, 1), (h, c)

    def get_value(self, x: torch.Tensor, lstm_state: tuple[torch.Tensor, torch.Tensor], done: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.get_states(x, lstm_state, done)
        return self.critic(hidden)

    def get_action_and_value(self, x: torch.Tensor, lstm_state, done: torch.Tensor, action: Optional[torch.Tensor] = None):
        """(action, log-probability, entropy, value, next LSTM state); samples the action when none is given."""
        hidden, lstm_state = self.get_states(x, lstm_state, done)
        log_probs = self.actor(hidden).log_softmax(-1)  # what Categorical(logits=...) normalises to
        if action is None:
            action = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), entropy, self.critic(hidden), lstm_state


class RecurrentPolicy(nn.Module):
    """The deterministic policy with its memory, for evaluation and export: `forward(obs, h, c) -> (action, h, c)`.

    One step of B episodes: obs [B, obs_dim], h and c [1, B, hidden]. Start each episode from
    `initial_state(B)` (zeros) and feed each step the (h, c) the previous step returned.
    """

    def __init__(self, agent: Agent):
        super().__init__()
        self.agent = agent

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.agent.initial_state(batch_size)

    def forward(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, (h, c) = self.agent.lstm(self.agent.network(obs).unsqueeze(0), (h, c))
        return self.agent.actor(hidden[0]).argmax(-1), h, c


def load_policy(args: Args, checkpoint: dict, envs: gym.vector.VectorEnv) -> RecurrentPolicy:
    """The deterministic recurrent policy stored in a checkpoint (used by `axiomrl eval` and `axiomrl export`)."""
    agent = Agent(envs, args.lstm_hidden_size)
    agent.load_state_dict(checkpoint["agent"])
    return RecurrentPolicy(agent).eval()


def main(args: Args) -> None:
    check_args(args)
    batch_size = args.num_envs * args.num_steps
    require_env(args, "ppo_lstm.py", action_space="discrete")
    envs_per_batch = args.num_envs // args.num_minibatches
    num_iterations = args.total_timesteps // batch_size

    with start_run(args, __file__) as run:
        # seeding
        seed_everything(args.seed, args.torch_deterministic)
        device = select_device(args.cuda)
        if args.torch_threads:  # a thread hand-off costs more than it saves on layers this small
            torch.set_num_threads(args.torch_threads)

        # env setup
        envs = gym.vector.SyncVectorEnv(
            [make_env(args, i) for i in range(args.num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)

        agent = Agent(envs, args.lstm_hidden_size).to(device)
        optimizer = optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

        # storage (numpy: the env speaks numpy, and torch.as_tensor shares the memory on the CPU)
        obs = np.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, dtype=np.float32)
        actions = np.zeros((args.num_steps, args.num_envs) + envs.single_action_space.shape, dtype=np.int64)
        logprobs = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        rewards = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        dones = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)
        values = np.zeros((args.num_steps, args.num_envs), dtype=np.float32)

        # start the game, or continue it from the checkpoint (--resume)
        run.declare_state(agent=agent, optimizer=optimizer, envs=envs)  # what every checkpoint holds
        global_step, start_iteration = 0, 1
        next_obs, _ = envs.reset(seed=args.seed)
        next_done = np.zeros(args.num_envs, dtype=np.float32)
        next_lstm_state = agent.initial_state(args.num_envs)  # hidden and cell states
        initial_lstm_state = agent.initial_state(args.num_envs)  # where the rollout starts: the update replays from it
        if args.resume:
            saved = run.restore()
            global_step, start_iteration = saved["global_step"], saved["iteration"] + 1
            if saved["envs_restored"]:
                next_obs, next_done = saved["next_obs"], saved["next_done"]
                # the episodes in progress go on with the memory they had
                next_lstm_state = tuple(s.to(device) for s in saved["next_lstm_state"])
                initial_lstm_state = tuple(s.to(device) for s in saved["initial_lstm_state"])
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

                    action, logprob, _, value, next_lstm_state = agent.get_action_and_value(
                        torch.as_tensor(next_obs, device=device), next_lstm_state, torch.as_tensor(next_done, device=device)
                    )
                    action = action.cpu().numpy()
                    actions[step] = action
                    logprobs[step] = logprob.cpu().numpy()
                    values[step] = value.flatten().cpu().numpy()

                    next_obs, reward, terminations, truncations, infos = envs.step(action)
                    next_done = np.logical_or(terminations, truncations).astype(np.float32)
                    # A time limit is not a terminal state: bootstrap from the true final observation,
                    # seen with the memory of its own episode.
                    truncated = truncations & ~terminations
                    if truncated.any():
                        final_obs = torch.as_tensor(np.stack(infos["final_obs"][truncated]), device=device)
                        state = tuple(s[:, torch.as_tensor(truncated, device=device)] for s in next_lstm_state)
                        final_value = agent.get_value(final_obs, state, torch.zeros(len(final_obs), device=device))
                        reward = reward.astype(np.float32)
                        reward[truncated] += args.gamma * final_value.flatten().cpu().numpy()
                    rewards[step] = reward
                    run.log_episodes(global_step, infos)

                # bootstrap value if not done
                next_value = agent.get_value(
                    torch.as_tensor(next_obs, device=device), next_lstm_state, torch.as_tensor(next_done, device=device)
                ).reshape(1, -1).cpu().numpy()
            # GAE: every step's TD error at once, then only the recursion runs step by step
            nextnonterminal = 1.0 - np.concatenate([dones[1:], next_done[None]])
            nextvalues = np.concatenate([values[1:], next_value])
            deltas = rewards + args.gamma * nextvalues * nextnonterminal - values
            advantages = np.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                advantages[t] = lastgaelam = deltas[t] + args.gamma * args.gae_lambda * nextnonterminal[t] * lastgaelam
            returns = advantages + values

            # flatten the batch (time-major: index t * num_envs + env)
            b_obs = torch.as_tensor(obs.reshape((-1,) + envs.single_observation_space.shape), device=device)
            b_logprobs = torch.as_tensor(logprobs.reshape(-1), device=device)
            b_actions = torch.as_tensor(actions.reshape(-1), device=device)
            b_dones = torch.as_tensor(dones.reshape(-1), device=device)
            b_advantages = torch.as_tensor(advantages.reshape(-1), device=device)
            b_returns = torch.as_tensor(returns.reshape(-1), device=device)
            b_values = torch.as_tensor(values.reshape(-1), device=device)

            # Optimizing the policy and value network: minibatches of whole env sequences, in order
            envinds = np.arange(args.num_envs)
            flatinds = np.arange(batch_size).reshape(args.num_steps, args.num_envs)
            clipfracs = []
            for epoch in range(args.update_epochs):
                np.random.shuffle(envinds)
                for start in range(0, args.num_envs, envs_per_batch):
                    mbenvinds = envinds[start : start + envs_per_batch]
                    mb_inds = torch.as_tensor(flatinds[:, mbenvinds].ravel(), device=device)  # be really careful about the index
                    mb_state = tuple(s[:, torch.as_tensor(mbenvinds, device=device)] for s in initial_lstm_state)

                    _, newlogprob, entropy, newvalue, _ = agent.get_action_and_value(
                        b_obs[mb_inds], mb_state, b_dones[mb_inds], b_actions[mb_inds]
                    )
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

            # the next rollout starts where this one ended
            initial_lstm_state = tuple(s.clone() for s in next_lstm_state)

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
                run.evaluate(global_step, RecurrentPolicy(agent), make_env)
            if run.due("checkpoint", global_step):
                # the memory of the episodes in progress, and the state the next rollout starts from
                # (the same tensors' values at a checkpoint, which falls between rollouts)
                run.save(
                    global_step,
                    iteration=iteration,
                    next_obs=next_obs,
                    next_done=next_done,
                    next_lstm_state=next_lstm_state,
                    initial_lstm_state=initial_lstm_state,
                )
            if run.stop_requested:
                break

        envs.close()


if __name__ == "__main__":
    main(parse_args(Args, __file__))
