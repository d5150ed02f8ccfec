"""The `axiomrl` command's tools: reports, leaderboards, plots, doctor, sweeps, eval, export, pack.

Nothing here is imported by the training scripts; they use the modules of `axiomrl_utils` itself.
Each subcommand has its own module (see `cli.COMMANDS`), imported only when it runs, and every
module imports torch, pandas, scipy, matplotlib, ray and the like inside the functions that use
them, so `axiomrl --help` and `axiomrl report` start fast.
"""
