"""Run management shared by every AxiomRL script: run directories, logs, checkpoints, evaluation.

This package is imported by the training scripts and by the `axiomrl` command. It must stay cheap
to import: torch, tensorboard, wandb, matplotlib and ray are imported inside the functions that
use them, never at module level.
"""

__version__ = "0.1.0"


class UsageError(SystemExit):
    """Bad input: one sentence naming the problem and the fix; exits with status 1, no traceback.

    It derives from SystemExit so that a script run from the shell prints just the sentence, while
    tests calling `main(args)` in-process can catch it with `pytest.raises(UsageError)`.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")
        self.message = message

    def __str__(self) -> str:
        return self.message
