"""`python -m axiomrl_utils.commands ARGS` is `axiomrl ARGS`."""

import sys

from axiomrl_utils.commands.cli import main

sys.exit(main())
