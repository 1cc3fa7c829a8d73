"""Fixtures for the project's own tests.

The general ones (``zmq_context``, ``poll_loop``, ``make_socket``, ...)
come from the ``pollframe.testing`` plugin, which pytest loads through the
``pytest11`` entry point once pollframe is installed; ``pytest_configure``
registers it here when it is not (a checkout run with ``python -m pytest``).
"""
from __future__ import annotations

import itertools
import signal

import pytest
import zmq

import pollframe.testing.plugin
from pollframe.epoll import EpollLoop
from pollframe.loop import PollLoop
from pollframe.testing.sockets import terminate_context


def pytest_configure(config: pytest.Config) -> None:
    # A shell started without job control runs background commands with SIGINT ignored, and an ignored
    # signal stays ignored across exec: every child a test starts would then ignore the SIGINT the test
    # sends it. Python's own handler is reset to the default in an exec'd child, so restore it here.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not config.pluginmanager.has_plugin("pollframe"):
        config.pluginmanager.register(pollframe.testing.plugin, "pollframe")


@pytest.fixture
def ctx(zmq_context):
    """The shared context: leftover sockets are closed with linger 0 and teardown never hangs."""
    return zmq_context


@pytest.fixture(params=[PollLoop, EpollLoop], ids=["PollLoop", "EpollLoop"])
def loop_class(request):
    """Each behaviour test of the loop and the stream runs on both loop classes."""
    return request.param


def _closed_after_the_sockets(made, ctx):
    """Close the test's leftover sockets first: freed unclosed by the loop's close, pyzmq would warn."""
    try:
        yield made
    finally:
        try:
            terminate_context(ctx)
        finally:
            made.close()


@pytest.fixture
def loop(loop_class, ctx):
    """The loop under test, of each class in turn; closed at teardown."""
    yield from _closed_after_the_sockets(loop_class(), ctx)


@pytest.fixture
def loop_on_clock(loop_class, fake_clock, ctx):
    """The loop under test on ``fake_clock``."""
    yield from _closed_after_the_sockets(loop_class(clock=fake_clock), ctx)


@pytest.fixture
def push_pull(ctx):
    """A connected (PUSH, PULL) pair over inproc: a message sent is at once readable."""
    pull = ctx.socket(zmq.PULL)
    pull.rcvhwm = 0
    pull.bind("inproc://push-pull")
    push = ctx.socket(zmq.PUSH)
    push.sndhwm = 0
    push.connect("inproc://push-pull")
    return push, pull


@pytest.fixture
def pong_procs(start_process, tmp_path):
    """Start the example's PongProc on an address with the kit's harness: (process, endpoint).

    Each is stopped at the end and, when the test passed, must have exited
    cleanly, unless started with ``check_exit=False`` (one the test kills).
    Its output goes to a log file in ``tmp_path``.
    """
    from robust_peers import QuietPongProc

    numbers = itertools.count()

    def start(addr, *, check_exit=True):
        proc = QuietPongProc(addr)
        proc.log_path = str(tmp_path / f"pong{next(numbers)}.log")
        return proc, start_process(proc, check_exit=check_exit).endpoint

    return start
