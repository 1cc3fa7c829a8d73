"""ReconnectingStream: remade with backoff when the peer is gone; sends of a dead connection dropped.

FakeStreams from the factory and a loop on a fake clock: no sockets, no sleeping.
"""
from __future__ import annotations

import pytest
import zmq

from pollframe.liveness import Liveness
from pollframe.reconnect import ReconnectingStream
from pollframe.stream import Stream
from pollframe.testing import FakeStreamFactory, run_for, run_until


@pytest.fixture
def factory():
    return FakeStreamFactory()


def make(loop, factory, **kwargs):
    connects = []
    received = []
    kwargs.setdefault("backoff", 1.0)
    kwargs.setdefault("max_backoff", 4.0)
    rs = ReconnectingStream(loop, factory, on_connect=connects.append, on_recv=received.append, **kwargs)
    rs.open()
    return rs, connects, received


def test_open_makes_the_first_connection_and_announces_it(clocked_loop, factory):
    rs, connects, _ = make(clocked_loop, factory)
    assert connects == [factory.current] and rs.generation == 1 and rs.connected


def test_messages_of_the_current_connection_reach_on_recv(clocked_loop, factory):
    rs, _, received = make(clocked_loop, factory)
    factory.current.deliver([b"hello"])
    assert received == [[b"hello"]]


def test_reconnect_closes_at_once_and_connects_anew_after_the_backoff(clocked_loop, fake_clock, factory):
    rs, connects, _ = make(clocked_loop, factory)
    first = factory.current
    rs.reconnect()
    assert first.closed and not rs.connected
    run_for(clocked_loop, fake_clock, 0.9)
    assert len(factory.made) == 1
    run_for(clocked_loop, fake_clock, 0.1)
    assert len(factory.made) == 2 and connects == factory.made
    assert rs.generation == 2 and rs.stream is factory.current


def test_the_backoff_doubles_while_the_peer_stays_silent_up_to_the_cap(clocked_loop, fake_clock, factory):
    rs, _, _ = make(clocked_loop, factory)
    waits = []
    for _ in range(5):
        waits.append(rs.next_backoff)
        rs.reconnect()
        run_for(clocked_loop, fake_clock, rs.max_backoff)
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_message_from_the_peer_resets_the_backoff(clocked_loop, fake_clock, factory):
    rs, _, _ = make(clocked_loop, factory)
    for _ in range(2):
        rs.reconnect()
        run_for(clocked_loop, fake_clock, 4.0)
    assert rs.next_backoff == 4.0
    factory.current.deliver([b"I am back"])
    assert rs.next_backoff == 1.0


def test_sends_while_no_connection_is_open_are_dropped_and_counted(clocked_loop, fake_clock, factory):
    rs, _, _ = make(clocked_loop, factory)
    rs.reconnect()
    assert rs.send_multipart([b"into the void"]) is False
    run_for(clocked_loop, fake_clock, 1.0)
    assert factory.current.sent == []
    assert rs.dropped == 1


def test_a_send_for_a_replaced_connection_is_dropped_not_delivered_on_the_new_one(
    clocked_loop, fake_clock, factory
):
    rs, _, _ = make(clocked_loop, factory)
    request_came_on = rs.generation
    rs.reconnect()
    run_for(clocked_loop, fake_clock, 1.0)
    assert rs.send_multipart([b"late reply"], generation=request_came_on) is False
    assert factory.current.sent == [] and rs.dropped == 1
    assert rs.send_multipart([b"fresh"], generation=rs.generation)
    assert factory.current.sent == [[b"fresh"]]


def test_a_second_reconnect_while_waiting_does_not_connect_twice(clocked_loop, fake_clock, factory):
    rs, _, _ = make(clocked_loop, factory)
    rs.reconnect()
    rs.reconnect()
    run_for(clocked_loop, fake_clock, 10.0)
    assert len(factory.made) == 2


