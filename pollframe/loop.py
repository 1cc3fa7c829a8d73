"""PollLoop: one event loop per process over ``zmq_poll``.

Theory of operation
-------------------
A pass of the loop has three phases: compute how long to poll (zero when
callbacks are waiting, else until the nearest timer), poll every registered
socket and file descriptor, then run what is ready — I/O handlers first,
then due timers, then the callbacks that were queued before the pass began.
A callback queued with ``call_soon`` during a pass, and a timer made by a
timer callback, run in a later pass, so a callback that reschedules itself
cannot starve I/O.

Reading drains: on ``POLLIN`` a socket is read with ``NOBLOCK`` until
``EAGAIN`` or ``max_drain`` messages, so one poll pays for many messages and
one busy socket cannot starve the others (``zmq_poll`` is level-triggered,
so whatever is left is reported again on the next pass). REQ and REP
sockets can hold at most one message at a time, so they are never drained:
the second read would only buy an ``EAGAIN``.

The poll item list is built once per change of registration, not per
pass. Signals: pyzmq's ``zmq_poll`` restarts itself after ``EINTR`` with the
elapsed time rounded down to whole seconds, so a signal storm can stretch a
100 ms poll to seconds. While ``run()`` runs in the main thread the loop
points ``signal.set_wakeup_fd`` at its own wake-up pipe, which is part of
every poll: a signal makes the restarted poll return at once.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
import types
import weakref
from typing import Any, Callable, Coroutine, Deque, Generic, Optional, Sequence, Type, TypeVar, Union

import zmq

from pollframe import tasks, trace
from pollframe.core import Core, safe_repr
from pollframe.errors import worth_logging
from pollframe.handles import Handle
from pollframe.readers import make_reader
from pollframe.stats import SLOW_CALLBACK, SocketStats, registered_at
from pollframe.tasks import Task, Waiter
from pollframe.tickets import Ticket
from pollframe.timers import Timer, TimerQueue

__all__ = ["Handle", "PollLoop", "Timer"]

log = logging.getLogger("pollframe")

#: A file object with ``fileno()`` or a plain file descriptor.
FileLike = Union[int, Any]
#: ``handler(revents)``: the low-level handler that ``watch`` registers.
EventHandler = Callable[[int], None]
ErrorHandler = Callable[[BaseException, str], None]

# Plain ints: pyzmq's constants are IntFlag members, and `&` on one runs enum
# code in Python (over a microsecond) where an int costs a few nanoseconds.
_POLLERR = int(zmq.POLLERR)
_UNDRAINABLE = frozenset({zmq.REQ, zmq.REP})
_UNSET: Any = object()
_FunctionType = types.FunctionType
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


T = TypeVar("T")


class _Unset(Generic[T]):
    """A class-level stand-in for one of the loop's private attributes, until ``__init__`` sets it.

    A subclass whose ``__init__`` forgot ``super().__init__()`` gets an error
    that says so. Costs nothing once set: the instance's value is found first
    (unlike a ``__getattr__`` hook, which would slow every attribute access).
    """

    def __get__(self, obj: Any, owner: Any = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        raise RuntimeError(
            f"{type(obj).__name__} did not call super().__init__() in its __init__: "
            "the PollLoop is not initialised"
        )


class PollLoop:
    """An event loop over ``zmq_poll``, with timers and thread-safe wake-up; meant to be subclassed.

    The loop owns no ``zmq.Context``. Exceptions raised by callbacks go to
    :meth:`on_error` (a hook: override it, or pass ``on_error=``), which by
    default logs them with their traceback on the ``pollframe`` logger;
    they are counted in ``errors`` and the loop goes on. ``clock`` must be
    monotonic (tests pass a fake); a subclass may override :meth:`time`
    instead.

    All of the loop's state lives in one private object, so a subclass may
    use any attribute or method name that is not part of the public API
    (see "Subclassing PollLoop" in the README).
    """

    #: Most messages read from one socket per wake-up before the others get a turn.
    max_drain: int = 256
    #: Seconds one dispatch (a drain, a timer) may block the loop before it is logged as slow.
    slow_callback: float = SLOW_CALLBACK
    #: Low level: the class holding the state and running the pass (EpollLoop: EpollCore).
    core_class: Type[Core] = Core

    # Set by __init__; until then each says that super().__init__() was not called.
    __core: _Unset[Core] = _Unset()
    __ready: _Unset[Deque[Handle]] = _Unset()
    __timers: _Unset[TimerQueue] = _Unset()
    __on_error: _Unset[Optional[ErrorHandler]] = _Unset()
    __clock: _Unset[Callable[[], float]] = _Unset()
    __now: _Unset[Callable[[], float]] = _Unset()

    def __init__(
        self,
        on_error: Optional[ErrorHandler] = None,
        *,
        max_drain: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_drain is not None:
            if max_drain < 1:
                raise ValueError(f"max_drain must be at least 1, not {max_drain}")
            self.max_drain = max_drain
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, not {on_error!r}")
        self.__on_error = on_error
        self.__clock = clock
        # What call_later reads: the clock itself unless a subclass overrides the time() hook.
        self.__now = clock if type(self).time is PollLoop.time else self.time
        self.__core = core = self.core_class(self, clock)
        # The two queues every call_* touches, one attribute away (close() swaps in ones that refuse).
        self.__ready = core.ready
        self.__timers = core.timers

    # ------------------------------------------------------------- hooks

    def on_error(self, exc: BaseException, where: str) -> None:
        """Hook: the policy for an exception a callback raised in ``where``; returns None.

        The default logs it with its traceback (or calls the ``on_error``
        given to the constructor). Override it to change the policy; one
        that re-raises makes errors fatal (``run()`` raises), which tests
        may want. It is called once per error, after ``errors`` counted it.
        """
        if self.__on_error is not None:
            self.__on_error(exc, where)
        else:
            log.error("pollframe: exception in %s", where, exc_info=exc)

    def time(self) -> float:
        """Hook: the loop's clock, monotonic seconds (``time.monotonic`` unless a clock was given)."""
        return self.__clock()

    # --------------------------------------------------------------- I/O

    def register(
        self,
        target: Union[zmq.Socket, FileLike],
        callback: Callable[..., Any],
        events: int = zmq.POLLIN,
        *,
        multipart: bool = True,
        own: bool = False,
        properties: Sequence[str] = (),
        max_msg_size: Optional[int] = None,
        max_frames: Optional[int] = None,
    ) -> None:
        """Call ``callback`` for what arrives on ``target``.

        For a zmq socket, ``callback(frames)`` gets the frames of each
        multipart message as a list of bytes; with ``multipart=False`` it
        gets each frame as ``bytes`` — the fast path, only for protocols
        where every message is one frame (a multipart message would arrive
        as separate calls). For a file object or descriptor,
        ``callback(fd, revents)`` is called when ``events`` are ready.
        With ``own=True``, ``close()`` closes the socket too.
        Registering again replaces the earlier callback.

        ``properties`` (e.g. ``("User-Id", "Peer-Address")``) makes the call
        ``callback(frames, props)``, ``props`` mapping each name to the first
        frame's libzmq property (None where it has none). ``max_msg_size``
        (bytes, the whole message) and ``max_frames`` refuse bigger messages
        before any copy: they are discarded, counted in ``refused`` and
        logged in a throttled line, and the callback is not called.
        """
        if isinstance(target, zmq.Socket):
            if events != zmq.POLLIN:
                raise ValueError("register() reads zmq sockets; use watch() for other events")
            handler = self.reader(target, callback, multipart=multipart, properties=properties,
                                  max_msg_size=max_msg_size, max_frames=max_frames)
        else:
            _check_callable(callback)
            handler = self.__core_fd_handler(_fileno(target), callback)
        self.watch(target, handler, events, own=own)

    def unregister(self, target: Union[zmq.Socket, FileLike]) -> None:
        """Stop watching ``target``; safe from any callback, even in the same pass.

        A callback of ``target`` whose event was already polled in this pass
        is not called afterwards. Unregistering an unknown target is a no-op.
        """
        self.__core.unregister(_key_of(target))

    # ------------------------------------------------------- low-level layer

    @property
    def edge_triggered(self) -> bool:
        """Low level: whether a socket used outside its own callback must be passed to ``touched``."""
        return self.__core.edge_triggered

    def watch(
        self, target: Union[zmq.Socket, FileLike], handler: EventHandler, events: int, *, own: bool = False
    ) -> None:
        """Low level: call ``handler(revents)`` whenever ``events`` are ready on ``target``.

        A zero ``events`` keeps the registration but leaves it out of polls.
        """
        core = self.__core
        if core.closed:
            raise RuntimeError("this PollLoop is closed")
        _check_callable(handler)
        key = _key_of(target)
        core.handlers[key] = handler
        core.events[key] = int(events)
        if own:
            core.owned[key] = target
        core.changed(key)

    def set_events(self, target: Union[zmq.Socket, FileLike], events: int) -> None:
        """Low level: change which events a registered target is polled for (0: none for now)."""
        core = self.__core
        key = _key_of(target)
        if key not in core.handlers:
            raise KeyError(f"{target!r} is not registered on this loop")
        if core.events[key] != events:
            core.events[key] = int(events)
            core.changed(key)

    def touched(self, sock: zmq.Socket) -> None:
        """Low level: ``sock`` was sent on or read outside its own callback.

        Nothing to do for ``zmq_poll``, which looks at every socket on every
        pass; an edge-triggered loop (``edge_triggered``) re-checks the
        socket on the next pass. Streams call this after each send.
        """
        self.__core.touched(sock)

    def is_registered(self, target: Union[zmq.Socket, FileLike]) -> bool:
        """Low level: whether ``target`` has a handler on this loop."""
        return _key_of(target) in self.__core.handlers

    def reader(
        self,
        sock: zmq.Socket,
        callback: Callable[..., Any],
        *,
        multipart: bool = True,
        owner: Optional[EventHandler] = None,
        properties: Sequence[str] = (),
        max_msg_size: Optional[int] = None,
        max_frames: Optional[int] = None,
        traced: bool = True,
    ) -> EventHandler:
        """Low level: build the draining ``handler(revents)`` that ``register`` installs for ``sock``.

        The drain stops as soon as ``owner`` (by default the reader itself)
        is no longer the handler registered for ``sock``, so a callback that
        unregisters, re-registers or closes its socket ends it. A Stream
        wraps the reader in its own handler and passes that as ``owner``.
        ``properties``, ``max_msg_size`` and ``max_frames`` as for ``register``.
        ``traced=False`` keeps a socket that is pollframe's own plumbing (a
        Stream's monitor) out of the tracer's record of the conversation.
        """
        _check_callable(callback)
        check_blocking_socket(sock)
        for name, value in (("max_msg_size", max_msg_size), ("max_frames", max_frames)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None: no limit), not {value!r}")
        if isinstance(properties, str):
            raise TypeError(f"properties is a sequence of names, not the string {properties!r}")
        core = self.__core
        counts = self.socket_stats(sock)
        counts.where = registered_at()
        counts.callback = safe_repr(callback)
        recorder = trace.recorder()
        if recorder is not None and traced:  # decided here, once: an untraced reader is the plain one
            callback = recorder.channel_for(sock).receiving(callback, multipart=multipart)
        return make_reader(
            sock, callback,
            multipart=multipart,
            limit=1 if sock.type in _UNDRAINABLE else self.max_drain,
            report=core.report,
            where=lambda: f"receive callback {safe_repr(callback)} for {safe_repr(sock)}",
            handlers=core.handlers,
            owner=owner,
            properties=properties,
            max_msg_size=max_msg_size,
            max_frames=max_frames,
            refused=self.__refused,
            counts=counts,
            quiet=core.quiet,
        )

    def socket_stats(self, sock: zmq.Socket) -> SocketStats:
        """Low level: the counters ``stats()`` shows for ``sock``, made on first use.

        Readers count what they receive into it; a Stream, what it sends.
        They are dropped when ``sock`` is unregistered.
        """
        sockets = self.__core.sockets
        counts = sockets.get(sock)
        if counts is None:
            counts = sockets[sock] = SocketStats(trace.socket_type(sock), trace.last_endpoint(sock))
        return counts

    def stats(self) -> dict:
        """This loop's counters now, as a JSON-able dict (see :mod:`pollframe.stats`).

        ``loop``: passes, errors, callbacks (one per I/O handler call -- a
        whole drain -- and per timer or ``call_soon`` callback) and the
        seconds spent in them, the slowest dispatch over the slow-callback
        threshold and what it was, timer lateness. ``sockets``: per
        registered socket, messages and bytes in and out, its Stream's
        queue depth and high-water mark, drops and unroutable messages.
        """
        core = self.__core
        return core.stats.snapshot(core.errors, list(core.sockets.values()))

    def report(self, exc: BaseException, where: str) -> None:
        """Low level: count ``exc``, raised in ``where``, and hand it to ``on_error`` once."""
        core = self.__core
        core.errors += 1
        try:
            self.on_error(exc, where)
        except BaseException as raised:
            core.escaped = raised  # leaves the pass; nobody on the way reports it again
            raise

    # ---------------------------------------------------------- timers

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the next pass; returns a :class:`Handle` to cancel it."""
        if type(callback) is not _FunctionType or callback.__code__.co_flags & _CO_COROUTINE:
            _check_callable(callback)  # the fast path above: a plain function, not an async def
        handle = Handle(callback, args)
        self.__ready.append(handle)  # a closed loop's queue refuses it
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Handle:
        """Like ``call_soon``, from any thread: wakes a sleeping poll at once."""
        handle = self.call_soon(callback, *args)
        self.__core.wake()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` once, ``delay`` seconds from now."""
        if type(callback) is not _FunctionType or callback.__code__.co_flags & _CO_COROUTINE:
            _check_callable(callback)  # the fast path above: a plain function, not an async def
        return self.__timers.call_later(self.__now(), delay, callback, args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` once at ``when``, on the ``time()`` clock."""
        if type(callback) is not _FunctionType or callback.__code__.co_flags & _CO_COROUTINE:
            _check_callable(callback)  # the fast path above: a plain function, not an async def
        return self.__timers.call_at(when, callback, args)

    def call_every(self, interval: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` every ``interval`` seconds, first one interval from now.

        The schedule survives the callback raising; periods missed because
        the loop was busy are skipped, not run in a burst.
        """
        _check_callable(callback)
        if not 0 < interval < math.inf:
            raise ValueError(f"call_every needs a positive, finite interval, not {interval!r}")
        return self.__timers.call_at(self.__now() + interval, callback, args, interval)

    def ticket(self, delay: float, callback: Callable[..., Any], *args: Any) -> Ticket:
        """Run ``callback(*args)`` once, ``delay`` seconds from now, unless ``reset()`` pushes it back.

        ``ticket.reset()`` makes the deadline ``time() + delay`` again, in
        O(1) however many tickets are live (CZMQ's ``zloop_ticket``): the
        per-peer timeout that every message from the peer resets. A ticket
        that fired is armed again by ``reset()``; ``cancel()`` ends it.
        """
        _check_callable(callback)
        now = self.__now
        return self.__timers.ticket(now(), delay, callback, args, now)

    # --------------------------------------------------------- running

    def run(self) -> None:
        """Run passes until ``stop()``. Signals wake the poll when run in the main thread.

        A ``stop()`` that comes before ``run()`` makes it return at once.
        """
        core = self.__core
        if core.closed:
            raise RuntimeError("this PollLoop is closed")
        if core.running:
            raise RuntimeError("this PollLoop is already running")
        core.running = True
        old_wakeup_fd = self.__install_signal_wakeup()
        try:
            run_once = core.run_once
            while not core.stopping:
                run_once(None)
        finally:
            core.stopping = False
            core.running = False
            core.escaped = None
            if old_wakeup_fd is not None:
                signal.set_wakeup_fd(old_wakeup_fd)
            if core.close_requested:
                self.close()

    def run_once(self, timeout: Optional[float] = None) -> None:
        """One poll and dispatch, for driving the loop from a foreign one.

        ``timeout`` is the most seconds to wait for an event (None: until
        one comes or a timer is due; 0: do not wait; at most a day). A
        ``stop()`` seen here ends only this pass: it is not kept for a later
        ``run()``. Calling it from a callback (inside a pass) is refused.
        """
        core = self.__core
        if core.closed or core.running:
            self.__refuse_pass()
        core.running = True
        try:
            core.run_once(timeout)
        finally:
            core.running = False
            core.stopping = False
            if core.escaped is not None:
                core.escaped = None
            if core.close_requested:
                self.close()

    def next_deadline(self) -> Optional[float]:
        """When the loop next needs a pass, on ``time()``; None when only I/O can wake it.

        ``time()`` itself ("now") while a pass is already due: callbacks are
        queued, a stop is pending, or a socket may hold unread messages
        (zmq's descriptors are edge-triggered, so for those no descriptor
        would say so). Else the deadline of the earliest live timer.
        """
        core = self.__core
        if core.closed:
            return None
        if core.ready or core.stopping or core.may_hold_messages():
            return self.time()
        return core.timers.next_deadline()

    def fileno(self) -> int:
        """A descriptor that becomes readable whenever the loop has I/O or a wake-up to handle.

        For a foreign event loop: watch it for readability, and call
        ``run_once(0)`` when it is readable or ``next_deadline()`` has come
        (ask ``next_deadline()`` again after each pass and after using a
        socket outside the loop's callbacks). Linux (epoll).
        """
        return self.__core.fileno()

    def stop(self) -> None:
        """End ``run()`` after the current pass; safe from signal handlers and other threads."""
        core = self.__core
        core.stopping = True
        core.wake()

    def close(self) -> None:
        """Unregister everything, close the sockets the loop owns, and release the wake-up pipe.

        Called from a callback while ``run()`` runs, it stops the loop and
        closes it when ``run()`` returns.
        """
        core = self.__core
        if core.closed:
            return
        if core.running:
            core.close_requested = True
            self.stop()
            return
        tasks.loop_closing(self)  # first: tasks, requesters; their cleanup may still use the loop
        core.closed = True
        if core.recorder is not None:
            core.recorder.flush()
        owned = list(core.owned.values())
        core.handlers.clear()
        core.events.clear()
        core.owned.clear()
        core.ready.clear()
        core.items = None
        # New work is refused by the queues themselves: no check on the call_* paths.
        core.ready = self.__ready = _CLOSED  # type: ignore[assignment]
        core.timers.close()  # a ticket reset after this cannot arm itself again
        core.timers = self.__timers = _CLOSED  # type: ignore[assignment]
        try:
            for target in owned:
                _close_quietly(target)
        finally:
            try:
                core.close()
            finally:
                os.close(core.wake_r)
                # The write end stays open until the loop is collected: another
                # thread may be inside call_soon_threadsafe right now, and a closed
                # descriptor number can be reused by an unrelated file at once.
                # Writes to a pipe without a reader fail with EPIPE, which wake() ignores.
                weakref.finalize(self, os.close, core.wake_w)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run; a closed loop refuses new work."""
        return self.__core.closed

    @property
    def errors(self) -> int:
        """Exceptions raised by callbacks so far (each handed to ``on_error`` once)."""
        return self.__core.errors

    @property
    def refused(self) -> int:
        """Messages refused by a reader's ``max_msg_size`` / ``max_frames`` so far."""
        return self.__core.refused

    def add_signal_handler(self, signum: int, callback: Callable[..., Any], *args: Any) -> Any:
        """Run ``callback(*args)`` as a loop callback when ``signum`` arrives (main thread only).

        Returns the handler it replaced; ``remove_signal_handler(signum)``
        puts back the one that was there before the first
        ``add_signal_handler`` for ``signum``.
        """
        _check_callable(callback)
        previous = signal.signal(signum, lambda _signum, _frame: self.call_soon_threadsafe(callback, *args))
        self.__core.signals.setdefault(signum, previous)
        return previous

    def remove_signal_handler(self, signum: int, previous: Any = _UNSET) -> None:
        """Put back what ``signum`` had before ``add_signal_handler`` (or ``previous``, when given)."""
        recorded = self.__core.signals.pop(signum, _UNSET)
        if previous is _UNSET:
            if recorded is _UNSET:
                return  # no handler of this loop's for signum
            previous = recorded
        signal.signal(signum, previous)

    # --------------------------------------------------------- internals

    def __refuse_pass(self) -> None:
        if self.__core.closed:
            raise RuntimeError("this PollLoop is closed")
        raise RuntimeError("run_once() called inside a pass of this PollLoop (from a callback, or "
                           "while run() runs): passes do not nest")

    def __refused(self, sock: zmq.Socket, frames: int, size: int) -> None:
        core = self.__core
        core.refused += 1
        counts = core.sockets.get(sock)
        if counts is not None:
            counts.refused += 1
        if worth_logging(core.refused):
            log.warning(
                "pollframe: %s: refused a message of %d frame(s), %d bytes (over max_msg_size or "
                "max_frames); %d refused so far", safe_repr(sock), frames, size, core.refused,
            )

    def __core_fd_handler(self, fd: int, callback: Callable[[int, int], Any]) -> EventHandler:
        """``callback(fd, revents)``; a descriptor closed while registered is dropped, not spun on."""
        core = self.__core

        def handle(revents: int) -> None:
            if revents & _POLLERR and not _is_open(fd):
                core.unregister(fd)
                log.warning("pollframe: file descriptor %d was closed while registered; unregistered it", fd)
                return
            callback(fd, revents)

        return handle

    def __install_signal_wakeup(self) -> Optional[int]:
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            return signal.set_wakeup_fd(self.__core.wake_w, warn_on_full_buffer=False)
        except ValueError:
            return None


    # --------------------------------------------------------- coroutines

    def spawn(self, coro: Coroutine[Any, Any, Any], name: Optional[str] = None) -> Task[Any]:
        """Run ``coro`` (an ``async def`` called) as a task on this loop; see :mod:`pollframe.tasks`."""
        return tasks.spawn(self, coro, name)

    def sleep(self, seconds: float) -> Waiter:
        """Inside a task, ``await loop.sleep(seconds)`` resumes it that many seconds from now."""
        return tasks.sleep(self, seconds)


def check_blocking_socket(sock: Any) -> None:
    """Refuse a ``zmq.asyncio`` socket, whose recv and send return futures the loop would never await.

    Cheap: when ``zmq.asyncio`` was never imported, no socket can be one.
    """
    aio = sys.modules.get("zmq.asyncio")
    if aio is not None and isinstance(sock, aio.Socket):
        raise TypeError(
            f"{safe_repr(sock)} is a zmq.asyncio socket: pollframe reads and writes plain zmq sockets. "
            "Make it from a plain zmq.Context, or pass zmq.Socket(sock), a plain socket over the "
            "same libzmq socket"
        )


class _Closed:
    """A closed loop's ready queue and timer queue: empty, and refusing new work."""

    def _refuse(self, *args: Any) -> Any:
        raise RuntimeError("this PollLoop is closed")

    append = call_later = call_at = ticket = _refuse

    def __len__(self) -> int:
        return 0

    def clear(self) -> None:
        pass

    def next_deadline(self) -> None:
        return None


_CLOSED = _Closed()


def _check_callable(callback: Any) -> None:
    """Refuse what is not callable, and an ``async def`` (see ``tasks.refuse_coroutine_function``).

    On every ``call_*``: a function or method is looked at once (its code's
    flags), anything else only asked whether it is callable.
    """
    code = getattr(callback, "__code__", None)
    if code is None:
        if not callable(callback):
            raise TypeError(f"a callback must be callable, not {safe_repr(callback)}")
    elif code.co_flags & _CO_COROUTINE:
        tasks.refuse_coroutine_function(callback)


def _close_quietly(target: Any) -> None:
    """Close an owned socket, file object or descriptor; a failure is logged, not raised."""
    try:
        if isinstance(target, zmq.Socket):
            target.close(linger=0)
        elif isinstance(target, int):
            os.close(target)
        else:
            target.close()
    except Exception:
        log.exception("pollframe: closing %r failed", target)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _key_of(target: Union[zmq.Socket, FileLike]) -> Any:
    """A zmq socket is its own key; anything else is keyed by its file descriptor."""
    return target if isinstance(target, zmq.Socket) else _fileno(target)


def _fileno(target: FileLike) -> int:
    return target if isinstance(target, int) else int(target.fileno())
