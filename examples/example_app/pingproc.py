"""PingProc: sends pings to a PongProc with a Requester and checks the pongs.

Run it against a running pongproc.py::

    python examples/example_app/pingproc.py [ADDR] [--count N] [--stop] [--timeout S] [--retries N]

``--stop`` sends ``plzdiekthxbye`` after the last pong. Each request waits
``--timeout`` seconds per attempt and is tried ``--retries`` times on a
fresh socket (Lazy Pirate). Exits 1 if PongProc refuses a request or does
not answer any attempt.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Awaitable, Callable, Dict

from logic import Pinger

from pollframe.errors import RemoteError, RequestTimeout
from pollframe.process import ZmqProcess
from pollframe.requester import Requester
from pollframe.tasks import Task

DEFAULT_ADDR = "127.0.0.1:5678"

Call = Callable[..., Awaitable[Any]]


class PingProc(ZmqProcess):
    """The process tier of the ping side: a Requester on the loop, and the exchange as a task."""

    def __init__(
        self,
        pong_addr: Any = DEFAULT_ADDR,
        *,
        count: int = 5,
        stop_pong: bool = False,
        timeout: float = 5.0,
        retries: int = 3,
        mp_context: Any = None,
    ) -> None:
        super().__init__(mp_context=mp_context)
        self.pong_addr = pong_addr
        self.timeout = timeout
        self.retries = retries
        self.pinger = Pinger(count, stop_pong)
        self.failure: str | None = None
        self.requester: Requester | None = None  # made in setup(): __init__ keeps plain settings

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None and self.context is not None
        # lockstep: REQ, as the seed's ping side, so the wire is the seed's too.
        self.requester = Requester(self.loop, self.context, self.pong_addr, timeout=self.timeout,
                                   retries=self.retries, lockstep=True)
        exchange = self.loop.spawn(PingSide(self.requester.call, self.pinger).run())
        exchange.add_done_callback(self._finished)

    def run(self) -> None:
        """Run the exchange; exit with an error message if it failed."""
        super().run()
        if self.failure is None and not self.pinger.done:
            self.failure = "stopped before the exchange was done"
        if self.failure is not None:
            raise SystemExit(f"PingProc: {self.failure}")

    def teardown(self) -> None:
        if self.requester is not None:
            self.requester.close()
        super().teardown()

    def _finished(self, exchange: Task[str | None]) -> None:
        if not exchange.cancelled():
            self.failure = exchange.result()
        self.stop()


class PingSide:
    """The message tier of the ping side: sends the Pinger's requests, dispatches each reply by type.

    ``call(msg_type, *args, **kwargs)`` is awaited for each reply (a
    Requester's ``call``); nothing here knows of sockets. The replies it
    understands are an explicit table, as a MessageHandler's are.
    """

    def __init__(self, call: Call, pinger: Pinger) -> None:
        self._call = call
        self._pinger = pinger
        self._replies: Dict[str, Callable[..., list | None]] = {"pong": self.pong, "bye": self.bye}

    async def run(self) -> str | None:
        """Send every request in turn; return None when done, or what went wrong."""
        msg = self._pinger.first_message()
        while msg is not None:
            msg_type, args, kwargs = msg
            try:
                reply_type, reply_args, reply_kwargs = await self._call(msg_type, *args, **kwargs)
            except RequestTimeout as exc:
                return f"no reply to {msg_type!r}: {exc}"
            except RemoteError as exc:
                return f"PongProc refused a request: {exc.reason}"
            handle = self._replies.get(reply_type)
            if handle is None:
                return f"unexpected reply {reply_type!r} to {msg_type!r}"
            try:
                msg = handle(*reply_args, **reply_kwargs)
            except (TypeError, ValueError) as exc:
                return f"bad reply {reply_type!r} to {msg_type!r}: {exc}"
        return None

    def pong(self, count: int) -> list | None:
        print(f"Ping got reply: pong {count}", flush=True)
        return self._pinger.on_pong(count)

    def bye(self) -> None:
        self._pinger.on_bye()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", nargs="?", default=DEFAULT_ADDR)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--stop", action="store_true", help="send plzdiekthxbye at the end")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=3, help="attempts per request")
    args = parser.parse_args(argv)
    PingProc(args.addr, count=args.count, stop_pong=args.stop, timeout=args.timeout,
             retries=args.retries).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
