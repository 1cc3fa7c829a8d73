"""The Majordomo broker on a loop and in a process: the thin tiers over :class:`Broker`.

:class:`BrokerServer` feeds a ROUTER stream's messages to the broker logic
and sends what it returns, and calls ``tick`` every heartbeat interval.
:class:`BrokerProcess` is a :class:`~pollframe.process.ZmqProcess` that
binds that ROUTER (one socket for clients and workers, as the RFC allows)
and, when it stops, tells its workers DISCONNECT so that they register
with the next broker as soon as it is up.
"""
from __future__ import annotations

import logging
from typing import Any, List, Optional

import zmq

from pollframe.errors import worth_logging
from pollframe.loop import PollLoop
from pollframe.mdp.broker import Broker
from pollframe.mdp.protocol import ProtocolError
from pollframe.process import ZmqProcess

__all__ = ["BrokerProcess", "BrokerServer"]

log = logging.getLogger("pollframe.mdp")


class BrokerServer:
    """Runs ``broker`` (logic) on ``stream`` (a ROUTER) on ``loop``.

    ``invalid`` counts the messages dropped as not MDP/0.1 (each logged,
    throttled to the 1st, 10th, 100th, ...).
    """

    def __init__(self, loop: PollLoop, stream: Any, broker: Optional[Broker] = None) -> None:
        self.loop = loop
        self.stream = stream
        self.broker = broker if broker is not None else Broker(now=loop.time())
        self.invalid = 0
        # Bound once: _received runs per message.
        self._handle = self.broker.handle
        self._time = loop.time
        self._send_one = stream.send_multipart
        self._tick = loop.call_every(self.broker.heartbeat, self._ticked)
        stream.on_recv(self._received)

    def close(self) -> None:
        """Stop ticking and say DISCONNECT to every worker (the stream stays open)."""
        self._tick.cancel()
        if not self.stream.closed:
            self._send(self.broker.disconnect_all())

    def _received(self, frames: List[bytes]) -> None:
        try:
            out = self._handle(frames, self._time())
        except ProtocolError as exc:
            self.invalid += 1
            if worth_logging(self.invalid):
                log.warning("pollframe: mdp broker: dropped a message from %r: %s (%d such so far)",
                            frames[0][:32] if frames else b"", exc.reason, self.invalid)
            return
        send = self._send_one
        for message in out:
            send(message)

    def _ticked(self) -> None:
        self._send(self.broker.tick(self.loop.time()))

    def _send(self, messages: List[List[bytes]]) -> None:
        for message in messages:
            self.stream.send_multipart(message)


class BrokerProcess(ZmqProcess):
    """An MDP/0.1 broker bound at ``endpoint`` (anything ``stream()`` takes for binding).

    ``broker_options`` go to :class:`Broker` (``heartbeat``, ``liveness``,
    ``request_expiry``, ``max_queue``, ``mmi``).
    """

    def __init__(self, endpoint: Any = "tcp://127.0.0.1:5555", *, name: Optional[str] = None,
                 mp_context: Any = None, **broker_options: Any) -> None:
        super().__init__(name=name or "mdp-broker", mp_context=mp_context)
        self.bind_addr = endpoint
        self.broker_options = broker_options
        self.server: Optional[BrokerServer] = None

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        stream, _ = self.stream(zmq.ROUTER, self.bind_addr, bind=True)
        broker = Broker(now=self.loop.time(), **self.broker_options)
        self.server = BrokerServer(self.loop, stream, broker)

    def teardown(self) -> None:
        if self.server is not None:
            self.server.close()
        super().teardown()
