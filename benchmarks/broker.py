"""Scenario: Majordomo (MDP/0.1) requests per second through a broker.

Two brokers, each in its own forked process on one ROUTER (tcp, random
port), serve the same load:

- ``zguide-broker``: a plain-pyzmq broker written the way the zguide's
  ``mdbroker.py`` is: a ``zmq.Poller`` loop with a heartbeat-interval
  timeout, ``recv_multipart``/``send_multipart``, frames popped off a list,
  services and workers in dicts keyed by the hex identity, waiting workers
  in lists, a purge of expired workers and a heartbeat check on every pass.
  It is the baseline.
- ``pf-broker``: pollframe's ``BrokerProcess`` (``Broker`` logic under a
  ``BrokerServer`` on a ROUTER stream), as ``examples/majordomo/broker.py``
  runs it.

The load is the same raw pyzmq for both, and kept cheap so that the broker
is what is measured: one process drives ``CLIENTS`` DEALER clients (MDP/0.1
allows DEALER clients), each keeping ``DEPTH`` requests in flight; another
runs ``WORKERS`` DEALER echo workers. (With 4 REQ clients, one request in
flight each, both brokers idle a third of the time and the run measures the
load generators: both gave 7.5k-8.9k req/s.) After a warm-up the client
process times ``n`` replies; every reply is checked against the requests
its client has in flight.
"""
from __future__ import annotations

import binascii
import multiprocessing as mp
import os
import signal
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Dict, List, Optional, Tuple

import zmq
from zmq.backend import zmq_poll

from harness import Case, MeasurementError, bind_random, new_context

_FORK = mp.get_context("fork")
TIMEOUT_S = 120.0
CLIENTS = 4
DEPTH = 16
WORKERS = 32
WARMUP = 400

CASE = f"MDP echo, {CLIENTS}x{DEPTH} in flight, {WORKERS} workers"
CPU_CASE = f"{CASE}, per broker CPU-s"

C_CLIENT, W_WORKER = b"MDPC01", b"MDPW01"
_NOBLOCK, _MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)
W_READY, W_REQUEST, W_REPLY, W_HEARTBEAT, W_DISCONNECT = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"


# ------------------------------------------------------------------ the zguide-style broker


class _Service:
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.requests: List[List[bytes]] = []
        self.waiting: List["_Worker"] = []


class _Worker:
    def __init__(self, identity: str, address: bytes, lifetime: float) -> None:
        self.identity = identity
        self.address = address
        self.service: Optional[_Service] = None
        self.expiry = time.time() + lifetime


