"""ReconnectingStream: a client connection that starts over when its peer is gone.

Theory of operation
-------------------
A DEALER or REQ reconnects its TCP connection by itself, but that is not
enough when the peer died: a restarted broker does not know the worker
(it must say READY again), a REQ that lost its reply can never send again,
and messages queued for the dead peer would be delivered to the new one as
if nothing happened. The zguide's Paranoid Pirate worker answers all three
by hand: when heartbeats stop, close the socket, wait, open a new one,
announce yourself, and wait twice as long next time. This class is that
answer once.

The stream is a series of *connections*, numbered by :attr:`generation`
(1 for the first). Each is a fresh socket made by the ``factory`` (so a
test passes one that makes a ``FakeStream``). :meth:`open` makes the first;
:meth:`reconnect` closes the current one at once (linger 0: what it still
held for the dead peer is thrown away), and after a backoff makes the next
and calls ``on_connect(stream)`` so the application can announce itself.
The backoff starts at ``backoff`` seconds and doubles with each reconnect
that heard nothing from the peer in between, up to ``max_backoff``; the
first message on a connection resets it.

A send that belongs to a dead connection is dropped, never delivered on the
new one: while no connection is open every send is dropped, and a send
that passes ``generation=`` (the generation the request it answers came
in on) is dropped when that connection has been replaced. Both are counted
in :attr:`dropped`; :meth:`send_multipart` returns False for them.

With ``liveness`` (a :class:`~pollframe.liveness.Liveness`) the stream also
watches its peer: every message received is traffic, the tracker is
checked every ``liveness.interval`` seconds on the loop, and when it
declares the peer gone the stream reconnects. Sending heartbeats is the
application's part, since their frames depend on its protocol. The socket
events are watched too (``Stream.on_event``; ``watch_events=False`` turns
it off): a ``disconnected`` event (the peer closed the TCP connection or
died with it) declares the peer lost at once, without waiting for the
missed intervals.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Sequence

from pollframe.liveness import Liveness
from pollframe.loop import PollLoop
from pollframe.timers import Timer

__all__ = ["ReconnectingStream"]

log = logging.getLogger("pollframe")

#: ``factory()``: a new stream (a Stream or anything with its interface), already connected.
Factory = Callable[[], Any]


class ReconnectingStream:
    """A stream from ``factory()`` on ``loop`` that is remade whenever its peer is gone.

    ``on_recv(frames)`` is called for each message of the current
    connection; ``on_connect(stream)`` after each new connection is made,
    the first included. Times are seconds.
    """

    def __init__(
        self,
        loop: PollLoop,
        factory: Factory,
        *,
        on_recv: Optional[Callable[[List[bytes]], Any]] = None,
        on_connect: Optional[Callable[[Any], Any]] = None,
        liveness: Optional[Liveness] = None,
        backoff: float = 1.0,
        max_backoff: float = 32.0,
        watch_events: bool = True,
    ) -> None:
        if not 0 < backoff <= max_backoff:
            raise ValueError(f"need 0 < backoff <= max_backoff, not {backoff!r} and {max_backoff!r}")
        self.loop = loop
        self.factory = factory
        self.on_recv = on_recv
        self.on_connect = on_connect
        self.liveness = liveness
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.watch_events = watch_events
        #: The number of the current (or last) connection: 0 before :meth:`open`.
        self.generation = 0
        #: Sends dropped because their connection was gone.
        self.dropped = 0
        #: Reconnects so far.
        self.reconnects = 0
        self.stream: Optional[Any] = None
        self._delay = backoff
        self._heard = False  # anything received on the current connection
        self._pending: Optional[Timer] = None  # the reconnect waiting out its backoff
        self._watch: Optional[Timer] = None
        self._closed = False

    # ------------------------------------------------------------------ API

    def open(self) -> None:
        """Make the first connection now (and call ``on_connect``)."""
        self._check_open()
        if self.generation:
            raise RuntimeError("ReconnectingStream.open(): already open; use reconnect()")
        if self.liveness is not None:
            self._watch = self.loop.call_every(self.liveness.interval, self._check)
        self._connect()

    def send_multipart(self, frames: Sequence[Any], *, generation: Optional[int] = None) -> bool:
        """Send on the current connection; False (dropped, counted) if ``generation`` is not it.

        Without ``generation`` the message goes on whatever connection is
        open; with no connection open it is dropped.
        """
        stream = self.stream
        if stream is None or (generation is not None and generation != self.generation):
            self.dropped += 1
            return False
        stream.send_multipart(frames)
        return True

    def reconnect(self) -> None:
        """Close the connection now and make a new one after the backoff (if not already waiting)."""
        self._check_open()
        self._drop_stream()
        if self._pending is not None:
            return
        delay = self._delay
        if not self._heard:  # this connection never answered: wait longer next time
            self._delay = min(self._delay * 2, self.max_backoff)
        self._heard = False
        self.reconnects += 1
        log.info("pollframe: peer of connection %d gone; reconnecting in %.3g s", self.generation, delay)
        self._pending = self.loop.call_later(delay, self._connect)

    def close(self, linger: Optional[float] = 0) -> None:
        """Close the connection and stop reconnecting; ``linger`` as for ``Stream.close``."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._pending, self._watch):
            if timer is not None:
                timer.cancel()
        self._pending = self._watch = None
        self._drop_stream(linger)

    @property
    def connected(self) -> bool:
        """Whether a connection is open (it may still be waiting for its peer)."""
        return self.stream is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: no connection, and no reconnect to come."""
        return self._closed

    @property
    def next_backoff(self) -> float:
        """How long the next reconnect will wait."""
        return self._delay

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.stream is not None else "waiting")
        return f"<ReconnectingStream {state} generation={self.generation} dropped={self.dropped}>"

    # ------------------------------------------------------------ internals

    def _connect(self) -> None:
        self._pending = None
        if self._closed:
            return
        stream = self.factory()
        self.stream = stream
        self.generation += 1
        if self.liveness is not None:
            self.liveness.reset(self.loop.time())
            if self.watch_events and hasattr(stream, "on_event"):
                generation = self.generation
                stream.on_event(lambda event: self._event(event, generation))
        stream.on_recv(self._received)
        if self.on_connect is not None:
            self.on_connect(stream)

    def _received(self, frames: List[bytes]) -> None:
        if not self._heard:
            self._heard = True
            self._delay = self.backoff  # the peer answers: the next failure starts afresh
        if self.liveness is not None:
            self.liveness.heard(self.loop.time())
        if self.on_recv is not None:
            self.on_recv(frames)

    def _event(self, event: Any, generation: int) -> None:
        """A socket event of connection ``generation``: a disconnect means the peer is lost."""
        liveness = self.liveness
        if (event.name == "disconnected" and generation == self.generation and self.stream is not None
                and liveness is not None and liveness.lost(self.loop.time())):
            self.reconnect()

    def _check(self) -> None:
        liveness = self.liveness
        if self.stream is not None and liveness is not None and liveness.check(self.loop.time()):
            self.reconnect()

    def _drop_stream(self, linger: Optional[float] = 0) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.close(linger=linger)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ReconnectingStream is closed")
