"""Requester: requests from inside a loop, each with exactly one outcome.

The server in most tests is a ROUTER of the test itself over inproc, read
and answered by hand, so a test decides which copy of a request to answer
and when. Deadlines run on the loop's fake clock (``run_for``): nothing
sleeps. The last tests run the example's PongProc in a real child process.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
from typing import Any, Callable, Iterator

import pytest
import zmq

from pollframe.errors import (
    DecodeError,
    RemoteError,
    RequesterClosed,
    RequestTimeout,
    TooManyRequests,
)
from pollframe.requester import Requester
from pollframe.testing import TimedSocket, run_for, run_until

pytestmark = pytest.mark.timeout(20)

_names = itertools.count()


class Outcomes:
    """Callbacks that record what each request got, by a label."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, str, Any]] = []

    def of(self, label: Any) -> dict[str, Callable[[Any], None]]:
        return {"on_reply": lambda reply: self.got.append((label, "reply", reply)),
                "on_error": lambda exc: self.got.append((label, "error", exc))}

    def labels(self) -> list[Any]:
        return [label for label, _, _ in self.got]


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def server(make_socket) -> TimedSocket:
    """A ROUTER bound to a fresh inproc endpoint (``server.endpoints[0]``)."""
    return make_socket(zmq.ROUTER, bind=f"inproc://requester-{next(_names)}")


@pytest.fixture
def requesters(clocked_loop, zmq_context, server) -> Iterator[Callable[..., Requester]]:
    made: list[Requester] = []

    def make(to: TimedSocket = server, **options: Any) -> Requester:
        made.append(Requester(clocked_loop, zmq_context, to.last_endpoint.decode(), **options))
        return made[-1]

    yield make
    for req in made:
        req.close()


def answer(server: TimedSocket, request: list[bytes], reply: Any) -> None:
    """Send ``reply`` (JSON-encoded) back through the envelope of ``request``."""
    server.send_multipart(request[:-1] + [json.dumps(reply).encode()])


def test_replies_in_any_order_each_reach_the_callbacks_of_their_own_request(
    requesters, server, clocked_loop, outcomes
):
    req = requesters()
    for n in range(3):
        req.request("ping", n, **outcomes.of(n))
    received = [server.recv_multipart() for _ in range(3)]
    assert [json.loads(r[-1]) for r in received] == [["ping", [n], {}] for n in range(3)]
    assert all(len(r) == 4 and r[2] == b"" for r in received)  # [peer, id, b"", json]
    for r in reversed(received):
        answer(server, r, ["pong", json.loads(r[-1])[1], {}])
    run_until(clocked_loop, lambda: len(outcomes.got) == 3)
    assert outcomes.got == [(n, "reply", ("pong", [n], {})) for n in (2, 1, 0)]
    assert req.pending() == 0 and req.late == 0


def test_a_request_without_reply_is_sent_again_at_each_deadline_then_fails_with_request_timeout(
    requesters, server, clocked_loop, fake_clock, outcomes
):
    req = requesters(timeout=0.5, retries=3)
    req.request("ping", 1, **outcomes.of("p"))
    copies = [server.recv_multipart()]
    run_for(clocked_loop, fake_clock, 0.5)
    copies.append(server.recv_multipart())
    run_for(clocked_loop, fake_clock, 0.5)
    copies.append(server.recv_multipart())
    assert outcomes.got == []
    run_for(clocked_loop, fake_clock, 0.5)
    assert copies[0] == copies[1] == copies[2]  # the same id: a reply to any copy will do
    [(label, kind, exc)] = outcomes.got
    assert kind == "error" and isinstance(exc, RequestTimeout)
    assert (exc.attempts, exc.timeout, req.resent, req.timeouts) == (3, 0.5, 2, 1)
    server.expect_nothing(within=0.05)


def test_the_ids_of_two_requesters_never_collide_each_being_a_random_prefix_and_a_counter(
    requesters, server, outcomes
):
    first, second = requesters(), requesters()
    for n in range(20):
        first.request("ping", n, **outcomes.of(n))
        second.request("ping", n, **outcomes.of(n))
    ids = [server.recv_multipart()[1] for _ in range(40)]
    assert len(set(ids)) == 40  # a plain counter per requester would give each id twice
    assert {len(rid) for rid in ids} == {16}  # still one frame
    prefixes = {rid[:8] for rid in ids}
    assert len(prefixes) == 2
    for prefix in prefixes:  # after its prefix, each requester counts 1, 2, 3 ...
        counters = sorted(int.from_bytes(rid[8:], "big") for rid in ids if rid[:8] == prefix)
        assert counters == list(range(1, 21))


