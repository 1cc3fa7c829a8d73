"""Scenario "requests": calls from a client process to a server, pipelined and in lockstep.

Pipelined: one client keeps 64 JSON requests ``["ping", [i], {}]`` in
flight on one DEALER against a raw ROUTER echo server (a blocking
``recv_multipart``/``send_multipart`` loop), each request carrying its
correlation id as the first envelope frame, each reply decoded and matched
to its request. Competitors, each written the way its users write it:

- ``Requester``: pollframe's, a callback per request that sends the next;
- ``Requester+heartbeat``: the same with ``heartbeat=0.5`` (ZMTP PINGs, and
  a socket monitor's PAIR socket in every poll): what watching the
  connection costs;
- ``asyncio-idiomatic``: zmq.asyncio, 64 worker coroutines each awaiting a
  future for its reply, one reader task resolving them by id;
- ``asyncio-tuned``: zmq.asyncio, one receive loop keeping 64 in flight, no
  future per request;
- ``zmqstream``: Tornado's ZMQStream on the DEALER, a callback per reply
  from a dict by id;
- ``REQ-lockstep``: a raw blocking REQ client, one request at a time (the
  baseline the issue's 4x is measured against).

Lockstep: a raw blocking REQ client against ``Requester(lockstep=True)``,
the same JSON, one request at a time, against the same echo server.

Coroutine handler: PongProc's handler with ``@message async def ping``
against the plain ``@message def ping`` one, each served by a Stream on a
PollLoop and timed by a raw REQ client.

Reply cache: the plain handler with ``replies=ReplyCache()`` against the
same handler without it, timed by a raw DEALER keeping 64 requests in
flight, each with an id of its own as a Requester sends them (a REQ client
has none, and the cache would skip it): the server is the bottleneck, so
the ratio is the cache's cost per request (a key, an entry, a stored reply).

Pinning: ``--pin`` places client and server as in the other round-trip
scenarios, and the pipelined and lockstep cases are measured under the
other placement too (``same`` adds ``split`` and the reverse; ``none``
only unpinned), so that both figures appear side by side, named by their
CPUs. They answer different questions. On one CPU a rate is the CPU cost
of a request for all four threads together (two processes, two libzmq I/O
threads), and the blocking REQ baseline, which then never waits for
another core, comes out twice as fast as on two (measured: 17k/s pinned
together, 8k/s apart). On two CPUs pipelining keeps both processes busy
at once, which is what it is for.
"""
from __future__ import annotations

import itertools
import json
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, List, Optional

import zmq

import harness
from harness import Case, bind_random, new_context, run_pair

TIMEOUT_S = 300.0
IN_FLIGHT = 64
WARMUP = 500

PIPELINED = ["Requester", "Requester+heartbeat", "asyncio-idiomatic", "asyncio-tuned", "zmqstream",
             "REQ-lockstep"]
LOCKSTEP = ["raw-REQ", "Requester-lockstep"]
HANDLERS = ["plain-handler", "async-handler"]
CACHED = ["handler-ids", "cached-handler"]


#: How each placement is named in a case: "pipelined x64, 1 CPU".
CPUS = {"same": "1 CPU", "split": "2 CPUs", "none": "unpinned"}


def placements(pin: str) -> List[str]:
    """The run's own ``--pin`` first, then the other pinned one (none: only unpinned)."""
    return {"same": ["same", "split"], "split": ["split", "same"]}.get(pin, [pin])


def _request(i: int) -> bytes:
    return json.dumps(["ping", [i], {}]).encode()


# ------------------------------------------------------------------ servers


def echo_server(link: Connection, params: Dict[str, Any]) -> None:
    """A raw ROUTER echo: every message goes back as it came, envelope and all."""
    harness.pin_round_trip("server", params["pin"])
    ctx = new_context()
    sock = ctx.socket(zmq.ROUTER)
    sock.sndhwm = sock.rcvhwm = 0
    try:
        link.send(bind_random(sock))
        sock.rcvtimeo = 200
        recv, send = sock.recv_multipart, sock.send_multipart
        while True:
            try:
                frames = recv()
            except zmq.Again:
                if link.poll():  # the client is done
                    return
                continue
            send(frames)
    finally:
        sock.close(linger=0)
        ctx.term()


