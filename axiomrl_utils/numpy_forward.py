"""A small network's forward pass in numpy, for acting one env step at a time on the CPU.

Acting on a handful of observations is dominated by PyTorch's per-call overhead, not by
arithmetic, so a small network's forward pass is several times cheaper in numpy (the measured
figures: benchmark/results/speed_components.md). `numpy_forward(module)` runs an
`nn.Sequential` of `Linear` and `ReLU`/`Tanh` layers on numpy views of its parameters: no copy,
so every in-place update (optimizer steps, `load_state_dict`, `.data.copy_`) is seen at once,
and a parameter given new storage (`param.data = ...`, `module.double()`) is picked up
on the next call. Replacing a Parameter object (`load_state_dict(..., assign=True)`,
`layer.weight = nn.Parameter(...)`) is not: call numpy_forward again after that. Training still
goes through torch and autograd.

    q_values = numpy_forward(q_network.network)      # after .to(device)
    actions = q_values(obs).argmax(axis=1)           # obs: the env's numpy batch

The result equals the torch forward up to float32 rounding (a different BLAS sums in a different
order). A module on another device (CUDA) is run through torch, with the conversions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn


def numpy_forward(module: "nn.Sequential") -> Callable[[np.ndarray], np.ndarray]:
    """`module`'s forward pass as a function of a numpy batch, reading the current parameters in place.

    `module` must be an `nn.Sequential` of `nn.Linear` and `nn.ReLU`/`nn.Tanh` layers; anything
    else raises TypeError naming the layer.
    """
    import torch
    import torch.nn as nn

    # (h, out): `out` is h itself, to work in place, except on the first layer, where h may be the caller's array
    activations: dict[type, Callable[[np.ndarray, np.ndarray | None], np.ndarray]] = {
        nn.ReLU: lambda h, out: np.maximum(h, 0, out=out),
        nn.Tanh: lambda h, out: np.tanh(h, out=out),
    }
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"numpy_forward runs an nn.Sequential, not {type(module).__name__}; pass the Sequential inside it")
    for layer in module:
        # exact types: a subclass may compute something else in its forward
        if type(layer) is not nn.Linear and type(layer) not in activations:
            raise TypeError(
                f"numpy_forward supports Linear, ReLU and Tanh layers, not {type(layer).__name__}; "
                "call the module through torch instead"
            )
    parameters = list(module.parameters())
    if not parameters or parameters[0].device.type != "cpu":
        return _torch_forward(module)

    data_ptr = torch.Tensor.data_ptr

    def views() -> tuple[list[tuple[np.ndarray | None, np.ndarray | None, Callable | None, bool]], list[int], np.dtype]:
        # (weight transposed, bias, None, _) for a Linear, (None, None, function, in place) for an activation
        steps = []
        for index, layer in enumerate(module):
            if isinstance(layer, nn.Linear):
                bias = None if layer.bias is None else layer.bias.detach().numpy()
                steps.append((layer.weight.detach().numpy().T, bias, None, False))
            else:
                steps.append((None, None, activations[type(layer)], index > 0))
        return steps, list(map(data_ptr, parameters)), parameters[0].detach().numpy().dtype

    steps, pointers, dtype = views()

    def forward(x: np.ndarray) -> np.ndarray:
        nonlocal steps, pointers, dtype
        if list(map(data_ptr, parameters)) != pointers:  # a parameter was given new storage (or dtype)
            steps, pointers, dtype = views()
        h = np.asarray(x, dtype=dtype)
        for weight_t, bias, activation, in_place in steps:
            if activation is not None:
                h = activation(h, h if in_place else None)
            else:
                h = h.dot(weight_t)  # the method: less dispatch than `@` for a handful of rows, same BLAS call
                if bias is not None:
                    h += bias  # h is the product's own new array
        return h

    return forward


def _torch_forward(module: "nn.Sequential") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    like = next(module.parameters(), torch.empty(0))

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(x, dtype=like.dtype, device=like.device)).cpu().numpy()

    return forward