def test_a_retry_that_arrives_on_a_new_connection_carries_the_same_id_under_a_new_routing_id(
    make_socket, zmq_context, clocked_loop, fake_clock, outcomes
):
    from pollframe.testing.faultproxy import FaultProxy

    server = make_socket(zmq.ROUTER, bind="tcp://127.0.0.1:*")
    port = int(server.last_endpoint.decode().rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port)) as proxy:
        req = Requester(clocked_loop, zmq_context, proxy.endpoint, timeout=0.5, retries=2)
        try:
            req.request("ping", 1, **outcomes.of("p"))
            [peer, rid, _, frame] = server.recv_multipart(timeout=5)
            proxy.cut()  # the connection breaks; the DEALER makes a new one
            run_until(clocked_loop, lambda: proxy.connections == 2, what="the reconnection")
            run_for(clocked_loop, fake_clock, 0.5)
            [new_peer, new_rid, _, new_frame] = server.recv_multipart(timeout=5)
            assert new_peer != peer  # to the server, another peer
            assert (new_rid, new_frame) == (rid, frame)  # but the same request: a reply cache knows it
            answer(server, [new_peer, new_rid, b"", new_frame], ["pong", [1], {}])
            run_until(clocked_loop, lambda: outcomes.got)
        finally:
            req.close()
    assert outcomes.got == [("p", "reply", ("pong", [1], {}))]


def test_a_reply_to_an_earlier_copy_completes_the_request_and_the_second_reply_is_counted_late(
    requesters, server, clocked_loop, fake_clock, outcomes
):
    req = requesters(timeout=0.5, retries=2)
    req.request("ping", 1, **outcomes.of("p"))
    first = server.recv_multipart()
    run_for(clocked_loop, fake_clock, 0.5)
    second = server.recv_multipart()
    answer(server, first, ["pong", [1], {}])
    answer(server, second, ["pong", [1], {}])
    run_until(clocked_loop, lambda: req.late == 1)
    assert outcomes.got == [("p", "reply", ("pong", [1], {}))]


def test_a_reply_after_the_request_timed_out_is_dropped_and_counted_not_given_to_the_next_request(
    requesters, server, clocked_loop, fake_clock, outcomes
):
    req = requesters(timeout=0.5, retries=1)
    req.request("ping", 1, **outcomes.of("old"))
    old = server.recv_multipart()
    run_for(clocked_loop, fake_clock, 0.5)
    req.request("ping", 2, **outcomes.of("new"))
    new = server.recv_multipart()
    answer(server, old, ["pong", [1], {}])
    run_until(clocked_loop, lambda: req.late == 1)
    answer(server, new, ["pong", [2], {}])
    run_until(clocked_loop, lambda: len(outcomes.got) == 2)
    assert outcomes.labels() == ["old", "new"]
    assert isinstance(outcomes.got[0][2], RequestTimeout)
    assert outcomes.got[1] == ("new", "reply", ("pong", [2], {}))


def test_a_cancelled_request_gets_no_callback_sends_no_retry_and_its_reply_is_counted_late(
    requesters, server, clocked_loop, fake_clock, outcomes
):
    req = requesters(timeout=0.5, retries=3)
    pending = req.request("ping", 1, **outcomes.of("p"))
    copy = server.recv_multipart()
    assert pending.cancel() is True
    assert pending.cancel() is False
    run_for(clocked_loop, fake_clock, 2.0)
    server.expect_nothing(within=0.05)
    answer(server, copy, ["pong", [1], {}])
    run_until(clocked_loop, lambda: req.late == 1)
    assert outcomes.got == [] and req.pending() == 0


def test_an_error_reply_gives_on_error_a_remote_error_with_the_servers_reason(
    requesters, server, clocked_loop, outcomes
):
    req = requesters()
    req.request("count", **outcomes.of("c"))
    answer(server, server.recv_multipart(), ["error", ["unknown message type 'count'"], {}])
    run_until(clocked_loop, lambda: outcomes.got)
    [(_, kind, exc)] = outcomes.got
    assert kind == "error" and isinstance(exc, RemoteError)
    assert exc.reason == "unknown message type 'count'"


def test_a_reply_that_is_not_json_gives_on_error_a_decode_error(requesters, server, clocked_loop, outcomes):
    req = requesters()
    req.request("ping", 1, **outcomes.of("p"))
    request = server.recv_multipart()
    server.send_multipart(request[:-1] + [b"\xff not json"])
    run_until(clocked_loop, lambda: outcomes.got)
    assert isinstance(outcomes.got[0][2], DecodeError)


