"""Scenario 3c: what one zero-timeout poll over K idle sockets costs.

In one process, K bound PULL sockets that never receive anything are
registered with each mechanism; we time repeated zero-timeout polls. The
ratio is to the same mechanism at K = 1 (1.0 = flat; 0.2 = 5x dearer).
"""
from __future__ import annotations

import select
import time
from functools import partial
from typing import Any, Callable, Dict, List

import zmq

from harness import Case, bind_random, new_context, raise_fd_limit, run_single


def _poller(socks: List[zmq.Socket]) -> Callable[[], Any]:
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    return partial(poller.poll, 0)


def _epoll(socks: List[zmq.Socket]) -> Callable[[], Any]:
    """epoll over each socket's ZMQ_FD: the kernel keeps the interest list.

    ZMQ_FD is edge-like: once it fires, ZMQ_EVENTS must be read to learn
    the socket's state and re-arm it, as any epoll backend must do.
    """
    ep = select.epoll()
    by_fd = {}
    for sock in socks:
        fd = int(sock.getsockopt(zmq.FD))
        by_fd[fd] = sock
        ep.register(fd, select.EPOLLIN)
    poll, events = ep.poll, zmq.EVENTS

    def once() -> None:
        for fd, _ev in poll(0):
            by_fd[fd].getsockopt(events)

    return once


def _pollframe(socks: List[zmq.Socket]) -> Callable[[], Any]:
    from pollframe.loop import PollLoop

    loop = PollLoop()
    for sock in socks:
        loop.register(sock, lambda frames: None)
    return partial(loop.run_once, 0)


def _pollframe_epoll(socks: List[zmq.Socket]) -> Callable[[], Any]:
    from pollframe.epoll import EpollLoop

    loop = EpollLoop()
    for sock in socks:
        loop.register(sock, lambda frames: None)
    return partial(loop.run_once, 0)


MECHANISMS: Dict[str, Callable[[List[zmq.Socket]], Callable[[], Any]]] = {
    "poller": _poller,
    "epoll-ZMQ_FD": _epoll,
    "pf-register": _pollframe,
    "pf-epoll": _pollframe_epoll,
}


def _cost(params: Dict[str, Any]) -> float:
    """Microseconds per poll, timed over at least params['seconds']."""
    raise_fd_limit()
    ctx = new_context()
    socks = [ctx.socket(zmq.PULL) for _ in range(params["k"])]
    try:
        for sock in socks:
            bind_random(sock)
        poll = MECHANISMS[params["competitor"]](socks)
        for _ in range(10):
            poll()
        batch, total, calls = 16, 0.0, 0
        while total < params["seconds"]:
            start = time.perf_counter()
            for _ in range(batch):
                poll()
            total += time.perf_counter() - start
            calls += batch
            batch *= 2
        return total / calls * 1e6
    finally:
        for sock in socks:
            sock.close(linger=0)


def measure(competitor: str, *, k: int, seconds: float) -> float:
    return float(run_single(_cost, {"competitor": competitor, "k": k, "seconds": seconds}, 120.0))


def pollcost_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    comps = [c for c in MECHANISMS if c in competitors or c == "epoll-ZMQ_FD"]
    return [Case(
        scenario="idle poll", case=f"K={k}", competitors=comps, unit="us/poll",
        measure=partial(measure, k=k, seconds=sizes.poll_seconds),
        higher_is_better=False, per_op=False, baseline_case=f"K={sizes.fanin_k[0]}",
    ) for k in sizes.fanin_k]
