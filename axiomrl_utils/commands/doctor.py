"""`axiomrl doctor`: can this machine train? Versions, devices, extras, output directory.

Prints stable `key: value` lines (or one JSON object with `--json`), the same keys in the same
order on every machine. Exit 0 when the core works (numpy, torch, gymnasium CartPole-v1
make/reset/step, tyro, a writable output directory), else 1 naming the failing checks. A missing
extra is reported, never a failure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from axiomrl_utils import UsageError, __version__
from axiomrl_utils.envs import register_atari
from axiomrl_utils.host import nearest_existing_dir, writable_dir_problem

CORE_CHECKS = ("numpy", "torch", "gymnasium", "gymnasium_cartpole", "tyro", "output_dir_writable")
# import name -> (distribution name, the axiomrl extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "mujoco": ("mujoco", "mujoco"),
    "ale_py": ("ale-py", "atari"),
    "wandb": ("wandb", "wandb"),
    "ray": ("ray", "ray"),
    "submitit": ("submitit", "slurm"),
    "plotly": ("plotly", "plot"),
    "matplotlib": ("matplotlib", "plot"),
    "moviepy": ("moviepy", "video"),
    "onnxruntime": ("onnxruntime", "export"),
}
NOT_INSTALLED = "not installed"


class CheckFailed(Exception):
    """A check's failure, with the one-line reason shown as its value."""


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:200] if text else type(error).__name__


def _import_version(module: str, dist: str | None = None) -> tuple[Any, str]:
    """Import `module`; returns (module, version). Raises CheckFailed('not installed'/'broken: ...')."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise CheckFailed(NOT_INSTALLED) from None
        raise CheckFailed(f"broken: {_short(e)}") from None
    except Exception as e:  # an installed package that fails to import (ABI mismatch, missing lib, ...)
        raise CheckFailed(f"broken: {_short(e)}") from None
    version = getattr(mod, "__version__", None)
    if not isinstance(version, str):
        try:
            version = importlib.metadata.version(dist or module)
        except importlib.metadata.PackageNotFoundError:
            version = "installed"
    return mod, version


def _env_works(env_id: str, register: Callable[[], None] | None = None) -> str:
    import gymnasium as gym

    if register is not None:
        try:
            register()
        except UsageError as e:  # the extra that provides the env is missing
            raise CheckFailed(f"failed: {e.message}") from None
    env = gym.make(env_id)
    try:
        env.reset(seed=0)
        env.step(env.action_space.sample())
    finally:
        env.close()
    return "ok"


def check_output_dir(path: str | os.PathLike) -> str:
    """'yes' when runs can be written to `path` (or it can be created); raises CheckFailed otherwise.

    Probes with a real temporary file in `path` or its nearest existing parent, and creates nothing
    that stays behind.
    """
    problem = writable_dir_problem(path)
    if problem is not None:
        raise CheckFailed(f"no: {problem}")
    probe = nearest_existing_dir(Path(path))
    return "yes" if probe == Path(path).absolute() else f"yes (will be created inside {probe})"


def collect(output_dir: str | os.PathLike = "runs", extras: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """Run every check. Returns (report, failures): report maps each key to its value, in a fixed
    order; failures maps each failed core check to its reason. Never raises."""
    report: dict[str, Any] = {}
    failures: dict[str, str] = {}

    def check(key: str, fn: Callable[[], Any]) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = fn()
        except CheckFailed as e:
            value = str(e)
            if key in CORE_CHECKS:
                failures[key] = value
        except Exception as e:  # a check must never crash the doctor
            value = f"failed: {_short(e)}"
            if key in CORE_CHECKS:
                failures[key] = value
        report[key] = value
        return value

    report["axiomrl"] = __version__
    report["python"] = platform.python_version()
    report["python_executable"] = sys.executable
    report["platform"] = platform.platform()
    report["cpu_threads"] = os.cpu_count()
    report["cpu_threads_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    check("numpy", lambda: _import_version("numpy")[1])
    torch = None

    def torch_version() -> str:
        nonlocal torch
        torch, version = _import_version("torch")
        return version

    check("torch", torch_version)
    report["torch_threads"] = torch.get_num_threads() if torch else None
    report["cuda_available"] = bool(torch and torch.cuda.is_available())
    report["cuda_version"] = getattr(torch.version, "cuda", None) if torch else None

    def device() -> str:
        if torch is None:
            return "none (torch missing)"
        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.device_count()}x {torch.cuda.get_device_name(0)})"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"

    check("device", device)
    check("gymnasium", lambda: _import_version("gymnasium")[1])
    gym_ok = "gymnasium" not in failures
    check("gymnasium_cartpole", (lambda: _env_works("CartPole-v1")) if gym_ok else _skip("gymnasium missing", core=True))
    check("tyro", lambda: _import_version("tyro")[1])
    report["output_dir"] = str(Path(output_dir).absolute())
    check("output_dir_writable", lambda: check_output_dir(output_dir))

    if extras:
        for module, (dist, extra) in EXTRAS.items():
            value = check(module, _extra(module, dist, extra))
            installed = not str(value).startswith((NOT_INSTALLED, "broken"))
            if module == "mujoco":
                check("mujoco_halfcheetah", (lambda: _env_works("HalfCheetah-v5")) if installed and gym_ok
                      else _skip("mujoco missing"))
            elif module == "ale_py":
                check("ale_roms", (lambda: _env_works("ALE/Pong-v5", register_atari)) if installed and gym_ok
                      else _skip("ale-py missing"))
    else:
        report["extras"] = "skipped (--no-extras)"

    report["core"] = "ok" if not failures else "failed: " + ", ".join(failures)
    return report, failures


def _skip(reason: str, core: bool = False) -> Callable[[], str]:
    def fn() -> str:
        if core:
            raise CheckFailed(f"skipped ({reason})")
        return f"skipped ({reason})"

    return fn


def _extra(module: str, dist: str, extra: str) -> Callable[[], str]:
    def fn() -> str:
        try:
            return _import_version(module, dist)[1]
        except CheckFailed as e:
            if str(e) == NOT_INSTALLED:
                return f"{NOT_INSTALLED} (pip install 'axiomrl[{extra}]')"
            return str(e)

    return fn


def format_lines(report: dict[str, Any]) -> str:
    """`key: value` lines; booleans as yes/no, missing values as '-'."""
    def show(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return "-" if value is None else str(value)

    return "".join(f"{key}: {show(value)}\n" for key, value in report.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `axiomrl doctor`."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of key: value lines")
    parser.add_argument("--output-dir", default="runs", metavar="DIR",
                        help="the runs directory to check for writability (default: runs, the scripts' default)")
    parser.add_argument("--no-extras", action="store_true", help="skip the optional extras (faster)")


def run(args: argparse.Namespace) -> int:
    """`axiomrl doctor`: exit 0 when the core works, 1 naming the failing checks."""
    report, failures = collect(args.output_dir, extras=not args.no_extras)
    sys.stdout.write(json.dumps(report, indent=2) + "\n" if args.json else format_lines(report))
    sys.stdout.flush()
    if failures:
        detail = "; ".join(f"{k}: {v}" for k, v in failures.items())
        print(f"error: the core does not work ({detail}); fix these before training", file=sys.stderr)
        return 1
    return 0
