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
from typing import Any, Callable, Dict, List

import zmq

import reqrep
import resources
from competitors import echo_pf_stream, pf_stream_echo
from harness import Case, bind_random, new_context, pin_round_trip, run_pair

Run = Callable[[], None]
COMPETITORS = ["pf-run", "pf-asyncio-fd"]


def echo_asyncio_fd(sock: zmq.Socket, n: int) -> Run:
    """The latency scenario's Stream echo, its loop served by asyncio through AsyncioGuest."""
    from pollframe.embed import AsyncioGuest

    def run() -> None:
        async def main() -> None:
            finished = asyncio.get_running_loop().create_future()
            loop = pf_stream_echo(sock, n, [], lambda: finished.set_result(None))
            with AsyncioGuest(loop):
                await finished
            loop.close()

        asyncio.run(main())

    return run


ECHOES: Dict[str, Callable[[zmq.Socket, int], Run]] = {
    "pf-run": lambda sock, n: echo_pf_stream(sock, n, []),  # PollLoop.run(), as in the latency scenario
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


def embed_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    """The round trip of a Stream embedded in asyncio against PollLoop.run(), and its idle CPU."""
    idle = ["asyncio", "pf-asyncio-fd"]
    together = partial(resources.idle_together, seconds=sizes.idle_seconds, job=_idle)
    return [
        Case(scenario="embed", case="REQ/REP, Stream", competitors=COMPETITORS, unit="rt/s",
             measure=partial(measure_round_trip, n=sizes.latency),
             baseline=("embed", "REQ/REP, Stream", "pf-run")),
        Case(scenario="embed", case=f"idle CPU, 1 s timer, {sizes.idle_seconds:g} s", competitors=idle,
             unit="% core", measure=lambda c: together([c])[c], together=together,
             higher_is_better=False, per_op=False, max_reps=3),
    ]
