"""Robustness: hostile input, dead and frozen peers, shutdown and signals, on real processes.

Every test runs the example's PongProc (or a small process from
``robust_peers``) as a child, talks to it over tcp on a random port, and
kills what it started however it ends. Measured numbers are printed with
the prefix ``reliability:`` (see them with ``pytest -s``); docs/reliability.md
collects them.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import zmq
from robust_peers import (
    CountingPongProc,
    FlooderProc,
    QuietPongProc,
    SmallBufferPongProc,
    TickerProc,
    WatcherProc,
)

from pollframe.client import RequestClient, RequestTimeout
from pollframe.process import ZmqProcess
from pollframe.testing import RunningProcess, TimedSocket

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20


def note(what: str, **numbers: Any) -> None:
    """Print a measured number for the reliability report."""
    print(f"reliability: {what}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))


# -------------------------------------------------------------- fixtures


@pytest.fixture
def start(start_process, tmp_path: Path) -> Callable[..., RunningProcess]:
    """Start a child (its output in tmp_path) with the kit's harness and wait until it is ready.

    The harness stops it however the test ends (continuing it first if it
    was frozen with SIGSTOP) and, when the test passed, checks that it
    exited cleanly: ``check_exit=False`` for a child frozen on purpose.
    """
    numbers = itertools.count()

    def run(proc: ZmqProcess, *, check_exit: bool = True) -> RunningProcess:
        proc.log_path = str(tmp_path / f"{type(proc).__name__}-{next(numbers)}.log")  # type: ignore[attr-defined]
        return start_process(proc, check_exit=check_exit)

    return run


@pytest.fixture
def clients() -> Iterator[Callable[..., RequestClient]]:
    made: list[RequestClient] = []

    def make(endpoint: str, **options: Any) -> RequestClient:
        made.append(RequestClient(endpoint, **options))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def reports(make_socket) -> tuple[TimedSocket, str]:
    """A PULL test socket on a random port that children push their reports to: (socket, endpoint)."""
    pull = make_socket(zmq.PULL)
    return pull, pull.bind("tcp://127.0.0.1:*")


def wait_report(pull: TimedSocket, event: str, timeout: float = 5.0) -> tuple[float, Any, float]:
    """Wait for the report ``event``: (the child's time, detail, the time it arrived here).

    Other reports are skipped; none of ``event`` within ``timeout`` s fails, naming the socket.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        name, at, detail = pull.recv_json(remaining, expect=f"the report {event!r} (within {timeout} s)")
        if name == event:
            return at, detail, time.monotonic()


def vm_rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def stats(client: RequestClient) -> dict:
    """What reached a CountingPongProc's handler so far (the stats request included)."""
    reply_type, (numbers,), _ = client.request("stats")
    assert reply_type == "stats"
    return numbers


def is_error_reply(frames: list[bytes]) -> bool:
    """True for exactly ``["error", [reason], {}]`` with a string reason."""
    if len(frames) != 1:
        return False
    msg = json.loads(frames[0])
    return (
        isinstance(msg, list)
        and len(msg) == 3
        and msg[0] == "error"
        and isinstance(msg[1], list)
        and len(msg[1]) == 1
        and isinstance(msg[1][0], str)
        and msg[2] == {}
    )


# ------------------------------------------------------------- bad input

MALFORMED: list[bytes] = [
    b"not json",
    b"",
    b'{"type": "ping", "args": [1]}',  # JSON, not a list
    b'"ping"',
    b"3",
    b"null",
    b'["ping"]',  # wrong arity
    b'["ping", [1], {}, 4]',
    b"[]",
    b'[1, [1], {}]',  # non-string type
    b'[null, [], {}]',
    b'["ping", 1, {}]',  # args not a list
    b'["ping", [1], []]',  # kwargs not an object
    b'["pign", [1], {}]',  # unknown type
    b'["_private", [], {}]',
    b'["_stop", [], {}]',
    b'["__class__", [], {}]',
    b'["__init__", [], {}]',
    b'["run", [], {}]',
    b'["terminate", [], {}]',
    b'["kill", [], {}]',
    b'["join", [], {}]',
    b'["setup", [], {}]',
    b'["reply", ["pong", 1], {}]',
    b'["handle_error", [], {}]',
    b'["ping", [1, 2], {}]',  # wrong arguments
    b'["ping", ["1"], {}]',
    b'["ping", [], {"count": 1, "x": 2}]',
    b'["plzdiekthxbye", [1, 2, 3], {}]',  # the stop message, with bad arguments: must not stop
    b"\xff\xfe\x00garbage",  # not UTF-8
    b'["ping", ["\xc3\x28"], {}]',
    b'["ping", [NaN], {}]',
    b'["ping", [Infinity], {}]',
    b'["ping", [1e400], {}]',
]
#: Large frames that cost the server milliseconds each: sent once per ``HEAVY_EVERY`` bad requests.
HEAVY: list[bytes] = [
    b"[" * 100_000 + b"]" * 100_000,  # JSON nested 100,000 deep (200 KB)
    b"[" * 100_000,
    b'["ping", [' + b"9" * 5_000 + b"], {}]",  # a 5,000-digit integer
]
HEAVY_EVERY = 200


def flood(client: RequestClient, malformed: int, pings: int, first_ping: int = 0) -> int:
    """Send ``malformed`` bad requests with ``pings`` good ones spread evenly among them.

    Checks every reply in order; returns the number of requests sent.
    """
    every = (malformed + pings) // pings
    bad = valid = 0
    for i in range(malformed + pings):
        if i % every == every - 1 and valid < pings or bad == malformed:
            count = first_ping + valid
            reply = client.send_recv([json.dumps(["ping", [count], {}]).encode()])
            assert json.loads(reply[0]) == ["pong", [count], {}], f"request {i}"
            valid += 1
        else:
            if bad % HEAVY_EVERY == HEAVY_EVERY - 1:
                frame = HEAVY[bad // HEAVY_EVERY % len(HEAVY)]
            else:
                frame = MALFORMED[bad % len(MALFORMED)]
            reply = client.send_recv([frame])
            assert is_error_reply(reply), f"request {i}: {frame[:40]!r} got {reply[0][:80]!r}"
            bad += 1
    assert (bad, valid) == (malformed, pings)
    return bad + valid


@pytest.mark.timeout(60)
def test_ten_thousand_malformed_requests_each_get_an_error_and_every_ping_its_pong(start, clients):
    proc = QuietPongProc("127.0.0.1")
    endpoint = start(proc).endpoint
    client = clients(endpoint, timeout=5.0, retries=1)  # no retry: a lost reply fails the test
    flood(client, malformed=3 * HEAVY_EVERY, pings=20, first_ping=-20)  # warm up, every kind once
    before = vm_rss_kib(proc.pid)

    started = time.monotonic()
    sent = flood(client, malformed=10_000, pings=1_000)
    elapsed = time.monotonic() - started

    after = vm_rss_kib(proc.pid)
    assert proc.is_alive()
    assert client.timeouts == 0
    assert after - before < 10 * 1024, f"RSS grew from {before} to {after} KiB"
    note("flood", requests=sent, seconds=round(elapsed, 2), rss_before_kib=before,
         rss_after_kib=after, growth_kib=after - before)


def test_a_frame_over_the_size_limit_never_reaches_the_handler_and_the_next_client_is_served(
    start, clients
):
    endpoint = start(CountingPongProc("127.0.0.1")).endpoint
    at_limit = b'["ping", [1], {}]'.ljust(MiB)  # trailing blanks: still valid JSON
    over_limit = b'["ping", [2], {}]'.ljust(MiB + 1)

    sender = clients(endpoint, timeout=2.0, retries=1)
    assert json.loads(sender.send_recv([at_limit])[0]) == ["pong", [1], {}]
    with pytest.raises(RequestTimeout):  # libzmq drops the connection; no reply comes
        sender.send_recv([over_limit], timeout=0.5)

    after = stats(clients(endpoint, timeout=2.0))
    assert after["seen"] == 2  # the frame at the limit and this stats request: nothing else
    assert "too_large" not in after["errors"]
    assert clients(endpoint, timeout=2.0).request("ping", 3) == ("pong", [3], {})
    assert sender.request("ping", 4) == ("pong", [4], {})  # the sender too, on its fresh socket
    note("size limit", at_limit_bytes=len(at_limit), over_limit_bytes=len(over_limit),
         reached_handler=after["seen"] - 1, sender_timeouts=sender.timeouts)


@pytest.mark.timeout(30)
def test_raw_tcp_garbage_on_a_hundred_connections_leaves_pongproc_answering_within_1_s(
    start, clients
):
    endpoint = start(CountingPongProc("127.0.0.1")).endpoint
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    rng = random.Random(6)
    garbage: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(100):
            conn = socket.create_connection((host, int(port)), timeout=5)
            garbage.append(conn)
            try:
                conn.sendall(rng.randbytes(64 * 1024))
            except OSError:
                refused += 1  # libzmq dropped the connection part way: fine
        # A good client, new, while all the garbage connections are still open.
        started = time.monotonic()
        with RequestClient(endpoint, timeout=1.0, retries=1) as good:
            assert good.request("ping", 1) == ("pong", [1], {})
        latency = time.monotonic() - started
    finally:
        for conn in garbage:
            conn.close()
    numbers = stats(clients(endpoint, timeout=2.0))
    note("raw garbage", connections=100, bytes_each=64 * 1024, refused_part_way=refused,
         junk_messages_handled=numbers["seen"] - 2, errors=numbers["errors"],
         good_client_ms=round(latency * 1000, 1))


# ------------------------------------------------------------ dead peers


def test_a_reply_to_a_peer_that_has_gone_is_counted_and_logged_and_not_fatal(start, clients):
    proc = CountingPongProc("127.0.0.1")
    endpoint = start(proc).endpoint
    gone = clients(endpoint, timeout=2.0)
    assert gone.request("remember") == ("remembered", [1], {})
    gone.close()  # linger 0: its connection is torn down

    notifier = clients(endpoint, timeout=2.0)
    deadline = time.monotonic() + 5
    rounds = 0
    while True:  # a notice sent before the ROUTER saw the disconnect still goes out; ask again
        rounds += 1
        _, (unroutable,), _ = notifier.request("notify")
        if unroutable:
            break
        assert time.monotonic() < deadline, "the reply to the gone peer was never refused"
    assert notifier.request("ping", 1) == ("pong", [1], {})
    assert proc.shutdown(timeout=2.0) == ["stop"] and proc.exitcode == 0
    assert "is gone; 1 message(s) for gone peers dropped" in Path(proc.log_path).read_text()
    note("router mandatory", notify_rounds=rounds, unroutable=unroutable)


HEARTBEAT = 0.2


@pytest.mark.timeout(20)
def test_a_stream_with_heartbeats_notices_a_peer_frozen_by_sigstop_within_three_intervals(
    start, reports
):
    pull, report_to = reports
    pong = QuietPongProc("127.0.0.1")
    target = start(pong, check_exit=False).endpoint  # frozen on purpose
    start(WatcherProc(report_to, target, heartbeat=HEARTBEAT))
    _, pong_reply, _ = wait_report(pull, "answered")
    assert pong_reply == ["pong", [0], {}]
    try:
        os.kill(pong.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        noticed_at, _, arrived_at = wait_report(pull, "DISCONNECTED")
    finally:
        os.kill(pong.pid, signal.SIGCONT)
    assert arrived_at - frozen_at < 3 * HEARTBEAT
    note("heartbeat", interval_s=HEARTBEAT, noticed_after_ms=round((noticed_at - frozen_at) * 1000),
         reported_after_ms=round((arrived_at - frozen_at) * 1000))


# -------------------------------------------------------- shutdown, signals


def test_sigterm_ends_a_process_with_messages_queued_to_a_gone_peer_within_2_s(start, make_socket):
    sink = make_socket(zmq.PULL)
    sink.rcvhwm = 1
    sink.setsockopt(zmq.RCVBUF, 4096)
    flooder = FlooderProc(sink.bind("tcp://127.0.0.1:*"), count=2_000, size=4096)
    start(flooder)
    sink.recv(5.0, expect="a message from the flooder")
    sink.close(linger=0)  # the peer is gone, with most messages still queued to it

    signalled = time.monotonic()
    os.kill(flooder.pid, signal.SIGTERM)
    flooder.join(5)
    elapsed = time.monotonic() - signalled
    log = Path(flooder.log_path).read_text()
    assert flooder.exitcode == 0, log
    assert elapsed < 2.0
    assert "unsent message(s)" in log  # messages really were still queued
    assert "Traceback" not in log
    note("shutdown with queued messages", queued=log.split(" closed with ")[1].split()[0],
         exit_s=round(elapsed, 3))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_pongproc_gracefully_with_exit_code_0(start, clients, signum):
    proc = QuietPongProc("127.0.0.1")
    endpoint = start(proc).endpoint
    assert clients(endpoint, timeout=2.0).request("ping", 1) == ("pong", [1], {})
    signalled = time.monotonic()
    os.kill(proc.pid, signum)
    proc.join(5)
    elapsed = time.monotonic() - signalled
    log = Path(proc.log_path).read_text()
    assert proc.exitcode == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log
    note(f"{signal.Signals(signum).name} exit", exit_s=round(elapsed, 3))


TICK = 0.05


@pytest.mark.timeout(20)
def test_timers_keep_their_deadlines_while_signals_keep_arriving(start, reports):
    pull, report_to = reports
    ticker = TickerProc(report_to, interval=TICK)
    start(ticker)
    wait_report(pull, "armed")
    lateness: list[float] = []
    signals_seen = 0
    deadline = time.monotonic() + 10
    while len(lateness) < 20:  # about a second of ticks, a signal every millisecond meanwhile
        assert time.monotonic() < deadline, f"only {len(lateness)} ticks"
        os.kill(ticker.pid, signal.SIGUSR1)
        if pull.poll(1, zmq.POLLIN):
            name, at, detail = pull.recv_json()
            if name == "tick":
                due, signals_seen = detail
                lateness.append(at - due)
    assert signals_seen > 100  # the signals did arrive while the timer ran
    # Without the loop's signal wake-up, pyzmq's restarted poll makes ticks ~1 s late here.
    assert max(lateness) < 0.25, f"a tick ran {max(lateness):.3f} s after its deadline"
    note("timers under signals", interval_s=TICK, ticks=len(lateness), signals=signals_seen,
         max_late_ms=round(max(lateness) * 1000, 1))
    os.kill(ticker.pid, signal.SIGTERM)
    ticker.join(5)
    assert ticker.exitcode == 0


@pytest.mark.timeout(30)
def test_a_peer_that_never_reads_its_replies_does_not_stop_the_others_being_answered(
    start, clients, make_socket
):
    endpoint = start(SmallBufferPongProc("127.0.0.1")).endpoint
    hog = make_socket(zmq.DEALER)  # pipelines pings and never reads a pong
    hog.rcvhwm = 1
    hog.setsockopt(zmq.RCVBUF, 4096)
    hog.sndhwm = 0
    hog.connect(endpoint)
    pings = 5_000
    for n in range(pings):
        hog.send_multipart([b"", json.dumps(["ping", [n], {}]).encode()])

    good = clients(endpoint, timeout=1.0, retries=1)
    rounds = 0
    while True:  # every round trip within 1 s, until all the hog's pings were handled
        rounds += 1
        numbers = stats(good)
        if numbers["seen"] > pings:
            break
    assert numbers["dropped"] > 0 and numbers["queued"] == 0  # the hog lost replies; nobody waited
    note("peer that never reads", hog_pings=pings, good_rounds=rounds, stats=numbers)
