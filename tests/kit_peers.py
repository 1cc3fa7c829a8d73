"""Peers for the testing kit's own tests: a polite one, a silent one, a stubborn one.

They live in an importable module so that the ``spawn`` and ``forkserver``
start methods can unpickle them in the child. Each binds one ROUTER stream
on ``127.0.0.1`` (a random port) and gives up by itself after
``self_destruct`` seconds, so that not even a broken harness could leave
one running for long.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import zmq

from pollframe.handler import MessageHandler, message
from pollframe.process import ZmqProcess
from pollframe.stream import Stream


class _Peer(ZmqProcess):
    self_destruct = 60.0

    def __init__(self, addr: str = "127.0.0.1", *, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.addr = addr

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        self.loop.call_later(self.self_destruct, os._exit, 3)
        stream, _ = self.stream(zmq.ROUTER, self.addr, bind=True)
        self.serve(stream)

    def serve(self, stream: Stream) -> None:
        raise NotImplementedError


class PingPongPeer(_Peer):
    """Answers ``["ping", [n], {}]`` with ``["pong", [n], {}]``; ``["bye"]`` stops it after the reply."""

    def serve(self, stream: Stream) -> None:
        stream.on_recv(_PingPong(stream, self.stop))


class _PingPong(MessageHandler):
    def __init__(self, stream: Stream, stop: Any) -> None:
        super().__init__(reply_stream=stream)
        self._stop = stop

    @message
    def ping(self, n: int) -> list:
        return ["pong", [n], {}]

    @message
    def bye(self) -> list:
        self._stop()
        return ["bye", [], {}]


class SilentPeer(_Peer):
    """Reads every request and never answers: its peers wait in vain."""

    def serve(self, stream: Stream) -> None:
        stream.on_recv(lambda frames: None)


class StubbornPeer(SilentPeer):
    """Ignores stop requests and SIGTERM: only SIGKILL ends it (or its self-destruct timer)."""

    stop_signals = (signal.SIGINT,)
    self_destruct = 30.0

    def setup(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        super().setup()

    def stop(self) -> None:
        if self.loop is None:  # in the parent: send the request, which the child will ignore
            super().stop()


class BrokenPeer(_Peer):
    """Its setup() fails after binding: the parent's wait_ready() must say why."""

    def serve(self, stream: Stream) -> None:
        raise RuntimeError("no configuration found")
