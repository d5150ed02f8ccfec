"""A policy as an nn.Module: `policy_module` wraps what a script's `load_policy` returns (a module,
a module's method, or a closure) so that `.to(device)`, tracing and export carry its weights.

Used by `axiomrl eval` / `axiomrl export` and by `axiomrl_utils.normalization.normalized_policy`
(which scripts call in training), so it lives beside the scripts' modules, not in
`axiomrl_utils.commands`. torch is imported inside the functions.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:
    import torch


@functools.cache
def _module_types() -> tuple[type, type]:
    """nn.Module classes, defined on first use so that importing this module does not import torch."""
    import torch
    from torch import nn

    class MethodPolicy(nn.Module):
        """`owner.<method>(obs)` as a module, with `owner` (and so its weights) as a submodule."""

        def __init__(self, owner: nn.Module, method: str) -> None:
            super().__init__()
            self.owner = owner
            self.method = method

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return getattr(self.owner, self.method)(obs)

    class CallablePolicy(nn.Module):
        """Any callable as a module; the modules and tensors it closes over are registered on it."""

        def __init__(self, fn: Callable, modules: Sequence[nn.Module], tensors: Sequence[torch.Tensor]) -> None:
            super().__init__()
            self.fn = fn
            self.captured = nn.ModuleList(modules)
            for i, tensor in enumerate(tensors):
                self.register_buffer(f"captured_{i}", tensor)

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.fn(obs)

    return MethodPolicy, CallablePolicy


def _captured(fn: Any, seen: Optional[set[int]] = None) -> tuple[list, list]:
    """The nn.Modules and tensors a callable reaches through its closure, `__self__` or partial arguments."""
    import torch

    seen = set() if seen is None else seen
    modules, tensors = [], []
    if id(fn) in seen:
        return modules, tensors
    seen.add(id(fn))
    values: list[Any] = []
    if isinstance(fn, functools.partial):
        values += [fn.func, *fn.args, *fn.keywords.values()]
    values += [getattr(fn, "__self__", None)]
    values += [cell.cell_contents for cell in (getattr(fn, "__closure__", None) or ()) if _cell_filled(cell)]
    for value in values:
        if isinstance(value, torch.nn.Module):
            modules.append(value)
        elif isinstance(value, torch.Tensor):
            tensors.append(value)
        elif callable(value):
            more_modules, more_tensors = _captured(value, seen)
            modules += more_modules
            tensors += more_tensors
    return modules, tensors


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def policy_module(policy: Callable[[Any], Any]) -> "torch.nn.Module":
    """`load_policy`'s result as an nn.Module whose `forward(obs)` returns actions, for `.to(device)` and export.

    An nn.Module is returned as is; a bound method of one (`agent.act`, what ppo.py returns) is
    wrapped with its module registered, so the weights travel with it. Any other callable is
    wrapped with the modules and tensors it closes over registered (best effort: a closure over
    module-level globals cannot be found); prefer returning a module or a module's method, and
    `axiomrl_utils.normalization.normalized_policy` for observation normalisation.
    """
    import torch

    method_policy, callable_policy = _module_types()
    if isinstance(policy, torch.nn.Module):
        return policy
    owner = getattr(policy, "__self__", None)
    if isinstance(owner, torch.nn.Module) and getattr(owner, policy.__name__, None) == policy:
        return method_policy(owner, policy.__name__)
    modules, tensors = _captured(policy)
    return callable_policy(policy, modules, tensors)


def rescaled_policy(policy: Callable[[Any], Any], center: Any, inverse_half_range: Any) -> "torch.nn.Module":
    """A policy trained with --rescale-observation, as a module that takes the env's raw observations
    (the rescaling of `axiomrl_utils.envs.rescale_constants` baked in, for eval and export)."""
    import torch

    class RescaledPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy_module(policy)
            self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
            self.register_buffer("inverse_half_range", torch.as_tensor(inverse_half_range, dtype=torch.float32))

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.policy((obs - self.center) * self.inverse_half_range)

    return RescaledPolicy()


def unflattened_input_policy(policy: Callable[[Any], Any], space: Any) -> tuple[list[str], "torch.nn.Module"]:
    """A policy trained on `gymnasium.spaces.flatten`ed observations of `space` (a Dict, Tuple,
    Discrete, MultiDiscrete or MultiBinary of flat parts), as a module taking the parts as the env
    gives them: `forward(*parts)`, one batched tensor per part (a Dict's keys in order). Returns the
    parts' names and the module (for `axiomrl export`)."""
    import gymnasium as gym
    import torch

    def flattener(part: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        if isinstance(part, gym.spaces.Box):
            return lambda x: x.reshape(x.shape[0], -1).float()
        if isinstance(part, gym.spaces.Discrete):
            n, start = int(part.n), int(part.start)
            return lambda x: torch.nn.functional.one_hot(x.reshape(-1).long() - start, n).float()
        if isinstance(part, gym.spaces.MultiBinary):
            return lambda x: x.reshape(x.shape[0], -1).float()
        if isinstance(part, gym.spaces.MultiDiscrete) and part.nvec.ndim == 1:
            sizes, starts = [int(v) for v in part.nvec], [int(v) for v in part.start]
            return lambda x: torch.cat([torch.nn.functional.one_hot(x[:, i].long() - starts[i], n).float()
                                        for i, n in enumerate(sizes)], -1)
        raise ValueError(f"{part} inside the observation space cannot be exported as a raw input")

    if isinstance(space, gym.spaces.Dict):
        names, parts = list(space.spaces), list(space.spaces.values())
    elif isinstance(space, gym.spaces.Tuple):
        names, parts = [f"obs_{i}" for i in range(len(space.spaces))], list(space.spaces)
    else:
        names, parts = ["obs"], [space]
    flatteners = [flattener(p) for p in parts]

    class UnflattenedInputPolicy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy_module(policy)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.policy(torch.cat([f(x) for f, x in zip(flatteners, inputs)], -1))

    return names, UnflattenedInputPolicy()
