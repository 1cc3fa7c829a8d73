"""Worker: an MDP/0.1 worker on a PollLoop (the message tier over WorkerSession).

It wires three pieces: a :class:`~pollframe.mdp.session.WorkerSession`
(the frames), a :class:`~pollframe.liveness.Liveness` tracker of the broker
and a :class:`~pollframe.reconnect.ReconnectingStream` (the connection).
Every connection opens with READY; a heartbeat goes out when the worker
sent nothing for an interval; when the broker is silent for ``liveness``
intervals, or says DISCONNECT, the worker closes its socket and connects
anew after a backoff, as the RFC asks. A reply to a request that came on a
connection since replaced is dropped, not sent to a broker that never
asked for it.

``handler(body) -> reply body`` serves one request at a time on the loop
(MDP workers handle one request at a time). A handler that raises is
logged, and the worker leaves (DISCONNECT) and registers anew, so the
broker does not hold it as busy forever; that request is not answered, and
the client's own retry asks again. A handler that takes longer than the
broker's expiry (``heartbeat * liveness``) is taken for dead by the broker.

The socket comes from ``factory()``, which returns a stream connected to
the broker: in a :class:`~pollframe.process.ZmqProcess`,
``lambda: self.stream(zmq.DEALER, endpoint, bind=False)[0]``; in a unit
test, a ``FakeStream``.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, List, Sequence, Union

from pollframe.errors import worth_logging
from pollframe.liveness import Liveness
from pollframe.loop import PollLoop
from pollframe.mdp.protocol import ProtocolError
from pollframe.mdp.session import Disconnect, Request, WorkerSession
from pollframe.reconnect import Factory, ReconnectingStream

__all__ = ["Worker"]

log = logging.getLogger("pollframe.mdp")

Handler = Callable[[List[bytes]], Sequence[bytes]]


class Worker:
    """Serves ``service`` for an MDP/0.1 broker reached through ``factory()`` streams.

    ``heartbeat`` and ``liveness`` must match the broker's. Counters:
    ``served`` (replies sent), ``failed`` (handler errors), ``invalid``
    (messages from the broker that are not MDP/0.1, dropped).
    """

    def __init__(
        self,
        loop: PollLoop,
        service: Union[str, bytes],
        handler: Handler,
        factory: Factory,
        *,
        heartbeat: float = 2.5,
        liveness: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 32.0,
    ) -> None:
        now = loop.time()
        self.loop = loop
        self.handler = handler
        self.session = WorkerSession(service, heartbeat=heartbeat, now=now)
        self.broker = Liveness(heartbeat, liveness, now=now)
        self.connection = ReconnectingStream(
            loop, factory, on_recv=self._received, on_connect=self._connected,
            liveness=self.broker, backoff=backoff, max_backoff=max_backoff,
        )
        self.served = 0
        self.failed = 0
        self.invalid = 0
        self._beat = loop.call_every(heartbeat, self._heartbeat)
        self.connection.open()

    def close(self) -> None:
        """Say DISCONNECT to the broker (if connected) and close; no more reconnects."""
        self._beat.cancel()
        if self.connection.connected:
            self.connection.send_multipart(self.session.disconnect())
        self.connection.close(linger=0.5)

    @property
    def generation(self) -> int:
        """The number of the current connection to the broker."""
        return self.connection.generation

    def __repr__(self) -> str:
        return f"<mdp.Worker {self.session.service!r} served={self.served} {self.connection!r}>"

    # ------------------------------------------------------------ internals

    def _connected(self, stream: Any) -> None:
        stream.send_multipart(self.session.connect(self.loop.time()))

    def _received(self, frames: List[bytes]) -> None:
        try:
            event = self.session.handle(frames, self.loop.time())
        except ProtocolError as exc:
            self.invalid += 1
            if worth_logging(self.invalid):
                log.warning("pollframe: mdp worker %r: dropped a message from the broker: %s "
                            "(%d such so far)", self.session.service, exc.reason, self.invalid)
            return
        if isinstance(event, Request):
            self._serve(event)
        elif isinstance(event, Disconnect):
            log.info("pollframe: mdp worker %r: the broker said DISCONNECT; connecting anew",
                     self.session.service)
            self.connection.reconnect()

    def _serve(self, request: Request) -> None:
        # The handler runs synchronously, so its reply goes out on the
        # connection the request came on, or is dropped if that one was
        # closed meanwhile (no connection is open during the backoff).
        try:
            body = list(self.handler(request.body))
            frames = self.session.reply(request, body, self.loop.time())
        except Exception as exc:
            self.failed += 1
            self.loop.report(exc, f"mdp worker {self.session.service!r} handler {self.handler!r}")
            self.connection.send_multipart(self.session.disconnect())
            self.connection.reconnect()
            return
        if self.connection.send_multipart(frames):
            self.served += 1

    def _heartbeat(self) -> None:
        if self.connection.connected:
            for frames in self.session.tick(self.loop.time()):
                self.connection.send_multipart(frames)