def test_a_reply_without_the_id_envelope_is_dropped_and_counted_as_malformed(
    requesters, server, clocked_loop, outcomes
):
    req = requesters()
    req.request("ping", 1, **outcomes.of("p"))
    peer, rid, _, _ = server.recv_multipart()
    server.send_multipart([peer, b'["pong", [1], {}]'])
    run_until(clocked_loop, lambda: req.malformed == 1)
    assert outcomes.got == [] and req.pending() == 1


def test_malformed_replies_are_logged_throttled_to_powers_of_ten_with_the_count_exact(
    requesters, server, clocked_loop, outcomes, caplog
):
    req = requesters()
    req.request("ping", 1, **outcomes.of("p"))
    peer = server.recv_multipart()[0]
    with caplog.at_level(logging.WARNING, logger="pollframe.requester"):
        for _ in range(100):
            server.send_multipart([peer, b'["pong", [1], {}]'])
        run_until(clocked_loop, lambda: req.malformed == 100)
    assert [r.getMessage().rsplit(";", 1)[1] for r in caplog.records] == [
        f" {n} such dropped so far" for n in (1, 10, 100)]


def test_past_max_in_flight_a_request_is_refused_with_too_many_requests_and_nothing_is_sent(
    requesters, server, clocked_loop, outcomes
):
    req = requesters(max_in_flight=2)
    req.request("ping", 0, **outcomes.of(0))
    req.request("ping", 1, **outcomes.of(1))
    with pytest.raises(TooManyRequests, match="max_in_flight=2"):
        req.request("ping", 2, **outcomes.of(2))
    first = server.recv_multipart()
    server.recv_multipart()
    server.expect_nothing(within=0.05)
    answer(server, first, ["pong", [0], {}])
    run_until(clocked_loop, lambda: outcomes.got)
    req.request("ping", 3, **outcomes.of(3))  # a completed request frees its place
    assert json.loads(server.recv_multipart()[-1]) == ["ping", [3], {}]


def test_close_gives_each_pending_request_requester_closed_in_order_and_refuses_new_ones(
    requesters, server, outcomes
):
    req = requesters()
    for n in range(3):
        req.request("ping", n, **outcomes.of(n))
    req.close()
    assert outcomes.labels() == [0, 1, 2]
    assert all(kind == "error" and isinstance(exc, RequesterClosed) for _, kind, exc in outcomes.got)
    assert req.socket is None and req.pending() == 0
    with pytest.raises(RequesterClosed):
        req.request("ping", 4, **outcomes.of(4))
    req.close()
    assert len(outcomes.got) == 3


def test_an_on_reply_that_raises_goes_to_the_loops_error_policy_and_later_replies_still_arrive(
    zmq_context, server, outcomes
):
    from pollframe.loop import PollLoop

    seen: list[tuple[BaseException, str]] = []
    loop = PollLoop(on_error=lambda exc, where: seen.append((exc, where)))
    req = Requester(loop, zmq_context, server.last_endpoint.decode())
    try:
        req.request("ping", 0, on_reply=lambda reply: 1 / 0, on_error=outcomes.of(0)["on_error"])
        req.request("ping", 1, **outcomes.of(1))
        for _ in range(2):
            r = server.recv_multipart()
            answer(server, r, ["pong", json.loads(r[-1])[1], {}])
        run_until(loop, lambda: outcomes.got)
        assert outcomes.got == [(1, "reply", ("pong", [1], {}))]
        [(exc, where)] = seen
        assert isinstance(exc, ZeroDivisionError) and "on_reply" in where
    finally:
        req.close()
        loop.close()


def test_a_request_that_cannot_be_encoded_raises_at_once_and_is_not_pending(requesters, server, outcomes):
    from pollframe.errors import EncodeError

    req = requesters()
    with pytest.raises(EncodeError):
        req.request("ping", {1, 2}, **outcomes.of("p"))
    assert req.pending() == 0
    server.expect_nothing(within=0.05)


def test_a_bad_policy_is_refused_when_the_requester_is_made(clocked_loop, zmq_context):
    for bad in ({"timeout": 0}, {"retries": 0}, {"max_in_flight": 0}):
        with pytest.raises(ValueError):
            Requester(clocked_loop, zmq_context, "tcp://127.0.0.1:1", **bad)


