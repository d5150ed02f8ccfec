"""`axiomrl eval`: play a checkpoint's deterministic policy again (`evaluate`) and append the
episodes to the run's eval_episodes.jsonl (tag `manual`), safely beside a training process.

    axiomrl eval runs/ppo__CartPole-v1__seed1__...                 # best.pt, the run's eval seeds

    run = open_run("runs/ppo__CartPole-v1__seed1__...", checkpoint="best")
    result = evaluate(run, episodes=10)                  # rows appended to eval_episodes.jsonl

numpy, torch and gymnasium are imported inside the functions, so `axiomrl eval --help` starts fast.
Docs: docs/eval-export-share.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from axiomrl_utils import UsageError
from axiomrl_utils.commands.trained_run import LoadedRun, add_script_argument, open_run
from axiomrl_utils.host import writable_dir_problem

if TYPE_CHECKING:
    import numpy as np


@dataclass
class EvalResult:
    """What `evaluate` did: the episodes, their eval_episodes.jsonl rows, and the video written."""

    episodes: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    video: Optional[Path]

    @property
    def returns(self) -> np.ndarray:
        import numpy as np

        return np.array([e["return"] for e in self.episodes], dtype=np.float64)

    @property
    def lengths(self) -> np.ndarray:
        import numpy as np

        return np.array([e["length"] for e in self.episodes], dtype=np.float64)


def check_writable(run_dir: Path) -> None:
    """A run directory `axiomrl eval` can append to (checked before any episode is played)."""
    target = run_dir / "eval_episodes.jsonl"
    if writable_dir_problem(run_dir) is not None or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{target} is not writable; copy or unpack the run somewhere you can write, then evaluate it there")


def append_jsonl_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a jsonl file that a training process may be appending to at the same time.

    One `write()` on an O_APPEND descriptor: the rows land after whatever is in the file, in one
    piece, and a training process's own appends are not disturbed. A torn last line left by a killed
    process is terminated first so it does not swallow the first new row.
    """
    from axiomrl_utils.jsonl import dumps

    text = "".join(dumps(row) + "\n" for row in rows)
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                text = "\n" + text
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def evaluate(
    run: LoadedRun,
    episodes: Optional[int] = None,
    seed: Optional[int] = None,
    capture_video: bool = False,
    append: bool = True,
) -> EvalResult:
    """Play `episodes` episodes of the checkpoint's deterministic policy and log them to the run.

    Episode i uses env seed `eval_seeds(seed, episodes)[i]`; with the defaults (the run's seed and
    --eval-episodes) these are exactly the episodes the run's own evaluations played, so
    evaluating a checkpoint reproduces the evaluation logged at its step. The rows are appended to
    eval_episodes.jsonl with tag `manual`, the checkpoint's step and file. With `capture_video`
    the first episode is written to videos/ as an MP4 (the `video` extra).
    """
    from gymnasium.error import DependencyNotInstalled

    from axiomrl_utils.evaluation import episode_rows, eval_seeds, run_episodes
    from axiomrl_utils.reproducibility import select_device

    episodes = run.args.eval_episodes if episodes is None else episodes
    seed = run.args.seed if seed is None else seed
    if episodes <= 0:
        raise UsageError(f"--episodes must be positive (got {episodes}); pass a value above 0")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or positive (got {seed}); environment seeds cannot be negative")
    if capture_video and importlib.util.find_spec("moviepy") is None:
        raise UsageError("--capture-video needs moviepy; install it with `pip install 'axiomrl[video]'`")
    if append:
        check_writable(run.dir)
    device = select_device(run.args.cuda)
    envs = run.make_envs(episodes, video=capture_video)
    try:
        policy = run.policy(envs).to(device)
        video = None
        if capture_video:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            video = run.dir / "videos" / f"manual_{run.checkpoint.stem}_step{run.step:010d}_seed{seed}_{stamp}.mp4"
        try:
            played = run_episodes(policy, envs, eval_seeds(seed, episodes), device, video)
        except DependencyNotInstalled as e:  # rendering needs a package (pygame for classic control)
            raise UsageError(f"rendering {run.metadata['env_id']} failed ({e}); install `pip install 'axiomrl[video]'`") from None
    finally:
        envs.close()
    rows = episode_rows(played, run.step, tag="manual", checkpoint=run.checkpoint_name, deterministic=True)
    if append:
        append_jsonl_rows(run.dir / "eval_episodes.jsonl", rows)
    return EvalResult(played, rows, video if video is not None and video.exists() else None)


