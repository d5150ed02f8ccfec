"""SIGINT/SIGTERM during training: note the signal so the loop can save a checkpoint and stop;
a second Ctrl-C leaves at once. A stop request file (`stop-request.json`, written by whoever sends
the signal, e.g. `axiomrl tune` pruning a trial) names the status the stopped run ends with."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from axiomrl_utils.jsonl import read_json, write_json_atomic

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


STOP_REQUEST_FILE = "stop-request.json"
# Statuses a stop request may ask for; anything else in the file is ignored (the run ends `interrupted`).
REQUESTABLE_STATUSES = frozenset({"pruned"})


def request_stop(run_dir: Path, status: str, reason: str) -> None:
    """Ask the run in `run_dir` to end with `status` when it next stops on a signal; send the signal after this."""
    if status not in REQUESTABLE_STATUSES:
        raise ValueError(f"a stop request asks for one of {sorted(REQUESTABLE_STATUSES)}, not {status!r}")
    write_json_atomic(Path(run_dir) / STOP_REQUEST_FILE, {"status": status, "reason": reason})


def take_stop_request(run_dir: Path) -> Optional[tuple[str, str]]:
    """(status, reason) of a stop request for this run, removing the file (it is used once); None without one."""
    path = Path(run_dir) / STOP_REQUEST_FILE
    try:
        request = read_json(path)
        path.unlink()
    except (OSError, ValueError):
        return None
    if not isinstance(request, dict) or request.get("status") not in REQUESTABLE_STATUSES:
        return None
    return request["status"], str(request.get("reason") or request["status"])
