"""The targets of the performance issue, checked against the medians of one run."""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

from broker import CASE as BROKER_CASE
from broker import CPU_CASE as BROKER_CPU_CASE
from harness import Results

Key = Tuple[str, str, str]


def _ratio(results: Results, num: Key, den: Key) -> Optional[float]:
    a, b = results.median(*num), results.median(*den)
    if a is None or b is None or b == 0:
        return None
    return a / b


def _line(name: str, value: Optional[float], ok: Optional[bool], shown: str) -> str:
    verdict = "n/a " if ok is None else ("PASS" if ok else "FAIL")
    return f"  {verdict}  {name:<58} {shown if value is not None else 'not measured'}"


def _request_targets(results: Results) -> List[Tuple[str, Key, Key, float]]:
    """The requests targets, once for each placement the run measured (calls.CPUS)."""
    out = []
    for where in ("1 CPU", "2 CPUs", "unpinned"):
        pipe, lock = f"pipelined x64, {where}", f"lockstep, {where}"
        if results.median("requests", pipe, "Requester") is None \
                and results.median("requests", lock, "Requester-lockstep") is None:
            continue
        req = ("requests", pipe, "Requester")
        out += [
            (f"Requester pipelined x64 >= 2x zmq.asyncio, idiomatic ({where})",
             req, ("requests", pipe, "asyncio-idiomatic"), 2.0),
            (f"Requester pipelined x64 >= 1.5x zmq.asyncio, hand-tuned ({where})",
             req, ("requests", pipe, "asyncio-tuned"), 1.5),
            (f"Requester pipelined x64 >= 2x ZMQStream ({where})", req, ("requests", pipe, "zmqstream"), 2.0),
            (f"Requester pipelined x64 >= 4x raw REQ lockstep ({where})",
             req, ("requests", pipe, "REQ-lockstep"), 4.0),
            (f"Requester with heartbeat >= 0.95x without ({where})",
             ("requests", pipe, "Requester+heartbeat"), req, 0.95),
            (f"Requester lockstep >= 0.85x raw blocking REQ ({where})",
             ("requests", lock, "Requester-lockstep"), ("requests", lock, "raw-REQ"), 0.85),
        ]
    return out


