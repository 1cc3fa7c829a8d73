"""Scenarios 1 and 3: PUSH -> PULL throughput, one socket and fan-in over K.

Streaming: the receiver is running (its loop set up, waiting for the first
message) while the sender sends; the clock starts at the first message.
Prefilled: both sides lift their high-water marks, the sender queues every
message, closes with an unbounded linger and terminates its context (so
everything has left it), then says so over the link; after a short settle,
in which libzmq's I/O thread moves the last bytes from the kernel into the
queue, the receiver starts the clock and drains. The receiver's rate is the
result (messages/s).
"""
from __future__ import annotations

import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Dict, List

import zmq

from competitors import SINKS, count_for
from harness import Case, bind_random, new_context, raise_fd_limit, run_pair

PAYLOAD = b"x" * 64
SETTLE_S = 0.1
TIMEOUT_S = 300.0


def receiver(link: Connection, params: Dict[str, Any]) -> Any:
    """Bind K PULL sockets, set the competitor up, take n messages, return msgs/s."""
    raise_fd_limit()
    prefilled, n = params["prefilled"], params["n"]
    ctx = new_context()
    socks = [ctx.socket(zmq.PULL) for _ in range(params["k"])]
    try:
        for sock in socks:
            sock.rcvhwm = 0 if prefilled else 1000
        link.send([bind_random(sock) for sock in socks])
        run = SINKS[params["competitor"]](socks, n)
        if prefilled:
            link.recv()  # the sender has queued everything and terminated
            time.sleep(SETTLE_S)
        else:
            poller = zmq.Poller()
            for sock in socks:
                poller.register(sock, zmq.POLLIN)
            if not poller.poll(60_000):
                raise RuntimeError("no message within 60 s")
        if "wrap" in params:  # hotpath.py: run under a profiler instead of a clock
            return params["wrap"](run)
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
    finally:
        for sock in socks:
            sock.close(linger=0)
    return n / elapsed


def sender(link: Connection, params: Dict[str, Any]) -> None:
    """Connect K PUSH sockets and send n 64-byte messages round-robin."""
    raise_fd_limit()
    endpoints = link.recv()
    prefilled, n = params["prefilled"], params["n"]
    ctx = new_context()
    socks = []
    for endpoint in endpoints:
        sock = ctx.socket(zmq.PUSH)
        sock.sndhwm = 0 if prefilled else 1000
        sock.connect(endpoint)
        socks.append(sock)
    if len(socks) == 1:
        send = socks[0].send
        for _ in range(n):
            send(PAYLOAD)
    else:
        sends = [s.send for s in socks]
        k = len(sends)
        for i in range(n):
            sends[i % k](PAYLOAD)
    for sock in socks:
        sock.close(linger=-1)
    ctx.term()  # returns once every message has been handed to the kernel
    if prefilled:
        link.send("sent")


def measure(competitor: str, *, n: int, k: int, prefilled: bool) -> float:
    params = {"competitor": competitor, "n": count_for(competitor, n), "k": k, "prefilled": prefilled}
    rate, _ = run_pair(receiver, sender, params, TIMEOUT_S)
    return float(rate)


def throughput_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """Scenario 1: one socket, streaming and prefilled."""
    cases = []
    for mode in ("streaming", "prefilled"):
        cases.append(Case(
            scenario="throughput", case=mode, competitors=competitors, unit="msg/s",
            measure=partial(measure, n=sizes.throughput, k=1, prefilled=mode == "prefilled"),
            baseline=("throughput", mode, "raw"),
        ))
    return cases


def fanin_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """Scenario 3: K PULL sockets in one receiver, the same total, prefilled.

    The ratio is to raw on one socket (K = 1): what spreading the same
    messages over K sockets costs each loop.
    """
    cases = []
    for k in sizes.fanin_k:
        comps = competitors if k == 1 else [c for c in competitors if c != "raw"]
        cases.append(Case(
            scenario="fan-in", case=f"K={k}", competitors=comps, unit="msg/s",
            measure=partial(measure, n=sizes.fanin, k=k, prefilled=True),
            baseline=("fan-in", f"K={sizes.fanin_k[0]}", "raw"),
        ))
    return cases
