"""Entry point of `python -m axiomrl_utils.benchmark`, the seed-sweep launcher (same as `axiomrl sweep`).

The launcher itself is `axiomrl_utils.commands.sweep`; see docs/sweeps.md.
"""

import sys

from axiomrl_utils.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())  # a UsageError exits 1 with its one line on stderr