def test_a_silent_peer_is_declared_gone_and_the_stream_reconnects(clocked_loop, fake_clock, factory):
    watch = Liveness(1.0, 3, now=fake_clock())
    rs, connects, _ = make(clocked_loop, factory, liveness=watch)
    run_for(clocked_loop, fake_clock, 2.5)
    assert rs.generation == 1
    run_for(clocked_loop, fake_clock, 0.5)  # 3 intervals of silence
    assert factory.made[0].closed and not rs.connected
    run_for(clocked_loop, fake_clock, 1.0)
    assert rs.generation == 2 and len(connects) == 2


def test_traffic_keeps_a_watched_stream_on_its_connection(clocked_loop, fake_clock, factory):
    watch = Liveness(1.0, 3, now=fake_clock())
    rs, _, _ = make(clocked_loop, factory, liveness=watch)
    for _ in range(10):
        run_for(clocked_loop, fake_clock, 1.0)
        factory.current.deliver([b"heartbeat"])
    assert rs.generation == 1 and rs.reconnects == 0


def test_a_new_connection_gets_the_full_liveness_period(clocked_loop, fake_clock, factory):
    watch = Liveness(1.0, 3, now=fake_clock())
    rs, _, _ = make(clocked_loop, factory, liveness=watch, backoff=0.5)
    run_for(clocked_loop, fake_clock, 3.0)  # gone; reconnects 0.5 s later
    run_for(clocked_loop, fake_clock, 0.5)
    assert rs.generation == 2
    run_for(clocked_loop, fake_clock, 2.9)
    assert rs.generation == 2 and rs.connected
    run_for(clocked_loop, fake_clock, 1.0)  # silent for the full period (+ one check interval): gone again
    assert factory.made[1].closed and rs.reconnects == 2


def test_close_stops_reconnecting(clocked_loop, fake_clock, factory):
    rs, _, _ = make(clocked_loop, factory)
    rs.reconnect()
    rs.close()
    run_for(clocked_loop, fake_clock, 10.0)
    assert len(factory.made) == 1 and rs.closed
    with pytest.raises(RuntimeError, match="closed"):
        rs.reconnect()


@pytest.mark.parametrize("backoff, max_backoff", [(0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_the_backoff_is_checked(clocked_loop, factory, backoff, max_backoff):
    with pytest.raises(ValueError, match="backoff"):
        ReconnectingStream(clocked_loop, factory, backoff=backoff, max_backoff=max_backoff)


@pytest.mark.timeout(10)
def test_a_real_dealer_reconnects_on_a_fresh_socket_that_a_router_sees_as_a_new_peer(ctx, loop):
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def dealer():
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        return Stream(sock, loop)

    rs = ReconnectingStream(loop, dealer, on_connect=lambda s: s.send_multipart([b"READY"]), backoff=0.01)
    rs.open()
    try:
        seen = []
        loop.register(router, seen.append)
        run_until(loop, lambda: len(seen) == 1)
        rs.reconnect()
        run_until(loop, lambda: len(seen) == 2)
        assert [frames[1] for frames in seen] == [b"READY", b"READY"]
        assert seen[0][0] != seen[1][0]
    finally:
        rs.close()
        loop.unregister(router)
        router.close(linger=0)


@pytest.mark.timeout(10)
def test_a_disconnect_event_declares_the_peer_lost_at_once_without_waiting_for_missed_intervals(ctx, loop):
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    watch = Liveness(60.0, 3, now=loop.time())  # silence alone would take three minutes

    def dealer():
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        return Stream(sock, loop)

    rs = ReconnectingStream(loop, dealer, on_connect=lambda s: s.send_multipart([b"READY"]),
                            liveness=watch, backoff=0.01)
    rs.open()
    try:
        seen = []
        loop.register(router, seen.append)
        run_until(loop, lambda: seen)  # connected: the READY came
        loop.unregister(router)
        router.close(linger=0)  # the peer dies with its connection
        run_until(loop, lambda: rs.reconnects == 1)
        run_until(loop, lambda: rs.generation == 2)  # and a fresh connection after the backoff
    finally:
        rs.close()
