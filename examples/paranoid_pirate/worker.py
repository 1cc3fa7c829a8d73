"""A Paranoid Pirate worker: echoes requests, heartbeats the queue, reconnects when the queue goes silent.

    python examples/paranoid_pirate/worker.py [BACKEND] [--heartbeat S] [--backoff S]
    # default tcp://127.0.0.1:5556

Runs until Ctrl-C or SIGTERM and exits 0. When no message (heartbeat or
request) came from the queue for 3 intervals it closes its socket and
connects anew after a backoff that doubles while the queue stays silent
(up to 32 s), then says READY again.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, List, Optional

import zmq
from pirate import PirateWorker

from pollframe.liveness import Liveness
from pollframe.process import ZmqProcess
from pollframe.reconnect import ReconnectingStream
from pollframe.stream import Stream


class PirateWorkerProc(ZmqProcess):
    """The process tier: a ReconnectingStream to the queue, watched by a Liveness tracker."""

    def __init__(self, backend: Any = "tcp://127.0.0.1:5556", *, heartbeat: float = 1.0,
                 backoff: float = 1.0, max_backoff: float = 32.0, mp_context: Any = None) -> None:
        super().__init__(name="pirate-worker", mp_context=mp_context)
        self.backend, self.heartbeat = backend, heartbeat
        self.backoff, self.max_backoff = backoff, max_backoff
        self.logic = PirateWorker(heartbeat)
        self.queue: Optional[ReconnectingStream] = None

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        self.queue = ReconnectingStream(
            self.loop, self._connect, on_recv=self._received,
            on_connect=lambda stream: stream.send_multipart(self.logic.connect()),
            liveness=Liveness(self.heartbeat, 3, now=self.loop.time()),
            backoff=self.backoff, max_backoff=self.max_backoff,
        )
        self.queue.open()
        self.loop.call_every(self.heartbeat, self._beat)
        print(f"worker: serving the queue at {self.backend}", flush=True)

    def _connect(self) -> Stream:
        stream, _ = self.stream(zmq.DEALER, self.backend, bind=False, linger=0)
        return stream

    def _received(self, frames: List[bytes]) -> None:
        assert self.queue is not None
        reply = self.logic.handle(frames)
        if reply is not None:
            self.queue.send_multipart(reply, generation=self.queue.generation)

    def _beat(self) -> None:
        assert self.queue is not None
        if self.queue.connected:
            self.queue.send_multipart(self.logic.beat())

    def teardown(self) -> None:
        if self.queue is not None:
            self.queue.close()
        super().teardown()


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="A Paranoid Pirate echo worker.")
    parser.add_argument("backend", nargs="?", default="tcp://127.0.0.1:5556")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, seconds")
    parser.add_argument("--backoff", type=float, default=1.0, help="first reconnect delay, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    PirateWorkerProc(args.backend, heartbeat=args.heartbeat, backoff=args.backoff).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
