"""Driving a PollLoop from a test, pass by pass, with a deadline or a fake clock.

``run_until`` runs real passes until a condition holds and fails with a
clear message when it does not by the deadline: it replaces ``loop.run()``
plus a stop timer, which hangs when the stop never comes.

``run_for`` runs a loop whose clock is a
:class:`~pollframe.testing.fakes.FakeClock` through a stretch of fake time:
the clock jumps from one timer deadline to the next and the loop makes one
pass at each, as a loop that is never late would. Nothing sleeps.
"""
from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Optional

from pollframe.loop import PollLoop
from pollframe.testing.errors import WaitTimeout
from pollframe.testing.fakes import FakeClock

__all__ = ["run_for", "run_until"]

#: ``run_for`` gives up after this many passes: a timer that keeps rescheduling itself at "now".
MAX_PASSES = 100_000


def run_until(
    loop: PollLoop,
    predicate: Callable[[], Any],
    timeout: float = 5.0,
    *,
    what: Optional[str] = None,
) -> None:
    """Run passes of ``loop`` until ``predicate()`` is true; fail after ``timeout`` seconds.

    The failure is a :class:`~pollframe.testing.errors.WaitTimeout` (an
    ``AssertionError``) saying what was awaited (``what``, or the
    predicate's name), for how long, and how many callback errors the loop
    counted meanwhile, which are often the reason. Real time: for a loop on
    a fake clock use :func:`run_for`.
    """
    __tracebackhide__ = True
    errors_before = getattr(loop, "errors", 0)
    deadline = time.monotonic() + timeout
    passes = 0
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(_not_reached(loop, predicate, what, timeout, passes, errors_before))
        loop.run_once(min(remaining, 0.1))
        passes += 1


def run_for(loop: PollLoop, clock: FakeClock, seconds: float) -> int:
    """Run ``loop`` through ``seconds`` of fake time on ``clock``; return the passes made.

    What is due now runs first; then the clock moves to each timer
    deadline up to ``now + seconds`` in turn, and one pass
    (``run_once(0)``) runs what is due there, so timers fire in deadline
    order and periodic timers fire every period. The clock ends at exactly
    ``now + seconds``. Sockets are polled without waiting.
    """
    __tracebackhide__ = True
    if loop.time() != clock():
        raise ValueError("run_for(): the loop does not run on this clock (PollLoop(clock=clock))")
    end = clock() + seconds
    loop.run_once(0)
    passes = 1
    while True:
        deadline = loop.next_deadline()
        if deadline is None or deadline > end:
            break
        if passes >= MAX_PASSES:
            raise WaitTimeout(f"run_for(): {passes} passes within {seconds} s of fake time: "
                              "a timer keeps coming due without the clock moving")
        clock.advance_to(deadline)
        loop.run_once(0)
        passes += 1
    clock.advance_to(end)
    loop.run_once(0)
    return passes + 1


def _not_reached(
    loop: PollLoop, predicate: Callable[[], Any], what: Optional[str], timeout: float, passes: int,
    errors_before: int,
) -> str:
    name = what or getattr(predicate, "__name__", "")
    if not name or name == "<lambda>":
        source = _lambda_source(predicate)
        name = f"`{source}`" if source else "the condition"
    message = f"run_until(): {name} not reached within {timeout} s ({passes} passes of the loop)"
    errors = getattr(loop, "errors", 0) - errors_before
    if errors:
        message += f"; {errors} callback error(s) were reported meanwhile (see the captured log)"
    return message


def _lambda_source(func: Callable[[], Any]) -> Optional[str]:
    """The body of a one-line lambda as written in the test, for the failure message."""
    try:
        line = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    start = line.find("lambda")
    colon = line.find(":", start)
    if start < 0 or colon < 0:
        return None
    depth = 0
    for end in range(colon + 1, len(line)):
        char = line[end]
        if char in "([{":
            depth += 1
        elif char in ")]}" and depth:
            depth -= 1
        elif char in ",)]}\n" and not depth:
            return line[colon + 1:end].strip() or None
    return line[colon + 1:].strip() or None
