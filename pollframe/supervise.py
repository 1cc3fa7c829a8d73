"""Supervision: a parent's loop watches its ZmqProcess children and starts them again.

Theory of operation
-------------------
Three layers, as everywhere in pollframe:

- :class:`RestartPolicy` and :class:`RestartTracker` are the logic, sans-io:
  told that a child exited (its exit code, whether it failed in ``setup()``,
  when it started, the time now) the tracker answers *restart after this
  many seconds*, *leave it* or *give up*, by the policy: restart ``never``,
  ``on_failure`` (a non-zero exit code, or a ``setup()`` that raised) or
  ``always``; an exponential backoff from ``backoff`` doubling up to
  ``backoff_max``, back to the start once a child stayed up ``reset_after``
  seconds; at most ``max_restarts`` restarts within any ``window`` seconds,
  after which it gives up. Tested on numbers, no processes.
- :func:`watch_exit` is the one loop adapter: it registers the child's
  ``sentinel`` (a descriptor that becomes readable when the child exits)
  once, and when it fires unregisters it, joins the child and calls back.
  A sentinel watched by hand stays readable for good, so a callback that
  does not unregister it is called on every pass (183,272 times in 0.5 s).
- :class:`Supervisor` joins them: ``add(factory)`` starts ``factory()`` (a
  *new* process object each time: a process can be started only once),
  watches it, and on its exit asks the tracker, then starts the next one
  after the delay on a loop timer, with callbacks for exit, restart and
  giving up. It never blocks the loop except in :meth:`Supervisor.close`,
  which stops every child (``children.stop_all``).

A ``ZmqProcess`` that supervises makes its supervisor with
:meth:`ZmqProcess.supervise <pollframe.process.ZmqProcess.supervise>`; its
shutdown then stops restarting before it stops the children.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any, Callable, Deque, Optional

from pollframe import children
from pollframe.loop import PollLoop

__all__ = ["ExitWatch", "GaveUp", "RestartPolicy", "RestartTracker", "Supervised", "Supervisor", "watch_exit"]

log = logging.getLogger("pollframe")

_POLICIES = ("never", "on_failure", "always")


class GaveUp(RuntimeError):
    """A supervised child failed too often (``max_restarts`` in ``window``) and is not started again."""


# ------------------------------------------------------------------ the logic


@dataclass(frozen=True)
class RestartPolicy:
    """When and how soon a supervised child is started again; times in seconds."""

    restart: str = "on_failure"
    backoff: float = 0.1
    backoff_max: float = 5.0
    reset_after: float = 10.0
    max_restarts: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.restart not in _POLICIES:
            raise ValueError(f"restart must be one of {', '.join(_POLICIES)}, not {self.restart!r}")
        if not 0 <= self.backoff <= self.backoff_max:
            raise ValueError(f"need 0 <= backoff <= backoff_max, not {self.backoff!r}, {self.backoff_max!r}")
        if self.max_restarts < 0 or not self.window > 0:
            raise ValueError("max_restarts must be >= 0 and window > 0")


@dataclass(frozen=True)
class Decision:
    """What to do after an exit: ``action`` is "restart" (after ``delay`` s), "leave" or "give_up"."""

    action: str
    delay: float = 0.0
    reason: str = ""


class RestartTracker:
    """The restart history of one supervised child, sans-io: feed it exits, it decides."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.failures_in_a_row = 0
        self._restarts: Deque[float] = deque()  # when each restart was decided, within the window

    def exited(self, exitcode: Optional[int], setup_failure: Optional[str], started: float, now: float
               ) -> Decision:
        """The decision for an exit at ``now`` of a child started at ``started``."""
        policy = self.policy
        failed = exitcode != 0 or setup_failure is not None
        if now - started >= policy.reset_after:
            self.failures_in_a_row = 0
        if failed:
            self.failures_in_a_row += 1
        why = f"setup() failed: {setup_failure}" if setup_failure else f"exit code {exitcode}"
        if policy.restart == "never" or (policy.restart == "on_failure" and not failed):
            return Decision("leave", reason=why)
        while self._restarts and now - self._restarts[0] > policy.window:
            self._restarts.popleft()
        if len(self._restarts) >= policy.max_restarts:
            return Decision("give_up", reason=(
                f"{len(self._restarts) + 1} exits within {policy.window:g} s, {policy.max_restarts} "
                f"restart(s) allowed; last: {why}"))
        self._restarts.append(now)
        streak = max(self.failures_in_a_row, 1)
        delay = min(policy.backoff_max, policy.backoff * 2 ** (streak - 1)) if failed else 0.0
        return Decision("restart", delay=delay, reason=why)


# ------------------------------------------------------------------ the loop adapter


class ExitWatch:
    """The handle :func:`watch_exit` returns: ``cancel()`` stops watching; ``done`` once it fired."""

    def __init__(self, loop: PollLoop, sentinel: int) -> None:
        self._loop = loop
        self._sentinel = sentinel
        self.done = False

    def cancel(self) -> None:
        """Stop watching (nothing happens if it fired already)."""
        if not self.done:
            self.done = True
            if not self._loop.closed:
                self._loop.unregister(self._sentinel)