def test_a_bad_policy_of_one_request_is_refused_and_nothing_is_sent(requesters, server, outcomes):
    req = requesters()
    for bad in ({"timeout": 0}, {"timeout": -1.0}, {"retries": 0}, {"retries": True}):
        with pytest.raises(ValueError):
            req.send_request("ping", [1], {}, **outcomes.of("p"), **bad)
    assert req.pending() == 0
    server.expect_nothing(within=0.05)


# ------------------------------------------------------------------ lockstep


@pytest.fixture
def rep_server(make_socket) -> TimedSocket:
    return make_socket(zmq.REP, bind=f"inproc://requester-rep-{next(_names)}")


def test_lockstep_sends_one_request_at_a_time_in_the_order_they_were_made(
    requesters, clocked_loop, rep_server, outcomes
):
    req = requesters(to=rep_server, lockstep=True)
    for n in range(3):
        req.request("ping", n, **outcomes.of(n))
    for n in range(3):
        assert json.loads(rep_server.recv()) == ["ping", [n], {}]
        rep_server.expect_nothing(within=0.02)  # the next waits for this reply
        rep_server.send(json.dumps(["pong", [n], {}]).encode())
        run_until(clocked_loop, lambda n=n: len(outcomes.got) == n + 1)
    assert outcomes.got == [(n, "reply", ("pong", [n], {})) for n in range(3)]
    assert req.sockets == 1


def test_lockstep_retries_on_a_fresh_socket_and_a_reply_to_the_old_one_is_never_seen(
    requesters, clocked_loop, fake_clock, server, outcomes
):
    req = requesters(lockstep=True, timeout=0.5, retries=2)
    req.request("ping", 1, **outcomes.of("p"))
    first = server.recv_multipart()
    run_for(clocked_loop, fake_clock, 0.5)
    second = server.recv_multipart()
    assert first[0] != second[0] and req.sockets == 2  # another peer: a fresh REQ
    answer(server, first, ["pong", ["old"], {}])  # goes to the closed socket
    answer(server, second, ["pong", [1], {}])
    run_until(clocked_loop, lambda: outcomes.got)
    assert outcomes.got == [("p", "reply", ("pong", [1], {}))]


def test_lockstep_timeout_of_one_request_lets_the_next_go_out_on_a_fresh_socket(
    requesters, clocked_loop, fake_clock, server, outcomes
):
    req = requesters(lockstep=True, timeout=0.5, retries=1)
    req.request("ping", 0, **outcomes.of(0))
    req.request("ping", 1, **outcomes.of(1))
    server.recv_multipart()
    run_for(clocked_loop, fake_clock, 0.5)
    assert isinstance(outcomes.got[0][2], RequestTimeout)
    second = server.recv_multipart()
    assert json.loads(second[-1]) == ["ping", [1], {}]
    answer(server, second, ["pong", [1], {}])
    run_until(clocked_loop, lambda: len(outcomes.got) == 2)
    assert outcomes.got[1] == (1, "reply", ("pong", [1], {}))


def test_lockstep_cancel_of_the_request_on_the_wire_frees_the_next_and_of_a_waiting_one_skips_it(
    requesters, clocked_loop, server, outcomes
):
    req = requesters(lockstep=True)
    first = req.request("ping", 0, **outcomes.of(0))
    second = req.request("ping", 1, **outcomes.of(1))
    req.request("ping", 2, **outcomes.of(2))
    server.recv_multipart()
    second.cancel()
    first.cancel()
    third = server.recv_multipart()
    assert json.loads(third[-1]) == ["ping", [2], {}]
    answer(server, third, ["pong", [2], {}])
    run_until(clocked_loop, lambda: outcomes.got)
    assert outcomes.got == [(2, "reply", ("pong", [2], {}))]


# ----------------------------------------------------------------- processes


