"""PingProc: sends pings to a PongProc over a REQ socket and checks the pongs.

Run it against a running pongproc.py::

    python examples/example_app/pingproc.py [ADDR] [--count N] [--stop]

``--stop`` sends ``plzdiekthxbye`` after the last pong. Exits 1 if PongProc
refuses a request or does not answer within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import zmq
from logic import Pinger

from pollframe.codec import JsonCodec
from pollframe.errors import MessageError
from pollframe.handler import MessageHandler, message
from pollframe.process import ZmqProcess
from pollframe.stream import Stream

DEFAULT_ADDR = "127.0.0.1:5678"


class PingProc(ZmqProcess):
    """The process tier of the ping side: one REQ stream and a reply deadline."""

    def __init__(
        self,
        pong_addr: Any = DEFAULT_ADDR,
        *,
        count: int = 5,
        stop_pong: bool = False,
        timeout: float = 5.0,
        mp_context: Any = None,
    ) -> None:
        super().__init__(mp_context=mp_context)
        self.pong_addr = pong_addr
        self.timeout = timeout
        self.pinger = Pinger(count, stop_pong)
        self.failure: str | None = None
        self._codec: JsonCodec | None = None  # made in setup(): __init__ keeps plain settings
        self._req_stream: Stream | None = None
        self._deadline: Any = None

    def setup(self) -> None:
        super().setup()
        self._codec = JsonCodec()
        self._req_stream, _ = self.stream(zmq.REQ, self.pong_addr, bind=False)
        self._req_stream.on_recv(ReqStreamHandler(self.send, self.finish, self.pinger))
        assert self.loop is not None
        self.loop.call_soon(self.send, self.pinger.first_message())

    def run(self) -> None:
        """Run the exchange; exit with an error message if it failed."""
        super().run()
        if self.failure is None and not self.pinger.done:
            self.failure = "stopped before the exchange was done"
        if self.failure is not None:
            raise SystemExit(f"PingProc: {self.failure}")

    def send(self, msg: list | None) -> None:
        """Send the next request and wait for its reply, or finish if there is none."""
        if msg is None:
            self.finish(None)
            return
        assert self._req_stream is not None and self.loop is not None and self._codec is not None
        self._req_stream.send(self._codec.encode(*msg))
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.timeout, self._timed_out, msg[0])

    def finish(self, failure: str | None) -> None:
        """End the exchange; *failure* says what went wrong, if anything."""
        if failure is not None and self.failure is None:
            self.failure = failure
        if self._deadline is not None:
            self._deadline.cancel()
        self.stop()

    def _timed_out(self, msg_type: str) -> None:
        self.finish(f"no reply to {msg_type!r} from {self.pong_addr} within {self.timeout} s")


class ReqStreamHandler(MessageHandler):
    """The message tier of the ping side: handles the replies to PingProc's requests."""

    def __init__(
        self,
        send: Callable[[list | None], None],
        finish: Callable[[str | None], None],
        pinger: Pinger,
    ) -> None:
        super().__init__()  # no reply_stream: the next request is sent by PingProc
        self._send_next = send
        self._finish = finish
        self._pinger = pinger

    @message
    def pong(self, count: int) -> None:
        print(f"Ping got reply: pong {count}", flush=True)
        self._send_next(self._pinger.on_pong(count))

    @message
    def bye(self) -> None:
        self._pinger.on_bye()
        self._finish(None)

    @message
    def error(self, reason: str) -> None:
        self._finish(f"PongProc refused a request: {reason}")

    def handle_error(self, err: MessageError) -> None:
        """A reply we cannot use ends the exchange: a REQ cannot wait for another."""
        super().handle_error(err)
        self._finish(err.reason)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", nargs="?", default=DEFAULT_ADDR)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--stop", action="store_true", help="send plzdiekthxbye at the end")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    PingProc(args.addr, count=args.count, stop_pong=args.stop, timeout=args.timeout).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
