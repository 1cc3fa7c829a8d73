"""Minimal MDP/0.1 peers written straight from RFC 7's frame tables with raw pyzmq.

They import nothing from pollframe, so that the interop tests pit pollframe
against an implementation that shares none of its code: if pollframe's
frames drifted from the RFC, these peers would refuse them. Each records
every message it could not accept in ``invalid`` (a test asserts it stays
empty) and runs in a thread of the test process with its own socket, on a
poll with a timeout, until ``stop()``.

No PyPI package could serve instead: ``pyzmq-mdp`` (the RFC's Python
reference) no longer installs (``use_2to3``), ``jarmodmoo`` is Python 2 code
(its frames are ``str``, which pyzmq refuses on Python 3), ``majortomo``
speaks MDP/0.2, and ``gaterpc`` extends the READY frame with its own fields.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional

import zmq

C_CLIENT = b"MDPC01"
W_WORKER = b"MDPW01"
W_READY, W_REQUEST, W_REPLY, W_HEARTBEAT, W_DISCONNECT = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"


def raw_request(ctx: zmq.Context, endpoint: str, service: bytes, body: List[bytes],
                timeout: float = 5.0) -> List[bytes]:
    """One MDP/Client request on a fresh REQ socket; the reply body, or AssertionError."""
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    sock.connect(endpoint)
    try:
        sock.send_multipart([C_CLIENT, service, *body])
        if not sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no MDP reply from {endpoint} within {timeout} s")
        reply = sock.recv_multipart()
    finally:
        sock.close()
    assert len(reply) >= 3, reply
    assert reply[0] == C_CLIENT and reply[1] == service, reply
    return reply[2:]


class _Peer(threading.Thread):
    def __init__(self, ctx: zmq.Context, heartbeat: float) -> None:
        super().__init__(daemon=True)
        self.ctx = ctx
        self.heartbeat = heartbeat
        self.invalid: List[List[bytes]] = []
        self.heard_heartbeat = threading.Event()
        self.disconnect_heard = threading.Event()
        self._stopping = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(5.0)
        assert not self.is_alive(), f"{self!r} did not stop"

    def __enter__(self):
        self.start()
        assert self.ready.wait(5.0), f"{self!r} did not start"
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class RawWorker(_Peer):
    """An MDP/0.1 echo worker on a DEALER: READY, then echo each REQUEST; heartbeats both ways."""

    def __init__(self, ctx: zmq.Context, endpoint: str, service: bytes, heartbeat: float = 0.25) -> None:
        super().__init__(ctx, heartbeat)
        self.endpoint, self.service = endpoint, service
        self.served = 0
        self.disconnected = False

    def run(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(self.endpoint)
        try:
            sock.send_multipart([b"", W_WORKER, W_READY, self.service])
            self.ready.set()
            next_beat = time.monotonic() + self.heartbeat
            while not self._stopping.is_set() and not self.disconnected:
                if sock.poll(int(self.heartbeat * 500)):
                    self._on_message(sock, sock.recv_multipart())
                if time.monotonic() >= next_beat:
                    sock.send_multipart([b"", W_WORKER, W_HEARTBEAT])
                    next_beat = time.monotonic() + self.heartbeat
            if not self.disconnected:
                sock.send_multipart([b"", W_WORKER, W_DISCONNECT])
        finally:
            sock.close()

    def _on_message(self, sock: zmq.Socket, msg: List[bytes]) -> None:
        if len(msg) < 3 or msg[0] != b"" or msg[1] != W_WORKER:
            self.invalid.append(msg)
        elif msg[2] == W_REQUEST and len(msg) >= 6 and msg[4] == b"":
            client, body = msg[3], msg[5:]
            sock.send_multipart([b"", W_WORKER, W_REPLY, client, b"", *body])
            self.served += 1
        elif msg[2] == W_HEARTBEAT and len(msg) == 3:
            self.heard_heartbeat.set()
        elif msg[2] == W_DISCONNECT and len(msg) == 3:
            self.disconnected = True
            self.disconnect_heard.set()
        else:
            self.invalid.append(msg)


class RawBroker(_Peer):
    """An MDP/0.1 broker on one ROUTER: per-service queues, idle workers first come first served."""

    def __init__(self, ctx: zmq.Context, heartbeat: float = 0.25) -> None:
        super().__init__(ctx, heartbeat)
        self.endpoint: Optional[str] = None
        self.services: Dict[bytes, bytes] = {}  # worker id -> service
        self.idle: Dict[bytes, Deque[bytes]] = {}
        self.requests: Dict[bytes, Deque[List[bytes]]] = {}
        self.replies = 0

    def run(self) -> None:
        sock = self.ctx.socket(zmq.ROUTER)
        sock.linger = 0
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.ready.set()
        try:
            next_beat = time.monotonic() + self.heartbeat
            while not self._stopping.is_set():
                if sock.poll(int(self.heartbeat * 500)):
                    self._on_message(sock, sock.recv_multipart())
                if time.monotonic() >= next_beat:
                    for worker in self.services:
                        sock.send_multipart([worker, b"", W_WORKER, W_HEARTBEAT])
                    next_beat = time.monotonic() + self.heartbeat
        finally:
            sock.close()

    def _on_message(self, sock: zmq.Socket, msg: List[bytes]) -> None:
        if len(msg) < 3 or msg[1] != b"":
            self.invalid.append(msg)
            return
        sender, header = msg[0], msg[2]
        if header == C_CLIENT and len(msg) >= 5:
            service = msg[3]
            self.requests.setdefault(service, deque()).append([sender, *msg[4:]])
            self._dispatch(sock, service)
        elif header == W_WORKER and len(msg) >= 4:
            self._worker(sock, sender, msg[3], msg[4:])
        else:
            self.invalid.append(msg)

    def _worker(self, sock: zmq.Socket, worker: bytes, command: bytes, rest: List[bytes]) -> None:
        if command == W_READY and len(rest) == 1 and worker not in self.services:
            self.services[worker] = rest[0]
            self.idle.setdefault(rest[0], deque()).append(worker)
            self._dispatch(sock, rest[0])
        elif command == W_REPLY and len(rest) >= 3 and rest[1] == b"" and worker in self.services:
            service = self.services[worker]
            sock.send_multipart([rest[0], b"", C_CLIENT, service, *rest[2:]])
            self.replies += 1
            self.idle[service].append(worker)
            self._dispatch(sock, service)
        elif command == W_HEARTBEAT and not rest:
            self.heard_heartbeat.set()
        elif command == W_DISCONNECT and not rest:
            self.disconnect_heard.set()
            service = self.services.pop(worker, None)
            if service is not None and worker in self.idle[service]:
                self.idle[service].remove(worker)
        else:
            self.invalid.append([worker, command, *rest])

    def _dispatch(self, sock: zmq.Socket, service: bytes) -> None:
        requests, idle = self.requests.get(service), self.idle.get(service)
        while requests and idle:
            client, *body = requests.popleft()
            sock.send_multipart([idle.popleft(), b"", W_WORKER, W_REQUEST, client, b"", *body])
