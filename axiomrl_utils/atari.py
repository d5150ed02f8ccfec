"""Atari environments with the DeepMind preprocessing, shared by ppo_atari.py and dqn_atari.py.

Built from gymnasium's own wrappers (StickyAction: v5's sticky actions; AtariPreprocessing: no-op
starts, frame skip 4 with max-pooling of the last two frames, 84x84 grayscale; FrameStackObservation:
4 frames; TransformReward: reward sign) plus the two gymnasium lacks, written here after
Stable-Baselines3's atari_wrappers (which CleanRL's references use): EpisodicLifeEnv and FireResetEnv.

ale-py and OpenCV come with the `atari` extra; `require_atari_env` checks both before a run starts.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from axiomrl_utils import UsageError


def _register() -> None:
    """Register ALE's games (UsageError naming the extra without ale-py), without its start-up banner."""
    from axiomrl_utils.envs import register_atari

    register_atari()
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)  # keeps a bad-input error to one line


def require_atari_env(env: Any, script: str) -> Any:
    """Check that the env is an ALE game this machine can run; return its (raw) spaces.

    `env`: the script's Args (env_id, env_kwargs, env_module) or a bare env id. UsageError naming
    the `atari` extra when ale-py or OpenCV is missing, or naming the right script when the id is
    not an Atari game.
    """
    from axiomrl_utils.envs import env_options, registered_id, require_env, require_observation

    _register()
    if getattr(env, "rescale_observation", False):
        raise UsageError(f"--rescale-observation is for vector observations; {script} already scales its frames to [0, 1], drop the flag")
    spaces = require_env(env, script, action_space="discrete", observation=None)
    shown_id, _, modules = (env, {}, []) if isinstance(env, str) else env_options(env)
    env_id = registered_id(shown_id, modules)
    if "ale_py" not in str(gym.spec(env_id).entry_point):
        raise UsageError(
            f"{script} trains on Atari games but {env_id} is not one; pass an id such as ALE/Pong-v5 or "
            f"BreakoutNoFrameskip-v4, or use {script.replace('_atari', '')} for {env_id}"
        )
    require_observation(spaces[0], env_id, script, "image", "discrete")  # not the RAM variants (*-ram-*)
    if importlib.util.find_spec("cv2") is None:
        raise UsageError("Atari preprocessing needs OpenCV; install it with `pip install 'axiomrl[atari]'`")
    return spaces


class EpisodicLifeEnv(gym.Wrapper):
    """A lost life ends the episode for the learner; the game itself resets only on a real game over.

    Tells the agent that losing a life is bad (DeepMind 2015), while `reset()` after a lost life
    just steps on with a no-op, so the score and the remaining lives carry on.
    """

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.lives = 0
        self.was_real_done = True

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.was_real_done = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any):
        if self.was_real_done:
            obs, info = self.env.reset(**kwargs)
        else:
            # a no-op step to move on from the lost life; it can itself end the game
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireResetEnv(gym.Wrapper):
    """Press FIRE after a reset, for games that wait for it to start (Breakout, ...)."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireResetEnv needs FIRE as action 1 (the game's actions are {meanings})")

    def reset(self, **kwargs: Any):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, _ = self.env.step(1)
        if terminated or truncated:
            self.env.reset(**kwargs)
        obs, _, terminated, truncated, _ = self.env.step(2)
        if terminated or truncated:
            obs, _ = self.env.reset(**kwargs)
        return obs, {}


class FireOnLifeLossEnv(gym.Wrapper):
    """Evaluation's twin of a training env's start of a life: after a lost life (the game not over),
    play what a training env plays when the learner's episode restarts there (EpisodicLifeEnv's
    no-op, then FireResetEnv's FIRE and action 2), adding their rewards to the step's.

    A policy trained with those wrappers never had to press FIRE itself; on whole games without
    this, a greedy Breakout agent waits for a ball that never comes until the game's time limit,
    and its evaluation reports the first life's score alone.
    """

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.lives = 0

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lost_a_life = 0 < self.env.unwrapped.ale.lives() < self.lives
        for start_of_life in (0, 1, 2):
            if not lost_a_life or terminated or truncated:
                break
            obs, more, terminated, truncated, info = self.env.step(start_of_life)
            reward += more
        self.lives = self.env.unwrapped.ale.lives()
        return obs, reward, terminated, truncated, info


def make_atari_env(env: Any, evaluation: bool = False, render_mode: Optional[str] = None, frame_stack: int = 4) -> Any:
    """One Atari env with the preprocessing of CleanRL's ppo_atari.py / dqn_atari.py.

    Observations: uint8 (4, 84, 84), the last 4 grayscale frames. Training envs (evaluation=False)
    end an episode at each lost life and give the reward's sign (-1, 0, 1); evaluation envs keep the
    same observations but play whole games and give the real score, starting each life as a training
    env does (FireOnLifeLossEnv). Either way a per-env
    RecordEpisodeStatistics sits inside the life and reward wrappers, so with a same-step-autoreset
    vector env `infos["final_info"]["episode"]` holds the real score and the length (in agent steps,
    4 frames each) of each finished game: log it with `run.log_episodes(step, infos["final_info"])`.

    `env`: the script's Args (env_id, env_kwargs for gym.make, env_module) or a bare env id.
    `frame_stack`: frames per observation (ppo_atari_lstm.py: 1, the LSTM remembers the rest).
    `ALE/*-v5` ids get `frameskip=1` (AtariPreprocessing does the skipping) and keep v5's sticky
    actions (repeat probability 0.25 per frame); `*NoFrameskip-v4` ids, which CleanRL's published
    runs use, have neither. The sticky actions are gymnasium's `StickyAction` on each frame rather
    than ALE's own: ALE's state (`cloneState`) leaves out the action being repeated, so a checkpoint
    could not continue the game exactly; in Python it is a wrapper attribute that pickles.
    """
    from axiomrl_utils.envs import env_options, make_registered, registered_id

    _register()
    shown_id, env_kwargs, modules = (env, {}, []) if isinstance(env, str) else env_options(env)
    env_id = registered_id(shown_id, modules)
    spec_kwargs = gym.spec(env_id).kwargs
    kwargs = {"frameskip": 1} if spec_kwargs.get("frameskip", 1) != 1 else {}
    # AtariPreprocessing reads the screen from ALE itself; the env's own observation, copied out on every
    # frame and never used, costs least as grayscale (a third of RGB's bytes; the same observations)
    kwargs["obs_type"] = "grayscale"
    sticky = float({**spec_kwargs, **env_kwargs}.get("repeat_action_probability", 0.25))  # AtariEnv's default
    env = make_registered(shown_id, env_id, {**kwargs, **env_kwargs, "repeat_action_probability": 0.0}, render_mode)
    if sticky > 0:
        env = gym.wrappers.StickyAction(env, repeat_action_probability=sticky)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    env = gym.wrappers.RecordEpisodeStatistics(env)  # whole games, real score, length in agent steps
    fire = "FIRE" in env.unwrapped.get_action_meanings()
    if not evaluation:
        env = EpisodicLifeEnv(env)
    elif fire:
        env = FireOnLifeLossEnv(env)
    if fire:
        env = FireResetEnv(env)
    if not evaluation:
        env = gym.wrappers.TransformReward(env, np.sign)
    env = gym.wrappers.FrameStackObservation(env, frame_stack)
    return env
