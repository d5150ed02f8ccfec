"""--compile and --cudagraphs (axiomrl_utils/acceleration.py): refused where they cannot work, compiled
updates equal to eager ones, a compiled run's checkpoints reloaded and resumed.

Tests marked `gpu` need CUDA and skip without it; `bash benchmark/gpu_check.sh` runs them on a GPU machine.
Compilation takes 10-60 s of CPU on a small machine, so only two tests here compile.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn

from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.acceleration import AccelerationArgs, accelerate, check_acceleration, optimizer_options
from axiomrl_utils.jsonl import read_jsonl

from conftest import only_run, reevaluate, run_script

CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run benchmark/gpu_check.sh on a GPU machine)")
OFF_POLICY = ["sac_continuous_action", "td3_continuous_action", "ddpg_continuous_action"]
TINY = ["--env-id", "Pendulum-v1", "--learning-starts", "100", "--batch-size", "32", "--buffer-size", "10000",
        "--eval-every", "0", "--checkpoint-every", "200", "--no-progress"]
LOSSES = ("losses/qf1_loss", "losses/qf2_loss", "losses/actor_loss", "losses/alpha", "losses/qf1_values")


def module(script: str) -> Any:
    return importlib.import_module(f"axiomrl.{script}")


def tiny_update(device: str, args: Any) -> tuple[nn.Module, Any]:
    """A critic-like update with what the scripts' updates have: randomness, a no-grad target, fused Adam."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1)).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, **optimizer_options(args, torch.device(device)))

    def update(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            target = y + 0.1 * torch.randn_like(y)
        loss = ((net(x).view(-1) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    return net, update


def updates_of(device: str, args: Any, n: int) -> tuple[list[float], list[torch.Tensor]]:
    net, update = tiny_update(device, args)
    update = accelerate(update, args, torch.device(device))
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 5, generator=gen).to(device), torch.randn(64, generator=gen).to(device)) for _ in range(n)]
    torch.manual_seed(2)  # the same draws inside the update, compiled or not
    losses = [float(update(x, y)["loss"]) for x, y in batches]
    return losses, [p.detach().cpu().clone() for p in net.parameters()]


