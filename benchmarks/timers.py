"""Scenario 4: timers, no sockets — pollframe against asyncio, Tornado and a plain heap.

Each measurement runs in a fresh process and times scheduling plus running:

- ``call_later(0) xN``: N zero-delay timers scheduled up front, then run;
- ``call_later(0) chain``: each callback schedules the next, N times;
- ``schedule+cancel xN``: N pairs of call_later(1 s) and cancel, then one
  zero-delay timer that stops the loop (so the loop's purge is paid).

The baseline "heap" is the plainest loop there is: a heapq of
(deadline, seq, fn) and a flag per handle, no I/O at all.
"""
from __future__ import annotations

import heapq
import itertools
import time
from functools import partial
from typing import Any, Callable, Dict, List, Tuple

from harness import Case, run_single

CANCEL_DELAY_S = 1.0


class _HeapLoop:
    """The reference: a heap of [deadline, seq, fn, cancelled] entries."""

    def __init__(self) -> None:
        self.heap: List[list] = []
        self.seq = itertools.count()
        self.stopped = False

    def call_later(self, delay: float, fn: Callable[[], None]) -> list:
        entry = [time.monotonic() + delay, next(self.seq), fn, False]
        heapq.heappush(self.heap, entry)
        return entry

    def stop(self) -> None:
        self.stopped = True

    def run(self) -> None:
        heap, pop, now = self.heap, heapq.heappop, time.monotonic
        self.stopped = False
        while not self.stopped and heap:
            t = now()
            if heap[0][0] > t:
                time.sleep(heap[0][0] - t)
                continue
            while heap and heap[0][0] <= t:
                entry = pop(heap)
                if not entry[3]:
                    entry[2]()


def _loop_api(kind: str) -> Tuple[Callable[..., Any], Callable[[Any], None],
                                  Callable[[], None], Callable[[], None]]:
    """(call_later, cancel, stop, run) for one kind of loop."""
    if kind == "heap":
        hl = _HeapLoop()

        def cancel_entry(entry: list) -> None:
            entry[3] = True

        return hl.call_later, cancel_entry, hl.stop, hl.run
    if kind == "asyncio":
        import asyncio

        aloop = asyncio.new_event_loop()
        return aloop.call_later, lambda h: h.cancel(), aloop.stop, aloop.run_forever
    if kind == "tornado":
        from tornado.ioloop import IOLoop

        tloop = IOLoop()
        return tloop.call_later, tloop.remove_timeout, tloop.stop, tloop.start
    if kind == "pf-loop":
        from pollframe.loop import PollLoop

        ploop = PollLoop()
        return ploop.call_later, lambda h: h.cancel(), ploop.stop, ploop.run
    raise ValueError(kind)


def _batch(params: Dict[str, Any]) -> float:
    call_later, _cancel, stop, run = _loop_api(params["competitor"])
    n = params["n"]
    left = n

    def callback() -> None:
        nonlocal left
        left -= 1
        if not left:
            stop()

    start = time.perf_counter()
    for _ in range(n):
        call_later(0, callback)
    run()
    return n / (time.perf_counter() - start)


def _chain(params: Dict[str, Any]) -> float:
    call_later, _cancel, stop, run = _loop_api(params["competitor"])
    n = params["n"]
    left = n

    def callback() -> None:
        nonlocal left
        left -= 1
        if left:
            call_later(0, callback)
        else:
            stop()

    start = time.perf_counter()
    call_later(0, callback)
    run()
    return n / (time.perf_counter() - start)


def _cancel(params: Dict[str, Any]) -> float:
    call_later, cancel, stop, run = _loop_api(params["competitor"])
    n = params["n"]

    def never() -> None:
        raise AssertionError("a cancelled timer ran")

    start = time.perf_counter()
    for _ in range(n):
        cancel(call_later(CANCEL_DELAY_S, never))
    call_later(0, stop)
    run()
    return n / (time.perf_counter() - start)


def measure(competitor: str, *, fn: Callable[[Dict[str, Any]], float], n: int) -> float:
    return float(run_single(fn, {"competitor": competitor, "n": n}, 120.0))


def timer_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    comps = ["heap", "asyncio"]
    if "zmqstream" in competitors:  # Tornado is installed
        comps.append("tornado")
    if "pf-register" in competitors:  # pollframe is importable
        comps.append("pf-loop")
    n = sizes.timers
    specs = [(f"call_later(0) x{n:,}", _batch, n, "cb/s"),
             (f"call_later(0) chain x{n:,}", _chain, n, "cb/s"),
             (f"schedule+cancel x{n // 10:,}", _cancel, n // 10, "pairs/s"),
             (f"schedule+cancel x{n:,}", _cancel, n, "pairs/s")]
    return [Case(
        scenario="timers", case=case, competitors=comps, unit=unit,
        measure=partial(measure, fn=fn, n=count), baseline=("timers", case, "heap"),
    ) for case, fn, count, unit in specs]