def handler_server(link: Connection, params: Dict[str, Any]) -> None:
    """PongProc's message tier on a ROUTER Stream, its handler plain or async."""
    harness.pin_round_trip("server", params["pin"])
    from pollframe.handler import MessageHandler, message
    from pollframe.loop import PollLoop
    from pollframe.replycache import ReplyCache
    from pollframe.stream import Stream

    class Plain(MessageHandler):
        @message
        def ping(self, count: int) -> list:
            return ["pong", [count], {}]

    class Async(MessageHandler):
        @message
        async def ping(self, count: int) -> list:
            return ["pong", [count], {}]

    ctx = new_context()
    loop = PollLoop()
    stream = Stream(ctx.socket(zmq.ROUTER), loop)
    try:
        link.send(bind_random(stream.socket))
        competitor = params["competitor"]
        replies = ReplyCache() if competitor == "cached-handler" else None
        handler = (Async if competitor == "async-handler" else Plain)(reply_stream=stream, replies=replies)
        stream.on_recv(handler)
        loop.register(link.fileno(), lambda fd, ev: loop.stop())
        loop.run()
    finally:
        stream.close(linger=0)
        loop.close()
        ctx.term()


# ------------------------------------------------------------------ clients


def _timed(run: Callable[[int], None], n: int) -> float:
    run(WARMUP)
    start = time.perf_counter()
    run(n)
    return n / (time.perf_counter() - start)


def client_requester(
    endpoint: str, n: int, lockstep: bool = False, heartbeat: Optional[float] = None
) -> float:
    from pollframe.loop import PollLoop
    from pollframe.requester import Requester

    ctx = new_context()
    loop = PollLoop()
    req = Requester(loop, ctx, endpoint, timeout=30.0, retries=1, lockstep=lockstep, heartbeat=heartbeat)
    try:
        def run(count: int) -> None:
            state = {"sent": 0, "done": 0}
            window = 1 if lockstep else IN_FLIGHT

            def on_reply(reply: Any) -> None:
                state["done"] += 1
                if state["sent"] < count:
                    send()
                elif state["done"] == count:
                    loop.stop()

            def on_error(exc: BaseException) -> None:
                raise exc

            def send() -> None:
                i = state["sent"]
                state["sent"] = i + 1
                req.request("ping", i, on_reply=on_reply, on_error=on_error)

            for _ in range(min(window, count)):
                send()
            loop.run()

        return _timed(run, n)
    finally:
        req.close()
        loop.close()
        ctx.term()


def client_asyncio(endpoint: str, n: int, tuned: bool) -> float:
    import asyncio

    import zmq.asyncio

    async def main() -> float:
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.sndhwm = sock.rcvhwm = 0
        sock.connect(endpoint)
        try:
            if tuned:
                async def run(count: int) -> None:
                    sent = done = 0
                    for _ in range(min(IN_FLIGHT, count)):
                        sock.send_multipart([sent.to_bytes(8, "big"), b"", _request(sent)])
                        sent += 1
                    while done < count:
                        rid, _, body = await sock.recv_multipart()
                        json.loads(body)
                        done += 1
                        if sent < count:
                            sock.send_multipart([sent.to_bytes(8, "big"), b"", _request(sent)])
                            sent += 1
            else:
                async def run(count: int) -> None:
                    waiting: Dict[bytes, asyncio.Future[Any]] = {}
                    aloop = asyncio.get_running_loop()
                    counter = iter(range(count))

                    async def reader() -> None:
                        while True:
                            rid, _, body = await sock.recv_multipart()
                            waiting.pop(rid).set_result(json.loads(body))

                    async def worker() -> None:
                        for i in counter:
                            rid = i.to_bytes(8, "big")
                            fut = waiting[rid] = aloop.create_future()
                            await sock.send_multipart([rid, b"", _request(i)])
                            await fut

                    read = asyncio.ensure_future(reader())
                    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
                    read.cancel()
                    try:
                        await read
                    except asyncio.CancelledError:
                        pass

            await run(WARMUP)
            start = time.perf_counter()
            await run(n)
            return n / (time.perf_counter() - start)
        finally:
            sock.close(linger=0)
            ctx.term()

    return asyncio.run(main())


def client_zmqstream(endpoint: str, n: int) -> float:
    from tornado.ioloop import IOLoop
    from zmq.eventloop.zmqstream import ZMQStream

    ctx = new_context()
    sock = ctx.socket(zmq.DEALER)
    sock.sndhwm = sock.rcvhwm = 0
    sock.connect(endpoint)
    ioloop = IOLoop(make_current=False)
    stream = ZMQStream(sock, ioloop)
    try:
        def run(count: int) -> None:
            callbacks: Dict[bytes, Callable[[Any], None]] = {}
            state = {"sent": 0, "done": 0}

            def on_reply(reply: Any) -> None:
                state["done"] += 1
                if state["sent"] < count:
                    send()
                elif state["done"] == count:
                    ioloop.stop()

            def on_recv(frames: List[bytes]) -> None:
                callbacks.pop(frames[0])(json.loads(frames[2]))

            def send() -> None:
                i = state["sent"]
                state["sent"] = i + 1
                rid = i.to_bytes(8, "big")
                callbacks[rid] = on_reply
                stream.send_multipart([rid, b"", _request(i)])

            stream.on_recv(on_recv)
            for _ in range(min(IN_FLIGHT, count)):
                send()
            ioloop.start()

        return _timed(run, n)
    finally:
        stream.close(linger=0)
        ioloop.close()
        ctx.term()


