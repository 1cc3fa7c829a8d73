"""ReplyCache: keys, frames and the time in, the three answers out; no sockets, no clock."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import zmq

from pollframe.replycache import IN_PROGRESS, ReplyCache, request_key
from pollframe.testing import run_until

REPLY = (b'["pong", [1], {}]',)


def test_a_new_key_is_executed_then_in_progress_then_answered_with_its_stored_reply():
    cache = ReplyCache(max_entries=10, ttl=5.0)
    assert cache.arrived(("a",), 0.0) is None  # new: execute it
    assert cache.arrived(("a",), 0.1) == IN_PROGRESS  # a copy while it runs: drop it
    cache.replied(("a",), list(REPLY), 0.2)
    assert cache.arrived(("a",), 0.3) == REPLY  # done: the same frames again
    assert cache.arrived(("a",), 0.4) == REPLY
    assert (cache.dropped, cache.resent, len(cache)) == (1, 2, 1)


def test_in_progress_is_empty_and_a_stored_reply_never_is():
    cache = ReplyCache()
    assert IN_PROGRESS == () and not IN_PROGRESS
    with pytest.raises(ValueError, match="at least one frame"):
        cache.replied(("a",), [], 0.0)


def test_keys_are_independent():
    cache = ReplyCache()
    assert cache.arrived(("a",), 0.0) is None
    assert cache.arrived(("b",), 0.0) is None
    cache.replied(("b",), [b"B"], 0.0)
    assert cache.arrived(("a",), 0.0) == IN_PROGRESS
    assert cache.arrived(("b",), 0.0) == (b"B",)


def test_an_entry_expires_ttl_seconds_after_its_first_copy_arrived_and_copies_do_not_extend_it():
    cache = ReplyCache(ttl=5.0)
    cache.arrived(("a",), 0.0)
    cache.replied(("a",), [b"A"], 4.0)
    assert cache.arrived(("a",), 4.999) == (b"A",)  # a copy at 4.999 s does not restart the ttl
    assert cache.arrived(("a",), 5.0) is None  # expired: a new request, executed again
    assert cache.expired == 1


def test_expiry_removes_every_entry_past_its_ttl_oldest_first_and_keeps_the_younger_ones():
    cache = ReplyCache(ttl=10.0)
    for n in range(100):
        cache.arrived((n,), n / 10)  # 0.0 .. 9.9 s: nothing expires yet
    assert cache.expired == 0
    cache.arrived(("now",), 15.05)  # those that arrived at 0.0 .. 5.0 s are past their ttl
    assert cache.expired == 51 and len(cache) == 50
    assert (50,) not in cache and (51,) in cache and ("now",) in cache


def test_past_max_entries_the_oldest_entry_is_evicted_first_and_counted():
    cache = ReplyCache(max_entries=3, ttl=60.0)
    for key in "abcd":
        cache.arrived((key,), 0.0)
    assert len(cache) == 3 and ("a",) not in cache and all((k,) in cache for k in "bcd")
    assert cache.evicted == 1 and cache.expired == 0
    assert cache.arrived(("a",), 0.0) is None  # evicted: executed again, and "b" goes
    assert ("b",) not in cache and cache.evicted == 2


def test_a_reply_to_a_key_evicted_while_in_progress_is_kept_as_a_new_entry():
    cache = ReplyCache(max_entries=1, ttl=5.0)
    cache.arrived(("a",), 0.0)
    cache.arrived(("b",), 0.0)  # evicts "a" while it is in progress
    cache.replied(("a",), [b"A"], 1.0)  # evicts "b"
    assert cache.arrived(("a",), 5.5) == (b"A",)  # its ttl runs from the reply
    assert cache.arrived(("a",), 6.0) is None


def test_a_reply_after_the_entry_expired_is_kept_from_the_time_of_the_reply():
    cache = ReplyCache(ttl=1.0)
    cache.arrived(("a",), 0.0)
    cache.arrived(("b",), 0.5)
    cache.replied(("a",), [b"A"], 2.0)  # "a" and "b" both expired meanwhile
    assert ("b",) not in cache and cache.expired == 2
    assert cache.arrived(("a",), 2.9) == (b"A",)


def test_a_hundred_thousand_requests_keep_the_cache_at_its_bound():
    cache = ReplyCache(max_entries=1000, ttl=10.0)
    for n in range(100_000):
        key = (n,)
        assert cache.arrived(key, n * 0.001) is None
        cache.replied(key, [b"r"], n * 0.001)
    assert len(cache) == 1000
    assert cache.evicted + cache.expired == 99_000


@pytest.mark.parametrize("max_entries, ttl", [
    (0, 1.0), (-1, 1.0), (1.5, 1.0), ("10", 1.0),
    (10, 0), (10, -1.0), (10, float("inf")), (10, float("nan")), (10, "1"),
])
def test_bounds_that_are_not_positive_finite_numbers_are_refused(max_entries, ttl):
    with pytest.raises(ValueError):
        ReplyCache(max_entries=max_entries, ttl=ttl)


# -- keys


def test_the_key_of_a_routed_dealer_request_is_its_id_frames_and_the_body_hash_without_the_routing_id():
    body = b'["ping", [1], {}]'
    key = request_key([b"peer-A", b"id-1", b"", body], routing=1)
    assert key == (b"id-1", b"", hash(body))
    assert request_key([b"peer-B", b"id-1", b"", body], routing=1) == key  # reconnected: same request


def test_the_same_id_with_another_body_is_another_request():
    one, other = [b"p", b"id-1", b"", b"a"], [b"p", b"id-1", b"", b"b"]
    assert request_key(one, routing=1) != request_key(other, routing=1)


@pytest.mark.parametrize("frames, routing", [
    ([b"peer", b"", b"{}"], 1),  # a REQ client through a ROUTER: only the delimiter
    ([b"peer", b"{}"], 1),  # a raw DEALER: nothing but the routing id
    ([b"{}"], 0),  # REP: the envelope is stripped
    ([b"", b"{}"], 0),
    ([b"", b"", b"{}"], 0),
    ([], 0),
])
def test_a_request_with_no_id_of_its_own_has_no_key(frames, routing):
    assert request_key(frames, routing=routing) is None


def test_json_load_picks_the_body_and_the_frames_before_it():
    assert request_key([b"peer", b"id", b"", b"body", b"extra"], json_load=3, routing=1) == (
        b"id", b"", hash(b"body"))


def test_the_module_imports_no_zmq():
    import subprocess

    code = "import sys, pollframe.replycache; print('zmq' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "False", out.stderr


# -- a real server process: each request executed once


def executions(make_socket, endpoint: str) -> dict[str, int]:
    dealer = make_socket(zmq.DEALER, connect=endpoint, timeout=5.0)
    dealer.send_multipart([b"query", b"", b'["executions", [], {}]'])
    rid, _, reply = dealer.recv_multipart()
    kind, [counts], _ = json.loads(reply)
    assert (rid, kind) == (b"query", "executions")
    return counts


@pytest.mark.timeout(30)
def test_a_request_id_sent_twice_and_again_on_a_new_connection_gets_the_same_reply_and_runs_once(
    start_process, make_socket
):
    from multihost_peers import CountingServer

    server = start_process(CountingServer("127.0.0.1"))
    dealer = make_socket(zmq.DEALER, connect=server.endpoint, timeout=5.0)
    request = [b"id-1", b"", b'["ping", [1], {}]']
    dealer.send_multipart(request)
    first = dealer.recv_multipart()
    dealer.send_multipart(request)
    assert dealer.recv_multipart() == first == [b"id-1", b"", b'["pong", [1], {}]']
    reconnected = make_socket(zmq.DEALER, connect=server.endpoint, timeout=5.0)  # a new routing id
    reconnected.send_multipart(request)
    assert reconnected.recv_multipart() == first
    dealer.send_multipart([b"id-2", b"", b'["ping", [1], {}]'])  # another request: executed
    assert dealer.recv_multipart() == [b"id-2", b"", b'["pong", [1], {}]']
    assert executions(make_socket, server.endpoint) == {"1": 2}


@pytest.mark.timeout(30)
def test_requests_retried_while_the_server_is_slow_on_their_first_attempt_each_run_once(
    start_process, make_socket, poll_loop, zmq_context
):
    from multihost_peers import CountingServer

    from pollframe.requester import Requester

    server = start_process(CountingServer("127.0.0.1", hold=True))
    req = Requester(poll_loop, zmq_context, server.endpoint, timeout=0.3, retries=3)
    got: dict[int, list[Any]] = {}
    try:
        for n in range(20):
            record = got.setdefault(n, []).append
            req.request("ping", n, on_reply=record, on_error=record)
        run_until(poll_loop, lambda: sum(map(len, got.values())) == 20, timeout=10, what="20 outcomes")
        resent = req.resent
    finally:
        req.close()
    assert got == {n: [("pong", [n], {})] for n in range(20)}
    assert resent >= 1  # the server held every reply until a retry had come
    assert executions(make_socket, server.endpoint) == {str(n): 1 for n in range(20)}
    print(f"reliability: reply cache: 20 requests, {resent} attempts resent while the server held them, "
          f"{req.late} second replies counted late, each executed once")


@pytest.mark.system
@pytest.mark.multihost
@pytest.mark.timeout(60)
def test_across_hosts_on_a_link_slower_than_the_timeout_and_a_cut_connection_each_request_runs_once(hosts):
    from multihost_peers import CountingServer

    from pollframe.loop import PollLoop
    from pollframe.requester import Requester

    net = hosts(2)
    client_host, server_host = net
    server = server_host.start(CountingServer(server_host.address))
    port = int(server.endpoint.rsplit(":", 1)[1])
    link = net.proxy(server_host, (server_host.address, port), delay=0.1)  # a round trip of 0.2 s
    loop = PollLoop()
    # Each attempt gives up before its reply can come back: every request is sent at least twice.
    req = Requester(loop, client_host.context(), link.endpoint, timeout=0.15, retries=8, heartbeat=0.25)
    got: dict[int, list[Any]] = {}

    def send(numbers: range) -> None:
        for n in numbers:
            record = got.setdefault(n, []).append
            req.request("ping", n, on_reply=record, on_error=record)

    def settled(count: int) -> Any:
        return lambda: sum(map(len, got.values())) == count

    try:
        send(range(100))
        run_until(loop, settled(100), timeout=20, what="the first 100 outcomes")
        send(range(100, 200))
        link.cut()  # replies in flight are lost; the copies come on a new connection (a new routing id)
        run_until(loop, settled(200), timeout=20, what="200 outcomes")
        counted: list[Any] = []
        req.send_request("executions", [], {}, counted.append, counted.append, timeout=5.0, retries=1)
        run_until(loop, lambda: counted, timeout=10, what="the execution counts")
    finally:
        req.close()
        loop.close()
    assert got == {n: [("pong", [n], {})] for n in range(200)}
    [(kind, [executions], cache)] = counted
    assert kind == "executions"
    assert executions == {str(n): 1 for n in range(200)}, "a request was executed twice"
    assert cache["resent"] >= 1  # copies did reach the server after it had replied
    print(f"\nreliability: reply cache across hosts, 0.1 s each way, attempts of 0.15 s, a cut: 200 replies, "
          f"{req.resent} attempts resent, {cache['resent']} copies answered from the cache, "
          f"{cache['dropped']} dropped in progress, 200 executions (replayed={req.replayed}, "
          f"disconnects={req.disconnects}, late={req.late})")