class ZguideBroker:
    """MDP/0.1 broker in the zguide's mdbroker shape (one socket, a Poller, lists and dicts)."""

    HEARTBEAT_LIVENESS = 3
    HEARTBEAT_INTERVAL = 2500  # ms
    HEARTBEAT_EXPIRY = HEARTBEAT_INTERVAL * HEARTBEAT_LIVENESS

    def __init__(self, ctx: zmq.Context) -> None:
        self.services: Dict[bytes, _Service] = {}
        self.workers: Dict[str, _Worker] = {}
        self.waiting: List[_Worker] = []
        self.heartbeat_at = time.time() + 1e-3 * self.HEARTBEAT_INTERVAL
        self.socket = ctx.socket(zmq.ROUTER)
        self.socket.linger = 0
        self.poller = zmq.Poller()
        self.poller.register(self.socket, zmq.POLLIN)

    def mediate(self) -> None:
        while True:
            items = self.poller.poll(self.HEARTBEAT_INTERVAL)
            if items:
                msg = self.socket.recv_multipart()
                sender = msg.pop(0)
                msg.pop(0)  # the empty frame
                header = msg.pop(0)
                if header == C_CLIENT:
                    self.process_client(sender, msg)
                elif header == W_WORKER:
                    self.process_worker(sender, msg)
            self.purge_workers()
            self.send_heartbeats()

    def process_client(self, sender: bytes, msg: List[bytes]) -> None:
        service = msg.pop(0)
        msg = [sender, b""] + msg
        self.dispatch(self.require_service(service), msg)

    def process_worker(self, sender: bytes, msg: List[bytes]) -> None:
        command = msg.pop(0)
        worker_ready = binascii.hexlify(sender).decode() in self.workers
        worker = self.require_worker(sender)
        if command == W_READY:
            service = msg.pop(0)
            if worker_ready:
                self.delete_worker(worker, True)
            else:
                worker.service = self.require_service(service)
                self.worker_waiting(worker)
        elif command == W_REPLY:
            if worker_ready:
                client = msg.pop(0)
                msg.pop(0)
                assert worker.service is not None
                self.socket.send_multipart([client, b"", C_CLIENT, worker.service.name] + msg)
                self.worker_waiting(worker)
            else:
                self.delete_worker(worker, True)
        elif command == W_HEARTBEAT:
            if worker_ready:
                worker.expiry = time.time() + 1e-3 * self.HEARTBEAT_EXPIRY
            else:
                self.delete_worker(worker, True)
        elif command == W_DISCONNECT:
            self.delete_worker(worker, False)

    def delete_worker(self, worker: _Worker, disconnect: bool) -> None:
        if disconnect:
            self.send_to_worker(worker, W_DISCONNECT, [])
        if worker.service is not None and worker in worker.service.waiting:
            worker.service.waiting.remove(worker)
        if worker in self.waiting:
            self.waiting.remove(worker)
        self.workers.pop(worker.identity, None)

    def require_worker(self, address: bytes) -> _Worker:
        identity = binascii.hexlify(address).decode()
        worker = self.workers.get(identity)
        if worker is None:
            worker = _Worker(identity, address, 1e-3 * self.HEARTBEAT_EXPIRY)
            self.workers[identity] = worker
        return worker

    def require_service(self, name: bytes) -> _Service:
        service = self.services.get(name)
        if service is None:
            service = self.services[name] = _Service(name)
        return service

    def send_heartbeats(self) -> None:
        if time.time() > self.heartbeat_at:
            for worker in self.waiting:
                self.send_to_worker(worker, W_HEARTBEAT, [])
            self.heartbeat_at = time.time() + 1e-3 * self.HEARTBEAT_INTERVAL

    def purge_workers(self) -> None:
        while self.waiting:
            worker = self.waiting[0]
            if worker.expiry < time.time():
                self.delete_worker(worker, False)
            else:
                break

    def worker_waiting(self, worker: _Worker) -> None:
        self.waiting.append(worker)
        assert worker.service is not None
        worker.service.waiting.append(worker)
        worker.expiry = time.time() + 1e-3 * self.HEARTBEAT_EXPIRY
        self.dispatch(worker.service, None)

    def dispatch(self, service: _Service, msg: Optional[List[bytes]]) -> None:
        if msg is not None:
            service.requests.append(msg)
        self.purge_workers()
        while service.waiting and service.requests:
            msg = service.requests.pop(0)
            worker = service.waiting.pop(0)
            self.waiting.remove(worker)
            self.send_to_worker(worker, W_REQUEST, msg)

    def send_to_worker(self, worker: _Worker, command: bytes, msg: List[bytes]) -> None:
        self.socket.send_multipart([worker.address, b"", W_WORKER, command] + msg)


# ------------------------------------------------------------------ the processes


def _send(sock: zmq.Socket, frames: List[bytes]) -> None:
    """The load's sends: frame by frame with int flags (pyzmq's send_multipart runs enum code per frame)."""
    send = sock.send
    for frame in frames[:-1]:
        send(frame, _MORE)
    send(frames[-1], _NOBLOCK)


def _recv(sock: zmq.Socket) -> Optional[List[bytes]]:
    """One message without blocking, or None.

    Frame by frame with ``copy=False`` and ``.more``: ``sock.rcvmore`` goes
    through pyzmq's option enum, which costs more than the read itself.
    """
    try:
        return _read_one(sock)
    except zmq.Again:
        return None


def _broker(link: Connection, competitor: str) -> None:
    if competitor == "pf-broker":
        from pollframe.mdp.process import BrokerProcess

        class Reporting(BrokerProcess):
            def setup(self) -> None:
                super().setup()
                link.send(self.endpoints[-1])

        Reporting("127.0.0.1").run()  # until SIGTERM
        return
    ctx = new_context()
    broker = ZguideBroker(ctx)
    link.send(bind_random(broker.socket))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    broker.mediate()


def _dealers(endpoint: str, count: int) -> Tuple[List[zmq.Socket], zmq.Poller]:
    """``count`` DEALERs connected to ``endpoint`` on a fresh context, and a Poller over them."""
    ctx = new_context()
    socks, poller = [], zmq.Poller()
    for _ in range(count):
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(endpoint)
        socks.append(sock)
        poller.register(sock, zmq.POLLIN)
    return socks, poller


