"""Requester(heartbeat=H): a dead connection is noticed and replaced, and what it held goes out again.

The servers are a ROUTER of the test behind a :class:`FaultProxy` (whose
``cut`` breaks the connection) or the example's PongProc in a child
process (frozen with SIGSTOP: its kernel still acknowledges, only the
heartbeats notice). Where a test shows that a request went out again on
the new connection, the loop runs on a fake clock that never reaches a
deadline, so no retry can be what sent it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Iterator

import pytest
import zmq

from pollframe.client import heartbeat_sockopts
from pollframe.errors import RequestTimeout
from pollframe.requester import Requester
from pollframe.testing import TimedSocket, run_for, run_until
from pollframe.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(20)

H = 0.2


class Got:
    def __init__(self) -> None:
        self.outcomes: dict[Any, list[Any]] = {}

    def of(self, label: Any) -> dict[str, Any]:
        def record(outcome: Any) -> None:
            self.outcomes.setdefault(label, []).append(outcome)

        return {"on_reply": record, "on_error": record}


@pytest.fixture
def router(make_socket) -> TimedSocket:
    return make_socket(zmq.ROUTER, bind="tcp://127.0.0.1:*", timeout=5.0)


@pytest.fixture
def proxy(router) -> Iterator[FaultProxy]:
    port = int(router.last_endpoint.decode().rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port)) as running:
        yield running


def receive(loop: Any, server: TimedSocket, count: int) -> list[list[bytes]]:
    """Run ``loop`` until ``server`` received ``count`` messages (a deferred send needs the loop)."""
    got: list[list[bytes]] = []

    def arrived() -> bool:
        while len(got) < count and server.socket.poll(0):
            got.append(server.socket.recv_multipart())
        return len(got) == count

    run_until(loop, arrived, what=f"{count} message(s) at the server")
    return got


def answer(server: TimedSocket, request: list[bytes], reply: Any) -> None:
    server.send_multipart(request[:-1] + [json.dumps(reply).encode()])


def test_heartbeat_sets_libzmqs_watch_on_the_dealer_and_given_sockopts_still_win(
    clocked_loop, zmq_context, router
):
    endpoint = router.last_endpoint.decode()
    req = Requester(clocked_loop, zmq_context, endpoint, heartbeat=H, sockopts={zmq.RECONNECT_IVL: 77})
    plain = Requester(clocked_loop, zmq_context, endpoint)
    try:
        sock = req.socket
        assert sock is not None and plain.socket is not None
        assert (sock.heartbeat_ivl, sock.heartbeat_timeout, sock.tcp_maxrt) == (200, 400, 600)
        assert (sock.connect_timeout, sock.immediate, sock.reconnect_ivl) == (100, 1, 77)
        assert sock.heartbeat_ttl == 600
        # Off, nothing changes: no heartbeat, and a request made while unconnected is queued by libzmq.
        assert (plain.socket.heartbeat_ivl, plain.socket.immediate, plain.heartbeat) == (0, 0, None)
    finally:
        req.close()
        plain.close()


@pytest.mark.parametrize("bad", [0, -1, 0.001, 5000, True, "1"])
def test_a_heartbeat_out_of_range_is_refused_when_the_requester_is_made(clocked_loop, zmq_context, bad):
    with pytest.raises(ValueError, match="heartbeat must be a number of seconds"):
        Requester(clocked_loop, zmq_context, "tcp://127.0.0.1:5555", heartbeat=bad)


def test_heartbeat_is_refused_for_inproc_with_the_reason(clocked_loop, zmq_context):
    with pytest.raises(ValueError, match="inproc and has none"):
        Requester(clocked_loop, zmq_context, "inproc://nowhere", heartbeat=H)
    with pytest.raises(ValueError, match="inproc and has none"):
        heartbeat_sockopts(H, "inproc://nowhere")


def test_a_cut_connection_is_replaced_and_its_pending_requests_go_out_on_the_new_one_with_their_ids(
    clocked_loop, zmq_context, router, proxy
):
    got = Got()
    req = Requester(clocked_loop, zmq_context, proxy.endpoint, timeout=60, retries=1, heartbeat=H)
    try:
        for n in range(3):
            req.request("ping", n, **got.of(n))
        first = receive(clocked_loop, router, 3)
        proxy.cut()  # three requests were taken by the connection that breaks; none is answered
        again = receive(clocked_loop, router, 3)  # the fake clock is still: no deadline passed
        assert [r[1:] for r in again] == [r[1:] for r in first]  # in order, same ids, same frames
        assert {r[0] for r in again}.isdisjoint({r[0] for r in first})  # on another connection
        for r in again:
            answer(router, r, ["pong", json.loads(r[-1])[1], {}])
        run_until(clocked_loop, lambda: len(got.outcomes) == 3 and req.pending() == 0)
    finally:
        req.close()
    assert got.outcomes == {n: [("pong", [n], {})] for n in range(3)}
    assert (req.disconnects, req.connections, req.resent, req.timeouts) == (1, 2, 0, 0)
    assert req.replayed >= 3


def test_in_lockstep_the_request_a_cut_connection_held_goes_again_on_a_fresh_req_before_its_deadline(
    clocked_loop, zmq_context, router, proxy
):
    got = Got()
    req = Requester(clocked_loop, zmq_context, proxy.endpoint, timeout=60, retries=1, lockstep=True,
                    heartbeat=H)
    try:
        req.request("ping", 1, **got.of(1))
        assert req.socket is not None and req.socket.immediate == 0  # a fresh REQ holds its request
        assert req.socket.heartbeat_ivl == 200
        req.request("ping", 2, **got.of(2))  # waits its turn
        [first] = receive(clocked_loop, router, 1)
        proxy.cut()
        [again] = receive(clocked_loop, router, 1)  # the fake clock is still: no deadline passed
        assert again[0] != first[0] and again[1:] == first[1:]  # a fresh REQ: another peer, same request
        answer(router, again, ["pong", [1], {}])
        [second] = receive(clocked_loop, router, 1)  # then the next in line, on the same REQ
        answer(router, second, ["pong", [2], {}])
        run_until(clocked_loop, lambda: len(got.outcomes) == 2)
    finally:
        req.close()
    assert got.outcomes == {1: [("pong", [1], {})], 2: [("pong", [2], {})]}
    assert (req.disconnects, req.replayed, req.resent, req.sockets) == (1, 1, 0, 2)


def test_a_request_made_before_the_server_is_up_goes_out_as_soon_as_it_connects(
    clocked_loop, zmq_context, make_socket, tcp_endpoint
):
    got = Got()
    req = Requester(clocked_loop, zmq_context, tcp_endpoint, timeout=60, retries=1, heartbeat=H)
    try:
        req.request("ping", 1, **got.of(1))
        assert req.unsent == 1  # no connection: the socket took nothing (IMMEDIATE)
        server = make_socket(zmq.ROUTER, bind=tcp_endpoint, timeout=5.0)
        [request] = receive(clocked_loop, server, 1)  # from the backlog once connected: no deadline passed
        answer(server, request, ["pong", [1], {}])
        run_until(clocked_loop, lambda: got.outcomes)
    finally:
        req.close()
    assert got.outcomes == {1: [("pong", [1], {})]} and req.resent == 0


def test_a_request_that_timed_out_while_unconnected_is_never_sent_once_a_connection_comes(
    clocked_loop, fake_clock, zmq_context, make_socket, tcp_endpoint
):
    got = Got()
    req = Requester(clocked_loop, zmq_context, tcp_endpoint, timeout=0.5, retries=1, heartbeat=H)
    try:
        req.request("stale", 1, **got.of("stale"))
        run_for(clocked_loop, fake_clock, 0.5)
        [outcome] = got.outcomes["stale"]
        assert isinstance(outcome, RequestTimeout)
        server = make_socket(zmq.ROUTER, bind=tcp_endpoint, timeout=5.0)
        run_until(clocked_loop, lambda: req.connections == 1, what="the connection")
        req.request("fresh", 2, **got.of("fresh"))
        [request] = receive(clocked_loop, server, 1)  # in order on one connection: a stale copy comes first
        assert json.loads(request[-1]) == ["fresh", [2], {}]
        answer(server, request, ["pong", [2], {}])
        run_until(clocked_loop, lambda: "fresh" in got.outcomes)
    finally:
        req.close()
    assert got.outcomes["fresh"] == [("pong", [2], {})]


# ----------------------------------------------------------------- processes


def test_a_frozen_server_is_noticed_within_three_heartbeats_and_pending_requests_are_served_on_sigcont(
    pong_procs, poll_loop, zmq_context
):
    proc, endpoint = pong_procs("127.0.0.1")
    got = Got()
    # One attempt with a long deadline: only the resend on the new connection can serve the requests.
    req = Requester(poll_loop, zmq_context, endpoint, timeout=15, retries=1, heartbeat=H)
    try:
        req.request("ping", 0, **got.of(0))
        run_until(poll_loop, lambda: got.outcomes, what="the first pong")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            req.request("ping", 1, **got.of(1))  # taken by the connection that is about to be dropped
            run_until(poll_loop, lambda: req.disconnects == 1, what="the frozen server noticed")
            noticed_after = time.monotonic() - frozen_at
            req.request("ping", 2, **got.of(2))  # refused until a new connection is up
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        run_until(poll_loop, lambda: len(got.outcomes) == 3 and req.pending() == 0, what="the pongs")
        served_after = time.monotonic() - thawed_at
    finally:
        req.close()
    assert got.outcomes == {n: [("pong", [n], {})] for n in range(3)}
    assert req.resent == 0 and req.timeouts == 0
    # A PING every H, and 2H for anything to come back: silence is noticed within 3H. The slack is
    # for a loaded machine.
    assert noticed_after <= 3 * H + 0.4, f"noticed after {noticed_after:.3f} s"
    print(f"\nheartbeat {H} s: frozen server noticed after {noticed_after * 1000:.0f} ms, "
          f"served {served_after * 1000:.0f} ms after SIGCONT (replayed={req.replayed})")
