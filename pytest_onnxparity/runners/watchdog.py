"""A bound on each input set's run: a forward pass that loops forever, an ONNX Runtime run that never returns.

The search checks its time budget between input sets; a call that never returns never gets back there. In the main
thread a timer signal (SIGALRM, as pytest-timeout's signal method) raises :class:`Hung` where the call is, with
its stack; ONNX Runtime runs in the worker process, whose wait is bounded by the same deadline (``remaining()``).
Elsewhere (another thread, Windows) only the worker's wait is bounded.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Iterator

#: The least time one input set may take before it counts as hung, whatever the time budget.
MIN_SECONDS = 5.0
#: Frames of the stack shown (the innermost: where it loops).
STACK_FRAMES = 8

_deadlines: list[float] = []


class Hung(BaseException):
    """A run did not return within the watchdog's limit; the message says where it was. (Not an ``Exception``: the
    user's ``except Exception`` around the loop, or an adapter's, must not take it for the model raising.)"""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


def seconds_for(time_budget: float) -> float:
    """The limit of one input set: twice the check's whole time budget (one input set never needs more), at least
    ``MIN_SECONDS`` (a first run that loads kernels)."""
    return max(MIN_SECONDS, 2.0 * time_budget)


def remaining() -> float | None:
    """Seconds left before the innermost limit ends the call (None: no limit)."""
    return max(0.0, min(_deadlines) - time.monotonic()) if _deadlines else None


@contextlib.contextmanager
def limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Hung` in the body when it runs past ``seconds``. A timer set before (pytest-timeout) that would
    fire first is left to fire; one that would fire later is set again, less the time spent here."""
    _deadlines.append(time.monotonic() + seconds)
    armed = (
        len(_deadlines) == 1 and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    )
    previous_handler: object = None
    previous_timer = (0.0, 0.0)
    started = time.monotonic()
    if armed:
        previous_timer = signal.getitimer(signal.ITIMER_REAL)
        armed = not (0 < previous_timer[0] <= seconds)
    if armed:

        def fire(signum: int, frame: object) -> None:
            stack = "".join(traceback.format_stack(frame)[-STACK_FRAMES:])  # type: ignore[arg-type]
            raise Hung(
                f"the run did not return within {seconds:g} s (the watchdog's limit: twice time_budget, at least "
                f"{MIN_SECONDS:g} s); where it was:\n{stack.rstrip()}",
                seconds,
            )

        previous_handler = signal.signal(signal.SIGALRM, fire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)  # type: ignore[arg-type]
            if previous_timer[0] > 0:
                left = previous_timer[0] - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), previous_timer[1])
        _deadlines.pop()
