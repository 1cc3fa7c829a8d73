"""PongProc: answers pings over a ROUTER socket that keeps REP's promise.

Run it alone (until Ctrl-C, SIGTERM or a ``plzdiekthxbye`` message from a
trusted peer)::

    python examples/example_app/pongproc.py [ADDR] [--trust IP ...]   # default 127.0.0.1:5678

Any ZeroMQ REQ client, in any language, may then send
``["ping", [n], {}]`` and gets ``["pong", [n], {}]`` back. See README.md
for the message chains.

Who may stop it: the parent over the control pipe (``stop()``), and a
``plzdiekthxbye`` whose sender's address (libzmq's ``Peer-Address``
property of the message) is a loopback address or one given with
``--trust`` / ``trusted=``. Anyone else gets ``["error", ["only a trusted
peer may stop PongProc"], {}]`` and PongProc goes on serving.

Why ROUTER and not REP: libzmq's ZMTP/1.0 fallback turns random bytes from a
stray TCP client into messages, and a REP socket fed such junk can stall a
good client for seconds; a ROUTER keeps serving. PongProc keeps REP's
contract for its peers by hand: every request gets exactly one reply, sent
back through the request's envelope, errors included.
"""

from __future__ import annotations

import logging
import sys
import argparse
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import zmq
from logic import PingHandler

from pollframe.auth import is_loopback, normalise_address
from pollframe.errors import BadArguments, MessageError, shorten
from pollframe.handler import MessageHandler, message
from pollframe.process import ZmqProcess
from pollframe.stream import Stream

log = logging.getLogger("example_app.pong")

DEFAULT_ADDR = "127.0.0.1:5678"


class PongProc(ZmqProcess):
    """The process tier: makes the stream and runs the loop (see ZmqProcess)."""

    def __init__(
        self, bind_addr: Any = DEFAULT_ADDR, *, trusted: Iterable[str] = (), mp_context: Any = None
    ) -> None:
        super().__init__(mp_context=mp_context)
        self.bind_addr = bind_addr
        self.trusted = tuple(trusted)  # addresses besides loopback that may stop it
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
        handler = RepStreamHandler(self.rep_stream, self.stop, self.ping_handler, trusted=self.trusted)
        self.rep_stream.on_recv(handler.receive, properties=RepStreamHandler.properties)
        log.info("PongProc serving on %s", self.endpoints[-1])


class NotTrusted(MessageError):
    """The sender may not ask for this (e.g. to stop the process)."""

    kind = "not_trusted"


class RepStreamHandler(MessageHandler):
    """The message tier: handles the requests arriving at PongProc's stream."""

    #: What :meth:`receive` needs the stream to read with each message.
    properties = ("Peer-Address",)

    def __init__(
        self,
        rep_stream: Stream,
        stop: Callable[[], None],
        ping_handler: PingHandler,
        *,
        trusted: Iterable[str] = (),
    ) -> None:
        # A ROUTER standing in for REP: a handler that forgot to reply still answers with an error.
        super().__init__(reply_stream=rep_stream, always_reply=True)
        self._stop = stop
        self._ping_handler = ping_handler
        self._trusted = frozenset(normalise_address(address) for address in trusted)
        self._peer_address: str | None = None

    def receive(self, frames: list[bytes], props: Mapping[str, str | None]) -> None:
        """The stream's callback: handle *frames*, knowing who sent them.

        Called with ``properties=("Peer-Address",)``; called as a plain
        handler (``handler(frames)``) the sender is unknown, and unknown
        senders are not trusted.
        """
        self._peer_address = props.get("Peer-Address")
        try:
            self(frames)
        finally:
            self._peer_address = None

    def trusts(self, address: str | None) -> bool:
        """Whether a message from *address* may stop PongProc: loopback, or listed in ``trusted``."""
        return is_loopback(address) or (address is not None and normalise_address(address) in self._trusted)

    @message
    def ping(self, count: int) -> list:
        """Send back a pong with the same count."""
        if type(count) is not int:
            raise BadArguments(f"ping count must be an integer, not {shorten(count)}")
        print(f"Pong got request: ping {count}", flush=True)
        return self._ping_handler.make_pong(count)

    @message
    def plzdiekthxbye(self, data: Any = None) -> list:
        """Stop PongProc if the sender is trusted; the peer gets its reply either way, as REP promises."""
        if not self.trusts(self._peer_address):
            raise NotTrusted("only a trusted peer may stop PongProc")
        self._stop()
        return ["bye", [], {}]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", nargs="?", default=DEFAULT_ADDR)
    parser.add_argument("--trust", action="append", default=[], metavar="IP",
                        help="an address besides loopback whose plzdiekthxbye stops PongProc")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    PongProc(args.addr, trusted=args.trust).run()  # in this process: Ctrl-C and SIGTERM stop it cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