def client_req(endpoint: str, n: int) -> float:
    ctx = new_context()
    sock = ctx.socket(zmq.REQ)
    sock.connect(endpoint)
    try:
        send, recv = sock.send, sock.recv

        def run(count: int) -> None:
            for i in range(count):
                send(_request(i))
                json.loads(recv())

        return _timed(run, n)
    finally:
        sock.close(linger=0)
        ctx.term()


def client_dealer_ids(endpoint: str, n: int) -> float:
    """A raw DEALER keeping 64 requests in flight, each with its own 16-byte id, never reused."""
    ctx = new_context()
    sock = ctx.socket(zmq.DEALER)
    sock.sndhwm = sock.rcvhwm = 0
    sock.connect(endpoint)
    ids = itertools.count()
    try:
        send, recv = sock.send_multipart, sock.recv_multipart

        def run(count: int) -> None:
            sent = done = 0
            for _ in range(min(IN_FLIGHT, count)):
                send([next(ids).to_bytes(16, "big"), b"", _request(sent)])
                sent += 1
            while done < count:
                json.loads(recv()[2])
                done += 1
                if sent < count:
                    send([next(ids).to_bytes(16, "big"), b"", _request(sent)])
                    sent += 1

        return _timed(run, n)
    finally:
        sock.close(linger=0)
        ctx.term()


CLIENTS: Dict[str, Callable[[str, int], float]] = {
    "Requester": client_requester,
    "Requester+heartbeat": partial(client_requester, heartbeat=0.5),
    "asyncio-idiomatic": partial(client_asyncio, tuned=False),
    "asyncio-tuned": partial(client_asyncio, tuned=True),
    "zmqstream": client_zmqstream,
    "REQ-lockstep": client_req,
    "raw-REQ": client_req,
    "Requester-lockstep": partial(client_requester, lockstep=True),
    "plain-handler": client_req,
    "async-handler": client_req,
    "handler-ids": client_dealer_ids,
    "cached-handler": client_dealer_ids,
}


def client(link: Connection, params: Dict[str, Any]) -> float:
    harness.pin_round_trip("client", params["pin"])
    endpoint = link.recv()
    try:
        return CLIENTS[params["competitor"]](endpoint, params["n"])
    finally:
        link.send("done")


def measure(competitor: str, *, n: int, pin: str, server: Any = echo_server) -> float:
    _, rate = run_pair(server, client, {"competitor": competitor, "n": n, "pin": pin}, TIMEOUT_S)
    return float(rate)


def request_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    pipelined = [c for c in PIPELINED if c != "zmqstream" or "zmqstream" in competitors]
    cases = []
    for pin in placements(harness.PIN_ROUND_TRIPS):
        where = CPUS[pin]
        cases += [
            Case(scenario="requests", case=f"pipelined x{IN_FLIGHT}, {where}", competitors=pipelined,
                 unit="req/s", measure=partial(measure, n=sizes.requests, pin=pin),
                 baseline=("requests", f"pipelined x{IN_FLIGHT}, {where}", "REQ-lockstep")),
            Case(scenario="requests", case=f"lockstep, {where}", competitors=LOCKSTEP, unit="rt/s",
                 measure=partial(measure, n=sizes.requests // 2, pin=pin),
                 baseline=("requests", f"lockstep, {where}", "raw-REQ")),
        ]
    pin = harness.PIN_ROUND_TRIPS  # a ratio of two handlers' CPU cost: one placement is enough
    cases.append(Case(scenario="requests", case="PongProc handler", competitors=HANDLERS, unit="rt/s",
                      measure=partial(measure, n=sizes.requests // 2, pin=pin, server=handler_server),
                      baseline=("requests", "PongProc handler", "plain-handler")))
    cases.append(Case(scenario="requests", case="handler, reply cache", competitors=CACHED, unit="req/s",
                      measure=partial(measure, n=sizes.requests, pin=pin, server=handler_server),
                      baseline=("requests", "handler, reply cache", "handler-ids")))
    return cases
