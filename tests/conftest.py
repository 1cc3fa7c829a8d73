"""Fixtures for the project's own tests.

The general ones (``zmq_context``, ``poll_loop``, ``make_socket``, ...)
come from the ``pollframe.testing`` plugin, which pytest loads through the
``pytest11`` entry point once pollframe is installed; ``pytest_configure``
registers it here when it is not (a checkout run with ``python -m pytest``).
"""
from __future__ import annotations

import pytest
import zmq

import pollframe.testing.plugin


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pollframe"):
        config.pluginmanager.register(pollframe.testing.plugin, "pollframe")


@pytest.fixture
def ctx(zmq_context):
    """The shared context: leftover sockets are closed with linger 0 and teardown never hangs."""
    return zmq_context


@pytest.fixture
def loop(poll_loop):
    """The loop under test; test_epoll.py overrides it to run the same tests on EpollLoop."""
    return poll_loop


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
