"""The failures the testing kit raises.

All of them are ``AssertionError`` subclasses: pytest reports them as test
failures with their message, not as errors in the test's code, and the
kit's own frames are hidden from the traceback (``__tracebackhide__``), so
the report points at the test's line.
"""
from __future__ import annotations

__all__ = ["ContextHang", "SocketTimeout", "UncleanExit", "WaitTimeout"]


class WaitTimeout(AssertionError):
    """Something a test waited for did not happen before its deadline."""


class SocketTimeout(WaitTimeout):
    """A test socket could not send, or received nothing, within its timeout."""


class ContextHang(AssertionError):
    """A ``zmq.Context`` did not terminate within its deadline (a socket is still open somewhere)."""


class UncleanExit(AssertionError):
    """A process did not exit cleanly when asked to: it needed SIGTERM or SIGKILL, or exited non-zero."""
