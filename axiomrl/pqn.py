# PQN (parallelised Q-learning: many envs, Q(lambda) targets over each rollout, a LayerNorm
# Q-network, no replay buffer and no target network) for discrete actions and vector observations;
# docs: docs/algorithms.md#pqn
# Defaults equal CleanRL's pqn.py (github.com/vwxyzjn/cleanrl/blob/master/cleanrl/pqn.py), so its
# published returns compare. Deliberate differences, all for gymnasium 1.x correctness or exact resume:
# - vector envs autoreset in the SAME step an episode ends (gymnasium 1.x defaults to the next
#   step, which would put one fake transition per episode into the rollout);
# - a truncated episode (time limit) bootstraps from max Q of its true final observation instead
#   of being treated like a termination;
# - the optimizer, environments and RNGs are in every checkpoint, and epsilon and the learning
#   rate are functions of the step and iteration, so a resumed run continues bit for bit.
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from axiomrl_utils.args import RunArgs, parse_args
from axiomrl_utils.checks import AtLeast, CoversProduct, Divides, NonEmpty, Positive, Range, check_args
from axiomrl_utils.envs import create_env, require_env
from axiomrl_utils.reproducibility import seed_everything, select_device
from axiomrl_utils.run import start_run


@dataclass
class Args(RunArgs):
    env_id: Annotated[str, NonEmpty()] = "CartPole-v1"
    """the id of the environment"""
    total_timesteps: Annotated[int, Positive(), CoversProduct("num_envs", "num_steps", what="one rollout")] = 500000
    """total timesteps of the experiments"""
    learning_rate: Annotated[float, Positive()] = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: Annotated[int, Positive()] = 4
    """the number of parallel game environments"""
    num_steps: Annotated[int, Positive()] = 128
    """the number of steps to run for each environment per update"""
    num_minibatches: Annotated[int, Positive(), Divides("num_envs", "num_steps")] = 4
    """the number of mini-batches"""
    update_epochs: Annotated[int, Positive()] = 4
    """the K epochs to update the Q-network"""
    anneal_lr: bool = True
    """Toggle learning rate annealing"""
    gamma: Annotated[float, Range(0, 1)] = 0.99
    """the discount factor gamma"""
    start_e: Annotated[float, Range(0, 1)] = 1
    """the starting epsilon for exploration"""
    end_e: Annotated[float, Range(0, 1)] = 0.05
    """the ending epsilon for exploration"""
    exploration_fraction: Annotated[float, Positive()] = 0.5
    """the fraction of `total-timesteps` it takes from start-e to go end-e"""
    max_grad_norm: Annotated[float, Positive()] = 10.0
    """the maximum norm for the gradient clipping"""
    q_lambda: Annotated[float, Range(0, 1)] = 0.65
    """the lambda for Q(lambda)"""
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


