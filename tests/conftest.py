"""Fixtures for the project's own tests.

The general ones (``zmq_context``, ``poll_loop``, ``make_socket``, ...)
come from the ``pollframe.testing`` plugin, which pytest loads through the
``pytest11`` entry point once pollframe is installed; ``pytest_configure``
registers it here when it is not (a checkout run with ``python -m pytest``).
"""
from __future__ import annotations

from contextlib import closing

import pytest
import zmq

import pollframe.testing.plugin
from pollframe.epoll import EpollLoop
from pollframe.loop import PollLoop


def pytest_configure(config: pytest.Config) -> None:
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


@pytest.fixture
def loop(loop_class):
    """The loop under test, of each class in turn; closed at teardown."""
    with closing(loop_class()) as made:
        yield made


@pytest.fixture
def loop_on_clock(loop_class, fake_clock):
    """The loop under test on ``fake_clock``."""
    with closing(loop_class(clock=fake_clock)) as made:
        yield made


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
