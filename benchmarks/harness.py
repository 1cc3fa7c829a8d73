"""Process plumbing, statistics and the result table of the benchmark suite.

Theory of operation: every measurement runs in fresh processes forked from
the orchestrator (which never creates a zmq context itself), so no
measurement inherits the heap, the sockets or the garbage of another. A
*pair* is a receiver and a sender joined by a pipe ("link"): the receiver
binds on random ports and sends its endpoints over the link, the sender
connects, and in the prefilled mode tells the receiver over the link when
everything is queued. The receiver (or, for round trips, the sender) sends
its measurement back to the orchestrator. A measurement that fails or runs
past its deadline is recorded as missing; the run goes on.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

import zmq

Child = Callable[[Connection, Dict[str, Any]], Any]

_FORK = mp.get_context("fork")


def new_context(max_sockets: int = 4096) -> zmq.Context:
    """A fresh context that may hold the 1,000+ sockets of the fan-in cases."""
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, max_sockets)
    return ctx


def bind_random(sock: zmq.Socket) -> str:
    """Bind to a random tcp port on 127.0.0.1 and return the endpoint."""
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return f"tcp://127.0.0.1:{port}"


#: Where round-trip processes run: "same" (one CPU for client and server),
#: "split" (one CPU each) or "none" (wherever the scheduler puts them).
#: Set by run.py before any fork; children inherit it.
PIN_ROUND_TRIPS = "same"


def pin_round_trip(role: str, mode: Optional[str] = None) -> None:
    """Pin this process (and the I/O thread it will start) for a round-trip test.

    Unpinned, the four busy threads of a round trip (two processes, two
    libzmq I/O threads) land on 2 cores differently from run to run and the
    rate is bimodal (measured: raw REP 6,000-11,000 rt/s unpinned; within
    15 % on one CPU). On one CPU a round trip costs its CPU work plus
    context switches, which is what tells the competitors apart.
    """
    mode = PIN_ROUND_TRIPS if mode is None else mode  # a case measured under both passes its own
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "same":
        os.sched_setaffinity(0, {cpus[0]})
    elif mode == "split" and len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[0] if role == "server" else cpus[1]})


def raise_fd_limit() -> None:
    """Fan-in with 1,000 sockets needs a few thousand file descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _child(fn: Child, report: Connection, link: Connection, params: Dict[str, Any]) -> None:
    """Body of every child process: run fn, send back ("ok", value) or ("error", tb)."""
    try:
        report.send(("ok", fn(link, params)))
    except BaseException:  # noqa: BLE001 - the orchestrator reports it
        report.send(("error", traceback.format_exc()))


def _start(fn: Child, link: Connection, params: Dict[str, Any]) -> Tuple[Any, Connection]:
    ours, theirs = _FORK.Pipe()
    proc = _FORK.Process(target=_child, args=(fn, theirs, link, params), daemon=True)
    proc.start()
    theirs.close()
    return proc, ours


def _finish(procs: List[Any]) -> None:
    """Give children a moment to exit on their own, then end them."""
    deadline = time.monotonic() + 5.0
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(2.0)


class MeasurementError(RuntimeError):
    """A child failed or missed its deadline."""


def run_pair(receiver: Child, sender: Child, params: Dict[str, Any],
             timeout: float) -> Tuple[Any, Any]:
    """Run receiver and sender in two processes; return both results."""
    link_r, link_s = _FORK.Pipe()
    rproc, rconn = _start(receiver, link_r, params)
    sproc, sconn = _start(sender, link_s, params)
    results: Dict[Connection, Any] = {}
    try:
        deadline = time.monotonic() + timeout
        pending = [rconn, sconn]
        while pending:
            ready = wait(pending, max(0.0, deadline - time.monotonic()))
            if not ready:
                raise MeasurementError(f"timed out after {timeout:.0f} s")
            for ready_conn in ready:
                conn = cast(Connection, ready_conn)
                pending.remove(conn)
                try:
                    status, value = conn.recv()
                except EOFError:
                    raise MeasurementError("a child died without a result") from None
                if status != "ok":
                    raise MeasurementError(value)
                results[conn] = value
        return results[rconn], results[sconn]
    finally:
        _finish([rproc, sproc])
        for conn in (rconn, sconn, link_r, link_s):
            conn.close()


def _single(fn: Callable[[Dict[str, Any]], Any]) -> Child:
    return lambda _link, params: fn(params)


def run_single(fn: Callable[[Dict[str, Any]], Any], params: Dict[str, Any],
               timeout: float) -> Any:
    """Run fn(params) in one fresh process and return its result."""
    return run_many([(fn, params)], timeout)[0]


