"""Scenario 5: the three tiers end to end — PongProc against a raw JSON REP loop.

The server is either ``python examples/example_app/pongproc.py HOST:PORT``
(PongProc exactly as a user runs it, stdout discarded) or the same JSON
logic in a blocking REP loop: decode ``[msg_type, args, kwargs]``, answer
``ping`` with ``["pong", [n], {}]``, stop on ``plzdiekthxbye`` (and, as a
second reference, the same loop on a ROUTER socket, PongProc's choice against
raw garbage on the wire). A raw REQ
client times the round trips, then sends ``plzdiekthxbye``. Skipped, with a
message, while ``examples/example_app/pongproc.py`` does not exist.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Dict, List

import zmq

from harness import Case, new_context, pin_round_trip, run_pair

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PONGPROC = os.path.join(ROOT, "examples", "example_app", "pongproc.py")
TIMEOUT_S = 300.0
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def available() -> bool:
    return os.path.exists(PONGPROC)


def _free_port() -> int:
    """A port nobody listens on right now (PongProc binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answer(request: bytes) -> bytes:
    """PongProc's logic, inline: decode the triple, answer ping, refuse the rest."""
    msg_type, args, _kwargs = json.loads(request)
    if msg_type == "ping":
        print(f"Pong got request: ping {args[0]}", file=_DEVNULL, flush=True)
        return json.dumps(["pong", [args[0]], {}]).encode()
    if msg_type == "plzdiekthxbye":
        return b""
    return json.dumps(["error", ["unknown type"], {}]).encode()


def _raw_json_loop(port: int, router: bool) -> None:
    """The same logic as PongProc's tiers, written as one blocking loop.

    It prints the line PongProc prints (to /dev/null, as PongProc's stdout
    is here). With ``router`` it sits on a ROUTER socket as PongProc does,
    replying through the envelope: the cost of that choice alone.
    """
    ctx = new_context()
    sock = ctx.socket(zmq.ROUTER if router else zmq.REP)
    sock.bind(f"tcp://127.0.0.1:{port}")
    try:
        while True:
            if router:
                *envelope, request = sock.recv_multipart()
                reply = _answer(request)
                if not reply:
                    return
                sock.send_multipart([*envelope, reply])
            else:
                reply = _answer(sock.recv())
                if not reply:
                    return
                sock.send(reply)
    finally:
        sock.close(linger=0)


def server(link: Connection, params: Dict[str, Any]) -> None:
    pin_round_trip("server")  # PongProc's process inherits it
    port = _free_port()
    link.send(f"tcp://127.0.0.1:{port}")
    if params["competitor"] in ("raw-json-rep", "raw-json-router"):
        _raw_json_loop(port, router=params["competitor"] == "raw-json-router")
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    # Its stdout buffered, as the baseline's is: PYTHONUNBUFFERED (set in some CI and container
    # environments) would make each print(..., flush=True) two writes instead of the baseline's one.
    env.pop("PYTHONUNBUFFERED", None)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, PONGPROC, f"127.0.0.1:{port}"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=errors)
        link.recv()  # the client is done and has sent plzdiekthxbye
        try:
            code = proc.wait(5.0)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(5.0)
            raise RuntimeError("PongProc did not stop on plzdiekthxbye within 5 s") from None
        if code != 0:
            errors.seek(0)
            tail = errors.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"PongProc exited with {code}:\n{tail}")


def client(link: Connection, params: Dict[str, Any]) -> float:
    pin_round_trip("client")
    endpoint = link.recv()
    ctx = new_context()
    sock = ctx.socket(zmq.REQ)
    try:
        sock.connect(endpoint)

        def ping(i: int) -> None:
            sock.send(json.dumps(["ping", [i], {}]).encode())
            if not sock.poll(30_000):
                raise RuntimeError("no reply within 30 s")
            reply = json.loads(sock.recv())
            if reply[0] != "pong":
                raise RuntimeError(f"unexpected reply {reply!r}")

        for i in range(200):
            ping(i)
        n = params["n"]
        start = time.perf_counter()
        for i in range(n):
            sock.send(json.dumps(["ping", [i], {}]).encode())
            json.loads(sock.recv())
        elapsed = time.perf_counter() - start
        sock.send(json.dumps(["plzdiekthxbye", [], {}]).encode())
    finally:
        sock.close(linger=1000)
        link.send("done")
        ctx.term()
    return n / elapsed


def measure(competitor: str, *, n: int) -> float:
    _, rate = run_pair(server, client, {"competitor": competitor, "n": n}, TIMEOUT_S)
    return float(rate)


def e2e_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    return [Case(
        scenario="end to end", case="JSON ping-pong",
        competitors=["raw-json-rep", "raw-json-router", "PongProc"],
        unit="rt/s", measure=partial(measure, n=sizes.e2e),
        baseline=("end to end", "JSON ping-pong", "raw-json-rep"),
    )]
