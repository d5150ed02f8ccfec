"""--compile and --cudagraphs in ppo_continuous_action.py and ppo_atari.py (axiomrl_utils/acceleration.py):
the flags declared and checked, the annealed learning rate a tensor filled in place, a compiled run
equal to the eager one to float tolerance whose checkpoint reloads and resumes.

Compilation takes 10-60 s of CPU on a small machine, so one test here compiles (ppo_continuous_action
on Pendulum); ppo_atari's compiled update runs in the `gpu` tests (`bash benchmark/gpu_check.sh`).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from axiomrl_utils import UsageError
from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.acceleration import AccelerationArgs, check_acceleration, optimizer_options, set_learning_rate
from axiomrl_utils.jsonl import read_jsonl

from conftest import only_run, reevaluate, run_script

CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (run benchmark/gpu_check.sh on a GPU machine)")
PPO = ["ppo_continuous_action", "ppo_atari"]
LOSSES = ("losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac")
TINY_CONTINUOUS = dict(env_id="Pendulum-v1", total_timesteps=256, num_envs=1, num_steps=64, num_minibatches=2,
                       update_epochs=2, eval_every=0, checkpoint_every=128, progress=False)


def module(script: str) -> Any:
    return importlib.import_module(f"axiomrl.{script}")


@pytest.mark.parametrize("script", PPO)
def test_the_flags_are_declared_off_and_checked(script: str) -> None:
    args = module(script).Args()
    assert args.compile is False and args.cudagraphs is False
    with pytest.raises(UsageError, match="--cudagraphs replays CUDA graphs, but --no-cuda asks for the CPU"):
        check_acceleration(module(script).Args(cudagraphs=True, cuda=False))


def test_set_learning_rate_is_a_float_eager_and_one_tensor_filled_in_place_when_accelerated() -> None:
    def adam_steps(args: AccelerationArgs) -> tuple[list[Any], nn.Linear]:
        torch.manual_seed(0)
        net = nn.Linear(3, 2)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, eps=1e-5, **optimizer_options(args, torch.device("cpu")))
        rates = []
        for i in range(3):
            set_learning_rate(optimizer, 1e-2 * (1 - i / 3), args)
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad()
            net(torch.ones(4, 3)).pow(2).sum().backward()
            optimizer.step()
        return rates, net

    eager_rates, eager_net = adam_steps(AccelerationArgs())
    rates, net = adam_steps(AccelerationArgs(compile=True))
    assert all(type(rate) is float for rate in eager_rates)
    assert all(rate is rates[0] for rate in rates) and isinstance(rates[0], torch.Tensor)  # the same tensor, refilled
    assert float(rates[0]) == pytest.approx(eager_rates[-1])
    torch.testing.assert_close(net.weight, eager_net.weight, rtol=1e-6, atol=1e-7)  # the same steps either way
    assert not torch.equal(net.weight, nn.Linear(3, 2).weight)


def test_compiled_ppo_continuous_run_tracks_the_eager_run_and_resumes(tmp_path: Path) -> None:
    """Eager 256 steps straight vs --compile paused at 128, resumed without --compile to 256.

    The compiled minibatch updates (2 iterations x 4) agree with the eager ones to float tolerance
    (compiled code sums in another order); the compiled run's checkpoint, whose annealed learning
    rate is a tensor, reloads into `load_policy` and resumes.
    """
    mod = module("ppo_continuous_action")
    mod.main(mod.Args(output_dir=str(tmp_path / "eager"), **TINY_CONTINUOUS))
    mod.main(mod.Args(output_dir=str(tmp_path / "compiled"), compile=True, pause_at_step=128, **TINY_CONTINUOUS))
    run_dir = only_run(tmp_path / "compiled")
    assert json.loads((run_dir / "metadata.json").read_text())["status"] == "interrupted"
    payload = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    assert payload["_axiomrl"]["global_step"] == 128
    assert isinstance(payload["optimizer"]["param_groups"][0]["lr"], torch.Tensor)
    assert len(reevaluate(mod, run_dir, "checkpoints/latest.pt")) > 0  # what axiomrl eval/export load

    resumed = run_script("ppo_continuous_action.py", "--resume", str(run_dir), "--no-compile")
    assert resumed.returncode == 0, resumed.stderr
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["status"] == "finished" and meta["total_steps"] == 256
    eager = {r["global_step"]: r for r in read_jsonl(only_run(tmp_path / "eager") / "metrics.jsonl")}
    compiled = {r["global_step"]: r for r in read_jsonl(run_dir / "metrics.jsonl")}
    assert sorted(eager) == sorted(compiled) == [64, 128, 192, 256]
    for step in eager:
        assert compiled[step]["charts/learning_rate"] == pytest.approx(eager[step]["charts/learning_rate"], rel=1e-6)
        for key in LOSSES:
            assert compiled[step][key] == pytest.approx(eager[step][key], rel=1e-3, abs=1e-4), (step, key)
    assert eager[64]["losses/value_loss"] != eager[256]["losses/value_loss"]  # it learned: not constants compared


@gpu
@needs_cuda
@pytest.mark.parametrize("script, options", [
    ("ppo_continuous_action", ["--env-id", "Pendulum-v1", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "2"]),
    ("ppo_atari", ["--env-id", "ALE/Pong-v5", "--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "2"]),
])
def test_gpu_run_with_both_flags_checkpoints_and_resumes(tmp_path: Path, script: str, options: list[str]) -> None:
    """--compile --cudagraphs on CUDA: paused half way, resumed eagerly (one compilation per script, for
    gpu_check.sh's time budget), close to the eager CUDA run."""
    steps = 256 if script == "ppo_continuous_action" else 128
    common = [*options, "--total-timesteps", str(steps), "--eval-every", "0", "--checkpoint-every", str(steps // 2),
              "--no-progress", "--cuda"]
    eager = run_script(f"{script}.py", *common, "--output-dir", str(tmp_path / "eager"), timeout=600)
    assert eager.returncode == 0, eager.stderr
    paused = run_script(f"{script}.py", *common, "--compile", "--cudagraphs", "--pause-at-step", str(steps // 2),
                        "--output-dir", str(tmp_path / "fast"), timeout=600)
    assert paused.returncode == 0, paused.stderr
    run_dir = only_run(tmp_path / "fast")
    resumed = run_script(f"{script}.py", "--resume", str(run_dir), "--no-compile", "--no-cudagraphs", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "metadata.json").read_text())["total_steps"] == steps
    assert len(reevaluate(module(script), run_dir, "checkpoints/latest.pt")) > 0
    eager_rows = {r["global_step"]: r for r in read_jsonl(only_run(tmp_path / "eager") / "metrics.jsonl")}
    fast_rows = {r["global_step"]: r for r in read_jsonl(run_dir / "metrics.jsonl")}
    assert sorted(eager_rows) == sorted(fast_rows)
    first = min(eager_rows)
    assert fast_rows[first]["losses/value_loss"] == pytest.approx(eager_rows[first]["losses/value_loss"], rel=1e-2, abs=1e-3)
