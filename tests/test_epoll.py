"""EpollLoop's own rules: the edge-triggered ZMQ_FD (the behaviour tests run on it via ``loop_class``)."""
from __future__ import annotations

import pytest
import zmq

from pollframe.epoll import EpollLoop
from pollframe.stream import Stream
from pollframe.testing import run_until

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def loop():
    """These tests are about EpollLoop alone."""
    epoll_loop = EpollLoop()
    yield epoll_loop
    epoll_loop.close()


def test_messages_left_after_the_drain_cap_arrive_without_new_traffic(push_pull):
    push, pull = push_pull
    loop = EpollLoop(max_drain=10)
    try:
        got = []
        loop.register(pull, got.append)
        for _ in range(35):
            push.send(b"x")
        run_until(loop, lambda: len(got) == 35)
    finally:
        loop.close()


def test_a_message_whose_edge_a_stream_send_consumed_is_still_delivered(ctx, loop):
    mine, peer = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    mine.bind("inproc://edge")
    peer.connect("inproc://edge")
    stream = Stream(mine, loop)
    got = []
    stream.on_recv(got.append)
    loop.run_once(0)
    loop.run_once(0)
    peer.send(b"waiting")  # signals mine's ZMQ_FD ...
    stream.send(b"out")  # ... and this send processes that signal before any poll sees it
    run_until(loop, lambda: got)
    assert got == [[b"waiting"]]
    assert peer.recv() == b"out"


def test_a_socket_registered_with_messages_already_waiting_is_read(push_pull, loop):
    push, pull = push_pull
    push.send(b"early")
    pull.poll(1000)  # the message is in; the edge is gone before the loop ever sees the socket
    got = []
    loop.register(pull, got.append)
    run_until(loop, lambda: got)
    assert got == [[b"early"]]


def test_one_busy_socket_among_many_idle_ones_is_served(ctx, loop):
    idle = []
    for i in range(200):
        sock = ctx.socket(zmq.PULL)
        sock.bind(f"inproc://idle-{i}")
        loop.register(sock, lambda frames: idle.append(frames))
        idle_sock = sock
    busy = ctx.socket(zmq.PUSH)
    busy.connect("inproc://idle-199")
    for i in range(1_000):
        busy.send(str(i).encode())
    got = []
    loop.register(idle_sock, got.append, multipart=False)
    run_until(loop, lambda: len(got) == 1_000)
    assert got == [str(i).encode() for i in range(1_000)] and idle == []


def test_a_pass_whose_re_check_finds_nothing_sleeps_until_its_timer_in_that_same_pass(push_pull, loop):
    push, pull = push_pull
    got, fired = [], []
    loop.register(pull, got.append)
    push.send(b"request")
    loop.run_once(1.0)  # dispatched: the socket is re-checked by the next pass
    assert got == [[b"request"]]
    loop.call_later(0.01, fired.append, "timer")
    loop.run_once(None)  # re-checks, finds nothing, sleeps until the timer: one pass, not two
    assert fired == ["timer"]


def test_a_pass_whose_re_check_finds_nothing_still_wakes_for_a_message(push_pull, loop):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    push.send(b"first")
    loop.run_once(1.0)
    loop.call_soon(push.send, b"second")  # sent by the next pass, after its re-check found nothing
    loop.run_once(0)
    run_until(loop, lambda: len(got) == 2)
    assert got == [[b"first"], [b"second"]]
