"""Entry point of `python -m axiomrl_utils.tune`, the hyperparameter search (same as `axiomrl tune`).

The command itself is `axiomrl_utils.commands.tune`; see docs/tune.md.
"""

import sys

from axiomrl_utils.commands.tune import main

if __name__ == "__main__":
    sys.exit(main())  # a UsageError exits 1 with its one line on stderr
