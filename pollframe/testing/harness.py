"""The process harness: start a ZmqProcess for a test, and make sure it is gone afterwards.

``with running(PongProc("127.0.0.1")) as pong:`` starts the process (with
whatever start method it was given), waits until its ``setup()`` is done
and hands back the endpoints it bound. Leaving the block stops it, in
escalating steps each with its own deadline:

1. the stop request: the ``stop`` callable given (e.g. send the
   application's stop message) or ``process.stop()``;
2. ``SIGTERM``;
3. ``SIGKILL``.

This runs however the block is left: normally, by a failed assertion, by
pytest-timeout's signal or by Ctrl-C. The steps are
:meth:`ZmqProcess.shutdown <pollframe.process.ZmqProcess.shutdown>`'s,
which also sends ``SIGCONT`` to a child frozen with ``SIGSTOP`` first, so
that it can take the stop request. If even ``SIGKILL`` leaves the
process alive the harness says so loudly. When the block succeeded, a
process that needed ``SIGTERM``/``SIGKILL`` or exited non-zero fails the
test (:class:`~pollframe.testing.errors.UncleanExit`), unless
``check_exit=False``: clean shutdown is part of a process's contract.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Set, Tuple

from pollframe.process import ZmqProcess
from pollframe.testing.errors import UncleanExit

__all__ = ["RunningProcess", "kill_leftovers", "running", "start_process"]

#: Processes started by ``running()`` and not yet shut down: the plugin's safety net kills
#: what is left at the end of the session. Strong references: a process whose handle a
#: test dropped is exactly one to kill.
_started: Set[ZmqProcess] = set()


class RunningProcess:
    """A process started by :func:`running`: its endpoints now, how it ended later."""

    def __init__(
        self, process: ZmqProcess, *, stop: Optional[Callable[[], Any]], timeouts: Tuple[float, float, float]
    ) -> None:
        """Made by :func:`start_process`: ``timeouts`` are its stop, term and kill timeouts."""
        self.process = process
        #: Endpoints the process bound, in the order of its ``stream(..., bind=True)`` calls.
        self.endpoints: List[str] = []
        #: The steps the shutdown took: some of ``"stop"``, ``"SIGTERM"``, ``"SIGKILL"``.
        self.steps: List[str] = []
        #: Why the stop request failed, if it did (e.g. the stop message got no reply).
        self.stop_error: Optional[BaseException] = None
        self._stop = stop
        self._timeouts = timeouts
        self._done = False

    @property
    def endpoint(self) -> str:
        """The one endpoint the process bound; an error if it bound none or several."""
        if len(self.endpoints) != 1:
            raise AssertionError(f"{self.describe()} bound {len(self.endpoints)} endpoints "
                                 f"{self.endpoints}, not one: use .endpoints")
        return self.endpoints[0]

    @property
    def pid(self) -> Optional[int]:
        """The process id; None before it started."""
        return self.process.pid

    @property
    def exitcode(self) -> Optional[int]:
        """The exit code (negative: killed by that signal); None while it runs."""
        return self.process.exitcode

    def describe(self) -> str:
        """The process's class and pid, as failure messages name it."""
        return f"{type(self.process).__name__} (pid {self.process.pid})"

    def shutdown(self) -> Optional[int]:
        """Stop the process, escalating as needed; return its exit code. Safe to call twice.

        The escalation is :meth:`ZmqProcess.shutdown
        <pollframe.process.ZmqProcess.shutdown>`: if it is interrupted
        (Ctrl-C, pytest-timeout), the process is killed before the
        interruption goes on.
        """
        if self._done:
            return self.exitcode
        self._done = True
        process = self.process
        stop_timeout, term_timeout, kill_timeout = self._timeouts
        self.steps = process.shutdown(stop=self._request_stop, stop_timeout=stop_timeout,
                                      term_timeout=term_timeout, kill_timeout=kill_timeout)
        if process.is_alive():
            raise AssertionError(f"{self.describe()} survived SIGKILL for {kill_timeout} s")
        _started.discard(process)
        return self.exitcode

    def _request_stop(self) -> None:
        try:
            (self._stop or self.process.stop)()
        except Exception as exc:  # reported by check_clean_exit(); the shutdown goes on to SIGTERM
            self.stop_error = exc
            raise

    def check_clean_exit(self) -> None:
        """Fail unless the process ended on its stop request (or by itself) with exit code 0."""
        __tracebackhide__ = True
        if self.steps in ([], ["stop"]) and self.exitcode == 0:
            return
        story = " then ".join(self.steps) or "nothing (it had exited already)"
        reason = f"; the stop request failed: {self.stop_error}" if self.stop_error else ""
        raise UncleanExit(f"{self.describe()} did not exit cleanly: the harness sent {story}, "
                          f"exit code {self.exitcode}{reason}")

    def __repr__(self) -> str:
        return f"<RunningProcess {self.describe()} endpoints={self.endpoints} exitcode={self.exitcode}>"


def start_process(
    process: ZmqProcess,
    *,
    ready_timeout: float = 10.0,
    stop: Optional[Callable[[], Any]] = None,
    stop_timeout: float = 2.0,
    term_timeout: float = 1.0,
    kill_timeout: float = 5.0,
    launch: Optional[Callable[[ZmqProcess], Any]] = None,
) -> RunningProcess:
    """Start ``process`` and wait until it is ready; the caller must ``shutdown()`` the result.

    ``ready_timeout`` bounds the wait for ``setup()``. ``stop`` replaces
    ``process.stop()`` as the first, polite step of the shutdown (a
    callable with no arguments, e.g. one that sends the stop message and
    reads its reply; it must not block without a deadline); each step then
    waits up to its timeout in seconds. If the process does not get ready
    (its ``setup()`` failed, it died, or ``ready_timeout`` passed) it is
    shut down before the error is raised. ``launch(process)`` replaces
    ``process.start()`` (e.g. :meth:`pollframe.testing.hosts.Host.start`
    starts it inside a network namespace). :func:`running` and the
    ``start_process`` fixture take the same options and guarantee the
    shutdown.
    """
    __tracebackhide__ = True
    handle = RunningProcess(process, stop=stop, timeouts=(stop_timeout, term_timeout, kill_timeout))
    (launch or ZmqProcess.start)(process)
    _started.add(process)
    try:
        handle.endpoints = process.wait_ready(ready_timeout)
    except BaseException:
        handle.shutdown()
        raise
    return handle


@contextmanager
def running(process: ZmqProcess, *, check_exit: bool = True, **options: Any) -> Iterator[RunningProcess]:
    """Start ``process``, wait until it is ready, yield a :class:`RunningProcess`, then stop it.

    ``options`` are those of :func:`start_process` (``ready_timeout``,
    ``stop``, ``stop_timeout``, ``term_timeout``, ``kill_timeout``). The
    process is gone when the block is left, whatever happened in it; if
    the block succeeded, an unclean exit fails it unless ``check_exit=False``.
    """
    __tracebackhide__ = True
    handle = start_process(process, **options)
    try:
        yield handle
    except BaseException:
        handle.shutdown()
        raise
    handle.shutdown()
    if check_exit:
        handle.check_clean_exit()


def kill_leftovers() -> List[str]:
    """Kill processes started by :func:`running` that are still alive; describe each one killed.

    ``running()`` never leaves one behind; this is the plugin's last line
    of defence at the end of a session (e.g. a generator-based fixture
    that was never finished).
    """
    killed = []
    for process in list(_started):
        if process.is_alive():
            process.kill()
            process.join(5.0)
            killed.append(f"{type(process).__name__} (pid {process.pid})")
        _started.discard(process)
    return killed
