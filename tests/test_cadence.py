"""Run.due: when a script evaluates and checkpoints, checked step by step against the documented rule.

due(kind, step) is True when `step` crossed a multiple of --eval-every / --checkpoint-every since
the last time it was True, at the last step of training, and (checkpoints only) right after an
evaluation that is a new best or once a stop was requested. due() answers from a precomputed
"nothing before step N" shortcut most of the time; these tests drive it through every case.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, Optional

import pytest

from axiomrl import dqn
from axiomrl_utils.run import start_run


def _expected(steps: list[int], every: int, total: int) -> list[int]:
    """The steps at which the cadence alone (multiples of `every`, the last step) makes `due` True."""
    out, last_done = [], 0
    for i, step in enumerate(steps):
        increment = step - (steps[i - 1] if i else 0)
        crossed = every > 0 and step // every > last_done // every
        if crossed or step + max(increment, 1) > total:
            out.append(step)
            last_done = step
    return out


def _drive(run: Any, steps: list[int], evaluations: Optional[dict[int, float]] = None) -> tuple[list[int], list[int]]:
    """Ask due('eval') then due('checkpoint') at each step, as the scripts do; fake an evaluation's result when asked."""
    evals, checkpoints = [], []
    for step in steps:
        if run.due("eval", step):
            evals.append(step)
            if evaluations is not None:  # what Run.evaluate records after playing its episodes
                run.record_evaluation(step, {"eval/return_mean": evaluations[step]})
        if run.due("checkpoint", step):
            checkpoints.append(step)
            run.save(step)  # records a new best, as in the scripts
    return evals, checkpoints


def _run(tmp_path: Path, **overrides: Any) -> Any:
    args = dqn.Args(output_dir=str(tmp_path), progress=False, **overrides)
    run = start_run(args, dqn.__file__)
    run.declare_state()  # a run with no model: its checkpoints hold the run's own state
    return run


@pytest.mark.parametrize(
    "total, increment, eval_every, checkpoint_every",
    [(1000, 1, 100, 250), (1000, 7, 100, 250), (2048, 512, 1000, 0), (999, 4, 0, 300), (500, 1, 1, 1)],
)
def test_cadence_and_last_step(tmp_path: Path, total: int, increment: int, eval_every: int, checkpoint_every: int) -> None:
    run = _run(tmp_path, total_timesteps=total, eval_every=eval_every, checkpoint_every=checkpoint_every)
    steps = list(range(increment, total + 1, increment))
    if steps[-1] != total:
        steps.append(total)  # a shorter last iteration: the step size changes at the end
    evals, checkpoints = _drive(run, steps)
    assert evals == ([] if eval_every == 0 else _expected(steps, eval_every, total))
    assert checkpoints == _expected(steps, checkpoint_every, total)
    run.close()


def test_a_larger_last_step_is_still_the_last(tmp_path: Path) -> None:
    # steps of 1, then one of 15 that ends training early (995 + 15 > 1000): due at 995 for both kinds
    run = _run(tmp_path, total_timesteps=1000, eval_every=300, checkpoint_every=400)
    steps = list(range(1, 981)) + [995]
    evals, checkpoints = _drive(run, steps)
    assert evals == [300, 600, 900, 995] and checkpoints == [400, 800, 995]
    assert evals == _expected(steps, 300, 1000) and checkpoints == _expected(steps, 400, 1000)
    run.close()


def test_new_best_evaluation_checkpoints_at_once(tmp_path: Path) -> None:
    run = _run(tmp_path, total_timesteps=1000, eval_every=100, checkpoint_every=400)
    # returns rise, dip, then rise again: only new bests (and the cadence) checkpoint
    results = {100: 10.0, 200: 20.0, 300: 15.0, 400: 12.0, 500: 30.0, 600: 29.0, 700: 31.0, 800: 5.0, 900: 5.0, 1000: 1.0}
    evals, checkpoints = _drive(run, list(range(1, 1001)), results)
    assert evals == list(range(100, 1001, 100))
    assert checkpoints == [100, 200, 400, 500, 700, 800, 1000]
    run.close()


def test_training_metric_best_is_checked_every_step(tmp_path: Path) -> None:
    run = _run(tmp_path, total_timesteps=300, eval_every=0, checkpoint_every=1000, best_metric="losses/td_loss", best_mode="min")
    checkpoints = []
    for step in range(1, 301):
        run.log_metrics(step, {"losses/td_loss": 1.0 / step if step in (37, 38, 150) else 10.0})
        if run.due("checkpoint", step):
            checkpoints.append(step)
            run.save(step)
    assert checkpoints == [1, 37, 38, 150, 300]
    run.close()


def test_pause_at_step_and_signal_make_a_checkpoint_due(tmp_path: Path) -> None:
    run = _run(tmp_path, total_timesteps=10_000, eval_every=5000, checkpoint_every=5000, pause_at_step=1234)
    _, checkpoints = _drive(run, list(range(1, 1300)))
    assert checkpoints[0] == 1234
    run.close()

    run = _run(tmp_path / "b", total_timesteps=10_000, eval_every=5000, checkpoint_every=5000)
    try:
        stopped_at = None
        for step in range(1, 3000):
            if step == 2000:
                os.kill(os.getpid(), signal.SIGTERM)  # the run's handler only records it
            if run.due("checkpoint", step):
                stopped_at = step
                break
        assert stopped_at == 2000
    finally:
        run.close()


def test_training_metric_best_is_judged_from_the_rows(tmp_path: Path) -> None:
    # a loss logged (and improving) at every step, rows every 100 steps: a best only where a row shows it
    args = dqn.Args(
        output_dir=str(tmp_path), progress=False, total_timesteps=250, eval_every=0, checkpoint_every=0,
        best_metric="losses/td_loss", best_mode="min",
    )
    run = start_run(args, dqn.__file__, log_every=100)
    run.declare_state()
    checkpoints = []
    for step in range(1, 251):
        run.log_metrics(step, {"losses/td_loss": 1.0 / step})
        if run.due("checkpoint", step):
            checkpoints.append(step)
            run.save(step)
    run.close()
    assert checkpoints == [100, 200, 250]
