"""The run: its directory, metadata.json, resume, cadence, evaluation, checkpoints and signals.

A script uses it through a handful of calls that leave the training loop in view:

    with start_run(args, __file__) as run:        # directory, metadata, config, code.diff, TB, W&B
        saved = run.restore(agent=agent, optimizer=optimizer, envs=envs)   # only with --resume
        ...
        run.log_episodes(global_step, infos)
        if run.due("eval", global_step): run.evaluate(global_step, agent.act, make_env)
        run.log_metrics(global_step, {...})
        if run.due("checkpoint", global_step): run.save(global_step, agent=agent, ..., envs=envs)
        if run.stop_requested: break

Leaving the `with` block marks the run finished, interrupted or failed (with the error) in
metadata.json and closes every writer.
"""

from __future__ import annotations

import collections
import datetime as dt
import importlib.metadata
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from axiomrl_utils import UsageError, __version__
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.args import RunArgs, args_to_dict, check_config_drift, read_config, write_config
from axiomrl_utils.jsonl import JsonlWriter, read_json, truncate_jsonl, write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
RECENT_EPISODES = 100  # CleanRL's published tables average each seed's last 100 training episodes
METADATA_INTERVAL_S = 10.0
VERSIONED_PACKAGES = (
    "axiomrl", "torch", "gymnasium", "numpy", "tyro", "tensorboard", "pandas",
    "ale-py", "mujoco", "wandb", "moviepy", "ray", "submitit",
)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
DRY_RUN_OK = "dry run ok"  # first words of the line --dry-run prints; launchers look for it


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def sanitize_env_id(env_id: str) -> str:
    """A file-system-safe version of an env id: `ALE/Breakout-v5` -> `ALE-Breakout-v5`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", env_id).strip("-.") or "env"


def create_run_dir(output_dir: Path, algo: str, env_id: str, seed: int) -> Path:
    """Create `<output_dir>/<algo>__<env>__seed<seed>__<YYYYMMDD-HHMMSS-ffffff>` exclusively.

    `mkdir` fails if the directory exists, so two runs started in the same microsecond (or two
    processes racing) get `..._1`, `..._2` rather than sharing a directory.
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    base = f"{algo}__{sanitize_env_id(env_id)}__seed{seed}__{stamp}"
    for attempt in range(1000):
        path = output_dir / (base if attempt == 0 else f"{base}_{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run directory for {base} in {output_dir}")


def read_metadata(run_dir: Path) -> dict[str, Any]:
    """metadata.json of a run; a UsageError naming the file when it is missing or damaged."""
    path = run_dir / METADATA_FILE
    try:
        meta = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{run_dir} is not an AxiomRL run (it has no {METADATA_FILE})") from None
    except ValueError as e:
        raise UsageError(f"{e}; the run's metadata is damaged") from None
    if not isinstance(meta, dict) or "algo" not in meta:
        raise UsageError(f"{path} is not AxiomRL run metadata")
    return meta


def pid_alive(pid: Optional[int]) -> bool:
    """Whether a process with this pid exists on this machine."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def find_run_to_resume(path: str, algo: str, env_id: Optional[str] = None, seed: Optional[int] = None) -> Path:
    """Resolve --resume PATH: a run directory, or the newest matching run inside a directory of runs."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UsageError(
            f"--resume {path}: no such directory; pass a run directory (runs/<algo>__<env>__seed<N>__<time>) "
            "or the directory that holds runs"
        )
    if (root / METADATA_FILE).exists():
        meta = read_metadata(root)
        if meta["algo"] != algo:
            raise UsageError(f"{root} is a run of {meta['algo']}; resume it with {meta['algo']}.py, not {algo}.py")
        return root.resolve()
    matches = []
    for child in root.iterdir():
        if not (child / METADATA_FILE).is_file():
            continue
        try:
            meta = read_json(child / METADATA_FILE)
        except (ValueError, OSError):
            continue
        if meta.get("algo") == algo and env_id in (None, meta.get("env_id")) and seed in (None, meta.get("seed")):
            matches.append((meta.get("created_at_utc", ""), child.name, child))
    if not matches:
        wanted = " ".join(x for x in (algo, env_id, f"seed {seed}" if seed is not None else None) if x)
        raise UsageError(f"{root} is not a run directory and holds no {wanted} run; pass the run's own directory")
    return max(matches)[2].resolve()