def flags(**kwargs: Any) -> AccelerationArgs:
    return AccelerationArgs(**kwargs)


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.skipif(CUDA, reason="this machine has CUDA: --cudagraphs is accepted here")
def test_cudagraphs_on_a_cpu_machine_is_one_sentence_and_writes_nothing(tmp_path: Path) -> None:
    proc = run_script("sac_continuous_action.py", *TINY, "--cudagraphs", "--output-dir", str(tmp_path / "runs"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: --cudagraphs needs a CUDA GPU and this machine has none (or this torch is a CPU build); "
        "drop --cudagraphs (--compile works on the CPU)"
    ]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cudagraphs_with_no_cuda_is_refused() -> None:
    args = module("td3_continuous_action").Args(cudagraphs=True, cuda=False)
    with pytest.raises(UsageError, match="--cudagraphs replays CUDA graphs, but --no-cuda asks for the CPU"):
        check_acceleration(args)
    check_acceleration(module("td3_continuous_action").Args())  # the defaults pass
    with pytest.raises(UsageError, match="--cudagraphs needs the model on a CUDA device"):
        accelerate(lambda: None, flags(cudagraphs=True), torch.device("cpu"))


def test_without_flags_the_function_is_itself_and_adam_is_fused() -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return x

    assert accelerate(f, flags(), torch.device("cpu")) is f
    assert optimizer_options(flags(), torch.device("cpu")) == {"fused": True}
    assert optimizer_options(flags(cudagraphs=True), torch.device("cuda")) == {"fused": True, "capturable": True}


def test_the_flags_are_declared_and_may_change_on_resume() -> None:
    from axiomrl_utils.args import MUTABLE_ON_RESUME

    for script in OFF_POLICY:
        args = module(script).Args()
        assert args.compile is False and args.cudagraphs is False
    assert {"compile", "cudagraphs"} <= MUTABLE_ON_RESUME


# ------------------------------------------------------------------------------------------ compiled == eager (CPU)
def test_compiled_update_equals_eager_on_cpu() -> None:
    eager_losses, eager_params = updates_of("cpu", flags(), 4)
    compiled_losses, compiled_params = updates_of("cpu", flags(compile=True), 4)
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=1e-5)
    for a, b in zip(compiled_params, eager_params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert eager_losses[0] != eager_losses[-1]  # it learned: the comparison is not of constants


def test_compiled_sac_run_checkpoints_resume_and_track_the_eager_run(tmp_path: Path) -> None:
    """Eager 300 steps straight vs --compile paused at 200, resumed without --compile to 300.

    The 100 compiled updates (steps 100-200) agree with the eager ones to float tolerance (the
    compiled code sums in another order, so they are not bitwise equal); the compiled run's
    checkpoint reloads into `load_policy` and resumes.
    """
    mod = module("sac_continuous_action")
    base = dict(env_id="Pendulum-v1", total_timesteps=300, learning_starts=100, batch_size=32, buffer_size=10_000,
                eval_every=0, checkpoint_every=200, progress=False)
    mod.main(mod.Args(output_dir=str(tmp_path / "eager"), **base))
    mod.main(mod.Args(output_dir=str(tmp_path / "compiled"), compile=True, pause_at_step=200, **base))
    run_dir = only_run(tmp_path / "compiled")
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "interrupted"
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["_axiomrl"]["global_step"] == 200 and {"actor", "qf1", "qf2", "q_optimizer"} <= set(payload)
    assert len(reevaluate(mod, run_dir, "checkpoints/latest.pt")) > 0  # what axiomrl eval/export load

    resumed = run_script("sac_continuous_action.py", "--resume", str(run_dir), "--no-compile")
    assert resumed.returncode == 0, resumed.stderr
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 300
    eager = {r["global_step"]: r for r in read_jsonl(only_run(tmp_path / "eager") / "metrics.jsonl")}
    compiled = {r["global_step"]: r for r in read_jsonl(run_dir / "metrics.jsonl")}
    assert sorted(eager) == sorted(compiled) == [100, 200, 300]
    for key in LOSSES:
        assert compiled[200][key] == pytest.approx(eager[200][key], rel=1e-3, abs=1e-4), key
        assert compiled[300][key] == pytest.approx(eager[300][key], rel=1e-2, abs=1e-3), key


# ------------------------------------------------------------------------------------------ GPU (CUDA only)
@gpu
@needs_cuda
def test_cuda_graph_update_equals_eager() -> None:
    eager_losses, eager_params = updates_of("cuda", flags(), 8)  # 3 warm-up calls, capture, 4 replays
    for options in (flags(cudagraphs=True), flags(compile=True, cudagraphs=True)):
        losses, params = updates_of("cuda", options, 8)
        np.testing.assert_allclose(losses, eager_losses, rtol=1e-4)
        for a, b in zip(params, eager_params):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@gpu
@needs_cuda
def test_cuda_graph_outputs_are_copies_and_shapes_are_checked() -> None:
    from axiomrl_utils.acceleration import CudaGraphFunction

    f = CudaGraphFunction(lambda x: {"double": x * 2}, warmup=1)
    outs = [f(torch.full((3,), float(i), device="cuda"))["double"] for i in range(4)]
    assert [o[0].item() for o in outs] == [0.0, 2.0, 4.0, 6.0]  # kept outputs are not overwritten by replays
    with pytest.raises(ValueError, match="inputs of one shape"):
        f(torch.zeros(4, device="cuda"))


@gpu
@needs_cuda
def test_gpu_sac_with_both_flags_checkpoints_and_resumes(tmp_path: Path) -> None:
    """--compile --cudagraphs on CUDA: paused at 200, resumed with the flags, close to the eager CUDA run."""
    common = [*TINY, "--total-timesteps", "400", "--cuda"]
    eager = run_script("sac_continuous_action.py", *common, "--output-dir", str(tmp_path / "eager"))
    assert eager.returncode == 0, eager.stderr
    paused = run_script("sac_continuous_action.py", *common, "--compile", "--cudagraphs", "--pause-at-step", "200",
                        "--output-dir", str(tmp_path / "fast"))
    assert paused.returncode == 0, paused.stderr
    run_dir = only_run(tmp_path / "fast")
    resumed = run_script("sac_continuous_action.py", "--resume", str(run_dir))  # the flags come back from config.yaml
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "metadata.json").read_text())["total_steps"] == 400
    assert len(reevaluate(module("sac_continuous_action"), run_dir, "checkpoints/latest.pt")) > 0
    eager_rows = {r["global_step"]: r for r in read_jsonl(only_run(tmp_path / "eager") / "metrics.jsonl")}
    fast_rows = {r["global_step"]: r for r in read_jsonl(run_dir / "metrics.jsonl")}
    assert sorted(eager_rows) == sorted(fast_rows)
    for key in LOSSES:
        assert fast_rows[200][key] == pytest.approx(eager_rows[200][key], rel=1e-2, abs=1e-3), key


@gpu
@needs_cuda
@pytest.mark.parametrize("script", ["td3_continuous_action", "ddpg_continuous_action"])
def test_gpu_cudagraphs_run_tracks_the_eager_run(tmp_path: Path, script: str) -> None:
    """Every update function of td3/ddpg captured (no compile: seconds, not minutes): the same losses to float tolerance."""
    rows = {}
    for name, extra in (("eager", []), ("graphs", ["--cudagraphs"])):
        proc = run_script(f"{script}.py", *TINY, "--total-timesteps", "300", "--cuda", *extra, "--output-dir", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        rows[name] = read_jsonl(only_run(tmp_path / name) / "metrics.jsonl")[-1]
    assert rows["graphs"]["global_step"] == 300
    for key in ("losses/qf1_loss", "losses/actor_loss", "losses/qf1_values"):
        assert rows["graphs"][key] == pytest.approx(rows["eager"][key], rel=1e-2, abs=1e-3), key
