"""Tickets (``loop.ticket``): a reset costs the same with 10 or 10,000 live tickets.

Each measurement runs in a fresh process: ``live`` tickets of one 60 s
delay, then ``resets`` resets spread over them (a step of a prime, as
messages from many peers would come), with a zero-timeout pass every 1,000
resets so that the lazy clean-up of the heap is paid too. No ticket fires.

- ``pf-ticket``: ``ticket.reset()``;
- ``pf-recreate``: what a program without tickets writes, ``cancel()``
  the timer and ``call_later`` a new one;
- ``touch``: the floor, one attribute of the same ticket read and written
  in the same order: what memory costs when 10,000 tickets no longer fit
  in the CPU's caches (about 0.55x of its rate with 10).

The ratio column compares each to itself with 10 live tickets: 1.0 is O(1).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List

from harness import Case, run_single

DELAY_S = 60.0
LIVE = (10, 10_000)
RESETS = 100_000


def _resets(params: Dict[str, Any]) -> float:
    from pollframe.loop import PollLoop

    loop = PollLoop()
    live, resets, kind = params["live"], params["resets"], params["competitor"]
    make = loop.call_later if kind == "pf-recreate" else loop.ticket
    handles: List[Any] = [make(DELAY_S, print) for _ in range(live)]
    step = 7919 % live or 1
    i = 0
    start = time.perf_counter()
    if kind == "pf-ticket":
        for n in range(resets):
            handles[i].reset()
            i = (i + step) % live
            if n % 1000 == 999:
                loop.run_once(0)
    elif kind == "touch":
        for n in range(resets):
            handle = handles[i]
            handle.when = handle.when
            i = (i + step) % live
            if n % 1000 == 999:
                loop.run_once(0)
    else:
        for n in range(resets):
            handles[i].cancel()
            handles[i] = loop.call_later(DELAY_S, print)
            i = (i + step) % live
            if n % 1000 == 999:
                loop.run_once(0)
    elapsed = time.perf_counter() - start
    loop.close()
    return resets / elapsed


def ticket_cases(sizes: Any, competitors: List[str]) -> List[Case]:
    if "pf-register" not in competitors:  # pollframe is not importable
        return []
    resets = max(sizes.timers, RESETS)  # shorter runs are too noisy to compare
    first = f"reset x{resets:,}, {LIVE[0]:,} live"
    return [Case(
        scenario="tickets", case=f"reset x{resets:,}, {live:,} live",
        competitors=["pf-ticket", "pf-recreate", "touch"], unit="resets/s",
        measure=lambda competitor, live=live: float(run_single(
            _resets, {"competitor": competitor, "live": live, "resets": resets}, 120.0)),
        baseline_case=first,
    ) for live in LIVE]

