"""Coroutines on a PollLoop, without asyncio: tasks, waiters, sleep and timeouts.

Theory of operation
-------------------
A :class:`Task` drives one coroutine (an ``async def`` called) by hand:
each *step* sends into it until it suspends. A pollframe coroutine
suspends only on a :class:`Waiter`, a one-shot result (the loop's small
future): ``await waiter`` yields the waiter to the task, which notes it and
returns to the loop. Whoever completes the waiter (a timer for
``loop.sleep``, a reply callback for ``Requester.call``, another task's
end) makes the task take its next step in a later pass (``call_soon``), so
a coroutine never runs inside somebody else's callback. Anything else a
coroutine yields (an asyncio future, a bare ``yield``) is thrown back into
it as a TypeError at once: asyncio's awaitables have no loop here.

Cancelling a task throws :class:`Cancelled` into the coroutine where it is
suspended, at once, after abandoning what it awaited (a pending request is
cancelled, a sleep's timer too); ``finally`` blocks run. A timeout on any
await (:func:`wait_for`) is a timer that cancels the same way, and the
wait_for that set it turns that into :class:`Timeout`, so that code inside
it sees a cancellation, not a timeout of its own (as asyncio's timeouts
do). A task that raises goes to the loop's error policy (``loop.report``),
like a callback; awaiting it, or its ``result()``,
raises the same exception. Tasks still pending when their loop closes are
cancelled by ``PollLoop.close``, which then closes what registered with
:func:`close_with` (a Requester: its pending requests get their
``on_error``).

This module imports neither zmq nor the loop: the message tier uses it.
"""

from __future__ import annotations

import weakref
from types import CodeType
from typing import Any, Awaitable, Callable, Coroutine, Generator, Optional, Protocol, TypeVar

__all__ = ["Cancelled", "Task", "Timeout", "Waiter", "close_with", "current_task",
           "refuse_coroutine_function", "sleep", "spawn", "wait_for"]

T = TypeVar("T")

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect here


class Loop(Protocol):
    """What a task needs of its loop."""

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> Any: ...
    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Any: ...
    def report(self, exc: BaseException, where: str) -> None: ...


class Cancelled(BaseException):
    """Thrown into a coroutine whose task was cancelled.

    A BaseException, as asyncio's CancelledError, so that ``except
    Exception`` in the coroutine does not swallow it.
    """


class Timeout(TimeoutError):
    """An await did not complete within the time :func:`wait_for` gave it."""


class _Expired(Cancelled):
    """What a :func:`wait_for` timer throws into its task; that wait_for alone turns it into Timeout.

    Not a Timeout on its way up: an ``except Timeout`` around an inner
    wait_for would take an outer one's expiry for its own and carry on.
    """


