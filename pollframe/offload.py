"""Blocking work off the loop: a function runs in a worker thread, its outcome comes back on the loop.

A loop must never block, yet programs have blocking calls to make (a
database driver, a file read, a DNS lookup). :class:`Offload` runs them in
a bounded pool of worker threads (``concurrent.futures.ThreadPoolExecutor``)
and hands each result, or the exception raised, back to the loop through
``loop.call_soon_threadsafe``: the callback runs on the loop's thread, in a
pass, like any other, so it may use the loop's streams. The function itself
runs in a worker: it must not touch the loop or its streams (see the thread
rules in the README); it gets its arguments and returns a value.

At most ``max_workers`` functions run at once; more wait in the pool's
queue, in order. The loop keeps serving meanwhile. Nothing here depends on
PollLoop beyond ``call_soon_threadsafe`` (and ``report`` for a callback's
own errors, through the loop's policy as usual).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = ["Job", "Offload"]

log = logging.getLogger("pollframe")


class _Loop(Protocol):
    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> Any: ...


class Job:
    """One function handed to :meth:`Offload.run`: ``cancel()`` it, ask whether it is ``done()``."""

    __slots__ = ("_future", "_cancelled", "_delivered")

    def __init__(self, future: "Future[Any]") -> None:
        self._future = future
        self._cancelled = False
        self._delivered = False

    def cancel(self) -> bool:
        """No callback will be called; True if the function had not started (it never will).

        A function already running runs to its end (a thread cannot be
        stopped), but its outcome is dropped.
        """
        self._cancelled = True
        return self._future.cancel()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def done(self) -> bool:
        """Whether the outcome has been delivered to the loop (or the job was cancelled)."""
        return self._delivered or self._cancelled

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "delivered" if self._delivered else "pending"
        return f"<Job {state}>"


class Offload:
    """Run blocking functions in at most ``max_workers`` threads; deliver outcomes on ``loop``.

    Close it (or use it as a context manager) to stop the threads; pending
    functions are then cancelled, running ones finish and are dropped.
    """

    def __init__(self, loop: _Loop, max_workers: int = 4, *, name: str = "pollframe-offload") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        self.loop = loop
        self.max_workers = max_workers
        # Imported here: `import pollframe` should not pay for the thread pool's modules.
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=name)
        self._closed = False

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], Any],
        on_error: Optional[Callable[[BaseException], Any]] = None,
        **kwargs: Any,
    ) -> Job:
        """Call ``fn(*args, **kwargs)`` in a worker; then ``on_done(result)`` on the loop.

        If ``fn`` raises, ``on_error(exc)`` is called on the loop instead;
        without ``on_error`` the exception goes to the loop's error policy
        (logged with its traceback and counted, as for a callback).
        """
        if self._closed:
            raise RuntimeError("this Offload is closed")
        for name, callback in (("fn", fn), ("on_done", on_done), ("on_error", on_error)):
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be callable, not {callback!r}")
        future = self._pool.submit(fn, *args, **kwargs)
        job = Job(future)
        future.add_done_callback(lambda done: self._hand_back(job, done, on_done, on_error))
        return job

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``await offload.call(fn, ...)`` in a task on the loop (``loop.spawn``): the result or the raise.

        Cancelling the awaiting task (or its ``wait_for`` expiring) cancels the job.
        """
        from pollframe.tasks import Waiter

        holder: list[Job] = []
        waiter = Waiter(on_cancel=lambda: holder[0].cancel())
        holder.append(self.run(fn, *args, on_done=waiter.set_result, on_error=waiter.set_exception, **kwargs))
        return waiter

    def close(self, wait: bool = True) -> None:
        """Stop taking work, cancel what has not started; with ``wait``, join the threads."""
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def __enter__(self) -> "Offload":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _hand_back(
        self,
        job: Job,
        future: "Future[Any]",
        on_done: Callable[[Any], Any],
        on_error: Optional[Callable[[BaseException], Any]],
    ) -> None:
        """In the worker thread (or the caller's, for a cancelled job): post the outcome to the loop."""
        if future.cancelled() or job._cancelled:
            return
        try:
            self.loop.call_soon_threadsafe(_deliver, job, future, on_done, on_error)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            log.warning("pollframe: an offloaded function finished after its loop closed; outcome dropped")


def _deliver(
    job: Job,
    future: "Future[Any]",
    on_done: Callable[[Any], Any],
    on_error: Optional[Callable[[BaseException], Any]],
) -> None:
    """On the loop: call the callback for the outcome, unless the job was cancelled meanwhile."""
    if job._cancelled:
        return
    job._delivered = True
    exc = future.exception()
    if exc is None:
        on_done(future.result())
    elif on_error is not None:
        on_error(exc)
    else:
        raise exc  # to the loop's error policy, like any callback's exception
