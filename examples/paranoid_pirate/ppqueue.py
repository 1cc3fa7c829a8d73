"""The Paranoid Pirate queue: Lazy Pirate clients on the frontend, heartbeating workers on the backend.

    python examples/paranoid_pirate/ppqueue.py [FRONTEND] [BACKEND] [--heartbeat S]
    # defaults tcp://127.0.0.1:5555 and tcp://127.0.0.1:5556

Runs until Ctrl-C or SIGTERM and exits 0. While no worker is idle it stops
reading the frontend, so requests wait in libzmq (and vanish with a client
that gave up on them) instead of in the queue. See README.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, List, Optional

import zmq
from pirate import FRONT, Out, PirateQueue

from pollframe.process import ZmqProcess
from pollframe.stream import Stream


class PirateQueueProc(ZmqProcess):
    """The process tier: two ROUTER streams and the queue logic between them."""

    def __init__(self, frontend: Any = "tcp://127.0.0.1:5555", backend: Any = "tcp://127.0.0.1:5556", *,
                 heartbeat: float = 1.0, mp_context: Any = None) -> None:
        super().__init__(name="pirate-queue", mp_context=mp_context)
        self.frontend, self.backend, self.heartbeat = frontend, backend, heartbeat
        self.logic: Optional[PirateQueue] = None
        self.front: Optional[Stream] = None
        self.back: Optional[Stream] = None

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        self.logic = PirateQueue(self.heartbeat, now=self.loop.time())
        self.front, _ = self.stream(zmq.ROUTER, self.frontend, bind=True, callback=self._from_client)
        self.back, _ = self.stream(zmq.ROUTER, self.backend, bind=True, callback=self._from_worker)
        self.front.pause()  # until a worker is ready
        self.loop.call_every(self.heartbeat, self._tick)
        print(f"queue: clients on {self.endpoints[0]}, workers on {self.endpoints[1]}", flush=True)

    def _from_client(self, frames: List[bytes]) -> None:
        assert self.logic is not None and self.loop is not None
        self._send(self.logic.from_client(frames, self.loop.time()))

    def _from_worker(self, frames: List[bytes]) -> None:
        assert self.logic is not None and self.loop is not None
        self._send(self.logic.from_worker(frames, self.loop.time()))

    def _tick(self) -> None:
        assert self.logic is not None and self.loop is not None
        self._send(self.logic.tick(self.loop.time()))

    def _send(self, out: List[Out]) -> None:
        assert self.logic is not None and self.front is not None and self.back is not None
        for side, frames in out:
            (self.front if side == FRONT else self.back).send_multipart(frames)
        # Read requests only while a worker can take one.
        if self.logic.has_idle_worker():
            self.front.resume()
        else:
            self.front.pause()


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="The Paranoid Pirate queue.")
    parser.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:5555")
    parser.add_argument("backend", nargs="?", default="tcp://127.0.0.1:5556")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    PirateQueueProc(args.frontend, args.backend, heartbeat=args.heartbeat).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
