"""The console: a run's progress bar (or plain progress lines off a terminal), and durations as people read them."""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

MISSING = "-"  # how a value that is not there is shown


def fmt_bytes(n: int) -> str:
    """`512 B`, `40 kB`, `3.2 MB`, `1.5 GB`: a size in a sentence."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.{1 if n < 10 * scale else 0}f} {unit}"
    return f"{n} B"


def fmt_duration(seconds: Any) -> str:
    """Seconds as `1h02m03s`, `4m05s` or `12s`; '-' when missing."""
    if seconds is None or isinstance(seconds, bool):
        return MISSING
    try:
        total = int(round(float(seconds)))
    except (TypeError, ValueError):
        return str(seconds)
    hours, rest = divmod(max(total, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ConsoleProgress:
    """A rich progress bar on a terminal; a plain line every `interval` seconds otherwise."""

    def __init__(self, label: str, total: int, start: int, enabled: bool, interval: float = 10.0) -> None:
        self.label, self.total, self.enabled, self.interval = label, total, enabled, interval
        self._bar = None
        self._last_line = 0.0
        if enabled and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
            )
            self._task = self._bar.add_task(label, total=total, completed=start, stats="")
            self._bar.start()

    def update(self, step: int, sps: float, recent_return: Optional[float], eval_return: Optional[float]) -> None:
        if not self.enabled:
            return
        stats = f"SPS {sps:,.0f}"
        if recent_return is not None:
            stats += f" | return {recent_return:.1f}"
        if eval_return is not None:
            stats += f" | eval {eval_return:.1f}"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, stats=stats)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval or step >= self.total:
            self._last_line = now
            eta = (self.total - step) / sps if sps > 0 else 0.0
            pct = 100.0 * step / max(1, self.total)
            print(f"[{self.label}] step {step:,}/{self.total:,} ({pct:.0f}%) | {stats} | ETA {fmt_duration(eta)}", flush=True)

    def message(self, text: str) -> None:
        """A line that does not disturb the bar."""
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
