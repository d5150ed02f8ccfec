"""Mean return of a uniformly random policy per env: the `random` entries of
benchmark/reference/scores.json for the classic-control and MuJoCo envs.

Each episode resets with seed i and samples actions from the action space seeded with i, so the
numbers are reproducible for a given gymnasium/MuJoCo version. Prints one JSON object
{env_id: mean return} and writes benchmark/results/random_scores.json.

    python benchmark/random_scores.py                          # every env, 100 episodes each
    python benchmark/random_scores.py --env-ids CartPole-v1 --episodes 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENVS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "InvertedPendulum-v5", "HalfCheetah-v5",
        "Hopper-v5", "Walker2d-v5", "Humanoid-v5", "Pusher-v5"]


def random_return(env_id: str, episodes: int) -> float:
    """Mean undiscounted return of uniform random actions over `episodes` seeded episodes."""
    import gymnasium as gym

    env = gym.make(env_id)
    total = 0.0
    for i in range(episodes):
        env.reset(seed=i)
        env.action_space.seed(i)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
    env.close()
    return total / episodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-ids", nargs="*", default=ENVS)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args(argv)
    scores = {env_id: round(random_return(env_id, args.episodes), 2) for env_id in args.env_ids}
    text = json.dumps({"episodes": args.episodes, "scores": scores}, indent=2) + "\n"
    out = REPO / "benchmark" / "results" / "random_scores.json"
    out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