def git_state(directory: Path) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(commit/dirty/branch, diff) of the git checkout holding `directory`; (None, None) without git.

    The diff is `git diff HEAD` plus the names of untracked files, and is None for a clean tree.
    """

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *cmd], capture_output=True, text=True, check=True, timeout=30
        ).stdout

    try:
        git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None, None
    try:
        commit = git("rev-parse", "HEAD").strip()
        branch = git("rev-parse", "--abbrev-ref", "HEAD").strip()
    except subprocess.CalledProcessError:  # a repository without commits
        commit, branch = None, None
    status = git("status", "--porcelain")
    dirty = bool(status.strip())
    diff = None
    if dirty:
        untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
        diff = git("diff", "HEAD") if commit else ""
        if untracked:
            diff += "\n# untracked files:\n" + "".join(f"#   {name}\n" for name in untracked)
    return {"commit": commit, "is_dirty": dirty, "branch": branch}, diff


def system_info() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def package_versions() -> dict[str, str]:
    """The installed version of each of VERSIONED_PACKAGES that is installed (for metadata.json)."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        # The Version line read directly: Distribution.version parses the whole METADATA file with
        # the email parser, 3-4 ms a package, most of start_run's cost (0.3% of a 100k-step run).
        header = (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").partition("\n\n")[0]  # not the description
        found = re.search(r"^Version:[ \t]*(\S+)", header, re.M)
        version = found.group(1) if found else dist.version
        if version:
            versions[name] = version
    versions.setdefault("axiomrl", __version__)
    return versions


def _check_run_args(args: RunArgs) -> None:
    """Run-management flags that cannot work, and extras they need, before anything is created."""
    import importlib.util

    from axiomrl_utils.envs import require_positive

    require_positive(args, "total_timesteps", "eval_episodes", "keep_checkpoints")
    for name in ("eval_every", "checkpoint_every"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 (off) or positive (got {getattr(args, name)})")
    if args.pause_at_step is not None and args.pause_at_step <= 0:
        raise UsageError(f"--pause-at-step must be positive (got {args.pause_at_step})")
    if args.track and importlib.util.find_spec("wandb") is None:
        raise UsageError("--track needs Weights & Biases; install it with `pip install 'axiomrl[wandb]'`")
    if args.capture_video and importlib.util.find_spec("moviepy") is None:
        raise UsageError("--capture-video needs moviepy; install it with `pip install 'axiomrl[video]'`")


class Run:
    """One training run (possibly resumed). Create it with `start_run`, use it as a context manager."""

    def __init__(
        self,
        args: RunArgs,
        algo: str,
        script: Path,
        run_dir: Path,
        metadata: dict[str, Any],
        resume_path: Optional[Path] = None,
        resume_payload: Optional[dict[str, Any]] = None,
    ) -> None:
        from axiomrl_utils.reproducibility import select_device

        self.args, self.algo, self.script, self.dir = args, algo, script, run_dir
        self.metadata = metadata
        self.device = select_device(args.cuda)
        self.checkpoint_dir = run_dir / "checkpoints"
        self.checkpoint_dir.mkdir(exist_ok=True)
        self._resume_path, self._resume_payload = resume_path, resume_payload
        state = resume_payload[ckpt.RESERVED]["run"] if resume_payload else {}
        self.global_step = resume_payload[ckpt.RESERVED]["global_step"] if resume_payload else 0
        self._session_start_step = self.global_step
        self._session_start = time.monotonic()
        self._wall_time_prior = float(state.get("wall_time_s", 0.0))
        self.total_episodes = int(state.get("total_episodes", 0))
        self._recent_returns = collections.deque(state.get("recent_returns", []), maxlen=RECENT_EPISODES)
        self._best: Optional[dict[str, Any]] = state.get("best")
        self._eval_last: Optional[float] = state.get("eval_return_last")
        self._eval_best: Optional[tuple[float, int]] = state.get("eval_return_best")
        self._last_done = {"eval": self.global_step, "checkpoint": self.global_step}
        self._prev_step, self._step_increment = self.global_step, 0
        self._quiet_until = {"eval": 0, "checkpoint": 0}  # due() answers no below these steps (see due)
        self._pending_eval: dict[str, float] = {}
        self._eval_at_step: Optional[int] = None
        self._latest_metrics: dict[str, Any] = state.get("latest_metrics") or {}
        self._last_saved_step: Optional[int] = None
        self._eval_envs = None
        self._stop_signal: Optional[int] = None
        self._metadata_written = 0.0
        self._previous_handlers: dict[int, Any] = {}
        self._closed = False

        wandb_run = None
        if args.track:
            from axiomrl_utils.logger import start_wandb

            wandb_run = start_wandb(
                args.wandb_project_name, args.wandb_entity, run_dir.name, metadata["wandb"]["id"], run_dir, args_to_dict(args)
            )
        from axiomrl_utils.logger import ConsoleProgress, RunLogger

        self.logger = RunLogger(run_dir, purge_step=self.global_step + 1 if resume_payload else None, wandb_run=wandb_run)
        self._checkpoint_log = JsonlWriter(self.checkpoint_dir / "checkpoints.jsonl")
        self.progress = ConsoleProgress(
            f"{algo} {metadata['env_id']} seed{metadata['seed']}", args.total_timesteps, self.global_step, args.progress
        )
        self._install_signal_handlers()

    # ------------------------------------------------------------------ context management
    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.finish()
            return False
        if issubclass(exc_type, KeyboardInterrupt):
            self._close(status="interrupted", stop_reason="SIGINT")
        else:
            message = str(exc) or exc_type.__name__
            self._close(status="failed", error=f"{exc_type.__name__}: {message}"[:2000])
        return False

    # ------------------------------------------------------------------ resume
    def restore(self, envs: Any = None, **objects: Any) -> dict[str, Any]:
        """Load the resumed checkpoint into `objects` (by name) and `envs`; return its saved values.

        Modules and optimizers get their state dicts, the environments their pickled state (in place)
        where it was saved, and python/numpy/torch RNGs their states. Returns the plain values the
        script saved (e.g. `iteration`, `next_obs`) plus `global_step` and `envs_restored`.
        """
        from axiomrl_utils.reproducibility import set_rng_state

        if self._resume_payload is None:
            raise RuntimeError("Run.restore() is only for runs started with --resume")
        payload, reserved = self._resume_payload, self._resume_payload[ckpt.RESERVED]
        ckpt.load_into(payload, objects)
        envs_restored = False
        if envs is not None:
            if reserved["envs"] is not None:
                ckpt.restore_vector_env(envs, reserved["envs"])
                envs_restored = True
            else:
                self.progress.message(
                    f"note: the environments were not saved ({reserved['envs_reason']}); "
                    "they restart from a reset, so episodes in progress at the checkpoint start over"
                )
        set_rng_state(reserved["rng"])
        self.metadata["resumes"][-1]["envs_restored"] = envs_restored
        self._write_metadata()
        values = {k: v for k, v in payload.items() if k != ckpt.RESERVED and k not in objects}
        return {**values, "global_step": reserved["global_step"], "envs_restored": envs_restored}

    # ------------------------------------------------------------------ logging
    def log_episodes(self, global_step: int, infos: dict[str, Any]) -> None:
        """Log every training episode that ended in this step (gymnasium's vector `infos["episode"]`)."""
        if "_episode" not in infos:
            return
        episode = infos["episode"]
        for i in np.flatnonzero(infos["_episode"]):
            episode_return = float(episode["r"][i])
            self.logger.episode(global_step, episode_return, int(episode["l"][i]), int(i))
            self._recent_returns.append(episode_return)
            self.total_episodes += 1

    def log_metrics(self, global_step: int, metrics: dict[str, Any]) -> None:
        """Write one metrics.jsonl line (+ TensorBoard, W&B) with SPS, wall time and any evaluation at this step."""
        self.global_step = global_step
        now = time.monotonic()
        session_seconds = max(now - self._session_start, 1e-9)
        sps = (global_step - self._session_start_step) / session_seconds
        row = {"global_step": global_step, **metrics, **self._pending_eval}
        row.update({"time": time.time(), "wall_time": self._wall_time_prior + session_seconds, "charts/SPS": sps})
        self._pending_eval = {}
        self.logger.metrics_row(row)
        self.logger.flush()
        self._latest_metrics = row
        if self.progress.enabled:
            self.progress.update(global_step, sps, self._recent_mean(), self._eval_last)
        if now - self._metadata_written >= METADATA_INTERVAL_S:
            self._write_metadata()

    def _recent_mean(self) -> Optional[float]:
        return float(np.mean(self._recent_returns)) if self._recent_returns else None

    # ------------------------------------------------------------------ cadence
    def due(self, kind: str, global_step: int) -> bool:
        """Whether to evaluate (`kind="eval"`) or checkpoint (`"checkpoint"`) at this step.

        True when `global_step` crossed a multiple of --eval-every / --checkpoint-every, at the last
        step of training, and (checkpoints only) after a new best evaluation or when a stop was
        requested. The last step is found from the step size between calls, so both per-iteration
        and per-step loops work unchanged.
        """
        if global_step != self._prev_step:
            if global_step - self._prev_step != self._step_increment:
                self._step_increment = global_step - self._prev_step
                self._quiet_until = {"eval": 0, "checkpoint": 0}  # the last step moved: look again
            self._prev_step = global_step
        self.global_step = global_step
        # The off-policy scripts ask twice per env step; between cadence points the answer is a cheap no.
        if global_step < self._quiet_until[kind] and self._stop_signal is None:
            return False
        last_done = self._last_done[kind]
        every = self._every(kind)
        if global_step <= last_done or (kind == "eval" and every == 0):
            is_due = False
        else:
            crossed = every > 0 and global_step // every > last_done // every
            is_due = crossed or self._at_last_step() or (kind == "checkpoint" and (self.stop_requested or self._best_pending()))
        if is_due:
            self._last_done[kind] = global_step
        self._quiet_until[kind] = self._next_possible_step(kind)
        return is_due

    def _every(self, kind: str) -> int:
        return self.args.eval_every if kind == "eval" else self.args.checkpoint_every

    def _next_possible_step(self, kind: str) -> int:
        """The first step at which `due(kind, ...)` can be True again, signals aside (0: no shortcut)."""
        every = self._every(kind)
        if kind == "eval" and every == 0:
            return 2**62
        steps = [self._first_last_step()]
        if every > 0:
            steps.append((self._last_done[kind] // every + 1) * every)
        if kind == "checkpoint":
            if not self.args.best_metric.startswith("eval/"):
                return 0  # a training metric can reach a new best at any step
            if self.args.pause_at_step is not None:
                steps.append(self.args.pause_at_step)
        return max(min(steps), self._last_done[kind] + 1)

    def _first_last_step(self) -> int:
        """The first step that is the last of training: one more step of the current size would pass total_timesteps."""
        return self.args.total_timesteps - max(self._step_increment, 1) + 1  # type: ignore[attr-defined]

    def _at_last_step(self) -> bool:
        return self.global_step >= self._first_last_step()

    @property
    def stop_requested(self) -> bool:
        """True after SIGINT/SIGTERM or once --pause-at-step is reached: save, then leave the loop."""
        pause = self.args.pause_at_step
        return self._stop_signal is not None or (pause is not None and self.global_step >= pause)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, global_step: int, policy: Callable[[Any], Any], make_env: Callable[..., Callable[[], Any]]) -> dict[str, float]:
        """Run --eval-episodes episodes of `policy` and log them; returns the eval/* metrics.

        `policy` maps an observation batch (float32 tensor on the run's device) to actions and
        should be deterministic. `make_env(args, idx, evaluation=True, render_mode=...)` is the
        script's env factory; evaluation envs are built once and reused with fixed seeds.
        """
        from axiomrl_utils.evaluation import episode_rows, eval_seeds, make_eval_envs, run_episodes, summarize

        if self._eval_envs is None:
            self._eval_envs = make_eval_envs(
                [
                    make_env(self.args, i, evaluation=True, render_mode="rgb_array" if self.args.capture_video and i == 0 else None)
                    for i in range(self.args.eval_episodes)
                ]
            )
        video = self.dir / "videos" / f"eval_step{global_step:010d}.mp4" if self.args.capture_video else None
        episodes = run_episodes(policy, self._eval_envs, eval_seeds(self.args.seed, self.args.eval_episodes), self.device, video)
        self.logger.eval_rows(episode_rows(episodes, global_step, tag="train", checkpoint=None, deterministic=True))
        metrics = summarize(episodes)
        self._record_evaluation(global_step, metrics)
        return metrics

    def _record_evaluation(self, global_step: int, metrics: dict[str, float]) -> None:
        """Keep an evaluation's eval/* metrics for the next metrics row, the summary and the best checkpoint."""
        self._pending_eval = metrics
        self._eval_at_step = global_step
        self._quiet_until["checkpoint"] = 0  # this evaluation may be a new best, to checkpoint now
        self._eval_last = metrics["eval/return_mean"]
        if self._eval_best is None or self._eval_last > self._eval_best[0]:
            self._eval_best = (self._eval_last, global_step)

    # ------------------------------------------------------------------ checkpoints
    def _best_candidate(self) -> Optional[float]:
        """The best-metric value that describes the parameters now, or None when none does.

        An eval/* metric counts only at the step it was measured (a checkpoint must hold the
        evaluated parameters); a training metric is judged from its newest value.
        """
        metric = self.args.best_metric
        if metric.startswith("eval/"):
            if self._eval_at_step != self.global_step:
                return None
            return (self._pending_eval or self._latest_metrics).get(metric)
        if metric == "charts/episodic_return":
            return self._recent_mean()
        return self._latest_metrics.get(metric)

    def _best_pending(self) -> bool:
        value = self._best_candidate()
        if value is None:
            return False
        if self._best is None:
            return True
        return value > self._best["value"] if self.args.best_mode == "max" else value < self._best["value"]

    def _run_state(self) -> dict[str, Any]:
        return {
            "total_episodes": self.total_episodes,
            "wall_time_s": self._wall_time(),
            "recent_returns": list(self._recent_returns),
            "best": self._best,
            "eval_return_last": self._eval_last,
            "eval_return_best": self._eval_best,
            "latest_metrics": self._latest_metrics,
        }

    def save(self, global_step: int, envs: Any = None, **objects: Any) -> Path:
        """Save a checkpoint: step_<N>.pt, latest.pt, best.pt when best by --best-metric, then prune.

        `objects` are the script's named modules/optimizers/buffers (saved as state dicts) and loop
        values (saved as they are); `envs` is the vector env, pickled with its state when possible.
        Every file is replaced atomically, so a kill at any instant leaves the previous checkpoint.
        """
        self.global_step = global_step
        is_best = self._best_pending()
        step_file = self.checkpoint_dir / f"step_{global_step}.pt"
        if is_best:
            self._best = {
                "path": "checkpoints/best.pt",
                "source": f"checkpoints/{step_file.name}",
                "step": global_step,
                "metric": self.args.best_metric,
                "value": self._best_candidate(),
                "mode": self.args.best_mode,
            }
        meta = {
            "algo": self.algo,
            "env_id": self.metadata["env_id"],
            "global_step": global_step,
            "config": args_to_dict(self.args),
            "run": self._run_state(),
        }
        payload, resume_state = ckpt.build_payload(objects, envs, meta)
        size = ckpt.save_atomic(payload, step_file)
        ckpt.link_atomic(step_file, self.checkpoint_dir / "latest.pt")
        if is_best:
            ckpt.link_atomic(step_file, self.checkpoint_dir / "best.pt")
        ckpt.prune(self.checkpoint_dir, self.args.keep_checkpoints)
        self._checkpoint_log.write(
            {
                "step": global_step,
                "file": f"checkpoints/{step_file.name}",
                "time": time.time(),
                "size_bytes": size,
                "is_best": is_best,
                "metrics": self._latest_metrics,
                "resume_state": resume_state,
            }
        )
        self._checkpoint_log.flush()
        self.logger.flush()
        self._last_saved_step = global_step
        self.metadata["latest_checkpoint_path"] = "checkpoints/latest.pt"
        self._write_metadata(durable=True)
        return step_file

    # ------------------------------------------------------------------ metadata and shutdown
    def _wall_time(self) -> float:
        return self._wall_time_prior + (time.monotonic() - self._session_start)

    def _write_metadata(self, durable: bool = False) -> None:
        """Rewrite metadata.json; `durable` (fsync) where a resume relies on it: after a checkpoint and at the end."""
        wall = self._wall_time()
        self.metadata.update(
            {
                "total_steps": self.global_step,
                "total_episodes": self.total_episodes,
                "wall_time_s": wall,
                "last_updated_utc": utc_now(),
                "latest_metrics": self._latest_metrics,
                "best_checkpoint": self._best,
                "summary": {
                    "train_return_last100": self._recent_mean(),
                    "train_episodes_in_mean": len(self._recent_returns),
                    "eval_return_last": self._eval_last,
                    "eval_return_best": self._eval_best[0] if self._eval_best else None,
                    "eval_step_best": self._eval_best[1] if self._eval_best else None,
                    "sps": self.global_step / wall if self.global_step and wall > 0 else None,
                },
            }
        )
        write_json_atomic(self.dir / METADATA_FILE, self.metadata, durable=durable)
        self._metadata_written = time.monotonic()

    def finish(self) -> None:
        """Mark the run finished, or interrupted after a signal / --pause-at-step, and close everything.

        After SIGINT/SIGTERM this raises SystemExit(130/143) so shells and schedulers see the stop.
        """
        if self._closed:
            return
        if self._stop_signal is not None:
            name = signal.Signals(self._stop_signal).name
            self._close(status="interrupted", stop_reason=name)
            raise SystemExit(EXIT_CODES.get(self._stop_signal, 1))
        if self.stop_requested and not self._at_last_step():
            self._close(status="interrupted", stop_reason="pause_at_step")
            self.progress.message(f"paused at step {self.global_step:,}; continue with --resume {self.dir}")
            return
        if self._last_saved_step != self.global_step:
            warnings.warn(f"the run ended at step {self.global_step} without a checkpoint there", stacklevel=2)
        self._close(status="finished")
        summary = self.metadata["summary"]
        parts = [f"finished {self.global_step:,} steps in {self.metadata['wall_time_s']:.0f}s"]
        if summary["sps"]:
            parts.append(f"SPS {summary['sps']:,.0f}")
        if summary["train_return_last100"] is not None:
            parts.append(f"return (last {summary['train_episodes_in_mean']}) {summary['train_return_last100']:.2f}")
        if summary["eval_return_best"] is not None:
            parts.append(f"best eval {summary['eval_return_best']:.2f}")
        self.progress.message(f"[{self.progress.label}] " + " | ".join(parts) + f"\n  run directory: {self.dir}")

    def _close(self, status: str, error: Optional[str] = None, stop_reason: Optional[str] = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._restore_signal_handlers()
        self.progress.close()
        self.metadata.update({"status": status, "error": error, "stop_reason": stop_reason})
        try:
            self.logger.close()
            self._checkpoint_log.close()
            if self._eval_envs is not None:
                self._eval_envs.close()
        finally:
            self._write_metadata(durable=True)

    def _install_signal_handlers(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: leave now, without a checkpoint
        if self._stop_signal is None:
            self._stop_signal = signum
            self.progress.message(
                f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint (Ctrl-C again to exit now)"
            )


def _new_metadata(args: RunArgs, algo: str, script: Path, run_dir: Path, git: Optional[dict]) -> dict[str, Any]:
    import uuid

    return {
        "schema_version": SCHEMA_VERSION,
        "algo": algo,
        "env_id": args.env_id,  # type: ignore[attr-defined]
        "seed": args.seed,
        "run_id": run_dir.name,
        "output_dir": str(run_dir.resolve()),
        "script": str(script),
        "created_at_utc": utc_now(),
        "command": list(sys.argv),
        "system": system_info(),
        "versions": package_versions(),
        "git": git,
        "benchmark": {
            "best_metric": args.best_metric,
            "best_mode": args.best_mode,
            "eval_every": args.eval_every,
            "eval_episodes": args.eval_episodes,
            "checkpoint_every": args.checkpoint_every,
            "keep_checkpoints": args.keep_checkpoints,
            "total_timesteps": args.total_timesteps,  # type: ignore[attr-defined]
        },
        "status": "running",
        "error": None,
        "stop_reason": None,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "total_timesteps": args.total_timesteps,  # type: ignore[attr-defined]
        "total_steps": 0,
        "total_episodes": 0,
        "wall_time_s": 0.0,
        "last_updated_utc": utc_now(),
        "latest_checkpoint_path": None,
        "latest_metrics": {},
        "best_checkpoint": None,
        "summary": {},
        "resumes": [],
        "wandb": {"project": args.wandb_project_name, "entity": args.wandb_entity, "id": uuid.uuid4().hex[:12]} if args.track else None,
    }


def _prepare_resume(args: RunArgs, algo: str) -> tuple[Path, dict[str, Any], Path, dict[str, Any], dict]:
    """Every check a resume needs, done before anything on disk changes."""
    run_dir = find_run_to_resume(args.resume, algo)  # type: ignore[arg-type]
    meta = read_metadata(run_dir)
    if meta.get("status") == "running" and meta.get("hostname") == socket.gethostname() and pid_alive(meta.get("pid")) and meta.get("pid") != os.getpid():
        raise UsageError(f"{run_dir} is still being trained by process {meta['pid']}; stop it first (or wait for it)")
    changes = check_config_drift(read_config(run_dir), args)
    try:
        path, payload = ckpt.load_newest(run_dir / "checkpoints")
    except ckpt.CheckpointError as e:
        raise UsageError(f"{e}; the run cannot be resumed, start a new one instead") from None
    reserved = payload[ckpt.RESERVED]
    if reserved.get("algo") != algo:
        raise UsageError(f"{path} was saved by {reserved.get('algo')}.py, not {algo}.py; resume it with that script")
    step = reserved["global_step"]
    total = args.total_timesteps  # type: ignore[attr-defined]
    if meta.get("status") == "finished" and total <= step:
        raise UsageError(
            f"{run_dir} already finished its {step:,} steps; pass --total-timesteps larger than {step} to train it further"
        )
    if total <= step:
        raise UsageError(f"the checkpoint is at step {step:,} but --total-timesteps is {total:,}; pass a larger --total-timesteps")
    return run_dir, meta, path, payload, changes


def start_run(args: RunArgs, script: str) -> Run:
    """Create a run directory (or reopen one with --resume) and everything it holds; return the Run.

    Fresh run: `<output_dir>/<algo>__<env>__seed<seed>__<time>/` with metadata.json, config.yaml,
    code.diff (dirty git tree only), log files and TensorBoard/W&B writers. With --resume: the same
    directory, logs cut back to the checkpoint's step, a `resumes` entry, TensorBoard purged past
    that step, W&B resumed under the same id. Bad input raises UsageError before any change.
    """
    script_path = Path(script).resolve()
    algo = script_path.stem
    _check_run_args(args)
    if args.dry_run:
        if args.resume:
            _prepare_resume(args, algo)
        what = f"resume of {args.resume}" if args.resume else f"{algo} on {args.env_id} seed {args.seed}"  # type: ignore[attr-defined]
        print(f"{DRY_RUN_OK}: {what}; the arguments are valid and nothing was created", flush=True)
        raise SystemExit(0)
    if args.resume:
        run_dir, meta, path, payload, changes = _prepare_resume(args, algo)
        step = payload[ckpt.RESERVED]["global_step"]
        for name, key in (("metrics.jsonl", "global_step"), ("train_episodes.jsonl", "global_step")):
            truncate_jsonl(run_dir / name, lambda row, key=key: row.get(key, -1) <= step)
        truncate_jsonl(run_dir / "eval_episodes.jsonl", lambda row: row.get("tag") != "train" or row.get("global_step", -1) <= step)
        truncate_jsonl(run_dir / "checkpoints" / "checkpoints.jsonl", lambda row: row.get("step", -1) <= step)
        git, _ = git_state(script_path.parent)
        meta["resumes"].append(
            {
                "time_utc": utc_now(),
                "from_step": step,
                "checkpoint": str(path.relative_to(run_dir)),
                "argv": list(sys.argv),
                "config_changes": {k: [old, new] for k, (old, new) in changes.items()},
                "git": git,
                "envs_restored": None,
            }
        )
        meta.update({"status": "running", "error": None, "stop_reason": None, "pid": os.getpid(), "hostname": socket.gethostname()})
        meta["total_timesteps"] = meta["benchmark"]["total_timesteps"] = args.total_timesteps  # type: ignore[attr-defined]
        if args.track and not meta.get("wandb"):
            import uuid

            meta["wandb"] = {"project": args.wandb_project_name, "entity": args.wandb_entity, "id": uuid.uuid4().hex[:12]}
        write_config(run_dir, args)
        run = Run(args, algo, script_path, run_dir, meta, resume_path=path, resume_payload=payload)
        run._write_metadata()
        return run

    output_dir = Path(args.output_dir).expanduser()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to --output-dir {args.output_dir} ({e.strerror or e}); pass a writable directory") from None
    run_dir = create_run_dir(output_dir, algo, args.env_id, args.seed)  # type: ignore[attr-defined]
    git, diff = git_state(script_path.parent)
    write_config(run_dir, args)
    if diff is not None:
        write_text_atomic(run_dir / "code.diff", diff)
    meta = _new_metadata(args, algo, script_path, run_dir, git)
    write_json_atomic(run_dir / METADATA_FILE, meta)
    run = Run(args, algo, script_path, run_dir, meta)
    run._write_metadata()
    return run
