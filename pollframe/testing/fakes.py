"""Stand-ins for unit tests: a stream without a socket, a clock without time passing.

:class:`FakeStream` takes the place of a :class:`~pollframe.stream.Stream`
(for instance as a ``MessageHandler``'s ``reply_stream``) and records what
is sent on it, so a test checks a handler's reply without any socket.

:class:`FakeClock` is a monotonic clock that only moves when the test says
so. Pass it to ``PollLoop(clock=...)``: timers then fire when the test
advances the clock and runs a pass, never because real time went by.
"""
from __future__ import annotations

import json
from typing import Any, Callable, List, Optional, Sequence

__all__ = ["FakeClock", "FakeStream", "FakeStreamFactory"]


class FakeStream:
    """Records messages sent on it, as lists of ``bytes`` frames, in :attr:`sent`.

    It has the sending side of a Stream (``send_multipart``, ``send``,
    ``send_string``, ``send_json``, ``flush``, ``close``) and its receiving
    side: ``on_recv(callback)`` stores the callback and :meth:`deliver`
    calls it, as the loop would for an arriving message. Frames must be
    bytes-like, as for pyzmq: a ``str`` frame raises ``TypeError``.
    """

    def __init__(self) -> None:
        #: Every message sent, in order: a list of ``bytes`` frames each.
        self.sent: List[List[bytes]] = []
        self.socket: Any = None
        self._callback: Optional[Callable[[List[bytes]], Any]] = None
        self._closed = False

    # ------------------------------------------------------------- sending

    def send_multipart(self, frames: Sequence[Any]) -> None:
        """Record ``frames`` in :attr:`sent` as ``bytes``; a closed stream raises."""
        self._check_open()
        self.sent.append([_as_bytes(frame) for frame in frames])

    def send(self, data: Any) -> None:
        """Record a one-frame message."""
        self.send_multipart([data])

    def send_string(self, text: str, encoding: str = "utf-8") -> None:
        """Record ``text`` as one frame, encoded with ``encoding``."""
        self.send_multipart([text.encode(encoding)])

    def send_json(self, obj: Any) -> None:
        """Record ``obj`` as one frame of compact JSON, as :meth:`Stream.send_json` sends it."""
        self.send_multipart([json.dumps(obj, separators=(",", ":")).encode()])

    def flush(self) -> int:
        """Nothing is ever queued: always 0, as a Stream with an empty queue returns."""
        return 0

    def queued(self) -> int:
        """Nothing is ever queued: always 0."""
        return 0

    def close(self, linger: Optional[float] = None) -> None:
        """Mark the stream closed; ``linger`` is in seconds, as for :meth:`Stream.close`, and unused."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    # ----------------------------------------------------------- receiving

    def on_recv(self, callback: Optional[Callable[[List[bytes]], Any]]) -> None:
        """Keep ``callback`` for :meth:`deliver` (``None`` stops receiving), as Stream.on_recv does."""
        self._check_open()
        self._callback = callback

    def receiving(self) -> bool:
        """True while a callback is set."""
        return self._callback is not None

    def deliver(self, frames: Sequence[Any]) -> None:
        """Hand ``frames`` to the ``on_recv`` callback, as the loop does for a message that arrives."""
        if self._callback is None:
            raise RuntimeError("FakeStream.deliver(): no on_recv callback (or receiving is paused)")
        self._callback([_as_bytes(frame) for frame in frames])

    # ------------------------------------------------------------ checking

    def sent_json(self, frame: int = -1) -> List[Any]:
        """Each sent message's frame ``frame`` (default the last) decoded from JSON."""
        return [json.loads(message[frame]) for message in self.sent]

    def clear(self) -> None:
        """Forget what was sent so far."""
        self.sent.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("FakeStream is closed")

    def __repr__(self) -> str:
        return f"<FakeStream sent={len(self.sent)}>"


class FakeStreamFactory:
    """A stream factory for code that makes its own connections: each call makes a :class:`FakeStream`.

    Pass it where a component takes ``factory()`` (``ReconnectingStream``,
    ``mdp.Worker``); :attr:`made` keeps every stream made, oldest first, and
    :attr:`current` is the newest, so a test delivers to and reads from the
    live connection and checks that the old ones were closed.
    """

    def __init__(self) -> None:
        self.made: List[FakeStream] = []

    def __call__(self) -> FakeStream:
        stream = FakeStream()
        self.made.append(stream)
        return stream

    @property
    def current(self) -> FakeStream:
        """The stream made last (an error before the first)."""
        if not self.made:
            raise RuntimeError("FakeStreamFactory: no stream made yet")
        return self.made[-1]

    def __repr__(self) -> str:
        return f"<FakeStreamFactory made={len(self.made)}>"


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, str):
        raise TypeError(f"frame {frame!r} is a str: encode it, or use send_string()")
    return bytes(frame)


class FakeClock:
    """A monotonic clock for ``PollLoop(clock=...)`` that moves only on :meth:`advance`.

    Time is kept in whole nanoseconds, so ten ``advance(0.1)`` make exactly
    one second. Calling the clock returns the time in seconds, like
    ``time.monotonic``.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._ns = _to_ns(start)

    def __call__(self) -> float:
        return self._ns / 1e9

    def time(self) -> float:
        """The time in seconds; the same as calling the clock."""
        return self()

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never back) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        self._ns += _to_ns(seconds)
        return self()

    def advance_to(self, when: float) -> float:
        """Move forward to ``when`` exactly (a timer due at ``when`` is due now); never back."""
        ns = max(self._ns, _to_ns(when))
        while ns / 1e9 < when:  # rounding to ns must not leave us a hair before ``when``
            ns += 1
        self._ns = ns
        return self()

    def __repr__(self) -> str:
        return f"<FakeClock {self():.9f}>"


def _to_ns(seconds: float) -> int:
    return int(round(seconds * 1e9))
