"""An MDP/0.1 echo worker: registers SERVICE with the broker and echoes each request.

    python examples/majordomo/worker.py ENDPOINT [SERVICE] [--heartbeat S] [--work S]   # default "echo"

``--work S`` makes each request take S seconds of blocking work: a worker
busy for longer than 3 heartbeat intervals is silent that long, so the
broker forgets it and gives the request to another worker (and answers
this one's late reply with DISCONNECT).

Runs until Ctrl-C or SIGTERM, then says DISCONNECT and exits 0. When the
broker goes silent (or says DISCONNECT) it reconnects with a backoff and
registers again.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any, Callable, List, Optional, Sequence

import zmq
from echo import EchoService

from pollframe.mdp.worker import Worker
from pollframe.process import ZmqProcess
from pollframe.stream import Stream


Handle = Callable[[Sequence[bytes]], List[bytes]]


class EchoWorkerProc(ZmqProcess):
    """The process tier: a DEALER to the broker per connection, the Worker on the loop."""

    def __init__(self, endpoint: Any, service: str = "echo", *, heartbeat: float = 2.5,
                 backoff: float = 1.0, work: float = 0.0, mp_context: Any = None) -> None:
        super().__init__(name=f"mdp-worker-{service}", mp_context=mp_context)
        self.endpoint = endpoint
        self.service = service
        self.heartbeat = heartbeat
        self.backoff = backoff
        self.work = work
        self.worker: Optional[Worker] = None

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        echo = EchoService()
        self.worker = Worker(self.loop, self.service, self._slow(echo.handle), self._connect,
                             heartbeat=self.heartbeat, backoff=self.backoff,
                             max_backoff=max(self.backoff, 8.0))
        print(f"MDP worker for {self.service!r} at {self.endpoint}", flush=True)

    def _slow(self, handle: Handle) -> Handle:
        """``handle``, after ``work`` seconds of blocking work (the loop does nothing meanwhile)."""
        if not self.work:
            return handle

        def busy(body: Sequence[bytes]) -> List[bytes]:
            time.sleep(self.work)
            return handle(body)

        return busy

    def _connect(self) -> Stream:
        """A fresh DEALER for each connection (the message tier calls it again to reconnect)."""
        stream, _ = self.stream(zmq.DEALER, self.endpoint, bind=False, linger=0)
        return stream

    def teardown(self) -> None:
        if self.worker is not None:
            self.worker.close()
        super().teardown()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="An MDP/0.1 echo worker.")
    parser.add_argument("endpoint")
    parser.add_argument("service", nargs="?", default="echo")
    parser.add_argument("--heartbeat", type=float, default=2.5, help="heartbeat interval, seconds")
    parser.add_argument("--backoff", type=float, default=1.0, help="first reconnect delay, seconds")
    parser.add_argument("--work", type=float, default=0.0, help="seconds of blocking work per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    EchoWorkerProc(args.endpoint, args.service, heartbeat=args.heartbeat, backoff=args.backoff,
                   work=args.work).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
