"""AxiomRL's algorithms: one self-contained training script per algorithm.

Run a script directly (`python axiomrl/ppo.py --help`); import one (`from axiomrl import ppo`) to
reuse its `Args`, `make_env` and networks, as `axiomrl eval` and the tests do.
"""
