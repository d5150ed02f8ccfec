"""The run: what a training script calls for everything that is not the algorithm.

A script uses it through a handful of calls that leave the training loop in view:

    with start_run(args, __file__) as run:          # directory, metadata, config, code.diff, TB, W&B
        run.declare_state(agent=agent, optimizer=optimizer, envs=envs)   # what checkpoints hold, once
        if args.resume:
            saved = run.restore()                   # loads the declared state; returns loop values
        ...
        run.log_episodes(global_step, infos)
        run.log_metrics(global_step, {"losses/value_loss": v_loss, ...})   # where it is computed
        if run.due("eval", global_step): run.evaluate(global_step, agent.act, make_env)
        if run.due("checkpoint", global_step): run.save(global_step, iteration=iteration, ...)
        if run.stop_requested: break

Leaving the `with` block marks the run finished, interrupted or failed (with the error) in
metadata.json and closes every writer. docs/architecture.md maps the modules of this package.
"""

from axiomrl_utils.run.start import start_run
from axiomrl_utils.run.training_run import Run

__all__ = ["Run", "start_run"]
