"""When a run evaluates, checkpoints and writes a metrics row.

The rule, for each kind: due at a step that crossed a multiple of its interval since the last time
it was due, and at the last step of training. The last step is the first one after which one more
step of the current size would pass `total_timesteps`; the step size is learnt from the steps the
loop reports, so per-iteration loops (PPO) and per-step loops (DQN, SAC) need nothing different.
The run adds its own reasons on top (a checkpoint after a new best or a stop request; a row at an
evaluation) through `due(..., urgent=...)`.

Off-policy scripts ask twice per environment step, so between two cadence points the answer must
be a cheap no: each kind keeps the first step at which it can be due again (`quiet_until`), and
`due` answers no below it without looking further.
"""

from __future__ import annotations

from typing import Callable, Optional

NEVER = 2**62  # a step no run reaches


class Cadence:
    """Due-or-not for named kinds ("eval", "checkpoint", "log"), each with its interval in steps.

    An interval of 0 means: never for "eval", and only at the last step (or when urgent) for the
    other kinds.
    """

    def __init__(self, total_timesteps: int, intervals: dict[str, int], start_step: int = 0) -> None:
        self.total_timesteps = total_timesteps
        self.intervals = dict(intervals)
        self.last_done = dict.fromkeys(intervals, start_step)
        self.prev_step, self._step_increment = start_step, 0  # the newest step observed, and the step size
        # due(kind, step) is False for any step < quiet_until[kind] that was observed already (the shortcut)
        self.quiet_until = dict.fromkeys(intervals, 0)

    def first_last_step(self) -> int:
        """The first step that is the last of training: one more step of the current size passes total_timesteps."""
        return self.total_timesteps - max(self._step_increment, 1) + 1

    def at_last_step(self, step: int) -> bool:
        return step >= self.first_last_step()

    def observe(self, step: int) -> None:
        """Learn the step size from the steps reported; a new size moves the last step, so look again."""
        if step != self.prev_step:
            if step - self.prev_step != self._step_increment:
                self._step_increment = step - self.prev_step
                self.quiet_until = dict.fromkeys(self.quiet_until, 0)
            self.prev_step = step

    def quiet(self, kind: str, step: int) -> bool:
        """The shortcut alone: True when `due(kind, step)` is surely False (signals aside). Cheaper
        than `due`, for callers on a hot path; False says nothing."""
        return step == self.prev_step and step < self.quiet_until[kind]

    def wake(self, kind: str) -> None:
        """Drop `kind`'s shortcut: something outside the cadence (an evaluation, a signal) may make it due now."""
        self.quiet_until[kind] = 0

    def due(
        self,
        kind: str,
        step: int,
        urgent: Optional[Callable[[], bool]] = None,
        urgent_from: int = NEVER,
        ignore_shortcut: bool = False,
    ) -> bool:
        """Whether `kind` is due at `step`; a True answer counts as done.

        `urgent()` is asked only when the cadence alone says no: a reason of the caller's to be due
        anyway. `urgent_from` is the first step at which it can say yes on its own (0: any step;
        NEVER: only after `wake`). `ignore_shortcut` looks past the shortcut (a signal arrived).
        """
        if step != self.prev_step:
            self.observe(step)
        if step < self.quiet_until[kind] and not ignore_shortcut:
            return False
        last_done, every = self.last_done[kind], self.intervals[kind]
        if step <= last_done or (kind == "eval" and every == 0):
            is_due = False
        else:
            crossed = every > 0 and step // every > last_done // every
            is_due = crossed or self.at_last_step(step) or (urgent is not None and urgent())
        if is_due:
            self.last_done[kind] = step
        self.quiet_until[kind] = self._next_possible_step(kind, urgent_from if urgent is not None else NEVER)
        return is_due

    def _next_possible_step(self, kind: str, urgent_from: int) -> int:
        """The first step at which `due(kind, ...)` can be True again, wakes and signals aside."""
        every = self.intervals[kind]
        if kind == "eval" and every == 0:
            return NEVER
        steps = [self.first_last_step(), urgent_from]
        if every > 0:
            steps.append((self.last_done[kind] // every + 1) * every)
        return max(min(steps), self.last_done[kind] + 1)
