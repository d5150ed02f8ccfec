"""`--compile` and `--cudagraphs`: the update step compiled by torch.compile and/or replayed as a CUDA graph.

Both are off by default. A script declares the flags by deriving its Args from `AccelerationArgs`,
checks them with `check_acceleration` before it starts the run, and wraps each function that does
one whole update (forward, loss, backward, optimizer step) with `accelerate`:

    class Args(AccelerationArgs, RunArgs): ...

    check_args(args); check_acceleration(args)            # --cudagraphs without CUDA: one sentence, exit 1
    q_optimizer = optim.Adam(qf.parameters(), lr=args.q_lr, **optimizer_options(args, device))

    def update_critic(obs, actions, rewards, next_obs, terminations):  # tensors in, tensors out
        ...; q_optimizer.zero_grad(); loss.backward(); q_optimizer.step()
        return loss.detach()

    update_critic = accelerate(update_critic, args, device)
    ...
    loss = update_critic(data.observations, ...)        # same call as before; log the returned tensors

What a wrapped function may do: take and return tensors (and tuples/dicts of them), change
parameters, optimizer state and other tensors in place, and draw from torch's RNG. Under
`--cudagraphs` it must also not branch in Python on tensor values, not sync (`.item()`, `.cpu()`),
and keep the shapes of its inputs from call to call (the replay buffer's batches do); what it
returns is a copy, safe to keep. Code outside it (sampling, logging, checkpoints) is untouched, so
checkpoints are the same files with or without the flags and a run may switch them on resume.

Compiled code draws its random numbers as eager code does (inductor's `fallback_random`), so a
compiled update equals the eager one to float rounding (tests/test_acceleration.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from axiomrl_utils import UsageError

if TYPE_CHECKING:
    import torch

# eager calls before a CUDA graph is captured: lazy CUDA/cuBLAS initialisation, optimizer state
# creation and compilation all happen there, outside the capture
CUDA_GRAPH_WARMUP = 3


@dataclass
class AccelerationArgs:
    """The two speed flags of the scripts that have a GPU path (sac, td3, ddpg, ppo_continuous_action, ppo_atari)."""

    compile: bool = False
    """if toggled, compile the update (and acting where it pays) with torch.compile; the first updates are slow (compilation)"""
    cudagraphs: bool = False
    """if toggled, capture the update as a CUDA graph and replay it (CUDA only); combine with --compile for the fastest GPU path"""


def check_acceleration(args: Any) -> None:
    """UsageError (one sentence) when the flags cannot work here: --cudagraphs needs CUDA and --cuda.

    Call it next to `check_args`, before `start_run`, so nothing is written for a refused command.
    """
    if not getattr(args, "cudagraphs", False):
        return
    if not getattr(args, "cuda", True):
        raise UsageError("--cudagraphs replays CUDA graphs, but --no-cuda asks for the CPU; drop one of the two flags")
    import torch

    if not torch.cuda.is_available():
        raise UsageError(
            "--cudagraphs needs a CUDA GPU and this machine has none (or this torch is a CPU build); "
            "drop --cudagraphs (--compile works on the CPU)"
        )


def optimizer_options(args: Any, device: "torch.device") -> dict[str, Any]:
    """Keyword arguments for `torch.optim.Adam`/`AdamW`: fused (one kernel per step, CPU and CUDA),
    and capturable under --cudagraphs (its step count stays on the GPU, as capture requires).

    With `--cudagraphs`, a learning rate changed after capture must be a tensor updated in place
    (`lr=torch.tensor(lr, device=device)`, then `group["lr"].fill_(new)`); a float is baked into the graph.
    """
    options: dict[str, Any] = {"fused": True}
    if getattr(args, "cudagraphs", False) and device.type == "cuda":
        options["capturable"] = True
    return options


def accelerate(fn: Callable[..., Any], args: Any, device: "torch.device", warmup: int = CUDA_GRAPH_WARMUP) -> Callable[..., Any]:
    """`fn` as the flags ask: itself (no flag), torch.compile'd (--compile), replayed as a CUDA graph
    (--cudagraphs; of the compiled function with both). See the module docstring for what `fn` may do.
    """
    if getattr(args, "compile", False):
        fn = compile_function(fn)
    if getattr(args, "cudagraphs", False):
        if device.type != "cuda":
            raise UsageError("--cudagraphs needs the model on a CUDA device; drop --cudagraphs or run with --cuda on a GPU")
        fn = CudaGraphFunction(fn, warmup=warmup)
    return fn


def compile_function(fn: Callable[..., Any], mode: str | None = None) -> Callable[..., Any]:
    """torch.compile(fn) with eager-equal random draws (inductor's fallback_random)."""
    import torch
    import torch._inductor.config as inductor_config

    # inductor's own RNG draws other numbers than eager for the same seed; the fallback keeps
    # --compile a speed flag, not a different run (its ops are a negligible part of an update)
    inductor_config.fallback_random = True
    return torch.compile(fn, mode=mode)


class CudaGraphFunction:
    """A function of CUDA tensors captured once as a CUDA graph, then replayed on new inputs.

    The first `warmup` calls run `fn` eagerly on a side stream (as torch.cuda.graphs asks); the next
    one captures it with copies of its inputs as the graph's static inputs. Every later call copies
    the inputs into those and replays the graph; the outputs are cloned, so a caller may keep them.
    Tensors that `fn` reads from its closure (parameters, optimizer state) must be changed in place,
    never replaced, after capture: `load_state_dict` of a module is fine, an optimizer's is not
    (restore a checkpoint before the first call).
    """

    def __init__(self, fn: Callable[..., Any], warmup: int = CUDA_GRAPH_WARMUP) -> None:
        self.fn, self.warmup = fn, warmup
        self.calls = 0
        self.graph: Any = None
        self.static_inputs: list[Any] = []
        self.static_outputs: Any = None

    def __call__(self, *inputs: "torch.Tensor") -> Any:
        import torch
        from torch.utils._pytree import tree_map

        for x in inputs:
            if not isinstance(x, torch.Tensor) or x.device.type != "cuda":
                raise TypeError(f"a CUDA-graph function takes CUDA tensors only, got {type(x).__name__}")
        if self.graph is None:
            if self.calls < self.warmup:
                self.calls += 1
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    out = self.fn(*inputs)
                torch.cuda.current_stream().wait_stream(stream)
                return out
            self.static_inputs = [x.clone() for x in inputs]
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_outputs = self.fn(*self.static_inputs)
        else:
            for static, x in zip(self.static_inputs, inputs):
                if static.shape != x.shape or static.dtype != x.dtype:
                    raise ValueError(
                        f"a captured CUDA graph takes inputs of one shape; got {tuple(x.shape)} {x.dtype} "
                        f"after {tuple(static.shape)} {static.dtype}"
                    )
        # capture only records the kernels: the update of this call runs here, as every later one
        for static, x in zip(self.static_inputs, inputs):
            static.copy_(x)
        self.graph.replay()
        return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, self.static_outputs)


def set_learning_rate(optimizer: "torch.optim.Optimizer", lr: float, args: Any) -> None:
    """Set every param group's learning rate (a schedule's step) so that a compiled or captured update sees it.

    Under --compile/--cudagraphs the rate is a 0-dim tensor filled in place (made on the first call,
    on the parameters' device): a float would be a constant of the compiled code (a recompile per new
    value) or of the CUDA graph (never updated). Without the flags it is a plain float, as always.
    Call it before the update's first call (capture keeps the tensor it saw) and after a resume's
    `load_state_dict`, which replaces the groups' rates with the saved ones.
    """
    import torch

    accelerated = getattr(args, "compile", False) or getattr(args, "cudagraphs", False)
    for group in optimizer.param_groups:
        device = group["params"][0].device
        if not accelerated:
            group["lr"] = lr
        elif isinstance(group["lr"], torch.Tensor) and group["lr"].device == device:
            group["lr"].fill_(lr)
        else:  # the first call, or a checkpoint's rate (a float, or a tensor loaded onto another device)
            group["lr"] = torch.tensor(lr, dtype=torch.float32, device=device)
