"""Stream: receive callbacks and sends that never block the loop."""
from __future__ import annotations

import pytest
import zmq

from pollframe.loop import PollLoop
from pollframe.stream import QueueFull, Stream
from pollframe.testing import run_until

pytestmark = pytest.mark.timeout(20)


def test_on_recv_delivers_frame_lists(loop, push_pull):
    push, pull = push_pull
    got = []
    Stream(pull, loop).on_recv(got.append)
    push.send_multipart([b"a", b"b"])
    push.send(b"c")
    run_until(loop, lambda: len(got) == 2)
    assert got == [[b"a", b"b"], [b"c"]]


def test_on_recv_none_pauses_receiving_and_a_new_callback_resumes(loop, push_pull):
    push, pull = push_pull
    got = []
    stream = Stream(pull, loop)
    stream.on_recv(got.append)
    stream.on_recv(None)
    push.send(b"held")
    loop.run_once(0.05)
    assert got == []
    stream.on_recv(got.append)
    run_until(loop, lambda: got)
    assert got == [[b"held"]]


def test_pausing_from_inside_the_callback_stops_the_drain(loop, push_pull):
    push, pull = push_pull
    got = []
    stream = Stream(pull, loop)

    def first_only(frames):
        got.append(frames)
        stream.on_recv(None)

    stream.on_recv(first_only)
    for i in range(5):
        push.send(str(i).encode())
    loop.run_once(1.0)
    loop.run_once(0)
    assert got == [[b"0"]]


def test_sends_with_no_peer_yet_queue_without_blocking_and_all_arrive_in_order(ctx, loop, tmp_path):
    endpoint = f"ipc://{tmp_path}/queue"
    push = ctx.socket(zmq.PUSH)
    push.sndhwm = 1
    push.bind(endpoint)
    stream = Stream(push, loop)
    for i in range(1_000):
        stream.send(str(i).encode())  # returns at once: nobody is connected
    assert stream.queued() >= 998

    pull = ctx.socket(zmq.PULL)
    pull.connect(endpoint)
    got = []
    loop.register(pull, got.append, multipart=False)
    run_until(loop, lambda: len(got) == 1_000)
    assert got == [str(i).encode() for i in range(1_000)]
    assert stream.queued() == 0


def test_a_full_queue_refuses_the_message_with_queue_full(ctx, loop):
    push = ctx.socket(zmq.PUSH)
    push.bind("inproc://nobody")
    stream = Stream(push, loop, max_queue=3)
    for _ in range(3):
        stream.send(b"x")
    with pytest.raises(QueueFull):
        stream.send(b"one too many")
    assert stream.queued() == 3


def test_send_variants_encode_their_payloads(loop, push_pull):
    push, pull = push_pull
    stream = Stream(push, loop)
    stream.send(b"raw")
    stream.send_string("text")
    stream.send_json(["pong", [1], {}])
    stream.send_multipart([b"a", b"b"])
    got = [pull.recv_multipart() for _ in range(4)]
    assert got == [[b"raw"], [b"text"], [b'["pong",[1],{}]'], [b"a", b"b"]]


def test_a_reply_to_a_router_peer_that_is_gone_is_counted_not_fatal(ctx, loop):
    router = ctx.socket(zmq.ROUTER)
    router.router_mandatory = 1
    router.bind("inproc://router")
    stream = Stream(router, loop)
    stream.send_multipart([b"ghost", b"", b"reply"])
    assert stream.unroutable == 1


def test_close_unregisters_and_closes_the_socket(loop, push_pull):
    push, pull = push_pull
    stream = Stream(pull, loop)
    stream.on_recv(print)
    stream.close(linger=0)
    assert pull.closed and not loop.is_registered(pull)
    with pytest.raises(RuntimeError):
        stream.send(b"after close")


def test_a_router_drops_and_counts_a_message_for_a_peer_whose_pipe_is_full(ctx, loop):
    router = ctx.socket(zmq.ROUTER)
    router.router_mandatory = 1
    router.sndhwm = 1
    router.bind("inproc://slow-peer")
    slow = ctx.socket(zmq.DEALER)
    slow.rcvhwm = 1
    slow.routing_id = b"slow"
    slow.connect("inproc://slow-peer")
    slow.send(b"hello")
    assert router.poll(1000) and router.recv_multipart() == [b"slow", b"hello"]
    stream = Stream(router, loop)
    for _ in range(10):  # the slow peer reads none of them
        stream.send_multipart([b"slow", b"reply"])
    assert stream.dropped >= 1
    assert stream.queued() == 0, "nothing waits behind the slow peer"


def test_closing_a_stream_after_its_loop_still_closes_the_socket(ctx):
    loop = PollLoop()
    push = ctx.socket(zmq.PUSH)
    push.bind("inproc://closed-loop")
    stream = Stream(push, loop)
    stream.send(b"queued: nobody is connected")
    loop.close()
    stream.close(linger=0)
    assert push.closed and stream.closed
