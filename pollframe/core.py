"""Core: a PollLoop's state and its pass, kept out of the way of PollLoop subclasses.

``PollLoop`` is meant to be subclassed by applications, which set their own
attributes and define their own methods in ``__init__``. So the loop keeps
all of its state in one ``Core`` object behind one name-mangled attribute,
and the pass (timeout, poll, dispatch) runs as methods of the core: no name
an application picks can shadow it.

A backend is a ``Core`` subclass that overrides the four polling methods
(``changed``, ``poll``, ``touched``, ``close``) and says whether it is
``edge_triggered``; ``PollLoop.core_class`` picks it (``EpollLoop`` is
``PollLoop`` with ``core_class = EpollCore``).

Theory of a pass: compute how long to poll (zero when callbacks are
waiting, else until the nearest timer, at most a day), poll, then run what
is ready: I/O handlers first, then due timers, then the callbacks queued
before the pass began. Whatever leaves a pass early (``KeyboardInterrupt``,
an ``on_error`` that re-raises) leaves the state whole: undispatched events
are reported again, due timers not yet run go back into the queue, queued
callbacks stay queued.
"""
from __future__ import annotations

import errno
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple

import zmq
from zmq.backend import zmq_poll

from pollframe import trace
from pollframe.handles import Handle
from pollframe.stats import LoopStats, SocketStats, defined_at
from pollframe.timers import TimerQueue
from pollframe.units import FOREVER, poll_ms

if TYPE_CHECKING:
    from pollframe.fdset import FdSet
    from pollframe.loop import PollLoop

__all__ = ["Core"]

log = logging.getLogger("pollframe")

_POLLIN = int(zmq.POLLIN)
_POLLERR = int(zmq.POLLERR)
_ENOTSOCK = errno.ENOTSOCK
_perf = time.perf_counter