def run_many(jobs: Sequence[Tuple[Callable[[Dict[str, Any]], Any], Dict[str, Any]]],
             timeout: float) -> List[Any]:
    """Run several single-process jobs at once (for idle measurements)."""
    started = []
    for fn, params in jobs:
        link, _ = _FORK.Pipe()
        started.append(_start(_single(fn), link, params))
    try:
        out = []
        deadline = time.monotonic() + timeout
        for _proc, conn in started:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise MeasurementError(f"timed out after {timeout:.0f} s")
            status, value = conn.recv()
            if status != "ok":
                raise MeasurementError(value)
            out.append(value)
        return out
    finally:
        _finish([proc for proc, _ in started])


# ------------------------------------------------------------------ cases


@dataclass
class Case:
    """One case of a scenario: what to measure, for which competitors, how to show it.

    ``measure(competitor)`` runs one repetition and returns the value;
    ``together(competitors)`` (if given) measures all competitors at once,
    for idle measurements that do not disturb each other.
    """

    scenario: str
    case: str
    competitors: List[str]
    measure: Callable[[str], float]
    unit: str
    baseline: Optional[Tuple[str, str, str]] = None
    higher_is_better: bool = True
    per_op: bool = True
    together: Optional[Callable[[List[str]], Dict[str, float]]] = None
    baseline_case: Optional[str] = None  # ratio to the same competitor in that case
    max_reps: Optional[int] = None  # for slow threshold checks (memory, idle CPU)

    def base(self, competitor: str) -> Optional[Tuple[str, str, str]]:
        """The key of the row this competitor's ratio is taken against."""
        if self.baseline_case is not None:
            return (self.scenario, self.baseline_case, competitor)
        return self.baseline


# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One (scenario, case, competitor) line of the table and its samples."""

    scenario: str
    case: str
    competitor: str
    unit: str
    higher_is_better: bool = True
    baseline: Optional[Tuple[str, str, str]] = None  # key of the ratio's denominator
    per_op: bool = True  # show µs per operation (1e6 / rate)
    samples: List[float] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)

    @property
    def key(self) -> Tuple[str, str, str]:
        return (self.scenario, self.case, self.competitor)

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.samples) if self.samples else None


class Results:
    """All rows, in the order they were first measured."""

    def __init__(self) -> None:
        self.rows: Dict[Tuple[str, str, str], Row] = {}

    def row(self, scenario: str, case: str, competitor: str, **kw: Any) -> Row:
        key = (scenario, case, competitor)
        if key not in self.rows:
            self.rows[key] = Row(scenario, case, competitor, **kw)
        return self.rows[key]

    def median(self, scenario: str, case: str, competitor: str) -> Optional[float]:
        row = self.rows.get((scenario, case, competitor))
        return row.median if row else None

    def ratio(self, row: Row) -> Optional[float]:
        """Speed of row relative to its baseline (> 1 means faster / better)."""
        if row.baseline is None or row.median is None:
            return None
        base = self.rows.get(row.baseline)
        if base is None or base.median is None or base.median == 0 or row.median == 0:
            return None
        if row.higher_is_better:
            return row.median / base.median
        return base.median / row.median

    def as_json(self) -> List[Dict[str, Any]]:
        return [
            {"scenario": r.scenario, "case": r.case, "competitor": r.competitor,
             "unit": r.unit, "samples": r.samples, "median": r.median,
             "ratio": self.ratio(r), "failures": r.failures}
            for r in self.rows.values()
        ]


def _num(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(results: Results) -> str:
    """One table for every scenario: median, min, max, µs/op and ratio."""
    head = ("scenario", "case", "competitor", "median", "min", "max", "unit", "us/op", "x base")
    lines = [head]
    for row in results.rows.values():
        med = row.median
        per_op = _num(1e6 / med) if (row.per_op and med) else ""
        ratio = results.ratio(row)
        lines.append((
            row.scenario, row.case, row.competitor, _num(med),
            _num(min(row.samples)) if row.samples else "-",
            _num(max(row.samples)) if row.samples else "-",
            row.unit, per_op,
            f"{ratio:.2f}" if ratio is not None else ("FAIL" if row.failures and not row.samples else ""),
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    left = {0, 1, 2, 6}
    out = []
    for n, line in enumerate(lines):
        cells = [str(c).ljust(w) if i in left else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def versions() -> str:
    """Versions of everything the numbers depend on."""
    parts = [f"Python {sys.version.split()[0]}", f"pyzmq {zmq.__version__}",
             f"libzmq {zmq.zmq_version()}"]
    try:
        import tornado

        parts.append(f"tornado {tornado.version}")
    except ImportError:
        parts.append("tornado not installed")
    parts.append(f"{os.cpu_count()} cpus")
    return ", ".join(parts)


def progress(msg: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(msg, file=sys.stderr, flush=True)
