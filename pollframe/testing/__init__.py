"""pollframe.testing: the kit for testing pollframe programs at three levels.

- Unit tests, no sockets: :class:`FakeStream` stands in for a Stream (a
  handler's ``reply_stream``), and :class:`FakeStreamFactory` makes them
  for code that opens its own connections; :class:`FakeClock` with
  ``PollLoop(clock=...)`` and :func:`run_for` fire timers without sleeping.
- Process tests: :func:`running` (or the ``start_process`` fixture)
  starts one real ``ZmqProcess``, hands back its endpoints and always
  stops it; a :class:`TimedSocket` (never blocks forever) and a
  :class:`Conversation` stand in for its peers.
- Loop tests: :func:`run_until` drives a loop until a condition holds, or
  fails with a clear message.

The pytest fixtures live in :mod:`pollframe.testing.plugin`, which pytest
loads through the ``pytest11`` entry point. This package itself does not
import pytest. Every failure raised here is an ``AssertionError`` that
names what was expected, reported at the test's own line.
"""
from pollframe.testing.conversation import Conversation
from pollframe.testing.drive import run_for, run_until
from pollframe.testing.errors import ContextHang, SocketTimeout, UncleanExit, WaitTimeout
from pollframe.testing.fakes import FakeClock, FakeStream, FakeStreamFactory
from pollframe.testing.harness import RunningProcess, running
from pollframe.testing.sockets import TimedSocket, free_tcp_endpoint, ipc_endpoint, terminate_context

__all__ = [
    "ContextHang",
    "Conversation",
    "FakeClock",
    "FakeStream",
    "FakeStreamFactory",
    "RunningProcess",
    "SocketTimeout",
    "TimedSocket",
    "UncleanExit",
    "WaitTimeout",
    "free_tcp_endpoint",
    "ipc_endpoint",
    "run_for",
    "run_until",
    "running",
    "terminate_context",
]