class QNetwork(nn.Module):
    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Linear(int(np.prod(envs.single_observation_space.shape)), 120)),
            nn.LayerNorm(120),
            nn.ReLU(),
            layer_init(nn.Linear(120, 84)),
            nn.LayerNorm(84),
            nn.ReLU(),
            layer_init(nn.Linear(84, envs.single_action_space.n)),
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
    require_env(args, "pqn.py", action_space="discrete")
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
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
        n_actions = envs.single_action_space.n

        # agent setup
        q_network = QNetwork(envs).to(device)
        optimizer = optim.RAdam(q_network.parameters(), lr=args.learning_rate)

        # storage setup
        obs = torch.zeros((args.num_steps, args.num_envs) + envs.single_observation_space.shape, device=device)
        actions = torch.zeros((args.num_steps, args.num_envs), dtype=torch.long, device=device)
        rewards = torch.zeros((args.num_steps, args.num_envs), device=device)
        dones = torch.zeros((args.num_steps, args.num_envs), device=device)
        values = torch.zeros((args.num_steps, args.num_envs), device=device)

        def as_tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        # start the game, or continue it from the checkpoint (--resume)
        run.declare_state(q_network=q_network, optimizer=optimizer, envs=envs)  # what every checkpoint holds
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
                next_done = np.zeros(args.num_envs, dtype=np.float32)

        for iteration in range(start_iteration, num_iterations + 1):
            # Annealing the rate if instructed to do so.
            if args.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / num_iterations
                optimizer.param_groups[0]["lr"] = frac * args.learning_rate

            for step in range(args.num_steps):
                global_step += args.num_envs
                obs[step] = as_tensor(next_obs)
                dones[step] = as_tensor(next_done)

                # ALGO LOGIC: epsilon-greedy over the Q-network, one coin per env
                epsilon = linear_schedule(args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, global_step)
                random_actions = torch.randint(0, n_actions, (args.num_envs,), device=device)
                with torch.no_grad():
                    q_values = q_network(obs[step])
                    max_actions = torch.argmax(q_values, dim=1)
                    values[step] = q_values[torch.arange(args.num_envs, device=device), max_actions]
                explore = torch.rand((args.num_envs,), device=device) < epsilon
                action = torch.where(explore, random_actions, max_actions)
                actions[step] = action

                # execute the game and log data.
                next_obs, reward, terminations, truncations, infos = envs.step(action.cpu().numpy())
                next_done = np.logical_or(terminations, truncations).astype(np.float32)
                # A time limit is not a terminal state: bootstrap from the true final observation.
                truncated = truncations & ~terminations
                if truncated.any():
                    reward = reward.astype(np.float32)
                    with torch.no_grad():
                        final_q = q_network(as_tensor(np.stack(infos["final_obs"][truncated]))).max(dim=1).values
                    reward[truncated] += args.gamma * final_q.cpu().numpy()
                rewards[step] = as_tensor(reward)
                run.log_episodes(global_step, infos)
            run.log_metrics(global_step, {"charts/epsilon": epsilon})

            # Compute Q(lambda) targets
            with torch.no_grad():
                returns = torch.zeros_like(rewards)
                next_value = q_network(as_tensor(next_obs)).max(dim=-1).values
                nextnonterminal = 1.0 - as_tensor(next_done)
                returns[-1] = rewards[-1] + args.gamma * next_value * nextnonterminal
                for t in reversed(range(args.num_steps - 1)):
                    nextnonterminal = 1.0 - dones[t + 1]
                    next_value = values[t + 1]
                    returns[t] = (
                        rewards[t]
                        + args.gamma * (args.q_lambda * returns[t + 1] + (1 - args.q_lambda) * next_value) * nextnonterminal
                    )

            # flatten the batch
            b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
            b_actions = actions.reshape(-1)
            b_returns = returns.reshape(-1)

            # Optimizing the Q-network
            b_inds = np.arange(batch_size)
            for epoch in range(args.update_epochs):
                np.random.shuffle(b_inds)
                for start in range(0, batch_size, minibatch_size):
                    mb_inds = torch.as_tensor(b_inds[start : start + minibatch_size], device=device)

                    old_val = q_network(b_obs[mb_inds]).gather(1, b_actions[mb_inds].unsqueeze(-1)).squeeze(-1)
                    loss = F.mse_loss(b_returns[mb_inds], old_val)

                    # optimize the model
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                    optimizer.step()

            run.log_metrics(
                global_step,
                {
                    "iteration": iteration,
                    "charts/learning_rate": optimizer.param_groups[0]["lr"],
                    "losses/td_loss": loss.detach(),
                    "losses/q_values": old_val.detach().mean(),
                },
            )

            # evaluation, checkpoints (run management: see axiomrl_utils/run/__init__.py)
            if run.due("eval", global_step):
                run.evaluate(global_step, q_network.act, make_env)
            if run.due("checkpoint", global_step):
                run.save(global_step, iteration=iteration, next_obs=next_obs, next_done=next_done)
            if run.stop_requested:
                break

        envs.close()


if __name__ == "__main__":
    main(parse_args(Args, __file__))