def check(results: Results, sizes: Any) -> List[str]:
    """One line per target: PASS / FAIL / n/a, the measured ratio or value."""
    tp, lat, tm = "throughput", "latency", "timers"
    n = sizes.timers
    kmax = f"K={max(sizes.fanin_k)}"
    kmin = f"K={min(sizes.fanin_k)}"
    ratios = [
        ("register (frames) >= 1.4x poller-drain, prefilled",
         (tp, "prefilled", "pf-register"), (tp, "prefilled", "poller-drain"), 1.4),
        ("register (frames) >= 15x zmqstream, prefilled",
         (tp, "prefilled", "pf-register"), (tp, "prefilled", "zmqstream"), 15.0),
        ("register (frames) >= 15x zmqstream, streaming",
         (tp, "streaming", "pf-register"), (tp, "streaming", "zmqstream"), 15.0),
        ("Stream.on_recv >= 1.2x poller-drain, prefilled",
         (tp, "prefilled", "pf-stream"), (tp, "prefilled", "poller-drain"), 1.2),
        ("single-frame >= 0.7x raw, prefilled",
         (tp, "prefilled", "pf-single"), (tp, "prefilled", "raw"), 0.7),
        ("single-frame >= 0.85x raw, streaming",
         (tp, "streaming", "pf-single"), (tp, "streaming", "raw"), 0.85),
        ("REP via register >= 0.85x raw REP",
         (lat, "REQ/REP", "pf-register"), (lat, "REQ/REP", "raw"), 0.85),
        ("REP via Stream >= 0.85x raw REP",
         (lat, "REQ/REP", "pf-stream"), (lat, "REQ/REP", "raw"), 0.85),
        ("REP via EpollLoop >= 0.85x raw REP",
         (lat, "REQ/REP", "pf-epoll"), (lat, "REQ/REP", "raw"), 0.85),
        ("REP via register >= 1.3x zmqstream",
         (lat, "REQ/REP", "pf-register"), (lat, "REQ/REP", "zmqstream"), 1.3),
        ("REP via Stream >= 1.3x zmqstream",
         (lat, "REQ/REP", "pf-stream"), (lat, "REQ/REP", "zmqstream"), 1.3),
        (f"fan-in {kmax}: register >= 1.0x poller-drain",
         ("fan-in", kmax, "pf-register"), ("fan-in", kmax, "poller-drain"), 1.0),
        (f"fan-in {kmax}: EpollLoop >= 1.0x poller-drain",
         ("fan-in", kmax, "pf-epoll"), ("fan-in", kmax, "poller-drain"), 1.0),
        (f"idle poll {kmax} within 5x of {kmin}, PollLoop (ratio >= 0.2)",
         ("idle poll", kmin, "pf-register"), ("idle poll", kmax, "pf-register"), 0.2),
        (f"idle poll {kmax} within 5x of {kmin}, EpollLoop (ratio >= 0.2)",
         ("idle poll", kmin, "pf-epoll"), ("idle poll", kmax, "pf-epoll"), 0.2),
        ("busy 1/1000: EpollLoop REP >= 0.2x its K=1 latency",
         ("fan-in", "busy 1/1000 (REQ/REP)", "pf-epoll"), (lat, "REQ/REP", "pf-epoll"), 0.2),
        ("call_later(0) >= 2x asyncio",
         (tm, f"call_later(0) x{n:,}", "pf-loop"), (tm, f"call_later(0) x{n:,}", "asyncio"), 2.0),
        ("call_later(0) >= 4x tornado",
         (tm, f"call_later(0) x{n:,}", "pf-loop"), (tm, f"call_later(0) x{n:,}", "tornado"), 4.0),
        ("schedule+cancel O(n log n): rate at n >= 0.5x rate at n/10",
         (tm, f"schedule+cancel x{n:,}", "pf-loop"), (tm, f"schedule+cancel x{n // 10:,}", "pf-loop"), 0.5),
        ("ticket reset O(1): rate with 10,000 live >= 0.8x with 10",
         ("tickets", f"reset x{max(n, 100_000):,}, 10,000 live", "pf-ticket"),
         ("tickets", f"reset x{max(n, 100_000):,}, 10 live", "pf-ticket"), 0.8),
        ("Stream embedded in asyncio (fileno) >= 0.5x PollLoop.run()",
         ("embed", "REQ/REP, Stream", "pf-asyncio-fd"), ("embed", "REQ/REP, Stream", "pf-run"), 0.5),
        *_request_targets(results),
        ("@message async def ping >= 0.7x @message def ping",
         ("requests", "PongProc handler", "async-handler"), ("requests", "PongProc handler", "plain-handler"),
         0.7),
        ("handler with a ReplyCache >= 0.9x without (requests with ids, x64)",
         ("requests", "handler, reply cache", "cached-handler"),
         ("requests", "handler, reply cache", "handler-ids"),
         0.9),
        ("traced Stream streaming >= 0.3x untraced",
         ("tracing", "streaming", "pf-stream-traced"), ("tracing", "streaming", "pf-stream"), 0.3),
        ("PongProc >= 0.8x raw JSON REP loop",
         ("end to end", "JSON ping-pong", "PongProc"), ("end to end", "JSON ping-pong", "raw-json-rep"), 0.8),
        ("SessionGuard's own check >= 0.7x the properties reader it sits on",
         ("guard", f"CURVE PULL x{sizes.throughput:,}", "pf-guard"),
         ("guard", f"CURVE PULL x{sizes.throughput:,}", "pf-properties"), 0.7),
        ("MDP broker (BrokerProcess) >= 1.5x a zguide-style pyzmq broker, req/s",
         ("broker", BROKER_CASE, "pf-broker"), ("broker", BROKER_CASE, "zguide-broker"), 1.5),
        ("MDP broker >= 1.5x zguide-style, per broker CPU-s",
         ("broker", BROKER_CPU_CASE, "pf-broker"), ("broker", BROKER_CPU_CASE, "zguide-broker"), 1.5),
    ]
    lines = []
    for name, num, den, threshold in ratios:
        value = _ratio(results, num, den)
        ok = None if value is None else value >= threshold
        lines.append(_line(name, value, ok, f"{value:.2f}x" if value is not None else ""))
    for row in results.rows.values():
        if row.scenario == "memory" and row.competitor.startswith("pf-") and row.median is not None:
            lines.append(_line(f"RSS growth < 1 MiB ({row.competitor})", row.median,
                               row.median < 1024, f"{row.median:.0f} KiB"))
        if row.scenario == "embed" and row.competitor == "pf-asyncio-fd" and row.unit == "% core" \
                and row.median is not None:
            lines.append(_line("idle loop embedded in asyncio < 1% of a core", row.median,
                               row.median < 1.0, f"{row.median:.3f} %"))
        if row.scenario == "idle" and row.competitor == "pf-loop" and row.median is not None:
            lines.append(_line("idle loop < 1% of a core", row.median, row.median < 1.0,
                               f"{row.median:.3f} %"))
    return lines
