"""ZmqProcess: the process tier -- one child process, one context, one loop.

Theory of operation
-------------------
A :class:`ZmqProcess` object is made in the parent and may be pickled into
the child (``spawn`` and ``forkserver`` start methods), so ``__init__``
keeps only plain, picklable settings. Everything zmq is made in the child:
``run()`` calls :meth:`~ZmqProcess.setup`, which creates :attr:`context` and
:attr:`loop`; subclasses extend ``setup()`` to make their streams with
:meth:`~ZmqProcess.stream`. A stale context must never be used across a
fork, and this keeps it so.

``start()`` also opens a private control pipe between parent and child
(it carries small JSON messages, never pickles); the parent closes its end
once ``join()`` (or :meth:`~ZmqProcess.shutdown`) has seen the child exit.
Once ``setup()`` is done the child sends the endpoints it bound (random
ports included) through it, which :meth:`~ZmqProcess.wait_ready` returns in
the parent; the parent's :meth:`~ZmqProcess.stop` sends a stop request the
other way, which the child's loop reads like any other event. If the parent
dies, before the child is ready or after, the child sees the pipe close
and stops too, exiting 0 (best effort: a sibling forked later inherits the
pipe and keeps it open). :meth:`~ZmqProcess.shutdown` stops a child however
wedged: the stop request, then ``SIGTERM``, then ``SIGKILL``.

``SIGINT`` and ``SIGTERM`` stop the loop from ``run()``'s first line on;
``run()`` then closes every stream with a bounded linger and destroys the
context, so a process always exits 0 promptly, without a traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import multiprocessing.connection
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import zmq

from pollframe import children, trace
from pollframe.address import parse_address, port_of
from pollframe.control import FAILED, READY, STOP, ControlPipe
from pollframe.factory import SocketOptions, make_socket
from pollframe.loop import PollLoop
from pollframe.stream import Stream
from pollframe.units import MAX_FRAMES, MAX_MSG_SIZE, to_ms

__all__ = ["ProcessNotReady", "ReadyTimeout", "ZmqProcess"]

log = logging.getLogger("pollframe")


#: Seconds between two looks at the send queues while the shutdown drains.
_DRAIN_CHECK = 0.005
#: A zmq_ctx_term that returns this close to the deadline ran out of time.
_TERM_SLACK = 0.005

#: Socket types that never send application messages: nothing to linger for at close.
_RECEIVE_ONLY = frozenset({zmq.SUB, zmq.PULL})


class ProcessNotReady(RuntimeError):
    """The child died, or its ``setup()`` failed, before it was ready."""


class ReadyTimeout(ProcessNotReady, TimeoutError):
    """The child did not report ready within the timeout."""


class ZmqProcess(multiprocessing.Process):
    """Base class for the processes of a pollframe application.

    Subclasses override :meth:`setup` (calling ``super().setup()`` first)
    to make their streams, and keep ``__init__`` to picklable state; an
    override of :meth:`stop` or :meth:`teardown` calls the base method too,
    and ``run()`` is best left alone. Start it as a child with ``start()``,
    or call ``run()`` to use the current process. ``mp_context`` picks the
    start method for this process only: a name (``"fork"``, ``"spawn"``,
    ``"forkserver"``) or a context from ``multiprocessing.get_context()``;
    ``None`` uses the class's :attr:`start_method`, by default ``forkserver``
    where there is one and ``spawn`` elsewhere, never ``fork`` (a forked
    child inherits the parent's zmq descriptors: see :mod:`pollframe.children`).
    """

    #: The ``LINGER`` of the sockets :meth:`stream` makes, in seconds: how long a stream closed
    #: while the process runs keeps trying to deliver. At shutdown the drain's deadline applies.
    linger: float = 0.5
    #: Largest message in bytes that a stream accepts, -1: no limit. libzmq's ``MAXMSGSIZE``
    #: bounds each frame (a bigger one drops the connection); the stream's reader bounds the
    #: whole message (a bigger one is discarded before any copy and counted in ``loop.refused``).
    max_msg_size: int = MAX_MSG_SIZE
    #: Most frames in one message that a stream accepts (more: discarded like an oversized one); -1: no limit.
    max_frames: int = MAX_FRAMES
    #: Signals that stop the loop cleanly (exit code 0).
    stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    #: The start method of processes of this class that were given no ``mp_context``;
    #: None: ``forkserver`` where there is one, else ``spawn`` (see :mod:`pollframe.children`).
    start_method: str | None = None
    #: Sent to the child when the process that started it dies (Linux ``PR_SET_PDEATHSIG``);
    #: ``None``: only the closing control pipe tells it.
    parent_death_signal: int | None = signal.SIGTERM
    #: Seconds the shutdown may take to send what the streams still hold (see :meth:`run`).
    drain_timeout: float = 0.5
    #: Seconds each step of ending this process's own children at exit waits (ask, SIGTERM, SIGKILL).
    child_stop_timeout: float = 1.0
    #: The loop :meth:`setup` makes: :class:`~pollframe.loop.PollLoop`, ``EpollLoop`` or a subclass.
    loop_class: type[PollLoop] = PollLoop

    def __init__(
        self,
        *,
        name: str | None = None,
        daemon: bool | None = None,
        mp_context: str | Any | None = None,
    ) -> None:
        super().__init__(name=name, daemon=daemon)
        if mp_context is not None and not isinstance(mp_context, str):
            mp_context = mp_context.get_start_method()
        # None: the class's start_method, else children.default_start_method(), at start().
        # As for multiprocessing's own SpawnProcess etc., the child's plain Processes use it too.
        self._start_method: str | None = mp_context
        #: The :class:`zmq.Context`, made by :meth:`setup` in the running process.
        self.context: zmq.Context[Any] | None = None
        #: The :class:`~pollframe.loop.PollLoop`, made by :meth:`setup`.
        self.loop: PollLoop | None = None
        #: Endpoints bound by :meth:`stream`, e.g. ``tcp://127.0.0.1:43121``;
        #: in the parent, filled in by :meth:`wait_ready`.
        self.endpoints: list[str] = []
        self._streams: dict[Stream, float | None] = {}  # each stream -> the linger it was given
        self._stopping_children: list[Any] | None = None  # asked to stop by the drain
        self._close_by: float | None = None  # time.monotonic() deadline of the shutdown
        self._supervisor: Any = None  # made by supervise()
        self._stop_requested = False
        self._stops = 0  # stop() calls: a second one during the drain ends it
        self._control: ControlPipe | None = None  # parent's end
        self._child_control: ControlPipe | None = None
        self._ready = False
        self._failure: str | None = None  # why the child's setup() failed, as it said
        # In the parent: told when the child's first word was read (by whoever read it) and when the
        # pipe closes, so that a loop watching ready_fileno() stops before the descriptor goes.
        self._ready_listener: Callable[[], Any] | None = None
        self._trace_dir: str | None = None  # the parent's tracing at start(), for the child to follow
        self._launcher_pid: int | None = None  # in the child: the pid that started it, if it is our parent
        self._older_children: set[Any] = set()  # children that existed before setup(): not ours to end

    # ------------------------------------------------------------- in the parent

    def start(self) -> None:
        """Start the child, with a control pipe for :meth:`wait_ready` and :meth:`stop`."""
        if self.context is not None:
            raise RuntimeError(f"{self.name}: setup() ran in the parent; the child must make its context")
        if self._start_method is None:
            self._start_method = self.start_method or children.default_start_method()
        if self._start_method == "forkserver":
            children.preload_pollframe()
        # fork and spawn make the child ours; a forkserver child's parent is the server.
        self._launcher_pid = None if self._start_method == "forkserver" else os.getpid()
        ctx = multiprocessing.get_context(self._start_method)
        self._control, self._child_control = ControlPipe.pair(ctx)
        self._trace_dir = trace.directory()  # a forkserver's environment may be older than ours
        try:
            super().start()
        except BaseException:  # e.g. the process object cannot be pickled for spawn
            self._release_control()
            raise
        finally:
            # The child has its own copy now; ours would hide the child's death.
            self._child_control.close()
            self._child_control = None

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child to exit, as ``Process.join``; then close the control pipe."""
        super().join(timeout)
        if self.exitcode is not None:
            self._release_control()

    def _Popen(self, process_obj: Any) -> Any:  # type: ignore[override]  # noqa: N802
        """multiprocessing's hook: launch with this process's own start method."""
        ctx: Any = multiprocessing.get_context(self._start_method)
        return ctx.Process._Popen(process_obj)

    def wait_ready(self, timeout: float | None = 10.0) -> list[str]:
        """Wait until the child has run ``setup()``; return the endpoints it bound.

        The list holds one entry per ``stream(..., bind=True)`` in the order
        they were made, as bound (``tcp://127.0.0.1:43121``, ``ipc://...``).
        Raises :class:`ReadyTimeout` after ``timeout`` seconds and
        :class:`ProcessNotReady` if the child died or its ``setup()`` raised
        (with the child's reason). Calling it again returns the same list.
        """
        if self._popen is None:  # type: ignore[attr-defined]  # set by start()
            raise RuntimeError(f"{self.name}: call start() before wait_ready()")
        control = self._control  # None once the child has exited and been joined
        if not self._ready and self._failure is None and control is not None:
            ready = multiprocessing.connection.wait([control.connection, self.sentinel], timeout)
            if not ready:
                raise ReadyTimeout(f"{self.name} was not ready after {timeout} s")
            if control.connection in ready:
                self._read_first_word(control)
        if self._ready:
            return list(self.endpoints)
        self.join(1.0)
        if self._failure is not None:
            raise ProcessNotReady(f"{self.name} failed before it was ready: {self._failure}")
        raise ProcessNotReady(f"{self.name} exited with code {self.exitcode} before it was ready")

    def ready_fileno(self) -> int | None:
        """In the parent: a descriptor that becomes readable when the child's first word can be read.

        The word is *ready* (with the endpoints) or why ``setup()`` failed;
        the descriptor is readable at the child's exit too. ``None`` before
        ``start()``, once the word was read and once the pipe is closed. A
        loop watches it and then calls :meth:`poll_ready`, which does not
        wait (:func:`pollframe.supervise.watch_ready` does both).
        """
        control = self._control
        if control is None or control.closed or self._ready or self._failure is not None:
            return None
        return control.fileno()

    def poll_ready(self) -> bool:
        """In the parent, without waiting: read the child's first word if it is there; True once ready."""
        control = self._control
        if not self._ready and self._failure is None and control is not None and not control.closed:
            self._read_first_word(control)
        return self._ready

    def _read_first_word(self, control: ControlPipe) -> None:
        """Read the child's ready (endpoints) or failed (reason) message, if it sent one."""
        word = control.read_if_any()
        if word is None:
            return  # it died without a word
        kind, payload = word
        if kind == READY:
            self.endpoints = list(payload)
            self._ready = True
        elif kind == FAILED:
            self._failure = str(payload)
        self._tell_ready_listener()

    def _tell_ready_listener(self) -> None:
        listener = self._ready_listener
        if listener is not None:
            listener()

    @property
    def reported_ready(self) -> bool:
        """In the parent: the child said it was ready (as read by wait_ready, poll_ready or join)."""
        return self._ready

    @property
    def setup_failure(self) -> str | None:
        """In the parent: why the child's ``setup()`` failed, as it said (``"ValueError: ..."``), or None."""
        return self._failure

    def _release_control(self) -> None:
        """Close the parent's end of the control pipe, keeping a word the child sent before it exited."""
        control, self._control = self._control, None
        if control is None or control.closed:
            return
        try:
            if not self._ready and self._failure is None:
                self._read_first_word(control)
        finally:
            self._tell_ready_listener()  # before the descriptor it may watch is closed
            control.close()

    def shutdown(
        self,
        timeout: float = 1.0,
        *,
        stop: Callable[[], Any] | None = None,
        stop_timeout: float | None = None,
        term_timeout: float | None = None,
        kill_timeout: float | None = None,
    ) -> list[str]:
        """Stop the child and wait for it, escalating: ask, then ``SIGTERM``, then ``SIGKILL``.

        The first step calls ``stop`` (e.g. a function that sends the
        application's stop message; it must not block without a deadline)
        or else :meth:`stop`; a child frozen with ``SIGSTOP`` is sent
        ``SIGCONT`` first, so that it can act on it. A ``stop`` that raises
        is logged and the next step follows. Each step waits for the exit
        up to its own timeout in seconds (default ``timeout``).

        Returns the steps taken, in order: some of ``"stop"``,
        ``"SIGTERM"``, ``"SIGKILL"``; none if the child had exited already
        or was never started. :attr:`exitcode` then tells how it ended. If
        the shutdown itself is interrupted (Ctrl-C, a test's timeout), the
        child is killed before the interruption goes on. Safe to call twice.
        """
        if self._popen is None:  # type: ignore[attr-defined]  # set by start()
            return []
        kill_wait = timeout if kill_timeout is None else kill_timeout
        escalation: list[tuple[str, Callable[[], Any], float]] = [
            ("stop", lambda: self._ask_to_stop(stop), timeout if stop_timeout is None else stop_timeout),
            ("SIGTERM", self.terminate, timeout if term_timeout is None else term_timeout),
            ("SIGKILL", self.kill, kill_wait),  # cannot be ignored: this wait guards against the unexpected
        ]
        steps: list[str] = []
        try:
            for step, act, wait in escalation:
                if not self.is_alive():
                    break
                steps.append(step)
                act()
                self.join(wait)
        except BaseException:
            if self.is_alive():
                self.kill()
                self.join(kill_wait)
            raise
        finally:
            self._release_control()
        return steps

    def _ask_to_stop(self, stop: Callable[[], Any] | None) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGCONT)  # a stopped (SIGSTOP) child could not act on a request
            except ProcessLookupError:
                return  # it is gone already
        try:
            (stop or self.stop)()
        except Exception as exc:  # the child may be wedged: go on to SIGTERM
            log.warning("pollframe: %s: the stop request failed: %s: %s", self.name, type(exc).__name__, exc)

    # --------------------------------------------------------- either side

    def stop(self) -> None:
        """Stop the loop.

        In the process running the loop (a handler, a timer, a signal, or
        another thread of it) the loop stops after its current pass. Called
        on the parent's object after ``start()``, it sends a stop request
        through the control pipe and returns at once; ``join()`` waits for
        the child to exit (or use :meth:`shutdown`).
        """
        self._stop_requested = True
        self._stops += 1
        loop = self.loop
        if loop is not None:
            if not loop.closed:
                loop.stop()
        elif self._control is not None:
            try:
                self._control.send(STOP)
            except OSError:
                pass  # the child is gone already

    # ------------------------------------------------------------- in the child

    def setup(self) -> None:
        """Create :attr:`context` and :attr:`loop`; extend it to make your streams."""
        self._older_children = set(multiprocessing.active_children())
        self.context = zmq.Context()
        self.loop = self.loop_class()

    def run(self) -> None:
        """Set up, run the loop until stopped, drain, and always clean up.

        Runs in the child after ``start()``, or in the current process when
        called directly. Signal handlers are installed first, so ``SIGINT``
        or ``SIGTERM`` during ``setup()`` stops the process as cleanly as
        during the loop.

        Once the loop has stopped, the shutdown *drains* for up to
        :attr:`drain_timeout` seconds: the streams stop reading (new input
        is left unread), the children are asked to stop, and the loop keeps
        running until every stream's send queue is empty; then
        :meth:`teardown` closes the streams with the time that is left as
        their linger, so that libzmq sends what it still holds (its
        ``zmq_ctx_term`` returns when it has, or when the time is up).
        Timers keep running meanwhile: a timer that keeps sending keeps
        the drain busy until its deadline. When the deadline cuts the drain
        short a warning says how many messages the streams still held; a
        second stop (``stop()``, a signal, the parent's death) ends the
        drain's loop at once and closes with linger 0. What libzmq holds
        already once the queues are empty is bounded by the deadline only:
        ``zmq_ctx_term`` cannot be interrupted.
        """
        control = self._child_control  # None when run in-process
        self._stop_requested = False  # a stop() before this run is not for it
        if control is not None:
            trace.follow(self._trace_dir, type(self).__name__)  # trace as the parent did at start()
        else:
            trace.name_process(type(self).__name__)  # when tracing: the name its trace shows
        if self._control is not None:  # a child holds a copy of the parent's end: not ours
            self._control.close()
            self._control = None
        previous = self._install_signal_handlers()
        if control is not None:
            children.die_with_parent(self.parent_death_signal)
            if self._launcher_pid is not None and os.getppid() != self._launcher_pid:
                self.stop()  # the parent died before the kernel was asked to tell us
        try:
            self._run_loop(control)
        finally:
            try:
                self.teardown()
            finally:
                if control is not None:
                    control.close()
                    self._child_control = None
                else:  # run in-process: give the caller its handlers back
                    for signum, handler in previous.items():
                        signal.signal(signum, handler)

    def _run_loop(self, control: ControlPipe | None) -> None:
        try:
            self.setup()
            loop = self.loop
            if loop is None:
                raise RuntimeError(f"{type(self).__name__}.setup() must call super().setup()")
            if control is not None:
                loop.register(control, self._on_control)
        except BaseException as exc:
            if control is not None:
                try:
                    control.send(FAILED, f"{type(exc).__name__}: {exc}")
                except OSError:
                    pass  # the parent is gone: no one to tell
            raise
        if control is not None:
            try:
                control.send(READY, self.endpoints)
            except OSError:  # the parent died first: stop, as when it dies later
                log.warning("pollframe: %s: parent process gone before ready; stopping", self.name)
                return
            self._ready = True
        if not self._stop_requested:
            loop.run()
        self._drain(loop)

    def _drain(self, loop: PollLoop) -> None:
        """Stop reading, ask the children to stop, and run the loop until the send queues are empty."""
        started = time.monotonic()
        self._close_by = started + self.drain_timeout
        if self._supervisor is not None:  # the children it is asked to stop must stay stopped
            self._supervisor.stop_restarting()
        self._stopping_children = self._children()
        for kid in self._stopping_children:  # at once: they drain while we do
            children.ask_to_stop(kid)
        streams = [stream for stream in self._streams if not stream.closed]
        for stream in streams:
            stream.on_recv(None)
        if not any(stream.queued() for stream in streams):
            return
        outcome: list[str] = []

        def end(why: str) -> None:
            outcome.append(why)
            loop.stop()

        check = loop.call_every(_DRAIN_CHECK, lambda: None if _queued(streams) else end("drained"))
        deadline = loop.call_later(self.drain_timeout, end, "timeout")
        stops = self._stops
        try:
            loop.run()
            if not outcome and self._stops == stops:
                # The stop that began the shutdown came before the loop ran (during
                # setup): run() only consumed it. Now drain.
                loop.run()
        finally:
            check.cancel()
            deadline.cancel()
        if not outcome:  # a second stop (stop(), a signal, the parent gone): do not wait any longer
            self._close_by = time.monotonic()
        left = _queued(streams)
        if left:
            log.warning(
                "pollframe: %s: the shutdown drain ran out of time after %.3g s (drain_timeout %g s): "
                "%d message(s) still queued in %d stream(s); what their sockets cannot take now is dropped",
                self.name, time.monotonic() - started, self.drain_timeout, left,
                sum(1 for stream in streams if not stream.closed and stream.queued()),
            )

    def supervise(self, factory: Callable[[], Any], policy: Any = None, *, name: str | None = None) -> Any:
        """Start ``factory()`` as a child and restart it by ``policy``, on this process's loop.

        ``factory`` makes a new, unstarted process each call; ``policy`` is a
        :class:`~pollframe.supervise.RestartPolicy` (default: restart on
        failure, backoff 0.1 s doubling to 5 s, at most 5 restarts in 60 s).
        Returns the :class:`~pollframe.supervise.Supervised`; the
        :class:`~pollframe.supervise.Supervisor` is :attr:`supervisor`. The
        shutdown stops restarting before it stops the children.
        """
        return self.supervisor.add(factory, policy, name=name)

    @property
    def supervisor(self) -> Any:
        """This process's :class:`~pollframe.supervise.Supervisor` (made on first use, after ``setup()``)."""
        if self._supervisor is None:
            if self.loop is None:
                raise RuntimeError("supervise() needs setup() to have run (call super().setup() first)")
            from pollframe.supervise import Supervisor

            self._supervisor = Supervisor(self.loop)
        return self._supervisor

    def _children(self) -> list[Any]:
        """The children started since setup() that are still running."""
        return [p for p in multiprocessing.active_children() if p not in self._older_children]

    def teardown(self) -> None:
        """End the children, close the streams, close the loop, destroy the context.

        The streams close with the time left until the shutdown's deadline
        (the drain's, or :attr:`drain_timeout` from now) as their linger,
        except that one made with a shorter ``linger=`` keeps it (SUB and
        PULL: 0). If libzmq still held messages when that time ran out, a
        warning says so. Children started since :meth:`setup`
        (``ZmqProcess`` or not) are stopped together, each step waiting
        :attr:`child_stop_timeout`: asked to stop first (by the drain),
        then ``SIGTERM``, then ``SIGKILL`` (see
        :func:`pollframe.children.stop_all`). Otherwise multiprocessing's
        exit handler would wait for them without end.

        Called by ``run()`` however the loop ended. Extend it to release
        your own resources (call ``super().teardown()`` last).
        """
        close_by = self._close_by if self._close_by is not None else time.monotonic() + self.drain_timeout
        self._close_by = None
        kids, asked = self._stopping_children, True
        self._stopping_children = None
        if kids is None:
            kids, asked = self._children(), False
        try:
            self._close_streams(close_by)
        finally:
            children.stop_all(kids, self.child_stop_timeout, asked=asked)
            if self.loop is not None:
                self.loop.close()
            if self.context is not None:
                self._destroy_context(self.context, close_by)

    def _destroy_context(self, context: zmq.Context[Any], close_by: float) -> None:
        """Close what is left with the remaining time as linger; warn if libzmq needed all of it."""
        remaining = max(0.0, close_by - time.monotonic())
        context.destroy(linger=to_ms(remaining))
        if remaining > 0 and time.monotonic() >= close_by - _TERM_SLACK:
            log.warning(
                "pollframe: %s: libzmq still held unsent messages when the shutdown's time ran out "
                "(drain_timeout %g s); they are dropped", self.name, self.drain_timeout,
            )

    def _close_streams(self, close_by: float) -> None:
        for stream, given in reversed(list(self._streams.items())):
            if stream.closed:
                continue
            remaining = max(0.0, close_by - time.monotonic())
            linger = remaining if given is None or given < 0 else min(given, remaining)
            try:
                stream.close(linger=linger)
            except Exception:
                log.exception("pollframe: closing %r failed", stream)
        self._streams.clear()

    def stream(
        self,
        sock_type: int,
        addr: str | tuple[str, int | str | None],
        bind: bool,
        callback: Callable[[list[bytes]], Any] | None = None,
        subscribe: bytes | str | Iterable[bytes | str] = b"",
        *,
        linger: float | None = None,
        max_msg_size: int | None = None,
        heartbeat: float | None = None,
        heartbeat_timeout: float | None = None,
        heartbeat_ttl: float | None = None,
        curve_secret_key: bytes | str | None = None,
        curve_server_key: bytes | str | None = None,
        sockopts: Mapping[int, Any] | None = None,
        max_queue: int | None = None,
        max_frames: int | None = None,
    ) -> tuple[Stream, int | None]:
        """Make a socket of ``sock_type``, bind or connect it, and wrap it in a Stream.

        ``addr`` is ``"host:port"``, ``("host", port)``, ``"host"`` (bind to
        a random free port) or a ``tcp://``, ``ipc://`` or ``inproc://``
        endpoint; a bad one raises :class:`ValueError` naming it. Returns
        ``(stream, port)``: the TCP port bound or connected to, ``None``
        for ``ipc`` and ``inproc``. A SUB socket subscribes to ``subscribe``:
        one prefix, or a list of them (an empty list subscribes to nothing).
        A ROUTER gets ``ROUTER_MANDATORY``, so that every message it cannot
        deliver is counted in :attr:`Stream.dropped <pollframe.stream.Stream.dropped>`
        (the peer's pipe is full) or ``unroutable`` (the peer is gone)
        instead of vanishing; ``sockopts={zmq.ROUTER_MANDATORY: 0}`` turns
        that off. A stream that is closed is forgotten by the process.

        Options (times in seconds, applied before bind/connect):
        ``linger`` (default :attr:`linger`, but 0 for SUB and PULL, which
        never send application messages: nothing is lost by not waiting);
        ``max_msg_size`` in bytes and ``max_frames`` (defaults :attr:`max_msg_size`,
        :attr:`max_frames`; -1 for none; a larger frame drops the connection,
        a larger message is discarded unread); ``heartbeat`` enables ZMTP heartbeats every so many
        seconds, a peer silent for ``heartbeat_timeout`` (libzmq's default:
        one interval) is disconnected, and ``heartbeat_ttl`` asks the peer
        to do the same; ``curve_secret_key`` alone makes a CURVE server
        (a :func:`pollframe.auth.start_auth` authenticator must run on
        :attr:`context`), with ``curve_server_key`` a CURVE client;
        ``sockopts`` maps any other ``zmq`` option to its value;
        ``max_queue`` bounds the stream's send queue.
        """
        if self.context is None or self.loop is None:
            raise RuntimeError("stream() needs setup() to have run (call super().setup() first)")
        endpoint = parse_address(addr, bind)  # before the socket exists: nothing to leak
        if linger is None and sock_type in _RECEIVE_ONLY:
            linger = 0
        options = SocketOptions(
            linger=self.linger if linger is None else linger,
            max_msg_size=self.max_msg_size if max_msg_size is None else max_msg_size,
            heartbeat=heartbeat,
            heartbeat_timeout=heartbeat_timeout,
            heartbeat_ttl=heartbeat_ttl,
            curve_secret_key=curve_secret_key,
            curve_server_key=curve_server_key,
            subscribe=tuple(_prefixes(subscribe)) if sock_type == zmq.SUB else (),
            sockopts=dict(sockopts or {}),
        )
        sock, bound = make_socket(self.context, sock_type, endpoint, bind, options)
        most_frames = self.max_frames if max_frames is None else max_frames
        stream = Stream(sock, self.loop, max_queue=max_queue,
                        max_msg_size=options.max_msg_size if options.max_msg_size > 0 else None,
                        max_frames=most_frames if most_frames > 0 else None)
        if bound is not None:
            self.endpoints.append(bound)
        # Forget the streams closed since the last call: a process that reconnects
        # by closing and remaking a stream must not hold every one it ever made.
        self._streams = {kept: given for kept, given in self._streams.items() if not kept.closed}
        self._streams[stream] = linger
        if callback is not None:
            stream.on_recv(callback)
        return stream, endpoint.port if bound is None else port_of(bound)

    def _on_control(self, fd: int, events: int) -> None:
        """A stop request from the parent, or the parent gone (end of file)."""
        control = self._child_control
        if control is None:
            return
        try:
            while control.poll():
                kind, _ = control.read()
                if kind == STOP:
                    self.stop()
        except (EOFError, OSError):
            log.warning("pollframe: %s: parent process gone; stopping", self.name)
            if self.loop is not None:
                self.loop.unregister(control)
            self.stop()

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Make ``stop_signals`` stop the loop; only the main thread may."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_stop_signal) for signum in self.stop_signals}

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # A real signal handler: only set flags and wake the loop.
        self.stop()


def _queued(streams: Iterable[Stream]) -> int:
    return sum(stream.queued() for stream in streams if not stream.closed)


def _prefixes(subscribe: bytes | str | Iterable[bytes | str]) -> list[bytes]:
    """The SUB prefixes as bytes: one prefix (bytes or str) or an iterable of them."""
    if isinstance(subscribe, (bytes, str)):
        subscribe = [subscribe]
    prefixes = []
    for prefix in subscribe:
        if not isinstance(prefix, (bytes, str)):
            raise TypeError(f"a subscription prefix is bytes or str, not {type(prefix).__name__}")
        prefixes.append(prefix.encode() if isinstance(prefix, str) else prefix)
    return prefixes
