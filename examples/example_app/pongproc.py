"""PongProc: answers pings over a ROUTER socket that keeps REP's promise.

Run it alone (until Ctrl-C, SIGTERM or a ``plzdiekthxbye`` message)::

    python examples/example_app/pongproc.py [ADDR]     # default 127.0.0.1:5678

Any ZeroMQ REQ client, in any language, may then send
``["ping", [n], {}]`` and gets ``["pong", [n], {}]`` back. See README.md
for the message chains.

Why ROUTER and not REP: libzmq's ZMTP/1.0 fallback turns random bytes from a
stray TCP client into messages, and a REP socket fed such junk can stall a
good client for seconds; a ROUTER keeps serving. PongProc keeps REP's
contract for its peers by hand: every request gets exactly one reply, sent
back through the request's envelope, errors included.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

import zmq
from logic import PingHandler

from pollframe.errors import BadArguments, shorten
from pollframe.handler import MessageHandler, message
from pollframe.process import ZmqProcess
from pollframe.stream import Stream

log = logging.getLogger("example_app.pong")

DEFAULT_ADDR = "127.0.0.1:5678"


class PongProc(ZmqProcess):
    """The process tier: makes the stream and runs the loop (see ZmqProcess)."""

    def __init__(self, bind_addr: Any = DEFAULT_ADDR, *, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.bind_addr = bind_addr
        self.rep_stream: Stream | None = None
        self.ping_handler = PingHandler()

    def setup(self) -> None:
        """Sets up PyZMQ and creates all streams."""
        super().setup()
        # ROUTER_MANDATORY: a reply to a peer that is gone is counted and
        # logged by the stream instead of vanishing silently.
        self.rep_stream, _ = self.stream(
            zmq.ROUTER, self.bind_addr, bind=True, sockopts={zmq.ROUTER_MANDATORY: 1}
        )
        self.rep_stream.on_recv(RepStreamHandler(self.rep_stream, self.stop, self.ping_handler))
        log.info("PongProc serving on %s", self.endpoints[-1])


class RepStreamHandler(MessageHandler):
    """The message tier: handles the requests arriving at PongProc's stream."""

    def __init__(self, rep_stream: Stream, stop: Callable[[], None], ping_handler: PingHandler) -> None:
        # A ROUTER standing in for REP: a handler that forgot to reply still answers with an error.
        super().__init__(reply_stream=rep_stream, always_reply=True)
        self._stop = stop
        self._ping_handler = ping_handler

    @message
    def ping(self, count: int) -> list:
        """Send back a pong with the same count."""
        if type(count) is not int:
            raise BadArguments(f"ping count must be an integer, not {shorten(count)}")
        print(f"Pong got request: ping {count}", flush=True)
        return self._ping_handler.make_pong(count)

    @message
    def plzdiekthxbye(self, data: Any = None) -> list:
        """Stop PongProc; the peer still gets its reply, as REP promises."""
        self._stop()
        return ["bye", [], {}]


def main(argv: list[str]) -> int:
    addr = argv[0] if argv else DEFAULT_ADDR
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    PongProc(addr).run()  # in this process: Ctrl-C and SIGTERM stop it cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
