"""The logic tier of the ping-pong: plain Python, no zmq, no pollframe.

Both classes take and return plain values (message triples as lists), so
they are unit-tested without a socket; the message tier does the rest.
"""

from __future__ import annotations


class PingHandler:
    """The pong side: answers each ping with a pong carrying the same count."""

    def __init__(self) -> None:
        self.pings = 0

    def make_pong(self, count: int) -> list:
        """Create and return the pong message for ping number *count*."""
        self.pings += 1
        return ["pong", [count], {}]


class Pinger:
    """The ping side: sends *total* pings in turn and checks every pong.

    With ``stop_pong`` it asks the pong side to stop (``plzdiekthxbye``)
    after the last pong, and is done once the pong side said ``bye``.
    """

    def __init__(self, total: int = 5, stop_pong: bool = False) -> None:
        self.total = total
        self.stop_pong = stop_pong
        self.sent = 0
        self.done = False

    def first_message(self) -> list | None:
        """The message that starts the exchange."""
        return self._next_ping() if self.total > 0 else self._finish()

    def on_pong(self, count: int) -> list | None:
        """The message to send after pong *count*, or None when done.

        Raises ValueError for a pong that does not answer the last ping.
        """
        if count != self.sent - 1:
            raise ValueError(f"pong {count!r} does not answer ping {self.sent - 1}")
        if self.sent < self.total:
            return self._next_ping()
        return self._finish()

    def on_bye(self) -> None:
        """The pong side confirmed that it stops."""
        if not (self.stop_pong and self.sent == self.total):
            raise ValueError("bye before we asked the pong side to stop")
        self.done = True

    def _next_ping(self) -> list:
        self.sent += 1
        return ["ping", [self.sent - 1], {}]

    def _finish(self) -> list | None:
        if self.stop_pong:
            return ["plzdiekthxbye", [], {}]
        self.done = True
        return None
