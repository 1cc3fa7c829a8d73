"""Scenario 2 (latency) and the "1 busy of 1,000" case of scenario 3.

A raw blocking REQ client in one process times round trips against a REP
server in another, written by each competitor. In the busy case the server
also has 999 idle PULL sockets registered in its loop: every round trip is
one wake-up, so the rate shows what a poll over 1,000 sockets costs.
"""
from __future__ import annotations

import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Dict, List

import zmq

from competitors import ECHOES, count_for
from harness import Case, bind_random, new_context, pin_round_trip, raise_fd_limit, run_pair

PAYLOAD = b"p" * 64
TIMEOUT_S = 300.0


def server(link: Connection, params: Dict[str, Any]) -> Any:
    """Bind the REP socket (and the idle ones), serve warmup + n requests."""
    pin_round_trip("server")
    raise_fd_limit()
    ctx = new_context()
    sock = ctx.socket(zmq.REP)
    idle = [ctx.socket(zmq.PULL) for _ in range(params["idle"])]
    try:
        endpoint = bind_random(sock)
        for other in idle:
            bind_random(other)
        run = ECHOES[params["competitor"]](sock, params["warmup"] + params["n"], idle)
        link.send(endpoint)
        if "wrap" in params:  # hotpath.py: run under a profiler
            return params["wrap"](run)
        run()
    finally:
        for other in idle:
            other.close(linger=0)
        sock.close(linger=1000)  # the last reply may still be in the pipe
        ctx.term()
    return None


def client(link: Connection, params: Dict[str, Any]) -> float:
    """Connect a REQ socket, warm up, time n round trips; return round trips/s."""
    pin_round_trip("client")
    endpoint = link.recv()
    ctx = new_context()
    sock = ctx.socket(zmq.REQ)
    try:
        sock.connect(endpoint)
        send, recv = sock.send, sock.recv
        send(PAYLOAD)
        if not sock.poll(60_000):
            raise RuntimeError("no reply within 60 s")
        recv()
        for _ in range(params["warmup"] - 1):
            send(PAYLOAD)
            recv()
        n = params["n"]
        start = time.perf_counter()
        for _ in range(n):
            send(PAYLOAD)
            recv()
        elapsed = time.perf_counter() - start
    finally:
        sock.close(linger=0)
    return n / elapsed


def measure(competitor: str, *, n: int, idle: int) -> float:
    if not idle:  # with idle sockets the slow ones are the zmq_poll loops: same n for all
        n = count_for(competitor, n)
    params = {"competitor": competitor, "n": n, "warmup": 200, "idle": idle}
    _, rate = run_pair(server, client, params, TIMEOUT_S)
    return float(rate)


def latency_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """Scenario 2: REQ/REP ping-pong, the REP side written by each competitor."""
    return [Case(
        scenario="latency", case="REQ/REP", competitors=competitors, unit="rt/s",
        measure=partial(measure, n=sizes.latency, idle=0),
        baseline=("latency", "REQ/REP", "raw"),
    )]


def busy_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """Scenario 3b: one busy REP socket among 1,000 registered (999 idle)."""
    return [Case(
        scenario="fan-in", case="busy 1/1000 (REQ/REP)", competitors=competitors, unit="rt/s",
        measure=partial(measure, n=sizes.busy, idle=999),
        baseline=("fan-in", "busy 1/1000 (REQ/REP)", "raw"),
    )]
