"""The logic tier of Paranoid Pirate (zguide chapter 4, RFC 6): no zmq, no loop.

Frames are lists of ``bytes`` as the sockets pass them; time is passed in.

Worker and queue speak these commands over the worker's DEALER::

    READY       ['\\x01']                         worker -> queue, opens every connection
    HEARTBEAT   ['\\x02']                         both ways, once an interval
    request     [client_id, '', body...]          queue -> worker
    reply       [client_id, '', body...]          worker -> queue: the request's envelope, kept

The queue hands each request to the worker idle longest
(:class:`~pollframe.peers.PeerTable`), heartbeats its idle workers, and
forgets workers silent for ``liveness`` intervals. A request that found no
idle worker waits, in order, for the next one.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional, Sequence, Tuple

from pollframe.peers import PeerTable

READY = b"\x01"
HEARTBEAT = b"\x02"

FRONT, BACK = "front", "back"
#: A message to send: which socket (FRONT for clients, BACK for workers), and its frames.
Out = Tuple[str, List[bytes]]


class PirateQueue:
    """The queue between Lazy Pirate clients (frontend) and Paranoid Pirate workers (backend)."""

    def __init__(self, heartbeat: float = 1.0, liveness: int = 3, now: float = 0.0) -> None:
        self.heartbeat = heartbeat
        self.workers = PeerTable(expiry=heartbeat * liveness)
        self.waiting: Deque[List[bytes]] = deque()
        self.invalid = 0
        self._next_beat = now + heartbeat

    def from_client(self, frames: Sequence[bytes], now: float) -> List[Out]:
        """A request as the frontend ROUTER got it: ``[client_id, '', body...]``."""
        if len(frames) < 3 or frames[1] != b"":
            self.invalid += 1
            return []
        self.waiting.append(list(frames))
        return self._dispatch()

    def from_worker(self, frames: Sequence[bytes], now: float) -> List[Out]:
        """A message as the backend ROUTER got it: ``[worker_id, command]`` or ``[worker_id, reply...]``."""
        if len(frames) < 2:
            self.invalid += 1
            return []
        worker = frames[0]
        if len(frames) == 2 and frames[1] == HEARTBEAT:
            self.workers.seen(worker, now)  # a stranger's heartbeat: it will time out and say READY
            return []
        if len(frames) == 2 and frames[1] == READY:
            self.workers.ready(worker, now)
            return self._dispatch()
        if len(frames) >= 4 and frames[2] == b"":
            self.workers.ready(worker, now)
            return [(FRONT, list(frames[1:])), *self._dispatch()]
        self.invalid += 1
        return []

    def tick(self, now: float) -> List[Out]:
        """Forget silent workers; heartbeat the idle ones once an interval."""
        self.workers.expire(now)
        if now < self._next_beat:
            return []
        self._next_beat = now + self.heartbeat
        return [(BACK, [worker, HEARTBEAT]) for worker in self.workers.idle()]

    def has_idle_worker(self) -> bool:
        return bool(self.workers.idle())

    def _dispatch(self) -> List[Out]:
        out: List[Out] = []
        while self.waiting:
            worker = self.workers.take()
            if worker is None:
                break
            out.append((BACK, [worker, *self.waiting.popleft()]))
        return out


class PirateWorker:
    """A worker's side: READY on each connection, a heartbeat each interval, requests echoed by ``serve``."""

    def __init__(self, heartbeat: float = 1.0) -> None:
        self.heartbeat = heartbeat
        self.served = 0
        self.invalid = 0

    def connect(self) -> List[bytes]:
        return [READY]

    def beat(self) -> List[bytes]:
        return [HEARTBEAT]

    def handle(self, frames: Sequence[bytes]) -> Optional[List[bytes]]:
        """The reply to a request (its envelope kept, its body echoed); None for a heartbeat."""
        if len(frames) == 1 and frames[0] == HEARTBEAT:
            return None
        if len(frames) >= 3 and frames[1] == b"":
            self.served += 1
            return list(frames)
        self.invalid += 1
        return None


class Tally:
    """A Lazy Pirate client's record: each numbered request answered once, or timed out."""

    def __init__(self) -> None:
        self.answered: List[int] = []
        self.timed_out: List[int] = []
        self.wrong = 0

    def reply(self, seq: int, body: Sequence[bytes]) -> None:
        if list(body) != [str(seq).encode()]:
            self.wrong += 1
        self.answered.append(seq)

    def timeout(self, seq: int) -> None:
        self.timed_out.append(seq)

    def summary(self) -> dict:
        seen = self.answered + self.timed_out
        return {"answered": len(self.answered), "timed_out": len(self.timed_out), "wrong": self.wrong,
                "twice": len(seen) - len(set(seen))}
