"""A PollLoop as a guest in another program's event loop.

Three ways to embed, by what the host offers (README "Embedding"):

1. **Watch the descriptor** (:class:`AsyncioGuest`, :class:`TkGuest`): the
   host watches ``loop.fileno()`` for readability and keeps one timer at
   ``loop.next_deadline()``; either one runs a pass (``run_once(0)``), after
   which the timer is set again. No thread and no polling: an idle guest
   costs nothing, and a message is served as soon as the host gets to it.
2. **Pump** (:func:`serve_until`, or ``loop.run_once(0)`` once per frame): a
   host that runs its own ``while`` loop (a game, a simulation) gives the
   guest a pass per turn. Latency is up to one turn; an idle guest costs a
   zero-timeout poll per turn.
3. **A thread of its own**: ``threading.Thread(target=loop.run)``, with
   every call from the host going through ``loop.call_soon_threadsafe``.
   The fastest for the guest, but two threads share the program's state.

The adapters follow the contract of :meth:`PollLoop.fileno` and
:meth:`PollLoop.next_deadline`: ask the deadline again after every pass,
and after using a socket of the guest outside its own callbacks (a send
from host code): call :meth:`wake` then, or reach the guest through
``loop.call_soon_threadsafe``, which makes the descriptor readable.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from pollframe.loop import PollLoop

__all__ = ["AsyncioGuest", "Guest", "TkGuest", "serve_until"]


class Guest:
    """The part common to hosts that watch a descriptor and keep one timer; subclass per host.

    A subclass says how its host watches a descriptor (``_watch``,
    ``_unwatch``) and keeps a timer (``_call_later``, ``_cancel``). Closing
    the guest does not close ``loop``.
    """

    def __init__(self, loop: PollLoop) -> None:
        self.loop = loop
        self._fd: Optional[int] = loop.fileno()
        self._timer: Any = None
        self._watch(self._fd)
        self.wake()

    def wake(self) -> None:
        """Schedule the next pass anew: call it after using the guest's sockets from host code."""
        if self._fd is None:
            return
        if self._timer is not None:
            self._cancel(self._timer)
            self._timer = None
        if self.loop.closed:
            self.close()
            return
        deadline = self.loop.next_deadline()
        if deadline is not None:  # None: only I/O or a wake-up can bring work, and the descriptor says so
            self._timer = self._call_later(deadline - self.loop.time())

    def _pass(self, *_: Any) -> None:
        self._timer = None
        if self._fd is None:
            return
        try:
            if not self.loop.closed:
                self.loop.run_once(0)
        finally:
            self.wake()  # even when an error policy re-raised out of the pass

    def close(self) -> None:
        """Stop serving the guest from the host (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._timer is not None:
            self._cancel(self._timer)
            self._timer = None
        self._unwatch(fd)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # Host specifics.
    def _watch(self, fd: int) -> None:
        raise NotImplementedError

    def _unwatch(self, fd: int) -> None:
        raise NotImplementedError

    def _call_later(self, delay: float) -> Any:
        raise NotImplementedError

    def _cancel(self, timer: Any) -> None:
        raise NotImplementedError


class AsyncioGuest(Guest):
    """Serve ``loop`` from an asyncio event loop (``host``, default the running one), no thread.

    ``host.add_reader(loop.fileno(), ...)`` plus one timer handle at
    ``loop.next_deadline()``. Needs a selector event loop (the default on
    Unix; ``fileno()`` is Linux-only). Use it as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, loop: PollLoop, host: Any = None) -> None:
        if host is None:
            import asyncio

            host = asyncio.get_running_loop()
        self.host = host
        super().__init__(loop)

    def _watch(self, fd: int) -> None:
        self.host.add_reader(fd, self._pass)

    def _unwatch(self, fd: int) -> None:
        self.host.remove_reader(fd)

    def _call_later(self, delay: float) -> Any:
        if delay <= 0:
            return self.host.call_soon(self._pass)
        return self.host.call_later(delay, self._pass)

    def _cancel(self, timer: Any) -> None:
        timer.cancel()


class TkGuest(Guest):
    """Serve ``loop`` from a tkinter main loop: ``createfilehandler`` plus one ``after`` timer (Unix).

    ``widget`` is any widget of the application (its ``tk`` interpreter
    does the watching), usually the root window. Call :meth:`close` before
    the window is destroyed.
    """

    def __init__(self, loop: PollLoop, widget: Any) -> None:
        self.widget = widget
        super().__init__(loop)

    def _watch(self, fd: int) -> None:
        import tkinter

        self.widget.tk.createfilehandler(fd, tkinter.READABLE, self._pass)

    def _unwatch(self, fd: int) -> None:
        self.widget.tk.deletefilehandler(fd)

    def _call_later(self, delay: float) -> Any:
        # Tk's timers count whole milliseconds: round up, never wake early.
        return self.widget.after(max(0, math.ceil(delay * 1000)), self._pass)

    def _cancel(self, timer: Any) -> None:
        self.widget.after_cancel(timer)


def serve_until(loop: PollLoop, deadline: float) -> int:
    """Run passes of ``loop`` until ``loop.time()`` reaches ``deadline``; return how many ran.

    For a host's own ``while`` loop: spend the rest of a frame serving the
    guest instead of sleeping, so a message waits for no frame boundary.
    At least one pass runs, so ``serve_until(loop, 0)`` is ``run_once(0)``.
    """
    passes = 0
    while True:
        remaining = deadline - loop.time()
        loop.run_once(remaining if remaining > 0 else 0)
        passes += 1
        if remaining <= 0 or loop.time() >= deadline:
            return passes
