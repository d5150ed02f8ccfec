"""SIGINT/SIGTERM during training: note the signal so the loop can save a checkpoint and stop;
a second Ctrl-C leaves at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator, Optional

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # what shells and schedulers expect


class StopSignals:
    """Handlers for SIGINT and SIGTERM while a run trains (main thread only); `restore()` puts the old ones back."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.received: Optional[int] = None
        self._say = say
        self._previous: dict[int, Any] = {}
        self._saving = False
        self._leave_after_save = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def name(self) -> Optional[str]:
        return signal.Signals(self.received).name if self.received is not None else None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.received, 1) if self.received is not None else 0

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """While a checkpoint is written, a second Ctrl-C waits for it to complete, then leaves."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._leave_after_save:
            raise KeyboardInterrupt

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received is not None and signum == signal.SIGINT:
            if self._saving:  # a checkpoint half written is a checkpoint lost: finish it first
                self._leave_after_save = True
                self._say("SIGINT again: leaving once the checkpoint being written is complete")
                return
            raise KeyboardInterrupt  # second Ctrl-C: leave now, without a checkpoint
        if self.received is None:
            self.received = signum
            self._say(f"{signal.Signals(signum).name}: finishing this step and saving a checkpoint (Ctrl-C again to exit now)")
