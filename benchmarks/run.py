"""Run pollframe's benchmarks side by side with raw pyzmq, ZMQStream and zmq.asyncio.

    python benchmarks/run.py                       # the full suite, ~10 min on 2 cores
    python benchmarks/run.py --quick               # a smoke run under a minute
    python benchmarks/run.py --only throughput,latency --reps 7

Every measurement runs sender and receiver in fresh processes over tcp on
127.0.0.1 (random ports). Repetitions interleave the competitors (their
order rotates each repetition), and the table gives the median, min and
max of the repetitions and the ratio of medians to each case's baseline.
Progress goes to stderr, the report to stdout. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # run from a checkout without installing pollframe
    sys.path.insert(1, ROOT)

import broker  # noqa: E402
import calls  # noqa: E402
import embedding  # noqa: E402
import guard  # noqa: E402
import endtoend  # noqa: E402
import pollcost  # noqa: E402
import pushpull  # noqa: E402
import reqrep  # noqa: E402
import resources  # noqa: E402
import targets  # noqa: E402
import tickets  # noqa: E402
import timers  # noqa: E402
import tracecost  # noqa: E402
from competitors import ECHOES, NEEDS_POLLFRAME, NEEDS_TORNADO, SLOW  # noqa: E402
import harness  # noqa: E402
from harness import Case, MeasurementError, Results, format_table, progress, versions  # noqa: E402


@dataclass
class Sizes:
    """How much work each scenario does (the issue's numbers by default)."""

    throughput: int = 200_000
    latency: int = 20_000
    e2e: int = 5_000
    fanin: int = 50_000
    fanin_k: Tuple[int, ...] = (1, 10, 100, 1000)
    busy: int = 500
    poll_seconds: float = 0.3
    timers: int = 100_000
    memory: int = 1_000_000
    idle_seconds: float = 5.0
    broker: int = 20_000
    requests: int = 20_000


QUICK = Sizes(throughput=20_000, latency=2_000, e2e=1_000, fanin=10_000, busy=200, poll_seconds=0.03,
              timers=20_000, memory=100_000, idle_seconds=2.0, broker=5_000, requests=4_000)

Builder = Callable[[Sizes, List[str]], List[Case]]
SCENARIOS: Dict[str, List[Builder]] = {
    "throughput": [pushpull.throughput_cases],
    "latency": [reqrep.latency_cases],
    "fanin": [pushpull.fanin_cases, reqrep.busy_cases, pollcost.pollcost_cases],
    "timers": [timers.timer_cases, tickets.ticket_cases],
    "e2e": [endtoend.e2e_cases],
    "memory": [lambda s, c: resources.resource_cases(s, c)[:1]],
    "idle": [lambda s, c: resources.resource_cases(s, c)[1:]],
    "tracing": [tracecost.trace_cases],
    "embed": [embedding.embed_cases],
    "broker": [broker.broker_cases],
    "requests": [calls.request_cases],
    "guard": [guard.guard_cases],
}


def available_competitors(wanted: List[str]) -> Tuple[List[str], List[str]]:
    """The competitors that can run here, and notes on those that cannot."""
    notes, have = [], list(wanted)
    try:
        import tornado  # noqa: F401
    except ImportError:
        have = [c for c in have if c not in NEEDS_TORNADO]
        notes.append("tornado is not installed (pip install -e '.[bench]'): zmqstream skipped")
    try:
        from pollframe.loop import PollLoop  # noqa: F401
    except ImportError as exc:
        have = [c for c in have if c not in NEEDS_POLLFRAME]
        notes.append(f"pollframe.loop is not importable ({exc}): pollframe competitors skipped")
    else:
        for module, name, comp in (("pollframe.stream", "Stream", "pf-stream"),
                                   ("pollframe.epoll", "EpollLoop", "pf-epoll")):
            try:
                getattr(__import__(module, fromlist=[name]), name)
            except (ImportError, AttributeError) as exc:
                have = [c for c in have if c != comp]
                notes.append(f"{module}.{name} is not importable ({exc}): {comp} skipped")
    return have, notes


def plan(names: List[str], sizes: Sizes, competitors: List[str]) -> Tuple[List[Case], List[str]]:
    cases: List[Case] = []
    notes: List[str] = []
    for name in names:
        if name == "e2e" and not endtoend.available():
            notes.append(f"end to end skipped: {os.path.relpath(endtoend.PONGPROC, ROOT)} "
                         "does not exist yet")
            continue
        for build in SCENARIOS[name]:
            cases.extend(build(sizes, competitors))
    return cases, notes


def rotated(items: List[str], rep: int) -> List[str]:
    """The competitors in a different order each repetition."""
    if not items:
        return items
    shift = rep % len(items)
    return items[shift:] + items[:shift]


def execute(cases: List[Case], reps: int, results: Results) -> None:
    """Run every case reps times, competitors interleaved; record into results."""
    for case in cases:  # create the rows in table order
        for comp in case.competitors:
            results.row(case.scenario, case.case, comp, unit=case.unit,
                        higher_is_better=case.higher_is_better, baseline=case.base(comp),
                        per_op=case.per_op)
    started = time.monotonic()
    for rep in range(reps):
        for case in cases:
            if case.max_reps is not None and rep >= case.max_reps:
                continue
            order = rotated(case.competitors, rep)
            label = (f"{time.monotonic() - started:5.0f}s [{rep + 1}/{reps}] "
                     f"{case.scenario} / {case.case}")
            try:
                if case.together is not None:
                    values = case.together(order)
                else:
                    values = {}
                    for comp in order:
                        try:
                            values[comp] = case.measure(comp)
                        except MeasurementError as exc:
                            _fail(results, case, comp, label, exc)
            except MeasurementError as exc:
                for comp in order:
                    _fail(results, case, comp, label, exc)
                continue
            for comp, value in values.items():
                results.rows[(case.scenario, case.case, comp)].samples.append(value)
                progress(f"{label} / {comp}: {value:,.2f} {case.unit}")


def _fail(results: Results, case: Case, comp: str, label: str, exc: Exception) -> None:
    results.rows[(case.scenario, case.case, comp)].failures.append(str(exc))
    progress(f"{label} / {comp}: FAILED\n{exc}")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition: a smoke test")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios: {','.join(SCENARIOS)}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 1)")
    parser.add_argument("--competitors", default="",
                        help=f"comma-separated subset of: {','.join(ECHOES)}")
    parser.add_argument("--pin", choices=["same", "split", "none"], default="same",
                        help="CPUs of round-trip client and server: one for both (default), "
                        "one each, or unpinned")
    parser.add_argument("--json", default="", help="also write every sample to this file")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    wanted = [c.strip() for c in args.competitors.split(",") if c.strip()] or list(ECHOES)
    bad = [c for c in wanted if c not in ECHOES]
    if bad:
        parser.error(f"unknown competitor(s) {bad}; choose from {list(ECHOES)}")
    sizes = QUICK if args.quick else Sizes()
    harness.PIN_ROUND_TRIPS = args.pin
    reps = args.reps if args.reps is not None else (1 if args.quick else 5)

    competitors, notes = available_competitors(wanted)
    cases, more = plan(names, sizes, competitors)
    notes += more
    for note in notes:
        progress(f"note: {note}")

    results = Results()
    started = time.monotonic()
    execute(cases, reps, results)
    elapsed = time.monotonic() - started

    print(f"pollframe benchmarks: {versions()}")
    print(f"command: python benchmarks/run.py {' '.join(argv)}".rstrip())
    print(f"{reps} repetition(s), competitors interleaved; {elapsed:.0f} s; sizes: "
          + ", ".join(f"{k}={v}" for k, v in asdict(sizes).items()))
    for note in notes:
        print(f"note: {note}")
    print("note: " + ", ".join(f"{name} takes 1/{div}" for name, div in SLOW.items())
          + " of the messages and round trips (not in the busy case); memory and idle CPU "
          + f"run at most 3 repetitions; round trips pinned: {args.pin}.")
    print()
    print(format_table(results))
    print()
    print("x base: ratio of medians, > 1 is better. Baselines: raw recv() (throughput), raw REP "
          "(latency, busy), raw at K=1 (fan-in), the same mechanism at K=1 (idle poll), a plain "
          "heapq loop (timers), the raw JSON REP loop (end to end).")
    print()
    print("targets (issue 5; judge by a default run, --quick is too noisy):")
    print("\n".join(targets.check(results, sizes)))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"versions": versions(), "argv": argv, "reps": reps,
                       "sizes": asdict(sizes), "rows": results.as_json()}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
