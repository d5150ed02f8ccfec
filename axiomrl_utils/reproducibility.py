"""Seeding, device choice, and the RNG states a checkpoint carries."""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def seed_everything(seed: int, torch_deterministic: bool = True) -> None:
    """Seed python, numpy and torch; with `torch_deterministic`, make torch pick deterministic kernels.

    Environments are seeded separately through `envs.reset(seed=...)`.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic
    if torch_deterministic:
        # warn_only: a CUDA op without a deterministic kernel should not kill a long run.
        torch.use_deterministic_algorithms(True, warn_only=True)


def select_device(cuda: bool) -> "torch.device":  # noqa: F821
    """The GPU when `cuda` is set and one is present, else the CPU."""
    import torch

    return torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")


def get_rng_state() -> dict[str, Any]:
    """The state of every global RNG the scripts draw from: python, numpy, torch (CPU and CUDA)."""
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `get_rng_state` captured (the CUDA part only where CUDA exists now)."""
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
