"""Peer processes for the socket event tests, importable by name (spawn, forkserver)."""
from __future__ import annotations

from typing import Any

import zmq

from pollframe.auth import start_auth
from pollframe.process import ZmqProcess


class ConnectorProc(ZmqProcess):
    """Connects a DEALER to ``endpoint`` and says hello; the test's stream is the one that binds."""

    def __init__(self, endpoint: str, *, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.endpoint = endpoint

    def setup(self) -> None:
        super().setup()
        stream, _ = self.stream(zmq.DEALER, self.endpoint, bind=False)
        stream.send(b"hello")


class CurveServerProc(ZmqProcess):
    """A CURVE ROUTER on a random port whose authenticator admits no client key at all."""

    def __init__(self, server_secret: bytes, *, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.server_secret = server_secret

    def setup(self) -> None:
        super().setup()
        assert self.context is not None and self.loop is not None
        start_auth(self.context, self.loop)
        self.stream(zmq.ROUTER, "127.0.0.1", bind=True, curve_secret_key=self.server_secret)
