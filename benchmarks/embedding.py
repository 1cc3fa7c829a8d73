"""Embedding: a pollframe loop served by asyncio through its descriptor, against PollLoop.run().

Round trip: the same blocking REQ client as the latency scenario times round
trips against a REP ``Stream`` in another process, whose loop is run either
by ``PollLoop.run()`` (the baseline) or by an asyncio event loop through
``pollframe.embed.AsyncioGuest`` (``loop.fileno()`` watched with
``add_reader``, one timer at ``next_deadline()``; no pump, no thread).

Idle: the embedded loop has one idle PULL socket and a 1 s periodic timer,
as in the idle scenario, and asyncio runs it for a few seconds; the CPU
time used is a percentage of one core. A bare asyncio loop with the same
1 s timer is the baseline.
"""
from __future__ import annotations

import asyncio
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, List, Sequence, Tuple

import zmq

import reqrep
import resources
from harness import Case, bind_random, new_context, pin_round_trip, run_many, run_pair

Run = Callable[[], None]
COMPETITORS = ["pf-run", "pf-asyncio-fd"]


def _rep_stream(sock: zmq.Socket, n: int, done: Callable[[], None]) -> Any:
    """A PollLoop with a REP Stream echoing n requests, then calling done(); returns the loop."""
    from pollframe.loop import PollLoop
    from pollframe.stream import Stream

    loop = PollLoop()
    stream = Stream(sock, loop)
    left = n

    def on_request(msg: List[bytes]) -> None:
        nonlocal left
        stream.send_multipart(msg)
        left -= 1
        if not left:
            stream.flush()
            done()

    stream.on_recv(on_request)
    return loop


def echo_run(sock: zmq.Socket, n: int) -> Run:
    """The baseline: PollLoop.run() until n requests are served."""
    holder: List[Any] = []
    loop = _rep_stream(sock, n, lambda: holder[0].stop())
    holder.append(loop)
    return loop.run


def echo_asyncio_fd(sock: zmq.Socket, n: int) -> Run:
    """The same Stream, its loop served by asyncio through AsyncioGuest."""
    from pollframe.embed import AsyncioGuest

    def run() -> None:
        async def main() -> None:
            finished = asyncio.get_running_loop().create_future()
            loop = _rep_stream(sock, n, lambda: finished.set_result(None))
            with AsyncioGuest(loop):
                await finished
            loop.close()

        asyncio.run(main())

    return run


ECHOES: Dict[str, Callable[[zmq.Socket, int], Run]] = {
    "pf-run": echo_run,
    "pf-asyncio-fd": echo_asyncio_fd,
}


def server(link: Connection, params: Dict[str, Any]) -> None:
    """Bind the REP socket and serve warmup + n requests with the competitor's loop."""
    pin_round_trip("server")
    ctx = new_context()
    sock = ctx.socket(zmq.REP)
    try:
        endpoint = bind_random(sock)
        run = ECHOES[params["competitor"]](sock, params["warmup"] + params["n"])
        link.send(endpoint)
        run()
    finally:
        sock.close(linger=1000)  # the last reply may still be in the pipe
        ctx.term()


def measure_round_trip(competitor: str, *, n: int) -> float:
    params = {"competitor": competitor, "n": n, "warmup": 200}
    _, rate = run_pair(server, reqrep.client, params, reqrep.TIMEOUT_S)
    return float(rate)


# -------------------------------------------------------------------- idle


def _idle(params: Dict[str, Any]) -> float:
    """Percent of one core used by asyncio over params['seconds'], hosting the guest or not."""
    ticks: List[float] = []
    seconds = params["seconds"]
    ctx = new_context()
    sock = ctx.socket(zmq.PULL)
    try:
        bind_random(sock)

        async def main() -> None:
            host = asyncio.get_running_loop()
            if params["competitor"] == "asyncio":
                def tick() -> None:
                    ticks.append(time.monotonic())
                    host.call_later(1.0, tick)

                host.call_later(1.0, tick)
                await asyncio.sleep(seconds)
                return
            from pollframe.embed import AsyncioGuest
            from pollframe.loop import PollLoop

            loop = PollLoop()
            loop.register(sock, lambda frames: None)
            loop.call_every(1.0, lambda: ticks.append(time.monotonic()))
            with AsyncioGuest(loop):
                await asyncio.sleep(seconds)
            loop.close()

        cpu, wall = resources._cpu_s(), time.monotonic()
        asyncio.run(main())
        cpu, wall = resources._cpu_s() - cpu, time.monotonic() - wall
    finally:
        sock.close(linger=0)
    if len(ticks) < int(seconds) - 1:
        raise RuntimeError(f"the 1 s timer ticked {len(ticks)} times in {seconds:g} s")
    return 100.0 * cpu / wall


def idle_together(competitors: Sequence[str], *, seconds: float) -> Dict[str, float]:
    jobs: List[Tuple[Callable[[Dict[str, Any]], Any], Dict[str, Any]]] = [
        (_idle, {"competitor": c, "seconds": seconds}) for c in competitors]
    return dict(zip(competitors, run_many(jobs, seconds + 60.0)))


def embed_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """The round trip of a Stream embedded in asyncio against PollLoop.run(), and its idle CPU."""
    idle = ["asyncio", "pf-asyncio-fd"]
    return [
        Case(scenario="embed", case="REQ/REP, Stream", competitors=COMPETITORS, unit="rt/s",
             measure=partial(measure_round_trip, n=sizes.latency),
             baseline=("embed", "REQ/REP, Stream", "pf-run")),
        Case(scenario="embed", case=f"idle CPU, 1 s timer, {sizes.idle_seconds:g} s", competitors=idle,
             unit="% core", measure=lambda c: idle_together([c], seconds=sizes.idle_seconds)[c],
             together=partial(idle_together, seconds=sizes.idle_seconds),
             higher_is_better=False, per_op=False, max_reps=3),
    ]