def test_a_server_killed_and_restarted_mid_run_leaves_every_request_with_exactly_one_outcome(
    pong_procs, poll_loop, zmq_context
):
    first, endpoint = pong_procs("127.0.0.1", check_exit=False)
    req = Requester(poll_loop, zmq_context, endpoint, timeout=0.3, retries=2, max_in_flight=64)
    got: dict[int, list[Any]] = {}

    def send(n: int) -> None:
        req.request("ping", n, on_reply=lambda reply: got.setdefault(n, []).append(reply),
                    on_error=lambda exc: got.setdefault(n, []).append(exc))

    try:
        for n in range(20):
            send(n)
        run_until(poll_loop, lambda: len(got) == 20, timeout=10)
        os.kill(first.pid, signal.SIGKILL)
        first.join(5)
        for n in range(20, 40):  # sent to a dead server: each is sent again at its deadline
            send(n)
        run_until(poll_loop, lambda: req.resent >= 20, timeout=10)
        pong_procs(endpoint.removeprefix("tcp://"))  # the same port; meanwhile the last deadlines pass
        for n in range(40, 60):
            send(n)
        run_until(poll_loop, lambda: len(got) == 60 and req.pending() == 0, timeout=15)
    finally:
        req.close()
    assert all(len(outcome) == 1 for outcome in got.values()), "a request had two outcomes"
    for n, [outcome] in got.items():
        assert outcome == ("pong", [n], {}) or isinstance(outcome, RequestTimeout), (n, outcome)
    assert all(got[n] == [("pong", [n], {})] for n in list(range(20)) + list(range(40, 60)))
    timeouts = sum(1 for [o] in got.values() if isinstance(o, RequestTimeout))
    assert timeouts == req.timeouts
    print(f"reliability: requester: kill and restart: {60 - timeouts}/60 replies, "
          f"{timeouts} RequestTimeout, resent={req.resent}, late={req.late}")


def test_a_thousand_pipelined_requests_with_64_in_flight_each_reach_their_own_callback(
    pong_procs, poll_loop, zmq_context
):
    _, endpoint = pong_procs("127.0.0.1")
    req = Requester(poll_loop, zmq_context, endpoint, timeout=5.0, retries=1, max_in_flight=64)
    replies: list[tuple[int, Any]] = []
    errors: list[BaseException] = []
    next_n = 0

    def send_next() -> None:
        nonlocal next_n
        n, next_n = next_n, next_n + 1
        req.request("ping", n, on_reply=lambda reply: done(n, reply), on_error=errors.append)

    def done(n: int, reply: Any) -> None:
        replies.append((n, reply))
        if next_n < 1000:
            send_next()

    try:
        for _ in range(64):
            send_next()
        with pytest.raises(TooManyRequests):
            req.request("ping", -1, on_reply=print, on_error=print)
        run_until(poll_loop, lambda: len(replies) + len(errors) == 1000, timeout=15)
    finally:
        req.close()
    assert errors == []
    assert all(reply == ("pong", [n], {}) for n, reply in replies)
    assert sorted(n for n, _ in replies) == list(range(1000))
    assert req.late == 0 and req.resent == 0


@pytest.mark.timeout(30)
def test_requests_made_outside_the_requesters_own_callback_get_every_reply_on_either_loop(
    pong_procs, zmq_context, loop_class
):
    # On an edge-triggered loop a send can take the socket's readable edge: a reply that came
    # meanwhile must still be read, not left until the request's deadline.
    _, endpoint = pong_procs("127.0.0.1")
    loop = loop_class()
    req = Requester(loop, zmq_context, endpoint, timeout=10.0, retries=1, max_in_flight=64)
    replies: list[int] = []
    errors: list[BaseException] = []
    sent = 0

    def send_one() -> None:  # from a callback of the loop's queue, never the requester's reader
        nonlocal sent
        if sent == 2000:
            return
        n, sent = sent, sent + 1
        req.request("ping", n, on_reply=lambda reply: replied(n), on_error=errors.append)

    def replied(n: int) -> None:
        replies.append(n)
        loop.call_soon(send_one)

    try:
        for _ in range(8):
            loop.call_soon(send_one)
        run_until(loop, lambda: len(replies) + len(errors) == 2000, timeout=8, what="2,000 replies")
    finally:
        req.close()
        loop.close()
    assert errors == [] and sorted(replies) == list(range(2000))


@pytest.mark.timeout(30)
def test_the_readme_requester_and_coroutine_examples_print_their_replies_and_exit_zero():
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Calling another process"):readme.index("## Who is still there")]
    first, coroutines = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    setup, teardown = first.rsplit("req.close()", 1)
    for code, printed in ((first, "('pong', [3], {})\n"),
                          (setup + coroutines + "req.close()" + teardown,
                           "('pong', [3], {})\n[('pong', [0], {}), ('pong', [1], {}), ('pong', [2], {})]\n")):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        assert result.stdout == printed


def test_closing_the_loop_closes_its_requesters_so_pending_requests_get_requester_closed(
    zmq_context, server, outcomes
):
    from pollframe.loop import PollLoop

    loop = PollLoop()
    req = Requester(loop, zmq_context, server.last_endpoint.decode())
    req.request("ping", 1, **outcomes.of("p"))
    loop.close()
    [(_, kind, exc)] = outcomes.got
    assert kind == "error" and isinstance(exc, RequesterClosed)
    assert req.closed and req.socket is None
