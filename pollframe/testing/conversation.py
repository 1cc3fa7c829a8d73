"""Process tests as conversations: send this, expect that.

A :class:`Conversation` talks JSON messages over a
:class:`~pollframe.testing.sockets.TimedSocket`, standing in for the peers
of the process under test::

    chat = Conversation(req)
    chat.ask(["ping", [0], {}], ["pong", [0], {}])

A reply that differs, is not JSON, or does not come within the socket's
timeout fails with an ``AssertionError`` that shows what was expected, what
came, and the conversation so far. The kit's frames are hidden from
pytest's traceback, so the failure points at the test's own line.
"""
from __future__ import annotations

import json
from typing import Any, List, Optional, Sequence, Tuple

from pollframe.errors import shorten
from pollframe.testing.sockets import PREVIEW_LIMIT, TimedSocket

__all__ = ["Conversation"]

#: How many earlier steps a failure message shows.
TRANSCRIPT_TAIL = 6


class Conversation:
    """JSON messages over a test socket, checked one reply at a time.

    ``json_frame`` is the index of the frame that holds the JSON message
    (default the last, as for ``MessageHandler``); ``envelope`` frames go
    before it on every send (``[b""]`` for a DEALER talking to a ROUTER or
    REP). In ``expected`` values, ``unittest.mock.ANY`` matches anything,
    and tuples match JSON arrays.
    """

    def __init__(
        self,
        sock: TimedSocket,
        *,
        json_frame: int = -1,
        envelope: Sequence[bytes] = (),
        timeout: Optional[float] = None,
    ) -> None:
        self.sock = sock
        self.json_frame = json_frame
        self.envelope = list(envelope)
        self.timeout = timeout
        #: ``("->", message)`` for each send, ``("<-", message)`` for each reply, in order.
        self.transcript: List[Tuple[str, Any]] = []

    def send(self, message: Any) -> Conversation:
        """Send ``message`` encoded as JSON, after the envelope frames."""
        __tracebackhide__ = True
        self.sock.send_multipart(self.envelope + [json.dumps(message).encode()], self.timeout)
        self.transcript.append(("->", message))
        return self

    def send_frames(self, frames: Sequence[bytes]) -> Conversation:
        """Send raw frames as they are (a malformed request, say); no envelope is added."""
        __tracebackhide__ = True
        self.sock.send_multipart(list(frames), self.timeout)
        self.transcript.append(("->", list(frames)))
        return self

    def expect(self, expected: Any, *, timeout: Optional[float] = None) -> Any:
        """Receive one message and check its JSON frame equals ``expected``; return it decoded."""
        __tracebackhide__ = True
        frames = self.sock.recv_multipart(self._timeout(timeout), expect=self._expecting(expected))
        try:
            got = json.loads(frames[self.json_frame])
        except (IndexError, ValueError):
            self.transcript.append(("<-", frames))
            shown = shorten(frames, PREVIEW_LIMIT)
            raise AssertionError(self._failure(expected, f"frames {shown}, whose frame "
                                                         f"{self.json_frame} is not JSON")) from None
        self.transcript.append(("<-", got))
        if _normalized(expected) != got:
            raise AssertionError(self._failure(expected, shorten(got, 400)))
        return got

    def ask(self, request: Any, expected: Any, *, timeout: Optional[float] = None) -> Any:
        """Send ``request``, then expect ``expected`` as its reply; return the reply."""
        __tracebackhide__ = True
        self.send(request)
        return self.expect(expected, timeout=timeout)

    def expect_nothing(self, within: float = 0.1) -> None:
        """Fail if any message arrives within ``within`` seconds."""
        __tracebackhide__ = True
        self.sock.expect_nothing(within)

    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        return timeout if timeout is not None else self.timeout

    def _expecting(self, expected: Any) -> str:
        return f"{shorten(expected, PREVIEW_LIMIT)}\n{self._story()}"

    def _failure(self, expected: Any, got: str) -> str:
        return (f"{self.sock.describe()}:\n  expected {shorten(expected, 400)}\n  got      {got}\n"
                f"{self._story()}")

    def _story(self) -> str:
        steps = self.transcript[-TRANSCRIPT_TAIL:]
        lines = [f"  {arrow} {shorten(message, PREVIEW_LIMIT)}" for arrow, message in steps]
        skipped = len(self.transcript) - len(steps)
        head = "conversation so far:"
        if skipped:
            head = f"conversation so far ({skipped} earlier steps not shown):"
        return "\n".join([head] + lines) if lines else "(nothing sent or received before)"


def _normalized(value: Any) -> Any:
    """Tuples as lists, recursively, so ``("pong", [0], {})`` matches the JSON array."""
    if isinstance(value, (list, tuple)):
        return [_normalized(item) for item in value]
    if isinstance(value, dict):
        return {key: _normalized(item) for key, item in value.items()}
    return value
