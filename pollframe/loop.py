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
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

import zmq
from zmq.backend import zmq_poll

from pollframe.timers import Timer, TimerQueue
from pollframe.units import FOREVER, to_ms

__all__ = ["PollLoop", "Timer"]

log = logging.getLogger("pollframe")

#: A file object with ``fileno()`` or a plain file descriptor.
FileLike = Union[int, Any]
#: ``handler(revents)``: the low-level handler that ``watch`` registers.
EventHandler = Callable[[int], None]
ErrorHandler = Callable[[BaseException, str], None]

# Plain ints: pyzmq's constants are IntFlag members, and `&` on one runs enum
# code in Python (over a microsecond) where an int costs a few nanoseconds.
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_POLLERR = int(zmq.POLLERR)
_Again = zmq.Again
_UNDRAINABLE = frozenset({zmq.REQ, zmq.REP})


class PollLoop:
    """An event loop over ``zmq.Poller``'s ``zmq_poll``, with timers and thread-safe wake-up.

    The loop owns no ``zmq.Context``. ``on_error(exc, where)`` replaces the
    default policy for exceptions raised by callbacks, which is to log them
    with their traceback on the ``pollframe`` logger, count them in
    ``errors`` and go on. ``clock`` must be monotonic (tests pass a fake).
    """

    #: Most messages read from one socket per wake-up before the others get a turn.
    max_drain: int = 256

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
        self.on_error = on_error
        self.errors = 0
        self._clock = clock
        self._timers = TimerQueue()
        self._ready: Deque[Timer] = deque()
        self._handlers: Dict[Any, EventHandler] = {}
        self._events: Dict[Any, int] = {}
        self._owned: Dict[Any, Any] = {}
        self._items: Optional[List[Tuple[Any, int]]] = None
        self._stopping = False
        self._running = False
        self._closed = False
        self._close_requested = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._handlers[self._wake_r] = self._drain_wakeups
        self._events[self._wake_r] = _POLLIN

    # ------------------------------------------------------------------ I/O

    def register(
        self,
        target: Union[zmq.Socket, FileLike],
        callback: Callable[..., Any],
        events: int = zmq.POLLIN,
        *,
        multipart: bool = True,
        own: bool = False,
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
        """
        if isinstance(target, zmq.Socket):
            if events != zmq.POLLIN:
                raise ValueError("register() reads zmq sockets; use watch() for other events")
            handler = self.reader(target, callback, multipart=multipart)
        else:
            handler = self._fd_handler(_fileno(target), callback)
        self.watch(target, handler, events, own=own)

    def watch(
        self, target: Union[zmq.Socket, FileLike], handler: EventHandler, events: int, *, own: bool = False
    ) -> None:
        """Low level: call ``handler(revents)`` whenever ``events`` are ready on ``target``.

        A zero ``events`` keeps the registration but leaves it out of polls.
        """
        key = _key_of(target)
        if self._closed:
            raise RuntimeError("this PollLoop is closed")
        self._handlers[key] = handler
        self._events[key] = int(events)
        if own:
            self._owned[key] = target
        self._changed(key)

    def set_events(self, target: Union[zmq.Socket, FileLike], events: int) -> None:
        """Change which events a registered target is polled for (0: none for now)."""
        key = _key_of(target)
        if key not in self._handlers:
            raise KeyError(f"{target!r} is not registered on this loop")
        if self._events[key] != events:
            self._events[key] = int(events)
            self._changed(key)

    def unregister(self, target: Union[zmq.Socket, FileLike]) -> None:
        """Stop watching ``target``; safe from any callback, even in the same pass.

        A callback of ``target`` whose event was already polled in this pass
        is not called afterwards. Unregistering an unknown target is a no-op.
        """
        key = _key_of(target)
        if key == self._wake_r:
            return
        if self._handlers.pop(key, None) is not None:
            del self._events[key]
            self._owned.pop(key, None)
            self._changed(key)

    def touched(self, sock: zmq.Socket) -> None:
        """``sock`` was sent on or read outside its own callback.

        Nothing to do for ``zmq_poll``, which looks at every socket on every
        pass; an edge-triggered backend (EpollLoop) re-checks the socket.
        Streams call this after each send.
        """

    def is_registered(self, target: Union[zmq.Socket, FileLike]) -> bool:
        key = _key_of(target)
        return key in self._handlers

    def reader(
        self,
        sock: zmq.Socket,
        callback: Callable[..., Any],
        *,
        multipart: bool = True,
        owner: Optional[EventHandler] = None,
    ) -> EventHandler:
        """Build the draining ``handler(revents)`` that ``register`` installs for ``sock``.

        The drain stops as soon as ``owner`` (by default the reader itself)
        is no longer the handler registered for ``sock``, so a callback that
        unregisters, re-registers or closes its socket ends it. A Stream
        wraps the reader in its own handler and passes that as ``owner``.
        """
        limit = 1 if sock.type in _UNDRAINABLE else self.max_drain
        report = self.report
        handlers = self._handlers
        recv = sock.recv
        probe = [(sock, _POLLIN)]
        # Draining ends with an EAGAIN, and pyzmq's zmq.Again costs several µs
        # to build. A socket whose last drain found a single message (one
        # request per wake-up) most likely holds one again: read it, then ask
        # a zero-timeout poll (a third of the cost) whether to go on draining.
        expect_one = False

        # The two readers differ only in how one message is read; they are
        # kept apart because a shared helper would cost a call per message.
        def read_frames(revents: int) -> None:
            nonlocal expect_one
            for n in range(limit):
                if n == 1 and expect_one:
                    if not zmq_poll(probe, 0):
                        return
                    expect_one = False
                try:
                    frame = recv(_NOBLOCK, copy=False)
                except _Again:
                    expect_one = n == 1
                    return
                frames = [frame.bytes]
                while frame.more:
                    frame = recv(_NOBLOCK, copy=False)
                    frames.append(frame.bytes)
                try:
                    callback(frames)
                except Exception as exc:
                    report(exc, f"receive callback {callback!r} for {sock!r}")
                if handlers.get(sock) is not owner:
                    return

        def read_frame(revents: int) -> None:
            nonlocal expect_one
            for n in range(limit):
                if n == 1 and expect_one:
                    if not zmq_poll(probe, 0):
                        return
                    expect_one = False
                try:
                    data = recv(_NOBLOCK)
                except _Again:
                    expect_one = n == 1
                    return
                try:
                    callback(data)
                except Exception as exc:
                    report(exc, f"receive callback {callback!r} for {sock!r}")
                if handlers.get(sock) is not owner:
                    return

        read = read_frames if multipart else read_frame
        if owner is None:
            owner = read
        return read

    # --------------------------------------------------------------- timers

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` on the next pass; returns a cancellable handle."""
        handle = Timer(0.0, 0, callback, args, None, None)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Timer:
        """Like ``call_soon``, from any thread: wakes a sleeping poll at once."""
        handle = self.call_soon(callback, *args)
        self._wake()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` once, ``delay`` seconds from now."""
        return self._timers.call_later(self.time(), delay, callback, args)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` once at ``when``, on the ``time()`` clock."""
        return self._timers.call_at(when, callback, args)

    def call_every(self, interval: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Run ``callback(*args)`` every ``interval`` seconds, first one interval from now.

        The schedule survives the callback raising; periods missed because
        the loop was busy are skipped, not run in a burst.
        """
        if not 0 < interval < math.inf:
            raise ValueError(f"call_every needs a positive, finite interval, not {interval!r}")
        return self._timers.call_at(self.time() + interval, callback, args, interval)

    # ------------------------------------------------------------- running

    def run(self) -> None:
        """Run passes until ``stop()``. Signals wake the poll when run in the main thread.

        A ``stop()`` that comes before ``run()`` makes it return at once.
        """
        self._check_open()
        if self._running:
            raise RuntimeError("this PollLoop is already running")
        self._running = True
        old_wakeup_fd = self._install_signal_wakeup()
        try:
            while not self._stopping:
                self._run_once(None)
        finally:
            self._stopping = False
            self._running = False
            if old_wakeup_fd is not None:
                signal.set_wakeup_fd(old_wakeup_fd)
            if self._close_requested:
                self.close()

    def run_once(self, timeout: Optional[float] = None) -> None:
        """One poll and dispatch, for driving the loop from a foreign one.

        ``timeout`` is the most seconds to wait for an event (None: until
        one comes or a timer is due; 0: do not wait). A ``stop()`` seen
        here ends only this pass: it is not kept for a later ``run()``.
        """
        self._check_open()
        try:
            self._run_once(timeout)
        finally:
            if not self._running:
                self._stopping = False

    def time(self) -> float:
        """The loop's clock: monotonic seconds (``time.monotonic`` unless a clock was given)."""
        return self._clock()

    def next_deadline(self) -> Optional[float]:
        """When the earliest pending timer is due, on ``time()``; None when none is pending."""
        return self._timers.next_deadline()

    def stop(self) -> None:
        """End ``run()`` after the current pass; safe from signal handlers and other threads."""
        self._stopping = True
        self._wake()

    def close(self) -> None:
        """Unregister everything, close the sockets the loop owns, and release the wake-up pipe.

        Called from a callback while ``run()`` runs, it stops the loop and
        closes it when ``run()`` returns.
        """
        if self._closed:
            return
        if self._running:
            self._close_requested = True
            self.stop()
            return
        self._closed = True
        owned = list(self._owned.values())
        self._handlers.clear()
        self._events.clear()
        self._owned.clear()
        self._ready.clear()
        self._items = None
        try:
            for target in owned:
                _close_quietly(target)
        finally:
            os.close(self._wake_r)
            # The write end stays open until the loop is collected: another
            # thread may be inside call_soon_threadsafe right now, and a closed
            # descriptor number can be reused by an unrelated file at once.
            # Writes to a pipe without a reader fail with EPIPE, which _wake ignores.
            weakref.finalize(self, os.close, self._wake_w)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this PollLoop is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def add_signal_handler(self, signum: int, callback: Callable[..., Any], *args: Any) -> Any:
        """Run ``callback(*args)`` as a loop callback when ``signum`` arrives (main thread only).

        Returns the handler it replaced, for ``remove_signal_handler``.
        """
        return signal.signal(signum, lambda _signum, _frame: self.call_soon_threadsafe(callback, *args))

    def remove_signal_handler(self, signum: int, previous: Any = signal.SIG_DFL) -> None:
        """Put back ``previous`` (what ``add_signal_handler`` returned) for ``signum``."""
        signal.signal(signum, previous)

    # ------------------------------------------------------------ internals

    def _run_once(self, timeout: Optional[float]) -> None:
        # Phase 1: how long may we sleep? Only callbacks queued before this
        # point run in this pass; those queued by this pass's callbacks wait.
        ready = self._ready
        queued = len(ready)
        ms = self._poll_timeout_ms(timeout)
        # Phase 2: poll.
        events = self._poll(ms)
        # Phase 3: dispatch — the only place where callbacks are called.
        self._dispatch(events)
        if self._timers:
            self._run_timers()
        for _ in range(queued):
            handle = ready.popleft()
            if not handle.cancelled:
                self._call(handle)

    def _changed(self, key: Any) -> None:
        """A registration changed: the cached poll item list is stale."""
        self._items = None

    def _poll(self, ms: int) -> List[Tuple[Any, int]]:
        """``zmq_poll`` over the cached item list, rebuilt only after a registration changed."""
        items = self._items
        if items is None:
            items = self._items = [(key, ev) for key, ev in self._events.items() if ev]
        return zmq_poll(items, ms)

    def _dispatch(self, events: List[Tuple[Any, int]]) -> None:
        handlers = self._handlers
        for key, revents in events:
            handler = handlers.get(key)
            if handler is not None:
                try:
                    handler(revents)
                except Exception as exc:
                    self._io_failed(key, exc)
            elif isinstance(key, int):
                self._drop_closed_sockets()

    def _poll_timeout_ms(self, timeout: Optional[float]) -> int:
        """Milliseconds to poll, rounded up so that a due timer is never polled past early."""
        if self._ready or self._stopping:
            return 0
        deadline = self._timers.next_deadline()
        if deadline is not None:
            wait = max(deadline - self.time(), 0.0)
            timeout = wait if timeout is None else min(wait, timeout)
        if timeout is None:
            return FOREVER
        return to_ms(timeout) if timeout > 0 else 0

    def _run_timers(self) -> None:
        timers = self._timers
        for timer in timers.pop_due(self.time()):
            if timer.cancelled:
                continue  # cancelled by an earlier callback of this same batch
            if timer.interval is None:
                self._call(timer)
            else:
                try:
                    self._call(timer)
                finally:
                    timers.reschedule(timer, self.time())

    def _call(self, handle: Timer) -> None:
        callback, args = handle.callback, handle.args
        if handle.interval is None:
            handle.callback = handle.args = None
            handle.cancelled = True
        try:
            callback(*args)  # type: ignore[misc]
        except Exception as exc:
            self.report(exc, f"callback {callback!r}")

    def report(self, exc: BaseException, where: str) -> None:
        """Apply the error policy (``on_error``, or log and count) to ``exc``, raised in ``where``."""
        self.errors += 1
        if self.on_error is not None:
            self.on_error(exc, where)
        else:
            log.error("pollframe: exception in %s", where, exc_info=exc)

    def _io_failed(self, key: Any, exc: BaseException) -> None:
        """A handler's own read failed (not its callback): a closed socket is dropped, not retried."""
        if isinstance(key, zmq.Socket) and key.closed:
            self._drop_closed_sockets()
            return
        self.report(exc, f"I/O handler for {key!r}")

    def _fd_handler(self, fd: int, callback: Callable[[int, int], Any]) -> EventHandler:
        """``callback(fd, revents)``; a descriptor closed while registered is dropped, not spun on."""

        def handle(revents: int) -> None:
            if revents & _POLLERR and not _is_open(fd):
                self.unregister(fd)
                log.warning("pollframe: file descriptor %d was closed while registered; unregistered it", fd)
                return
            callback(fd, revents)

        return handle

    def _drop_closed_sockets(self) -> None:
        """Unregister sockets closed while registered.

        ``zmq_poll`` polls a closed pyzmq socket as file descriptor 0, so an
        event on an unregistered descriptor is a sign to look for them (not
        a sure one: when fd 0 is idle, nothing reports the closed socket,
        which then only costs an idle poll item). Close a socket through
        ``unregister`` or ``Stream.close`` instead.
        """
        for key in [key for key in self._handlers if isinstance(key, zmq.Socket) and key.closed]:
            self.unregister(key)
            log.warning("pollframe: %r was closed while registered; unregistered it", key)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a full pipe already guarantees a wake-up; one without a reader has no loop to wake

    def _drain_wakeups(self, revents: int) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _install_signal_wakeup(self) -> Optional[int]:
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            return signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        except ValueError:
            return None


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
