"""Scenario 6: memory growth under load and the CPU an idle loop burns.

Memory: a sender streams warmup + N messages (default high-water marks, so
libzmq's queues stay bounded); the receiver reads VmRSS from
/proc/self/status after the warmup and after the last message. The result
is the growth in KiB; raw recv() shows the noise floor.

Idle: each loop has one idle PULL socket registered and one 1 s periodic
timer, and runs for a few seconds; the CPU time it used (getrusage) is
given as a percentage of one core. All idle loops run at the same time:
idle processes do not disturb each other.
"""
from __future__ import annotations

import resource
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, Callable, Dict, List, Tuple

import zmq

import pushpull
from harness import Case, bind_random, new_context, run_many, run_pair


def rss_kib() -> int:
    """Resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _consume(competitor: str, sock: zmq.Socket, warmup: int, n: int) -> List[int]:
    """Take warmup + n messages; return RSS after the warmup and at the end."""
    marks: List[int] = []
    if competitor == "raw":
        recv = sock.recv
        for _ in range(warmup):
            recv()
        marks.append(rss_kib())
        for _ in range(n):
            recv()
        marks.append(rss_kib())
        return marks
    from pollframe.loop import PollLoop

    loop = PollLoop()
    left = warmup + n

    def callback(_msg: object) -> None:
        nonlocal left
        left -= 1
        if left == n:
            marks.append(rss_kib())
        elif not left:
            loop.stop()

    if competitor == "pf-stream":
        from pollframe.stream import Stream

        Stream(sock, loop).on_recv(callback)
    else:
        loop.register(sock, callback, multipart=competitor == "pf-register")
    loop.run()
    marks.append(rss_kib())
    return marks


def _memory_receiver(link: Connection, params: Dict[str, Any]) -> float:
    ctx = new_context()
    sock = ctx.socket(zmq.PULL)
    try:
        link.send([bind_random(sock)])
        before, after = _consume(params["competitor"], sock, params["warmup"], params["n"])
    finally:
        sock.close(linger=0)
    return float(after - before)


def _memory_sender(link: Connection, params: Dict[str, Any]) -> None:
    pushpull.sender(link, {"n": params["warmup"] + params["n"], "prefilled": False})


def measure_memory(competitor: str, *, n: int) -> float:
    params = {"competitor": competitor, "n": n, "warmup": max(n // 20, 10_000)}
    growth, _ = run_pair(_memory_receiver, _memory_sender, params, 600.0)
    return float(growth)


# -------------------------------------------------------------------- idle


def _idle_loop(kind: str, sock: zmq.Socket, seconds: float) -> Callable[[], None]:
    """A loop with one registered idle socket and a 1 s periodic timer, stopping itself."""
    ticks: List[float] = []
    if kind == "poller":
        def run() -> None:
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            end = time.monotonic() + seconds
            next_tick = time.monotonic() + 1.0
            while True:
                now = time.monotonic()
                if now >= end:
                    return
                if now >= next_tick:
                    ticks.append(now)
                    next_tick += 1.0
                timeout = max(0.0, min(next_tick, end) - now)
                for ready, _ev in poller.poll(int(timeout * 1000) + 1):
                    ready.recv()
        return run
    if kind == "tornado":
        from tornado.ioloop import IOLoop, PeriodicCallback
        from zmq.eventloop.zmqstream import ZMQStream

        tloop = IOLoop()
        ZMQStream(sock, tloop).on_recv(lambda msg: None)
        PeriodicCallback(lambda: ticks.append(time.monotonic()), 1000).start()
        tloop.call_later(seconds, tloop.stop)
        return tloop.start
    if kind == "asyncio":
        import asyncio

        from zmq.asyncio import Socket as AsyncSocket

        aloop = asyncio.new_event_loop()

        async def main() -> None:
            asock = AsyncSocket.from_socket(sock)
            reader = asyncio.ensure_future(asock.recv_multipart())

            def tick() -> None:
                ticks.append(time.monotonic())
                aloop.call_later(1.0, tick)

            aloop.call_later(1.0, tick)
            await asyncio.sleep(seconds)
            reader.cancel()

        return lambda: aloop.run_until_complete(main())
    if kind == "pf-loop":
        from pollframe.loop import PollLoop

        ploop = PollLoop()
        ploop.register(sock, lambda frames: None)
        ploop.call_every(1.0, lambda: ticks.append(time.monotonic()))
        ploop.call_later(seconds, ploop.stop)
        return ploop.run
    raise ValueError(kind)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _idle(params: Dict[str, Any]) -> float:
    """Percent of one core used by an idle loop over params['seconds']."""
    ctx = new_context()
    sock = ctx.socket(zmq.PULL)
    try:
        bind_random(sock)
        run = _idle_loop(params["competitor"], sock, params["seconds"])
        cpu, wall = _cpu_s(), time.monotonic()
        run()
        cpu, wall = _cpu_s() - cpu, time.monotonic() - wall
    finally:
        sock.close(linger=0)
    return 100.0 * cpu / wall


def idle_together(competitors: List[str], *, seconds: float,
                  job: Callable[[Dict[str, Any]], float] = _idle) -> Dict[str, float]:
    """Run ``job`` (default: the idle loop of each competitor) for all competitors at once."""
    jobs: List[Tuple[Callable[[Dict[str, Any]], Any], Dict[str, Any]]] = [
        (job, {"competitor": c, "seconds": seconds}) for c in competitors]
    return dict(zip(competitors, run_many(jobs, seconds + 60.0)))


def resource_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    mem = ["raw"] + [c for c in ("pf-register", "pf-single", "pf-stream") if c in competitors]
    idle = ["poller", "asyncio"]
    if "zmqstream" in competitors:
        idle.append("tornado")
    if "pf-register" in competitors:
        idle.append("pf-loop")
    return [
        Case(scenario="memory", case=f"RSS growth over {sizes.memory:,} msgs", competitors=mem,
             unit="KiB", measure=partial(measure_memory, n=sizes.memory),
             higher_is_better=False, per_op=False, max_reps=3),
        Case(scenario="idle", case=f"CPU, 1 s timer, {sizes.idle_seconds:g} s", competitors=idle,
             unit="% core", measure=lambda c: idle_together([c], seconds=sizes.idle_seconds)[c],
             together=partial(idle_together, seconds=sizes.idle_seconds),
             higher_is_better=False, per_op=False, max_reps=3),
    ]
