"""The Majordomo broker as logic: frames and the time in, frames to send out (sans-io).

Theory of operation
-------------------
The broker serves clients and workers on one ROUTER socket. It keeps, per
service, a queue of client requests and a :class:`~pollframe.peers.PeerTable`
of that service's workers, so a request goes to the worker that has been
idle longest. ``handle(frames, now)`` takes one message as the ROUTER
received it (routing id first) and returns the messages to send, each
routing id first, as the ROUTER sends them; ``tick(now)`` does what time
alone decides: heartbeats to the workers, forgetting workers that went
silent, dropping requests that waited too long. The process tier calls
``tick`` every ``heartbeat`` seconds.

What the RFC leaves to the broker, decided here:

- A worker is expired after ``liveness`` heartbeat intervals of silence,
  idle or busy (a worker that "crashes, runs too slowly, or freezes", in
  the RFC's words). The request it held goes back to the front of its
  service's queue, since MDP workers are idempotent by definition; its late
  reply, should one come, is from a stranger and answered with DISCONNECT.
- A request for a service with no worker waits up to ``request_expiry``
  seconds for one (the RFC: SHOULD queue, SHOULD expire); at most
  ``max_queue`` requests wait per service, the ones beyond are dropped and
  counted.
- A valid command that comes at the wrong time (a second READY, a REPLY
  from a worker that holds no request, a HEARTBEAT or REPLY from a worker
  the broker does not know) gets DISCONNECT and the worker is forgotten.
  An invalid message is dropped, the worker that sent it (if any) is
  forgotten, and :class:`~pollframe.mdp.protocol.ProtocolError` is raised
  to say why; the process tier counts and logs it.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from pollframe.errors import shorten
from pollframe.mdp import protocol as mdp
from pollframe.mdp.protocol import CLIENT, MMI_PREFIX, WORKER, Frames, ProtocolError
from pollframe.peers import PeerTable

__all__ = ["Broker"]

# A queued request: the client's routing id, the body, when it arrived.
_Request = Tuple[bytes, Frames, float]


class _Service:
    __slots__ = ("name", "requests", "workers")

    def __init__(self, name: bytes, expiry: float) -> None:
        self.name = name
        self.requests: Deque[_Request] = deque()
        self.workers = PeerTable(expiry)


class _Worker:
    __slots__ = ("identity", "service", "request")

    def __init__(self, identity: bytes, service: _Service) -> None:
        self.identity = identity
        self.service = service
        self.request: Optional[_Request] = None  # the one it works on, while busy


class Broker:
    """MDP/0.1 broker logic for one ROUTER socket serving clients and workers.

    ``heartbeat`` (seconds) and ``liveness`` must match the workers'
    (the RFC's known weakness: mismatched rates cause false
    disconnections); the zguide's 2.5 s and 3 are the defaults.
    ``mmi`` enables the ``mmi.*`` services of RFC 8.

    Counters: ``requests`` (client requests accepted), ``replies`` (sent
    back to clients), ``requeued`` (requests of expired workers queued
    again), ``expired_workers``, ``expired_requests``, ``dropped``
    (requests refused by a full queue), ``disconnects`` (DISCONNECTs sent).
    """

    def __init__(
        self,
        *,
        heartbeat: float = 2.5,
        liveness: int = 3,
        request_expiry: float = 10.0,
        max_queue: int = 10_000,
        mmi: bool = True,
        now: float = 0.0,
    ) -> None:
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be a positive number of seconds, not {heartbeat!r}")
        if isinstance(liveness, bool) or not isinstance(liveness, int) or liveness < 1:
            raise ValueError(f"liveness must be an integer of at least 1, not {liveness!r}")
        if not request_expiry > 0:
            raise ValueError(f"request_expiry must be a positive number of seconds, not {request_expiry!r}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.expiry = heartbeat * liveness
        self.request_expiry = request_expiry
        self.max_queue = max_queue
        self.mmi = mmi
        self.requests = 0
        self.replies = 0
        self.requeued = 0
        self.expired_workers = 0
        self.expired_requests = 0
        self.dropped = 0
        self.disconnects = 0
        self._services: Dict[bytes, _Service] = {}
        self._workers: Dict[bytes, _Worker] = {}
        self._next_heartbeat = now + heartbeat

    # ------------------------------------------------------------------ API

    def handle(self, frames: Sequence[bytes], now: float) -> List[Frames]:
        """One message as the ROUTER received it; returns the messages to send (routing id first).

        Raises :class:`ProtocolError` for a message MDP/0.1 does not allow,
        after forgetting the worker that sent it.
        """
        if len(frames) < 3 or frames[1] != b"":
            raise ProtocolError(f"not an MDP message: {len(frames)} frame(s) without the empty frame 0")
        sender, header = frames[0], frames[2]
        if header == WORKER:
            return self._from_worker(sender, frames, now)
        if header == CLIENT:
            return self._from_client(sender, frames, now)
        self._forget_worker(sender)
        raise ProtocolError(f"unknown protocol header {shorten(header)} (not MDPC01 or MDPW01)")

    def tick(self, now: float) -> List[Frames]:
        """Expire silent workers and stale requests; heartbeat the workers when due."""
        out: List[Frames] = []
        for service in list(self._services.values()):
            for identity in service.workers.expire(now):
                self._expire_worker(identity)
            self._expire_requests(service, now)
            self._dispatch(service, out)
            if not service.requests and not len(service.workers):
                del self._services[service.name]
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat
            beat = mdp.HEARTBEAT_FRAMES
            out.extend([identity, *beat] for identity in self._workers)
        return out

    def disconnect_all(self) -> List[Frames]:
        """DISCONNECT for every worker, all forgotten: a broker that shuts down says so."""
        out = [[identity, *mdp.DISCONNECT_FRAMES] for identity in self._workers]
        self.disconnects += len(out)
        for identity in list(self._workers):
            self._forget_worker(identity)
        return out

    # ------------------------------------------------------------ asking

    def services(self) -> Dict[str, Tuple[int, int, int]]:
        """Per service: (workers, idle workers, queued requests)."""
        return {
            s.name.decode(errors="replace"): (len(s.workers), len(s.workers.idle()), len(s.requests))
            for s in self._services.values()
        }

    @property
    def workers(self) -> int:
        """Workers known, idle and busy."""
        return len(self._workers)

    def queued(self) -> int:
        """Client requests waiting for a worker, over all services."""
        return sum(len(s.requests) for s in self._services.values())

    def __repr__(self) -> str:
        return f"<Broker services={len(self._services)} workers={len(self._workers)} queued={self.queued()}>"

    # --------------------------------------------------------- from clients

    def _from_client(self, client: bytes, frames: Sequence[bytes], now: float) -> List[Frames]:
        if len(frames) < 5:
            raise ProtocolError(
                f"an MDP client REQUEST has a service and a body ({len(frames) - 1} frame(s) after the id)"
            )
        name = frames[3]
        if not name:
            raise ProtocolError("an MDP client REQUEST names no service")
        body = frames[4:]
        if type(body) is not list:
            body = list(body)  # a list slice is one already (the reader's frames are)
        self.requests += 1
        if self.mmi and name.startswith(MMI_PREFIX):
            self.replies += 1
            return [[client, b"", CLIENT, name, self._mmi(name, body)]]
        service = self._services.get(name) or self._service(name)
        requests = service.requests
        if not requests:  # the common case: straight to an idle worker, if there is one
            identity = service.workers.take()
            if identity is not None:
                self._workers[identity].request = (client, body, now)
                return [[identity, b"", WORKER, mdp.REQUEST, client, b"", *body]]
        elif len(requests) >= self.max_queue:
            self.dropped += 1
            return []
        # No worker is idle: one that was would have been given the queued requests already.
        requests.append((client, body, now))
        return []

    def _mmi(self, name: bytes, body: Frames) -> bytes:
        if name != b"mmi.service":
            return b"501"
        wanted = self._services.get(body[0])
        return b"200" if wanted is not None and len(wanted.workers) else b"404"

    # --------------------------------------------------------- from workers

    def _from_worker(self, identity: bytes, frames: Sequence[bytes], now: float) -> List[Frames]:
        if len(frames) < 4:
            self._forget_worker(identity)
            raise ProtocolError("an MDP worker command without its command frame")
        command = frames[3]
        worker = self._workers.get(identity)
        if command == mdp.REPLY:
            if len(frames) < 7 or frames[5] != b"":
                self._forget_worker(identity)
                raise ProtocolError("an MDP worker REPLY needs a client address, an empty frame and a body")
            request = worker.request if worker is not None else None
            if request is None or request[0] != frames[4]:
                return self._disconnect(identity)
            return self._reply(worker, frames, now)  # type: ignore[arg-type]
        if command == mdp.HEARTBEAT:
            self._check_length(identity, frames, 4, "HEARTBEAT")
            if worker is None:
                return self._disconnect(identity)
            worker.service.workers.seen(identity, now)
            return []
        if command == mdp.READY:
            self._check_length(identity, frames, 5, "READY")
            name = frames[4]
            if worker is not None or not name or name.startswith(MMI_PREFIX):
                return self._disconnect(identity)
            return self._ready(identity, name, now)
        if command == mdp.DISCONNECT:
            self._check_length(identity, frames, 4, "DISCONNECT")
            self._forget_worker(identity)
            return []
        self._forget_worker(identity)
        raise ProtocolError(f"unknown MDP worker command {mdp.command_name(command)}")

    def _ready(self, identity: bytes, name: bytes, now: float) -> List[Frames]:
        service = self._service(name)
        self._workers[identity] = _Worker(identity, service)
        service.workers.ready(identity, now)
        out: List[Frames] = []
        self._dispatch(service, out)
        return out

    def _reply(self, worker: _Worker, frames: Sequence[bytes], now: float) -> List[Frames]:
        service = worker.service
        identity = worker.identity
        self.replies += 1
        reply = [frames[4], b"", CLIENT, service.name, *frames[6:]]
        requests = service.requests
        if requests:
            # No other worker is idle (see _dispatch), so the next request is this worker's:
            # ready() then take() would hand it to this one too.
            worker.request = request = requests.popleft()
            service.workers.seen(identity, now)
            return [reply, [identity, b"", WORKER, mdp.REQUEST, request[0], b"", *request[1]]]
        worker.request = None
        service.workers.ready(identity, now)
        return [reply]

    def _check_length(self, identity: bytes, frames: Sequence[bytes], length: int, name: str) -> None:
        if len(frames) != length:
            self._forget_worker(identity)
            raise ProtocolError(
                f"an MDP worker {name} has {length - 1} frames after the id, not {len(frames) - 1}"
            )

    def _disconnect(self, identity: bytes) -> List[Frames]:
        """A valid command at the wrong time: DISCONNECT, and no further commands to that worker."""
        self._forget_worker(identity)
        self.disconnects += 1
        return [[identity, *mdp.DISCONNECT_FRAMES]]

    # ------------------------------------------------------------ internals

    def _service(self, name: bytes) -> _Service:
        service = self._services.get(name)
        if service is None:
            service = self._services[name] = _Service(name, self.expiry)
        return service

    def _dispatch(self, service: _Service, out: List[Frames]) -> None:
        """Hand queued requests to idle workers, longest idle first.

        Every change that makes a worker idle or queues a request ends here
        (or does its work), so between calls a service never has both an
        idle worker and a queued request: the request paths count on it.
        """
        requests, workers = service.requests, service.workers
        while requests:
            identity = workers.take()
            if identity is None:
                return
            request = requests.popleft()
            self._workers[identity].request = request
            out.append([identity, b"", WORKER, mdp.REQUEST, request[0], b"", *request[1]])

    def _forget_worker(self, identity: bytes) -> Optional[_Worker]:
        worker = self._workers.pop(identity, None)
        if worker is not None:
            worker.service.workers.remove(identity)
        return worker

    def _expire_worker(self, identity: bytes) -> None:
        """A worker silent too long: forgotten; the request it held is first in line again."""
        worker = self._workers.pop(identity, None)
        if worker is None:
            return
        self.expired_workers += 1
        if worker.request is not None:
            worker.service.requests.appendleft(worker.request)
            self.requeued += 1

    def _expire_requests(self, service: _Service, now: float) -> None:
        requests, limit = service.requests, now - self.request_expiry
        while requests and requests[0][2] < limit:
            requests.popleft()
            self.expired_requests += 1
