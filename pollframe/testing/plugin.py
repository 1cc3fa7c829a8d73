"""The pytest plugin of pollframe's testing kit: fixtures that clean up and never hang.

Installed with pollframe through the ``pytest11`` entry point (disable it
with ``-p no:pollframe``). Fixtures:

``zmq_context``
    A fresh ``zmq.Context``. Teardown closes the sockets left on it with
    linger 0 and terminates it within 5 s, or fails loudly (never hangs).
``poll_loop``
    A fresh :class:`~pollframe.loop.PollLoop`, closed at teardown.
``fake_clock``, ``clocked_loop``
    A :class:`~pollframe.testing.fakes.FakeClock` and a PollLoop running
    on it: timers fire only when the test moves the clock.
``tcp_endpoint``, ``ipc_endpoint``
    ``tcp://127.0.0.1:<free port>`` and a per-test ``ipc://`` path.
``make_socket``
    ``make_socket(zmq.REQ, connect=endpoint)``: a
    :class:`~pollframe.testing.sockets.TimedSocket` on ``zmq_context``,
    closed with linger 0 at teardown.
``start_process``
    ``start_process(PongProc("127.0.0.1"))``: starts a ZmqProcess, waits
    until it is ready and returns its
    :class:`~pollframe.testing.harness.RunningProcess`; at teardown each
    one is stopped (stop, SIGTERM, SIGKILL). If the test itself passed, a
    process that did not exit cleanly then fails it (an error at teardown).
``hosts``
    ``net = hosts(2)``: a :class:`~pollframe.testing.hosts.Network` of two
    network namespaces on one private network (see
    :mod:`pollframe.testing.hosts`), removed at teardown with everything
    placed on it; processes started with ``host.start(...)`` are checked
    for a clean exit as with ``start_process``. Skips the test without
    root or ``CAP_NET_ADMIN``.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest
import zmq

from pollframe.loop import PollLoop
from pollframe.testing.fakes import FakeClock
from pollframe.testing.harness import RunningProcess, kill_leftovers
from pollframe.testing.harness import start_process as _start_process
from pollframe.testing.hosts import Network
from pollframe.testing.hosts import hosts as _hosts
from pollframe.testing.sockets import (
    DEFAULT_TIMEOUT,
    IPC_PATH_MAX,
    TimedSocket,
    free_tcp_endpoint,
    ipc_endpoint as make_ipc_endpoint,
    terminate_context,
)

#: Seconds the ``zmq_context`` fixture's teardown waits for the context to terminate.
CONTEXT_TERM_TIMEOUT = 5.0


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context[Any]]:
    """A zmq context whose teardown closes leftover sockets and terminates it with a deadline."""
    context: zmq.Context[Any] = zmq.Context()
    yield context
    terminate_context(context, CONTEXT_TERM_TIMEOUT)


def _closed_at_teardown(loop: PollLoop) -> Iterator[PollLoop]:
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def poll_loop() -> Iterator[PollLoop]:
    """A fresh PollLoop, closed at teardown."""
    yield from _closed_at_teardown(PollLoop())


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that moves only when the test calls ``advance()``."""
    return FakeClock()


@pytest.fixture
def clocked_loop(fake_clock: FakeClock) -> Iterator[PollLoop]:
    """A PollLoop on ``fake_clock``: drive its timers with ``run_for`` or ``advance`` + ``run_once(0)``."""
    yield from _closed_at_teardown(PollLoop(clock=fake_clock))


@pytest.fixture
def tcp_endpoint() -> str:
    """``tcp://127.0.0.1:<port>`` on a port the OS just reported free."""
    return free_tcp_endpoint()


@pytest.fixture
def ipc_endpoint(tmp_path: Path) -> Iterator[str]:
    """An ``ipc://`` endpoint of this test's own, under ``tmp_path`` if its path is short enough."""
    if len(str(tmp_path / "sock").encode()) <= IPC_PATH_MAX:
        yield make_ipc_endpoint(tmp_path)
        return
    short = tempfile.mkdtemp(prefix="pf-")
    try:
        yield make_ipc_endpoint(short)
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def make_socket(zmq_context: zmq.Context[Any]) -> Iterator[Callable[..., TimedSocket]]:
    """Factory of test sockets: ``make_socket(sock_type, bind=..., connect=..., timeout=1.0)``.

    ``bind`` and ``connect`` take an endpoint each (``bind="tcp://127.0.0.1:*"``
    picks a free port; read it from ``sock.endpoints`` or ``last_endpoint``).
    Every socket is closed with linger 0 at teardown.
    """
    made: List[TimedSocket] = []

    def make(
        sock_type: int,
        *,
        bind: Optional[str] = None,
        connect: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> TimedSocket:
        sock = TimedSocket(zmq_context.socket(sock_type), timeout)
        made.append(sock)
        sock.linger = 0
        if bind is not None:
            sock.bind(bind)
        if connect is not None:
            sock.connect(connect)
        return sock

    yield make
    for sock in made:
        sock.close(linger=0)


@pytest.fixture
def start_process(request: pytest.FixtureRequest) -> Iterator[Callable[..., RunningProcess]]:
    """Factory: ``start_process(proc, **options)`` with the options of ``running()``; stopped at teardown.

    ``check_exit=False`` spares one process the clean-exit check.
    """
    started: List[Tuple[RunningProcess, bool]] = []

    def start(process: Any, *, check_exit: bool = True, **options: Any) -> RunningProcess:
        __tracebackhide__ = True
        handle = _start_process(process, **options)
        started.append((handle, check_exit))
        return handle

    yield start
    with ExitStack() as shutdowns:  # each one runs, last started first, even if another raised
        for handle, _ in started:
            shutdowns.callback(handle.shutdown)
    if not _call_failed(request.node):
        for handle, check_exit in started:
            if check_exit:
                handle.check_clean_exit()


@pytest.fixture
def hosts(request: pytest.FixtureRequest) -> Iterator[Callable[..., Network]]:
    """Factory: ``hosts(n=2)`` makes a :class:`~pollframe.testing.hosts.Network`; removed at teardown."""
    networks: List[Network] = []
    with ExitStack() as stack:

        def make(count: int = 2) -> Network:
            network = stack.enter_context(_hosts(count))
            networks.append(network)
            return network

        yield make
    if not _call_failed(request.node):  # after the networks were closed: their processes stopped
        for network in networks:
            network.check_clean_exits()


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember whether the test body failed, for teardowns that should not pile on."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed


def _call_failed(node: Any) -> bool:
    return bool(node.stash.get(_CALL_FAILED, True))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Last line of defence: no process started by ``running()`` outlives the session."""
    killed = kill_leftovers()
    if killed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"pollframe.testing: killed left-over process(es): {', '.join(killed)}",
                                red=True)
