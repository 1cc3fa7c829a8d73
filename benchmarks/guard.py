"""What re-checking each message's CURVE identity costs (``pollframe.auth.SessionGuard``).

One process: a CURVE PULL server (ZAP on its loop, one admitted key) and a
CURVE PUSH client on tcp://127.0.0.1, unlimited high-water marks. After the
handshake the client queues ``n`` single-frame 64-byte messages and the
loop drains them three ways, side by side:

- ``pf-register``: ``loop.register(sock, cb)``, what a socket that does not
  ask for properties pays (also without CURVE: the reader is the same);
- ``pf-properties``: ``register(..., properties=("User-Id", "Peer-Address"))``,
  the reader looks up both properties of each message;
- ``pf-guard``: the same reader calling a ``SessionGuard`` around ``cb``
  (one cached verdict per peer).

The ratio column is each against ``pf-register``.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from harness import Case, run_single

PAYLOAD = b"x" * 64


def _drain(params: Dict[str, Any]) -> float:
    import zmq

    from pollframe.auth import SESSION_PROPERTIES, curve_client, curve_server, start_auth
    from pollframe.loop import PollLoop

    kind, n = params["competitor"], params["n"]
    ctx, loop = zmq.Context(), PollLoop()
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    auth = start_auth(ctx, loop, allow_keys=[client_public])
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for sock in (pull, push):
        sock.rcvhwm = sock.sndhwm = 0
        sock.linger = 0
    curve_server(pull, server_secret)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    curve_client(push, client_secret, server_public)
    push.connect(f"tcp://127.0.0.1:{port}")
    got = [0]

    def count(frames: Any, props: Any = None) -> None:
        got[0] += 1

    loop.register(pull, count)
    push.send(PAYLOAD)
    while got[0] < 1:  # the handshake, through ZAP on this loop
        loop.run_once(0.1)
    if kind == "pf-register":
        loop.register(pull, count)
    elif kind == "pf-properties":
        loop.register(pull, count, properties=SESSION_PROPERTIES)
    else:
        loop.register(pull, auth.guard(count), properties=SESSION_PROPERTIES)
    for _ in range(n):
        push.send(PAYLOAD)
    pull.poll(10_000)  # the first of them has arrived
    got[0] = 0
    start = time.perf_counter()
    while got[0] < n:
        loop.run_once(1.0)
    elapsed = time.perf_counter() - start
    loop.unregister(pull)
    auth.stop()
    pull.close()
    push.close()
    loop.close()
    ctx.term()
    return n / elapsed


def guard_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    if "pf-register" not in competitors:  # pollframe is not importable
        return []
    n = sizes.throughput
    return [Case(
        scenario="guard", case=f"CURVE PULL x{n:,}",
        competitors=["pf-register", "pf-properties", "pf-guard"], unit="msg/s",
        measure=lambda competitor: float(run_single(_drain, {"competitor": competitor, "n": n}, 120.0)),
        baseline=("guard", f"CURVE PULL x{n:,}", "pf-register"),
    )]
