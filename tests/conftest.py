"""Shared fixtures for the project's own tests."""
from __future__ import annotations

import pytest
import zmq

from pollframe.loop import PollLoop


@pytest.fixture
def ctx():
    """A context whose teardown closes leftover sockets with linger 0 and never hangs."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def loop():
    poll_loop = PollLoop()
    yield poll_loop
    poll_loop.close()


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
