"""Supervision: a parent's loop watches its ZmqProcess children and starts them again.

Theory of operation
-------------------
Three layers, as everywhere in pollframe:

- :class:`RestartPolicy` and :class:`RestartTracker` are the logic, sans-io:
  told that a child exited (its exit code, why its start failed if it did,
  since when it was up, the time now) the tracker answers *restart after
  this many seconds*, *leave it* or *give up*, by the policy: restart
  ``never``, ``on_failure`` (a non-zero exit code, a ``setup()`` that
  raised, a start never ready within ``ready_timeout``) or ``always``; an
  exponential backoff from ``backoff`` doubling up to ``backoff_max``, back
  to the start once a child stayed up ``reset_after`` seconds *after it was
  ready*; at most ``max_restarts`` restarts within any ``window`` seconds,
  after which it gives up. Tested on numbers, no processes.
- :func:`watch_exit` and :func:`watch_ready` are the loop adapters.
  ``watch_exit`` registers the child's ``sentinel`` (readable when the child
  exits) once, and when it fires unregisters it, joins the child and calls
  back. A sentinel watched by hand stays readable for good, so a callback
  that does not unregister it is called on every pass (183,272 times in
  0.5 s). ``watch_ready`` registers the parent's end of a ``ZmqProcess``'s
  control pipe, on which the child says *ready* (with what it bound) once
  ``setup()`` is done; it reads that word without waiting and calls back on
  the next pass, also when someone else (``wait_ready()``) read the word
  first. A process that has no such pipe (a plain ``multiprocessing.Process``)
  cannot say: it counts as ready once started.
- :class:`Supervisor` joins them: ``add(factory)`` starts ``factory()`` (a
  *new* process object each time: a process can be started only once),
  watches its readiness and its exit, and on its exit asks the tracker,
  then starts the next one after the delay on a loop timer. A start that
  is not ready within ``ready_timeout`` gets ``SIGTERM``, then ``SIGKILL``
  after ``stop_timeout``, and its exit counts as a failure. It never blocks
  the loop except in :meth:`Supervisor.close`, which stops every child
  (``children.stop_all``).

The callbacks, in the order they come for each process of a child:
``on_start(child, process)`` when it was started (its pid is known);
``on_ready(child, process)`` when it reported ready (``child.endpoints``
then holds what it bound); ``on_restart(child, process)`` right after
``on_ready`` when the process replaces one that exited: the child is back;
``on_exit(child, exitcode)`` when it ended (after ``on_ready`` if it was
ready, however quickly it died); ``on_give_up(child, error)`` after the
last exit, once the supervisor gave up. So ``child.restarts`` counts
replacements that became ready, and ``child.starts`` every process started.

A ``ZmqProcess`` that supervises makes its supervisor with
:meth:`ZmqProcess.supervise <pollframe.process.ZmqProcess.supervise>`; its
shutdown then stops restarting before it stops the children.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any, Callable, Deque, Optional

from pollframe import children
from pollframe.loop import PollLoop

__all__ = [
    "ExitWatch", "GaveUp", "ReadyWatch", "RestartPolicy", "RestartTracker", "Supervised", "Supervisor",
    "watch_exit", "watch_ready",
]

log = logging.getLogger("pollframe")

_POLICIES = ("never", "on_failure", "always")


class GaveUp(RuntimeError):
    """A supervised child failed too often (``max_restarts`` in ``window``) and is not started again."""


# ------------------------------------------------------------------ the logic


@dataclass(frozen=True)
class RestartPolicy:
    """When and how soon a supervised child is started again; times in seconds.

    ``ready_timeout`` (None: no limit) bounds how long a start may take to
    report ready; one that takes longer is stopped and counts as a failure.
    It applies to children that can say they are ready (``ZmqProcess``).
    """

    restart: str = "on_failure"
    backoff: float = 0.1
    backoff_max: float = 5.0
    reset_after: float = 10.0
    max_restarts: int = 5
    window: float = 60.0
    ready_timeout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.restart not in _POLICIES:
            raise ValueError(f"restart must be one of {', '.join(_POLICIES)}, not {self.restart!r}")
        if not 0 <= self.backoff <= self.backoff_max:
            raise ValueError(f"need 0 <= backoff <= backoff_max, not {self.backoff!r}, {self.backoff_max!r}")
        if self.max_restarts < 0 or not self.window > 0:
            raise ValueError("max_restarts must be >= 0 and window > 0")
        if self.ready_timeout is not None and not self.ready_timeout > 0:
            raise ValueError(f"ready_timeout must be None or > 0, not {self.ready_timeout!r}")


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

    def exited(self, exitcode: Optional[int], failure: Optional[str], up_since: Optional[float], now: float
               ) -> Decision:
        """The decision for an exit at ``now``.

        ``failure`` says why the start failed whatever the exit code (its
        ``setup()`` raised, it was not ready in time), or is None.
        ``up_since`` is when the process became ready (one that cannot say:
        when it started); None if it never did, which never starts the
        backoff again: a child that hangs in ``setup()`` for ``reset_after``
        seconds has not stayed *up*.
        """
        policy = self.policy
        failed = exitcode != 0 or failure is not None
        if up_since is not None and now - up_since >= policy.reset_after:
            self.failures_in_a_row = 0
        if failed:
            self.failures_in_a_row += 1
        why = failure or f"exit code {exitcode}"
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


# ------------------------------------------------------------------ the loop adapters


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


class ReadyWatch:
    """The handle :func:`watch_ready` returns.

    ``reports`` tells whether the process can say it is ready (a
    ``ZmqProcess``) or counts as ready once started. ``flush()`` makes a
    readiness already read call back now instead of on the next pass;
    ``cancel()`` stops watching; ``done`` once it called back or was cancelled.
    """

    def __init__(self, loop: PollLoop, process: BaseProcess, callback: Callable[[Any], Any]) -> None:
        self._loop = loop
        self._process = process
        self._callback = callback
        self._fd: Optional[int] = None
        self._soon: Any = None  # the call_soon handle of a readiness waiting for the next pass
        self.done = False
        fileno: Optional[Callable[[], Optional[int]]] = getattr(process, "ready_fileno", None)
        self.reports = fileno is not None
        if fileno is None:
            self._due()
            return
        process._ready_listener = self._word_read  # type: ignore[attr-defined]  # a ZmqProcess
        fd = fileno()
        if fd is None:  # the word is read already (or the pipe is gone)
            self._word_read()
        else:
            self._fd = fd
            loop.register(fd, self._readable)

    def _readable(self, fd: int, events: int) -> None:
        self._unregister()  # one word comes this way, then only the end of file
        self._process.poll_ready()  # type: ignore[attr-defined]  # tells _word_read

    def _word_read(self) -> None:
        """The process read the child's first word (whoever asked), or is closing the pipe."""
        self._unregister()
        if getattr(self._process, "reported_ready", False):
            self._due()

    def _due(self) -> None:
        if not self.done and self._soon is None:
            self._soon = self._loop.call_soon(self._fire)

    def _fire(self) -> None:
        self._soon = None
        if not self.done:
            self.cancel()
            self._callback(self._process)

    def flush(self) -> None:
        """Call back now if the readiness is known and waits for the next pass."""
        if self._soon is not None:
            self._soon.cancel()
            self._fire()

    def cancel(self) -> None:
        """Stop watching; a readiness not yet called back is not."""
        self.done = True
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._unregister()
        if getattr(self._process, "_ready_listener", None) == self._word_read:
            self._process._ready_listener = None  # type: ignore[attr-defined]

    def _unregister(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and not self._loop.closed:
            self._loop.unregister(fd)


def watch_ready(loop: PollLoop, process: BaseProcess, callback: Callable[[Any], Any]) -> ReadyWatch:
    """Call ``callback(process)`` on ``loop`` once, on the pass after the started ``process`` is ready.

    For a ``ZmqProcess``: when its child reported ready after ``setup()``
    (``process.endpoints`` holds what it bound), read on the loop from the
    control pipe without waiting, or by whoever read it first
    (``wait_ready()``, ``join()``). Never for a child whose ``setup()``
    failed or that died first. Any other process cannot say: the callback
    comes on the next pass (``ReadyWatch.reports`` is False).
    """
    return ReadyWatch(loop, process, callback)


class Supervised:
    """One supervised child: its current process, its state, how often it was started and restarted."""

    def __init__(self, name: str, factory: Callable[[], BaseProcess], policy: RestartPolicy) -> None:
        self.name = name
        self.factory = factory
        self.policy = policy
        self.tracker = RestartTracker(policy)
        #: The process now running (or the last one, once it exited and is not restarted).
        self.process: Optional[BaseProcess] = None
        #: Processes started (the first one included).
        self.starts = 0
        #: Processes started after an exit that became ready: how often the child came back.
        self.restarts = 0
        #: True from its process's readiness (``on_ready``) until its exit.
        self.ready = False
        #: What the ready process bound, as ``ZmqProcess.endpoints`` (kept after its exit).
        self.endpoints: list[str] = []
        #: Exit codes of the processes that ended, in order.
        self.exitcodes: list[Optional[int]] = []
        #: Set when the supervisor gave up on it.
        self.gave_up: Optional[GaveUp] = None
        #: On the loop's clock: when the current process was started, and when it was ready.
        self.started_at = 0.0
        self.ready_at: Optional[float] = None
        self._failure: Optional[str] = None  # why the current start failed, the supervisor's verdict
        self._watch: Optional[ExitWatch] = None
        self._ready_watch: Optional[ReadyWatch] = None
        self._timers: list[Any] = []  # the ready timeout, the SIGKILL after it
        self._pending: Any = None  # the timer of a restart waiting for its backoff

    @property
    def running(self) -> bool:
        """True while its process runs and is watched (not between an exit and its restart)."""
        return self.process is not None and self.process.exitcode is None and self._watch is not None

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def __repr__(self) -> str:
        pid = None if self.process is None else self.process.pid
        state = "ready" if self.ready else "running" if self.running else "down"
        return f"<Supervised {self.name} pid={pid} {state} starts={self.starts} restarts={self.restarts}>"


class Supervisor:
    """Keeps children running on ``loop`` by their :class:`RestartPolicy`.

    The callbacks are called on the loop (``child`` is the
    :class:`Supervised`), in the order the module's docstring gives:
    ``on_start(child, process)``, ``on_ready(child, process)``,
    ``on_restart(child, process)`` (a replacement is ready),
    ``on_exit(child, exitcode)``, ``on_give_up(child, error)``. Giving up
    is also logged as an error, with the reason (the child's own
    ``setup()`` error when it said one, or that it was not ready in time).
    ``stop_timeout`` is how long a start that missed its ``ready_timeout``
    has after ``SIGTERM`` before ``SIGKILL``, and :meth:`close`'s default.
    """

    def __init__(
        self,
        loop: PollLoop,
        *,
        on_exit: Optional[Callable[[Supervised, Optional[int]], Any]] = None,
        on_restart: Optional[Callable[[Supervised, BaseProcess], Any]] = None,
        on_give_up: Optional[Callable[[Supervised, GaveUp], Any]] = None,
        on_start: Optional[Callable[[Supervised, BaseProcess], Any]] = None,
        on_ready: Optional[Callable[[Supervised, BaseProcess], Any]] = None,
        stop_timeout: float = 1.0,
    ) -> None:
        self.loop = loop
        self.on_exit, self.on_restart, self.on_give_up = on_exit, on_restart, on_give_up
        self.on_start, self.on_ready = on_start, on_ready
        self.stop_timeout = stop_timeout
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

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop restarting and stop every running child (all at once: ask, SIGTERM, SIGKILL).

        Each step waits ``timeout`` seconds at most (default :attr:`stop_timeout`).
        """
        self.stop_restarting()
        running = [child.process for child in self.children if child.running]
        for child in self.children:
            child._cancel_timers()
            if child._ready_watch is not None:
                child._ready_watch.cancel()
                child._ready_watch = None
            if child._watch is not None:
                child._watch.cancel()
                child._watch = None
            child.ready = False
        stop_timeout = self.stop_timeout if timeout is None else timeout
        children.stop_all([p for p in running if p is not None], stop_timeout)

    # ------------------------------------------------------------ internals

    def _start(self, child: Supervised) -> None:
        child._pending = None
        if self._closed:
            return
        process = child.factory()
        process.start()
        child.process = process
        child.starts += 1
        child.started_at = self.loop.time()
        child.ready, child.ready_at, child._failure = False, None, None
        child._watch = watch_exit(self.loop, process, lambda p: self._exited(child, p))
        child._ready_watch = watch = watch_ready(self.loop, process, lambda p: self._ready(child, p))
        timeout = child.policy.ready_timeout
        if timeout is not None and watch.reports:
            child._timers.append(self.loop.call_later(timeout, self._not_ready, child, process))
        if self.on_start is not None:
            self.on_start(child, process)

    def _ready(self, child: Supervised, process: BaseProcess) -> None:
        child._ready_watch = None
        if process is not child.process or child._failure is not None:
            return  # ready too late: the start was failed already
        child._cancel_timers()
        child.ready = True
        watched = getattr(process, "ready_fileno", None) is not None
        child.ready_at = self.loop.time() if watched else child.started_at
        child.endpoints = list(getattr(process, "endpoints", []))
        if self.on_ready is not None:
            self.on_ready(child, process)
        if child.starts > 1:
            child.restarts += 1
            if self.on_restart is not None:
                self.on_restart(child, process)

    def _not_ready(self, child: Supervised, process: BaseProcess) -> None:
        """The ready timeout: the start failed; SIGTERM now, SIGKILL after ``stop_timeout``."""
        child._timers.clear()
        if process is not child.process or child.ready or process.exitcode is not None:
            return
        child._failure = f"not ready within {child.policy.ready_timeout:g} s"
        if child._ready_watch is not None:
            child._ready_watch.cancel()
            child._ready_watch = None
        log.warning("pollframe: %s (pid %s) was %s; stopping it", child.name, process.pid, child._failure)
        process.terminate()
        child._timers.append(self.loop.call_later(self.stop_timeout, _kill, process))

    def _exited(self, child: Supervised, process: BaseProcess) -> None:
        child._watch = None
        if child._ready_watch is not None:
            child._ready_watch.flush()  # ready, then died before the next pass: on_ready first
            if child._ready_watch is not None:
                child._ready_watch.cancel()
                child._ready_watch = None
        child._cancel_timers()
        child.ready = False
        exitcode = process.exitcode
        child.exitcodes.append(exitcode)
        if self.on_exit is not None:
            self.on_exit(child, exitcode)
        if self._closed:
            return
        failure = child._failure
        setup_failure = getattr(process, "setup_failure", None)
        if failure is None and setup_failure is not None:
            failure = f"setup() failed: {setup_failure}"
        decision = child.tracker.exited(exitcode, failure, child.ready_at, self.loop.time())
        if decision.action == "restart":
            log.warning("pollframe: %s (pid %s) ended (%s); restarting in %.3g s",
                        child.name, process.pid, decision.reason, decision.delay)
            child._pending = self.loop.call_later(decision.delay, self._start, child)
        elif decision.action == "give_up":
            child.gave_up = GaveUp(f"gave up on {child.name}: {decision.reason}")
            log.error("pollframe: %s", child.gave_up)
            if self.on_give_up is not None:
                self.on_give_up(child, child.gave_up)


def _kill(process: BaseProcess) -> None:
    if process.exitcode is None:
        process.kill()
