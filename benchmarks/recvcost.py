"""What each way of taking one message off a queued socket costs, in µs.

    python benchmarks/recvcost.py [--n 200000] [--reps 5]

One process, a PUSH -> PULL pair over inproc with unlimited high-water
marks: the PULL queue is filled with n single-frame 64-byte messages, then
drained by each variant; the best of the repetitions is reported per
message. It isolates the per-message work that a loop's read handler does,
which cProfile cannot see inside pyzmq's compiled methods: the cost of
learning whether more frames follow, of a Frame object, of a callback, of
the loop's own bookkeeping.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from typing import Any, Callable, Dict, List

import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)

NB = zmq.NOBLOCK
Again = zmq.Again
RCVMORE = zmq.RCVMORE


def _variants(sock: zmq.Socket, n: int) -> Dict[str, Callable[[], None]]:
    recv = sock.recv

    def cb(_msg: object) -> None:
        pass

    def blocking() -> None:
        for _ in range(n):
            recv()

    def noblock() -> None:
        for _ in range(n):
            recv(NB)

    def list_no_check() -> None:
        for _ in range(n):
            cb([recv(NB)])

    def frame_more_bytes() -> None:
        for _ in range(n):
            frame = recv(NB, copy=False)
            frames = [frame.bytes]
            while frame.more:
                frame = recv(NB, copy=False)
                frames.append(frame.bytes)
            cb(frames)

    def frame_positional() -> None:
        for _ in range(n):
            frame = recv(NB, False)
            frames = [frame.bytes]
            while frame.more:
                frame = recv(NB, False)
                frames.append(frame.bytes)
            cb(frames)

    get = sock.get

    def recv_get_rcvmore() -> None:
        for _ in range(n):
            frames = [recv(NB)]
            while get(RCVMORE):
                frames.append(recv(NB))
            cb(frames)

    rm = sock.recv_multipart

    def recv_multipart() -> None:
        for _ in range(n):
            cb(rm(NB))

    return {
        "recv() blocking": blocking,
        "recv(NOBLOCK)": noblock,
        "[recv(NOBLOCK)] + call, no more-check (wrong for multipart)": list_no_check,
        "recv(NOBLOCK, copy=False) + .more/.bytes + call": frame_more_bytes,
        "  same, copy passed positionally": frame_positional,
        "recv(NOBLOCK) + sock.get(RCVMORE) + call": recv_get_rcvmore,
        "recv_multipart(NOBLOCK) + call": recv_multipart,
    }


def _pollframe_variants(sock: zmq.Socket, n: int, loops: List[Any]) -> Dict[str, Callable[[], None]]:
    """The reader ``register`` installs, called as the loop calls it on one wake-up.

    The reader stops draining once it is no longer the handler registered
    for its socket, so it is installed with ``watch`` (as ``register``
    does) on a loop of its own that is never run; each variant's loop is
    appended to ``loops`` for the caller to close.
    """
    try:
        from pollframe.loop import PollLoop
    except ImportError:
        return {}
    out: Dict[str, Callable[[], None]] = {}

    def counting(_msg: object) -> None:
        pass

    for name, multipart in (("frames", True), ("single", False)):
        loop = PollLoop(max_drain=n + 1)
        reader = loop.reader(sock, counting, multipart=multipart)
        loop.watch(sock, reader, zmq.POLLIN)
        loops.append(loop)
        out[f"pollframe reader ({name}), one wake-up, empty callback"] = partial(reader, zmq.POLLIN)
    return out


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for s in (pull, push):
        s.rcvhwm = s.sndhwm = 0
    pull.bind("inproc://recvcost")
    push.connect("inproc://recvcost")
    payload = b"x" * 64
    loops: List[Any] = []
    variants = {**_variants(pull, args.n), **_pollframe_variants(pull, args.n, loops)}
    best: Dict[str, float] = {}
    for _ in range(args.reps):
        for name, drain in variants.items():
            for _ in range(args.n):
                push.send(payload)
            start = time.perf_counter()
            drain()
            per = (time.perf_counter() - start) / args.n * 1e6
            best[name] = min(per, best.get(name, per))
            if pull.poll(0):
                raise RuntimeError(f"{name} left messages behind")
    print(f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, best of {args.reps} x {args.n:,} msgs")
    for name, per in best.items():
        print(f"{per:6.3f} us/msg  {name}")
    for loop in loops:
        loop.close()
    pull.close(0)
    push.close(0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