class Waiter:
    """A result one task waits for: ``await waiter`` returns it or raises its exception.

    ``on_cancel`` (optional) is called when the awaiting task stops waiting
    before the result came (cancelled, timed out), so that whatever would
    have completed the waiter can stop (a timer, a request).
    """

    __slots__ = ("done", "_result", "_exc", "_task", "on_cancel")

    def __init__(self, on_cancel: Optional[Callable[[], Any]] = None) -> None:
        self.done = False
        self._result: Any = None
        self._exc: Optional[BaseException] = None
        self._task: Optional[Task[Any]] = None
        self.on_cancel = on_cancel

    def set_result(self, value: Any) -> None:
        """Complete the waiter with ``value``; ignored once it is complete."""
        if not self.done:
            self.done = True
            self._result = value
            self._wake()

    def set_exception(self, exc: BaseException) -> None:
        """Complete the waiter with ``exc``, raised by the await; ignored once complete."""
        if not self.done:
            self.done = True
            self._exc = exc
            self._wake()

    def _wake(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task._waiter_done(self)

    def _abandon(self) -> None:
        self._task = None
        if not self.done:
            self.done = True
            self._exc = Cancelled()
            if self.on_cancel is not None:
                self.on_cancel()

    def __await__(self) -> Generator[Waiter, None, Any]:
        if not self.done:
            yield self
        if self._exc is not None:
            raise self._exc
        return self._result

    def __repr__(self) -> str:
        return f"<Waiter {'done' if self.done else 'pending'}>"


_current: Optional[Task[Any]] = None

#: The live tasks of each loop, for PollLoop.close to cancel.
_live: weakref.WeakKeyDictionary[Any, set[Task[Any]]] = weakref.WeakKeyDictionary()


def current_task() -> Optional[Task[Any]]:
    """The task whose coroutine is running right now, or None outside of one."""
    return _current


class Task(Awaitable[T]):
    """A coroutine running on a loop: ``cancel()``, ``done()``, ``result()``, done callbacks.

    Made by ``loop.spawn(coro)``; its first step runs at once, inside
    ``spawn``, so a coroutine that never suspends has finished when
    ``spawn`` returns. ``loop`` may be None for a task that only waits on
    waiters completed from loop callbacks (a handler on a fake stream): its
    steps then run where the waiter completes.
    """

    __slots__ = ("_coro", "loop", "name", "_state", "_result", "_exc", "_callbacks", "_waiting",
                 "_throw_next", "__weakref__")

    def __init__(
        self, coro: Coroutine[Any, Any, T], loop: Optional[Loop], name: Optional[str] = None
    ) -> None:
        if not hasattr(coro, "send") or not hasattr(coro, "throw"):
            raise TypeError(f"a task runs a coroutine (an async def called), not {coro!r}")
        self._coro = coro
        self.loop = loop
        self.name = name or getattr(coro, "__qualname__", repr(coro))
        self._state = "pending"  # "pending", "done", "failed", "cancelled"
        self._result: Any = None
        self._exc: Optional[BaseException] = None
        self._callbacks: list[Callable[[Task[T]], Any]] = []
        self._waiting: Optional[Waiter] = None
        self._throw_next: Optional[BaseException] = None  # cancel() or a timeout during a step

    # ------------------------------------------------------------------ API

    def done(self) -> bool:
        """Whether the coroutine has finished: returned, raised or was cancelled."""
        return self._state != "pending"

    def cancelled(self) -> bool:
        """True if the task ended by being cancelled."""
        return self._state == "cancelled"

    def result(self) -> T:
        """The coroutine's return value; raises what it raised, Cancelled, or RuntimeError if not done."""
        if self._state == "pending":
            raise RuntimeError(f"task {self.name} is not done")
        if self._state == "cancelled":
            raise Cancelled(f"task {self.name} was cancelled")
        if self._exc is not None:
            raise self._exc
        return self._result

    def exception(self) -> Optional[BaseException]:
        """What the coroutine raised (None if it returned); RuntimeError if not done."""
        if self._state == "pending":
            raise RuntimeError(f"task {self.name} is not done")
        return self._exc

    def cancel(self) -> bool:
        """Throw :class:`Cancelled` into the coroutine where it waits; False if already done.

        What it awaited is abandoned first (a request is cancelled, a timer
        too). From inside the task itself, Cancelled is raised at its next
        await instead.
        """
        if self._state != "pending":
            return False
        self._interrupt(Cancelled(f"task {self.name} was cancelled"))
        return True

    def add_done_callback(self, callback: Callable[[Task[T]], Any]) -> None:
        """Call ``callback(task)`` when the task is done (at once if it is already)."""
        if self._state == "pending":
            self._callbacks.append(callback)
        else:
            self._run_callback(callback)

    def __await__(self) -> Generator[Waiter, None, T]:
        if self._state == "pending":
            # As asyncio does: a task that stops waiting on this one (cancelled, timed out by
            # wait_for) cancels it, so nothing it awaits is left running for nobody.
            waiter = Waiter(self.cancel)
            self._callbacks.append(lambda _task: waiter.set_result(None))
            yield from waiter.__await__()
        return self.result()

    def __repr__(self) -> str:
        return f"<Task {self.name} {self._state}>"

    # ------------------------------------------------------------ internals

    def _step(self, exc: Optional[BaseException] = None) -> None:
        """Run the coroutine until it suspends on a waiter or ends."""
        global _current
        if self._state != "pending":
            return
        previous, _current = _current, self
        coro = self._coro
        try:
            while True:
                if self._throw_next is not None:
                    exc, self._throw_next = self._throw_next, None
                try:
                    yielded = coro.send(None) if exc is None else coro.throw(exc)
                except StopIteration as stop:
                    self._finish("done", stop.value, None)
                    return
                except Cancelled:
                    self._finish("cancelled", None, None)
                    return
                except Exception as error:
                    self._finish("failed", None, error)
                    if self.loop is not None:
                        self.loop.report(error, f"task {self.name}")
                    return
                except BaseException as error:  # KeyboardInterrupt, SystemExit: end the task, go on up
                    self._finish("failed", None, error)
                    raise
                exc = None
                if type(yielded) is not Waiter:
                    exc = TypeError(f"task {self.name} awaited {yielded!r}: pollframe tasks await "
                                    "loop.sleep(), Requester.call(), a Task or a Waiter, not asyncio's")
                    continue
                if self._throw_next is not None:  # cancelled (or timed out) during this step
                    yielded._abandon()
                    continue
                if yielded.done:  # completed during this step
                    continue
                yielded._task = self
                self._waiting = yielded
                return
        finally:
            _current = previous

    def _waiter_done(self, waiter: Waiter) -> None:
        if self._waiting is waiter:
            self._waiting = None
            if self.loop is not None:
                self.loop.call_soon(self._step)
            else:
                self._step()

    def _interrupt(self, exc: BaseException) -> None:
        """Throw ``exc`` into the coroutine now, or at its next await if it is running."""
        if _current is self:
            self._throw_next = exc
            return
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting._abandon()
        self._step(exc)

    def _finish(self, state: str, result: Any, exc: Optional[BaseException]) -> None:
        self._state = state
        self._result = result
        self._exc = exc
        if self.loop is not None:
            live = _live.get(self.loop)
            if live is not None:
                live.discard(self)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._run_callback(callback)

    def _run_callback(self, callback: Callable[[Task[T]], Any]) -> None:
        try:
            callback(self)
        except Exception as exc:
            if self.loop is None:
                raise
            self.loop.report(exc, f"done callback {callback!r} of task {self.name}")


# --------------------------------------------------------------- functions


def spawn(loop: Loop, coro: Coroutine[Any, Any, T], name: Optional[str] = None) -> Task[T]:
    """Run ``coro`` as a task on ``loop`` (``loop.spawn``); its first step runs now."""
    if getattr(loop, "closed", False):
        getattr(coro, "close", lambda: None)()  # never run: no "never awaited" warning
        raise RuntimeError("this PollLoop is closed")
    task: Task[T] = Task(coro, loop, name)
    _live.setdefault(loop, set()).add(task)
    task._step()
    return task


def sleep(loop: Loop, seconds: float) -> Waiter:
    """An awaitable that completes ``seconds`` from now (``loop.sleep``)."""
    waiter = Waiter()
    waiter.on_cancel = loop.call_later(seconds, waiter.set_result, None).cancel
    return waiter


async def wait_for(aw: Awaitable[T], seconds: float) -> T:
    """Await ``aw``, but raise :class:`Timeout` if it takes more than ``seconds``.

    Works on any await inside a task: what ``aw`` was waiting for when the
    time ran out is abandoned (a request cancelled, a sleep's timer too; a
    task awaited is cancelled).
    """
    task = _current
    if task is None or task.loop is None:
        raise RuntimeError("wait_for() runs inside a task on a loop (loop.spawn)")
    expired = _Expired()
    timer = task.loop.call_later(seconds, _expire, task, expired)
    try:
        return await aw
    except _Expired as exc:
        if exc is not expired:  # an outer wait_for's: it is that one's to turn into Timeout
            raise
        raise Timeout(f"no result within {seconds:g} s") from None
    finally:
        timer.cancel()


def _expire(task: Task[Any], exc: _Expired) -> None:
    if task._state == "pending":
        task._interrupt(exc)


#: What else ends with each loop: weak references to ``close`` methods (a Requester's).
_closers: weakref.WeakKeyDictionary[Any, list[weakref.WeakMethod[Callable[[], Any]]]] = (
    weakref.WeakKeyDictionary()
)


def close_with(loop: Any, close: Callable[[], Any]) -> None:
    """Have ``PollLoop.close`` call the bound method ``close`` first (held weakly)."""
    refs = _closers.setdefault(loop, [])
    refs[:] = [ref for ref in refs if ref() is not None]  # forget the collected ones
    refs.append(weakref.WeakMethod(close))


def loop_closing(loop: Any) -> None:
    """``PollLoop.close`` calls it first: cancel the loop's tasks, then close what asked to close with it.

    Tasks first, so that a task awaiting a request is cancelled (and the
    request with it) rather than woken by the request's RequesterClosed.
    """
    cancel_all(loop)
    for ref in _closers.pop(loop, ()):
        close = ref()
        if close is not None:
            try:
                close()
            except Exception as exc:  # one failure must not keep the loop open
                report = getattr(loop, "report", None)
                if report is None:
                    raise
                report(exc, f"closing {close!r} with its loop")


def cancel_all(loop: Any) -> int:
    """Cancel the tasks still pending on ``loop``; how many."""
    tasks = _live.pop(loop, None)
    if not tasks:
        return 0
    count = 0
    for task in list(tasks):
        if task.cancel():
            count += 1
        if not task.done():  # it caught Cancelled and awaited again: end it for good
            task._coro.close()
            task._finish("cancelled", None, None)
    return count


def refuse_coroutine_function(callback: Any) -> None:
    """Raise TypeError if ``callback`` is an ``async def``: calling it would only make a coroutine.

    The loop checks every callback where it is registered (``call_soon``,
    ``call_later``, ``register``, ``Stream.on_recv``, ...), so that the
    mistake fails at the line that made it instead of being dropped silently
    at each call. A ``functools.partial`` of one is not seen through.
    """
    code = getattr(callback, "__code__", None)
    if code is not None and type(code) is CodeType and code.co_flags & _CO_COROUTINE:
        raise TypeError(f"{callback!r} is an async def: calling it only makes a coroutine, which would "
                        "never run; run it as a task: loop.spawn(fn(...))")