def watch_exit(loop: PollLoop, process: BaseProcess, callback: Callable[[Any], Any]) -> ExitWatch:
    """Call ``callback(process)`` on ``loop`` once, when the started ``process`` has exited.

    Its ``sentinel`` is registered once and unregistered when it fires, and
    the process is joined first, so ``process.exitcode`` is set (and a
    ``ZmqProcess``'s control pipe read and closed) when the callback runs.
    """
    sentinel = process.sentinel
    watch = ExitWatch(loop, sentinel)

    def fired(fd: int, events: int) -> None:
        watch.cancel()
        process.join(1.0)  # it has exited: this only reaps it
        callback(process)

    loop.register(sentinel, fired)
    return watch


class Supervised:
    """One supervised child: its current process, how often it was restarted, whether it was given up."""

    def __init__(self, name: str, factory: Callable[[], BaseProcess], policy: RestartPolicy) -> None:
        self.name = name
        self.factory = factory
        self.policy = policy
        self.tracker = RestartTracker(policy)
        #: The process now running (or the last one, once it exited and is not restarted).
        self.process: Optional[BaseProcess] = None
        self.restarts = 0
        #: Exit codes of the processes that ended, in order.
        self.exitcodes: list[Optional[int]] = []
        #: Set when the supervisor gave up on it.
        self.gave_up: Optional[GaveUp] = None
        self.started_at = 0.0
        self._watch: Optional[ExitWatch] = None
        self._pending: Any = None  # the timer of a restart waiting for its backoff

    @property
    def running(self) -> bool:
        """True while its process runs and is watched (not between an exit and its restart)."""
        return self.process is not None and self.process.exitcode is None and self._watch is not None

    def __repr__(self) -> str:
        pid = None if self.process is None else self.process.pid
        return f"<Supervised {self.name} pid={pid} restarts={self.restarts}>"


class Supervisor:
    """Keeps children running on ``loop`` by their :class:`RestartPolicy`.

    ``on_exit(child, exitcode)``, ``on_restart(child, process)`` and
    ``on_give_up(child, error)`` are called on the loop (``child`` is the
    :class:`Supervised`). Giving up is also logged as an error, with the
    reason (the child's own ``setup()`` error when it said one).
    """

    def __init__(
        self,
        loop: PollLoop,
        *,
        on_exit: Optional[Callable[[Supervised, Optional[int]], Any]] = None,
        on_restart: Optional[Callable[[Supervised, BaseProcess], Any]] = None,
        on_give_up: Optional[Callable[[Supervised, GaveUp], Any]] = None,
    ) -> None:
        self.loop = loop
        self.on_exit, self.on_restart, self.on_give_up = on_exit, on_restart, on_give_up
        self.children: list[Supervised] = []
        self._closed = False

    def add(
        self, factory: Callable[[], BaseProcess], policy: Optional[RestartPolicy] = None, *,
        name: Optional[str] = None,
    ) -> Supervised:
        """Start ``factory()`` now and supervise it; ``factory`` makes a new, unstarted process each call."""
        if self._closed:
            raise RuntimeError("this Supervisor is closed")
        name = name or str(getattr(factory, "__name__", "child"))
        child = Supervised(name, factory, policy or RestartPolicy())
        self.children.append(child)
        self._start(child)
        return child

    def stop_restarting(self) -> None:
        """Start nothing more (pending restarts are cancelled); the running children go on."""
        self._closed = True
        for child in self.children:
            if child._pending is not None:
                child._pending.cancel()
                child._pending = None

    def close(self, timeout: float = 1.0) -> None:
        """Stop restarting and stop every running child (all at once: ask, SIGTERM, SIGKILL)."""
        self.stop_restarting()
        running = [child.process for child in self.children if child.running]
        for child in self.children:
            if child._watch is not None:
                child._watch.cancel()
                child._watch = None
        children.stop_all([p for p in running if p is not None], timeout)

    # ------------------------------------------------------------ internals

    def _start(self, child: Supervised) -> None:
        child._pending = None
        if self._closed:
            return
        process = child.factory()
        process.start()
        child.process = process
        child.started_at = time.monotonic()
        child._watch = watch_exit(self.loop, process, lambda p: self._exited(child, p))

    def _exited(self, child: Supervised, process: BaseProcess) -> None:
        child._watch = None
        exitcode = process.exitcode
        child.exitcodes.append(exitcode)
        if self.on_exit is not None:
            self.on_exit(child, exitcode)
        if self._closed:
            return
        decision = child.tracker.exited(exitcode, getattr(process, "setup_failure", None),
                                        child.started_at, time.monotonic())
        if decision.action == "restart":
            log.warning("pollframe: %s (pid %s) ended (%s); restarting in %.3g s",
                        child.name, process.pid, decision.reason, decision.delay)
            child._pending = self.loop.call_later(decision.delay, self._restart, child)
        elif decision.action == "give_up":
            child.gave_up = GaveUp(f"gave up on {child.name}: {decision.reason}")
            log.error("pollframe: %s", child.gave_up)
            if self.on_give_up is not None:
                self.on_give_up(child, child.gave_up)

    def _restart(self, child: Supervised) -> None:
        self._start(child)
        if child.process is not None and child._watch is not None:
            child.restarts += 1
            if self.on_restart is not None:
                self.on_restart(child, child.process)