def _read_one(sock: zmq.Socket) -> List[bytes]:
    """One message from a socket that a poll said is readable."""
    recv = sock.recv
    frame = recv(_NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = recv(_NOBLOCK, copy=False)
        frames.append(frame.bytes)
    return frames


def _workers(link: Connection, endpoint: str) -> None:
    """``WORKERS`` echo workers on DEALERs in one process.

    A broker hands a worker its next request only after the reply, so each
    readable socket is read once per poll: a drain would end in a
    ``zmq.Again`` per socket per wake-up, which costs more than the message.
    One prebuilt ``zmq_poll`` list, not a ``zmq.Poller`` that rebuilds it.
    """
    socks, _ = _dealers(endpoint, WORKERS)
    for sock in socks:
        _send(sock, [b"", W_WORKER, W_READY, b"echo"])
    stop = link.fileno()
    items = [(sock, _POLLIN) for sock in socks] + [(stop, _POLLIN)]
    link.send("ready")
    beat_at = time.monotonic() + 1.0
    while True:
        for sock, _ in zmq_poll(items, 1000):
            if sock is stop:
                return
            msg = _read_one(sock)
            if msg[2] == W_REQUEST:
                _send(sock, [b"", W_WORKER, W_REPLY, *msg[3:]])
        if time.monotonic() >= beat_at:
            for sock in socks:
                _send(sock, [b"", W_WORKER, W_HEARTBEAT])
            beat_at = time.monotonic() + 1.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _clients(link: Connection, endpoint: str, n: int, broker_pid: int) -> Tuple[float, float]:
    """``CLIENTS`` DEALER clients (MDP/0.1 allows them), ``DEPTH`` requests in flight each."""
    socks, poller = _dealers(endpoint, CLIENTS)
    counter = 0

    def send(sock: zmq.Socket, outstanding: set) -> None:
        nonlocal counter
        counter += 1
        body = b"%d" % counter
        outstanding.add(body)
        _send(sock, [b"", C_CLIENT, b"echo", body])

    def run(total: int) -> None:
        outstanding: Dict[zmq.Socket, set] = {sock: set() for sock in socks}
        sent = done = 0
        for sock in socks:
            for _ in range(DEPTH):
                if sent < total:
                    send(sock, outstanding[sock])
                    sent += 1
        while done < total:
            ready = poller.poll(30_000)
            if not ready:
                raise RuntimeError(f"no reply within 30 s ({done} of {total} done)")
            for sock, _ in ready:
                while True:
                    reply = _recv(sock)
                    if reply is None:
                        break
                    if len(reply) != 4 or reply[:3] != [b"", C_CLIENT, b"echo"]:
                        raise RuntimeError(f"bad reply {reply!r}")
                    outstanding[sock].remove(reply[3])  # KeyError: a reply to no request of this client
                    done += 1
                    if sent < total:
                        send(sock, outstanding[sock])
                        sent += 1

    run(WARMUP)
    cpu = _cpu_seconds(broker_pid)
    start = time.perf_counter()
    run(n)
    elapsed = time.perf_counter() - start
    return n / elapsed, n / max(_cpu_seconds(broker_pid) - cpu, 1e-9)


def _start(target: Any, *args: Any) -> tuple:
    ours, theirs = _FORK.Pipe()

    def body() -> None:
        try:
            result = target(theirs, *args)
            theirs.send(("ok", result))
        except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator
            theirs.send(("error", repr(exc)))

    proc = _FORK.Process(target=body, daemon=True)
    proc.start()
    return proc, ours


def _word(conn: Connection, what: str) -> Any:
    if not conn.poll(TIMEOUT_S):
        raise MeasurementError(f"broker benchmark: no word from the {what} within {TIMEOUT_S} s")
    return conn.recv()


def measure(competitor: str, *, n: int, per_cpu: bool = False) -> float:
    """Requests per second of the run, or (``per_cpu``) per second of the broker's own CPU time."""
    procs = []
    try:
        broker, bconn = _start(_broker, competitor)
        procs.append(broker)
        endpoint = _word(bconn, "broker")
        workers, wconn = _start(_workers, endpoint)
        procs.append(workers)
        if _word(wconn, "workers") != "ready":
            raise MeasurementError("broker benchmark: the workers did not start")
        clients, cconn = _start(_clients, endpoint, n, broker.pid)
        procs.append(clients)
        status, value = _word(cconn, "clients")
        if status != "ok":
            raise MeasurementError(f"broker benchmark ({competitor}): {value}")
        wconn.send("stop")
        rate, capacity = value
        return float(capacity if per_cpu else rate)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)


def broker_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """Two views of one load: requests per second, and per second of the broker's CPU time.

    On a 2-core machine the broker and the two load processes share the
    cores, so the first depends on how the scheduler spreads three busy
    processes (and on whatever else runs); the second is what the broker
    itself costs per request, the rate it would reach with a core of its own.
    """
    per_s = CPU_CASE
    return [
        Case(scenario="broker", case=CASE, competitors=["zguide-broker", "pf-broker"], unit="req/s",
             measure=partial(measure, n=sizes.broker), baseline=("broker", CASE, "zguide-broker")),
        Case(scenario="broker", case=per_s, competitors=["zguide-broker", "pf-broker"], unit="req/cpu-s",
             measure=partial(measure, n=sizes.broker, per_cpu=True),
             baseline=("broker", per_s, "zguide-broker")),
    ]