class Core:
    """The loop's state, its registrations and one pass; a backend overrides the polling methods."""

    #: Whether the backend needs ``touched(sock)`` after a send outside a socket's own callback.
    edge_triggered = False

    def __init__(self, loop: PollLoop, clock: Callable[[], float]) -> None:
        self.loop = loop
        self.clock = clock
        self.time: Callable[[], float] = loop.time  # the hook: a subclass may override time()
        self.report = loop.report
        self.errors = 0
        self.refused = 0
        self.timers = TimerQueue()
        self.ready: Deque[Handle] = deque()
        self.handlers: Dict[Any, Callable[[int], None]] = {}
        self.events: Dict[Any, int] = {}
        self.owned: Dict[Any, Any] = {}
        self.items: Optional[List[Tuple[Any, int]]] = None
        self.failing: Dict[Any, None] = {}  # keys whose last event carried POLLERR
        self.signals: Dict[int, Any] = {}  # signum -> the handler add_signal_handler replaced
        self.guest: Optional[FdSet] = None  # the descriptor fileno() handed out, once asked
        self.escaped: Optional[BaseException] = None  # raised by on_error: not to be reported again
        self.stats = LoopStats(loop.slow_callback)
        self.sockets: Dict[Any, SocketStats] = {}  # counters of registered sockets, for loop.stats()
        # Decided once: a loop made while tracing is on writes the trace out before it sleeps.
        self.recorder = trace.recorder()
        self.stopping = False
        self.running = False  # in run(), or in a pass of run_once()
        self.closed = False
        self.close_requested = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.handlers[self.wake_r] = self.drain_wakeups
        self.events[self.wake_r] = _POLLIN

    # ------------------------------------------------- backend (overridable)

    def changed(self, key: Any) -> None:
        """A registration changed: the cached poll item list is stale."""
        self.items = None
        if self.guest is not None:
            self.guest.update(key, self.events.get(key, 0))

    def poll(self, ms: int) -> List[Tuple[Any, int]]:
        """``zmq_poll`` over the cached item list, rebuilt only after a registration changed."""
        items = self.items
        if items is None:
            items = self.items = [(key, ev) for key, ev in self.events.items() if ev]
        try:
            return zmq_poll(items, ms)
        except zmq.ZMQError as exc:
            if exc.errno != _ENOTSOCK or not self.drop_closed_sockets():
                raise
            return []

    def touched(self, sock: zmq.Socket) -> None:
        """Nothing to do for ``zmq_poll``, which looks at every socket on every pass."""

    def may_hold_messages(self) -> bool:
        """Whether a pass now would find something to do (a zero-timeout poll)."""
        try:
            return bool(self.poll(0))
        except zmq.ZMQError:
            return True  # the pass will say what is wrong

    def fileno(self) -> int:
        """The registrations mirrored in an epoll set, made on first use (Linux)."""
        if self.guest is None:
            from pollframe.fdset import FdSet

            self.guest = FdSet()
            for key, events in self.events.items():
                self.guest.update(key, events)
        return self.guest.fileno()

    def close(self) -> None:
        """Release what the backend holds (the epoll set made by :meth:`fileno`); the loop closes the rest."""
        if self.guest is not None:
            self.guest.close()

    # ------------------------------------------------------------- the pass

    def run_once(self, timeout: Optional[float]) -> None:
        """One pass: poll for at most ``timeout`` s (None: until a timer is due), then run what is ready."""
        # Phase 1: how long may we sleep? Only callbacks queued before this
        # point run in this pass; those queued by this pass's callbacks wait.
        ready = self.ready
        queued = len(ready)
        timers = self.timers
        if timeout is None and not queued and not timers and not self.stopping:
            ms = FOREVER  # poll_timeout_ms's answer, without the call: only I/O can bring work
        else:
            ms = self.poll_timeout_ms(timeout)
        self.stats.passes += 1
        if ms and self.recorder is not None:
            self.recorder.flush()  # before sleeping: a process killed while idle keeps its trace
        # Phase 2: poll.
        events = self.poll(ms)
        # Phase 3: dispatch — the only place where callbacks are called.
        self.dispatch(events)
        if timers:
            self.run_timers()
        for _ in range(queued):
            handle = ready.popleft()
            if not handle.cancelled:
                self.call(handle)

    def quiet(self) -> bool:
        """Whether nothing but the next poll would run after this dispatch: no callback queued, no timer due.

        A reader that leaves a waiting message to the next poll asks first
        (see pollframe.readers, "Lone messages"), so that it never lets timers
        or callbacks run before a message that was already waiting.
        """
        if self.ready:
            return False
        timers = self.timers
        if not timers:
            return True
        deadline = timers.next_deadline()
        return deadline is None or deadline > self.time()

    def poll_timeout_ms(self, timeout: Optional[float]) -> int:
        """Milliseconds to poll, rounded up so that a due timer is never polled past early."""
        if self.ready or self.stopping:
            return 0
        deadline = self.timers.next_deadline()
        if deadline is not None:
            wait = max(deadline - self.time(), 0.0)
            timeout = wait if timeout is None else min(wait, timeout)
        if timeout is None:
            return FOREVER
        return poll_ms(timeout) if timeout > 0 else 0  # at most a day: a later timer is re-checked

    def dispatch(self, events: List[Tuple[Any, int]]) -> None:
        """Call the handler of each ``(key, revents)`` that ``poll`` returned, in order."""
        handlers = self.handlers
        failing = self.failing
        if failing:
            self.failing = {}
        # One clock read per handler call (a whole drain), not per message.
        stats = self.stats
        slow = stats.threshold
        started = _perf()
        for key, revents in events:
            handler = handlers.get(key)
            if handler is None:
                if isinstance(key, int):
                    self.drop_closed_sockets()
                continue
            if revents & _POLLERR:
                if key in failing:
                    self.drop_failing(key)
                    continue
                self.failing[key] = None
            try:
                handler(revents)
            except Exception as exc:
                if exc is self.escaped:
                    raise  # on_error re-raised it: it was reported once already
                self.io_failed(key, exc)
            now = _perf()
            took, started = now - started, now
            stats.calls += 1
            stats.call_time += took
            if took > slow:
                self.slow_handler(key, handler, took)

    def run_timers(self) -> None:
        """Run the timers due now; if the pass is left early, those not yet run go back in.

        The clock is read once per callback, as ``dispatch`` does for I/O
        handlers: each callback's time runs from the end of the one before.
        """
        timers = self.timers
        now = self.time()
        due = timers.pop_due(now)
        if not due:
            return
        stats = self.stats
        stats.timers_ran(now - due[0].when)  # the earliest is the latest
        slow = stats.threshold
        report = self.report
        started = 0
        began = _perf()
        try:
            for timer in due:
                started += 1
                if timer.cancelled or timer.when > now:
                    continue  # cancelled (or a ticket reset) by an earlier callback of this same batch
                callback, args = timer.callback, timer.args
                if timer.interval is None:
                    timer.callback = timer.args = None  # a one-shot lets go of them first
                    try:
                        callback(*args)  # type: ignore[misc]
                    except Exception as exc:
                        report(exc, f"callback {safe_repr(callback)}")
                else:
                    try:
                        callback(*args)  # type: ignore[misc]
                    except Exception as exc:
                        report(exc, f"callback {safe_repr(callback)}")
                    finally:
                        timers.reschedule(timer, self.time())
                ended = _perf()
                took, began = ended - began, ended
                stats.calls += 1
                stats.call_time += took
                if took > slow:
                    self.slow_callback(callback, took)
        finally:
            if started < len(due):
                timers.restore(due[started:])  # the pass was left early: they run in the next

    def call(self, handle: Handle) -> None:
        """Run a one-shot callback; its handle lets go of the callback and its arguments first."""
        callback, args = handle.callback, handle.args
        handle.callback = handle.args = None
        began = _perf()
        try:
            callback(*args)  # type: ignore[misc]
        except Exception as exc:
            self.report(exc, f"callback {safe_repr(callback)}")
        self.timed(callback, _perf() - began)

    def timed(self, callback: Any, took: float) -> None:
        """Count a callback that ran for ``took`` seconds; a slow one is reported (see pollframe.stats)."""
        stats = self.stats
        stats.calls += 1
        stats.call_time += took
        if took > stats.threshold:
            self.slow_callback(callback, took)

    def slow_callback(self, callback: Any, took: float) -> None:
        """A callback blocked the loop for ``took`` seconds: counted as slow, warned about once."""
        self.stats.took(took, lambda: f"callback {safe_repr(callback)} (defined at {defined_at(callback)})",
                        getattr(callback, "__func__", callback))

    def slow_handler(self, key: Any, handler: Any, took: float) -> None:
        """An I/O handler (a drain, or a descriptor's callback) blocked the loop for ``took`` seconds."""
        counts = self.sockets.get(key)
        if counts is not None:
            what = lambda: counts.describe()  # noqa: E731
            calls = counts.last_drain
        else:
            what, calls = (lambda: f"handler {safe_repr(handler)} for {safe_repr(key)}"), 1  # noqa: E731
        self.stats.took(took, what, handler, calls)

    def io_failed(self, key: Any, exc: BaseException) -> None:
        """A handler's own read failed (not its callback): a closed socket is dropped, not retried."""
        if isinstance(key, zmq.Socket) and key.closed:
            self.drop_closed_sockets()
            return
        self.report(exc, f"I/O handler for {safe_repr(key)}")

    # ----------------------------------------------------- registrations

    def unregister(self, key: Any) -> None:
        """Forget ``key``'s handler, events and ownership; the wake-up pipe is never unregistered."""
        if key == self.wake_r:
            return
        self.sockets.pop(key, None)
        if self.handlers.pop(key, None) is not None:
            del self.events[key]
            self.owned.pop(key, None)
            self.failing.pop(key, None)
            self.changed(key)

    def drop_closed_sockets(self) -> bool:
        """Unregister sockets closed while registered; True when there were any.

        ``zmq_poll`` polls a closed pyzmq socket as file descriptor 0 (or
        fails with ``ENOTSOCK`` when it was closed through a shadow), so an
        event on an unregistered descriptor is a sign to look for them.
        Close a socket through ``unregister`` or ``Stream.close`` instead.
        """
        closed = [key for key in self.handlers if isinstance(key, zmq.Socket) and key.closed]
        for key in closed:
            self.unregister(key)
            log.warning("pollframe: %s was closed while registered; unregistered it", safe_repr(key))
        return bool(closed)

    def drop_failing(self, key: Any) -> None:
        """A target that reported an error twice in a row is removed, not spun on (as CZMQ's zloop)."""
        self.unregister(key)
        log.warning("pollframe: %s reported an error (POLLERR) twice in a row; unregistered it",
                    safe_repr(key))

    def drain_wakeups(self, revents: int) -> None:
        """Empty the wake-up pipe: its only job was to end the poll."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def wake(self) -> None:
        """End a sleeping poll now; safe from any thread and from signal handlers."""
        try:
            os.write(self.wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pipe already guarantees a wake-up; one without a reader has no loop to wake


def safe_repr(obj: Any) -> str:
    """``repr(obj)``, or a plain one when that raises: an error report must never fail itself."""
    try:
        return repr(obj)
    except Exception:
        return object.__repr__(obj)