# --------------------------------------------------------------------------------------------
# The subcommand (wired in axiomrl_utils/commands/cli.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl eval`."""
    parser.add_argument("run", metavar="RUN", help="a run directory")
    parser.add_argument("--checkpoint", default="best", help="best, latest, step_N, or a .pt path (default: best)")
    parser.add_argument("--episodes", type=int, help="episodes to play (default: the run's --eval-episodes)")
    parser.add_argument(
        "--seed", type=int, help="episode i uses env seed SEED+100000+i, as a run with this seed evaluates (default: the run's seed)"
    )
    parser.add_argument(
        "--deterministic", action="store_true", default=True,
        help="play the deterministic policy that load_policy returns (the default)",
    )
    parser.add_argument(
        "--stochastic", dest="deterministic", action="store_false",
        help="with --record: sample actions from the policy (scripts with load_recording_policy, e.g. ppo.py)",
    )
    parser.add_argument(
        "--record", metavar="DIR",
        help="write every step of the episodes as a dataset in the new directory DIR (data extra; see --format)",
    )
    parser.add_argument(
        "--format", choices=("minari", "parquet", "both"), default=None,
        help="with --record: a Minari dataset (DIR/data), a per-step table (DIR/steps.parquet), or both (default: minari)",
    )
    parser.add_argument("--capture-video", action="store_true", help="record the first episode as an MP4 under RUN/videos/ (video extra)")
    parser.add_argument("--no-append", action="store_true", help="do not append the episodes to RUN/eval_episodes.jsonl")
    add_script_argument(parser)


def run(args: argparse.Namespace) -> int:
    """`axiomrl eval`: prints mean ± std return and length; exit 0, or UsageError."""
    if args.capture_video:
        # Offscreen rendering (pygame for classic control) needs no display; keep pygame's banner off stdout.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    if args.record is not None:
        return run_record(args)
    if args.format is not None or not args.deterministic:
        option = "--format" if args.format is not None else "--stochastic"
        raise UsageError(f"{option} applies to --record DIR only; add --record DIR, or drop {option}")
    loaded = open_run(args.run, args.checkpoint, args.script)
    result = evaluate(loaded, args.episodes, args.seed, args.capture_video, append=not args.no_append)
    meta, seeds = loaded.metadata, [e["seed"] for e in result.episodes]
    played = f"1 episode, seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} episodes, seeds {seeds[0]}..{seeds[-1]}"
    print(f"{meta['algo']} {meta['env_id']} seed{meta['seed']} | {loaded.checkpoint_name} (step {loaded.step:,}) | {played}, deterministic")
    print(
        f"return {result.returns.mean():.2f} ± {result.returns.std():.2f} | "
        f"length {result.lengths.mean():.1f} ± {result.lengths.std():.1f}"
    )
    if not args.no_append:
        print(f"appended {len(result.rows)} rows (tag manual) to {loaded.dir / 'eval_episodes.jsonl'}", file=sys.stderr)
    if result.video is not None:
        print(f"video: {result.video}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# `axiomrl eval --record` (axiomrl_utils/commands/record.py)


def run_record(args: argparse.Namespace) -> int:
    """`axiomrl eval RUN --record DIR`: prints the dataset directory and a summary; exit 0, or UsageError."""
    import numpy as np

    # the recording modules import minari and pyarrow in their functions, numpy at the top: only when recording
    from axiomrl_utils.commands.dataset import check_target, require_data_extra
    from axiomrl_utils.commands.record import record

    fmt = args.format or "minari"
    if args.capture_video:
        raise UsageError("--capture-video and --record do not go together; record first, then evaluate with --capture-video")
    if args.episodes is not None and args.episodes <= 0:
        raise UsageError(f"--episodes must be positive (got {args.episodes}); pass a value above 0")
    require_data_extra(fmt)
    check_target(Path(args.record))  # before the run is opened: that imports torch and the script
    loaded = open_run(args.run, args.checkpoint, args.script)
    if not args.no_append:
        check_writable(loaded.dir)
    result = record(loaded, Path(args.record), args.episodes, args.seed, args.deterministic, fmt)
    if not args.no_append:
        append_jsonl_rows(loaded.dir / "eval_episodes.jsonl", result.rows)
    meta = loaded.metadata
    returns = np.array([e["return"] for e in result.episodes])
    mode = "deterministic" if args.deterministic else "stochastic"
    print(result.target)
    print(
        f"{meta['algo']} {meta['env_id']} seed{meta['seed']} | {loaded.checkpoint_name} (step {loaded.step:,}) | "
        f"{len(result.episodes)} episodes, {result.steps:,} steps, {mode} | return {returns.mean():.2f} ± {returns.std():.2f}",
        file=sys.stderr,
    )
    sizes = ", ".join(f"{k} {v / 1024:,.0f} KiB" for k, v in result.sizes.items())
    print(f"recorded at {result.steps / max(result.seconds, 1e-9):,.0f} steps/s; wrote {sizes}", file=sys.stderr)
    if result.not_stored:
        print(f"note: info fields not stored: {'; '.join(result.not_stored)}", file=sys.stderr)
    if not args.no_append:
        print(f"appended {len(result.rows)} rows (tag manual) to {loaded.dir / 'eval_episodes.jsonl'}", file=sys.stderr)
    return 0
