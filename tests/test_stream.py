"""Stream: receive callbacks and sends that never block the loop."""
from __future__ import annotations

import threading

import pytest
import zmq

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


def test_closing_a_stream_after_its_loop_still_closes_the_socket(ctx, loop):
    push = ctx.socket(zmq.PUSH)
    push.bind("inproc://closed-loop")
    stream = Stream(push, loop)
    stream.send(b"queued: nobody is connected")
    loop.close()
    stream.close(linger=0)
    assert push.closed and stream.closed


# ----------------------------------------------------- REQ and REP lockstep


@pytest.fixture
def rep_req(ctx):
    """A bound REP and a REQ connected to it over inproc."""
    rep = ctx.socket(zmq.REP)
    rep.bind("inproc://rep-req")
    req = ctx.socket(zmq.REQ)
    req.connect("inproc://rep-req")
    return rep, req


def ask(loop, req, request):
    """Send ``request`` on the raw REQ socket and run ``loop`` until its reply is in; return it."""
    req.send(request)
    run_until(loop, lambda: req.poll(0), what=f"a reply to {request!r}")
    return req.recv_multipart()


def test_a_rep_stream_whose_callback_raised_before_replying_sends_the_error_reply_and_serves_the_next(
    loop, rep_req
):
    rep, req = rep_req
    stream = Stream(rep, loop)

    def serve(frames):
        if frames == [b"bad"]:
            raise ValueError("cannot serve this")
        stream.send(b"ok " + frames[0])

    stream.on_recv(serve)
    assert ask(loop, req, b"bad") == [b""]
    assert ask(loop, req, b"good") == [b"ok good"]
    assert stream.error_replies == 1
    assert loop.errors == 1, "the exception still goes to the loop's error policy"


def test_a_rep_callback_that_raised_after_replying_gets_no_second_reply(loop, rep_req):
    rep, req = rep_req
    stream = Stream(rep, loop)

    def reply_then_fail(frames):
        stream.send(b"answered")
        raise ValueError("after the reply")

    stream.on_recv(reply_then_fail)
    assert ask(loop, req, b"one") == [b"answered"]
    assert ask(loop, req, b"two") == [b"answered"]
    assert stream.error_replies == 0


def test_the_error_reply_of_a_rep_stream_can_be_the_protocols_own_error_message(loop, rep_req):
    rep, req = rep_req
    stream = Stream(rep, loop)
    stream.error_reply = [b'["error",["request failed"],{}]']
    stream.on_recv(lambda frames: 1 / 0)
    assert ask(loop, req, b"x") == [b'["error",["request failed"],{}]']


def test_a_rep_callback_may_reply_later_and_the_socket_receives_nothing_until_it_does(loop, rep_req, ctx):
    rep, req = rep_req
    stream = Stream(rep, loop)
    got = []
    stream.on_recv(got.append)  # returns without replying
    req.send(b"first")
    run_until(loop, lambda: got)
    other = ctx.socket(zmq.REQ)
    other.connect("inproc://rep-req")
    other.send(b"second")
    for _ in range(3):
        loop.run_once(0.01)
    assert got == [[b"first"]], "a REP socket that owes a reply receives nothing"
    stream.send(b"late reply")
    assert req.poll(1000) and req.recv() == b"late reply"
    run_until(loop, lambda: len(got) == 2)
    assert got[1] == [b"second"]


def test_a_second_request_on_a_req_stream_waits_for_the_first_reply_and_all_go_out_in_order(loop, rep_req):
    rep, req = rep_req
    stream = Stream(req, loop)
    replies = []
    stream.on_recv(replies.append)
    for i in range(3):
        stream.send(b"request %d" % i)  # no EFSM: the second and third wait their turn
    assert stream.queued() == 2
    served = []

    def serve(frames):
        served.append(frames[0])
        rep.send(b"reply to " + frames[0])

    loop.register(rep, serve)
    run_until(loop, lambda: len(replies) == 3)
    assert served == [b"request 0", b"request 1", b"request 2"]
    assert replies == [[b"reply to request 0"], [b"reply to request 1"], [b"reply to request 2"]]
    assert stream.queued() == 0


# ------------------------------------------------------------------ threads


def call_in_thread(fn, *args):
    """Run ``fn(*args)`` in a new thread; return what it raised (None if nothing)."""
    raised = []

    def target():
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 -- handed back to the test
            raised.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join(5)
    assert not worker.is_alive()
    return raised[0] if raised else None


def test_sending_from_a_thread_that_does_not_own_the_stream_raises_and_sends_nothing(loop, push_pull):
    push, pull = push_pull
    stream = Stream(push, loop)
    error = call_in_thread(stream.send, b"from another thread")
    assert isinstance(error, RuntimeError)
    assert "call_soon_threadsafe" in str(error)
    assert not pull.poll(50), "nothing was sent"
    assert stream.queued() == 0


def test_on_recv_from_a_thread_that_does_not_own_the_stream_raises(loop, push_pull):
    push, pull = push_pull
    stream = Stream(pull, loop)
    assert isinstance(call_in_thread(stream.on_recv, print), RuntimeError)
    assert not loop.is_registered(pull)


@pytest.mark.parametrize("call", ["pause", "resume", "on_event"])
def test_pause_resume_and_on_event_from_a_thread_that_does_not_own_the_stream_raise_and_change_nothing(
    loop, push_pull, call
):
    _, pull = push_pull
    stream = Stream(pull, loop)
    stream.on_recv(print)
    if call == "resume":
        stream.pause()
    args = (print,) if call == "on_event" else ()
    assert isinstance(call_in_thread(getattr(stream, call), *args), RuntimeError)
    assert stream.paused is (call == "resume")
    assert stream._monitor is None, "no monitor socket was made from the other thread"


def test_a_stream_made_in_the_loops_thread_is_reached_from_another_through_call_soon_threadsafe(
    loop, push_pull
):
    push, pull = push_pull
    stream = Stream(push, loop)
    assert call_in_thread(loop.call_soon_threadsafe, stream.send, b"handed over") is None
    run_until(loop, lambda: pull.poll(0))
    assert pull.recv() == b"handed over"


def test_a_send_tells_an_edge_triggered_loop_to_look_at_the_socket_again_and_a_level_triggered_one_nothing(
    loop, push_pull, monkeypatch
):
    # A send may consume the ZMQ_FD edge that announced a message waiting
    # on the same socket: an edge-triggered loop would never see it.
    push, pull = push_pull
    touched = []
    monkeypatch.setattr(loop, "touched", touched.append)
    stream = Stream(push, loop)
    stream.send(b"one")
    stream.send_multipart([b"two", b"frames"])
    assert touched == ([push, push] if loop.edge_triggered else [])
    assert pull.recv_multipart() == [b"one"]


# ------------------------------------------------------------- pause/resume


def test_a_paused_stream_delivers_nothing_until_resumed_then_everything_in_order(loop, push_pull):
    push, pull = push_pull
    got = []
    stream = Stream(pull, loop)
    stream.on_recv(got.append)
    stream.pause()
    assert stream.paused
    for i in range(3):
        push.send(b"%d" % i)
    for _ in range(3):
        loop.run_once(0.01)
    assert got == []
    stream.resume()
    assert not stream.paused
    run_until(loop, lambda: len(got) == 3)
    assert got == [[b"0"], [b"1"], [b"2"]]


def test_pause_from_inside_the_callback_ends_the_drain_at_once(loop, push_pull):
    push, pull = push_pull
    got = []
    stream = Stream(pull, loop)

    def first_only(frames):
        got.append(frames)
        stream.pause()

    stream.on_recv(first_only)
    for i in range(5):
        push.send(b"%d" % i)
    run_until(loop, lambda: got)
    loop.run_once(0)
    assert got == [[b"0"]]


def test_resuming_reuses_the_handler_and_builds_no_new_reader(loop, push_pull, monkeypatch):
    push, pull = push_pull
    built = []
    real_reader = loop.reader
    monkeypatch.setattr(loop, "reader", lambda *a, **kw: built.append(a) or real_reader(*a, **kw))

    class Consumer:
        def __init__(self):
            self.got = []

        def take(self, frames):
            self.got.append(frames)

    consumer = Consumer()
    stream = Stream(pull, loop)
    stream.on_recv(consumer.take)
    for _ in range(3):
        stream.pause()
        stream.resume()
    stream.on_recv(consumer.take)  # a new bound method, equal to the last: same handler
    assert len(built) == 1
    push.send(b"still read")
    run_until(loop, lambda: consumer.got)
    assert consumer.got == [[b"still read"]]


def test_a_paused_stream_still_sends_its_queue(ctx, loop, tmp_path):
    endpoint = f"ipc://{tmp_path}/paused"
    mine = ctx.socket(zmq.DEALER)
    mine.sndhwm = 1
    mine.bind(endpoint)
    stream = Stream(mine, loop)
    got = []
    stream.on_recv(got.append)
    for i in range(20):
        stream.send(b"%d" % i)  # nobody is connected: queued
    stream.pause()
    peer = ctx.socket(zmq.DEALER)
    peer.connect(endpoint)
    peer.send(b"to the paused stream")
    received = []
    loop.register(peer, received.append)
    run_until(loop, lambda: len(received) == 20)
    assert stream.queued() == 0
    assert got == [], "paused: nothing read"


# ---------------------------------------------------------- reader options


def test_on_recv_with_properties_passes_each_messages_libzmq_properties(ctx, loop, tmp_path):
    endpoint = f"ipc://{tmp_path}/props"
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    got = []
    Stream(pull, loop).on_recv(lambda frames, props: got.append((frames, props)),
                               properties=("Socket-Type", "User-Id"))
    push.send(b"x")
    run_until(loop, lambda: got)
    assert got == [([b"x"], {"Socket-Type": "PUSH", "User-Id": None})]


def test_a_message_over_the_streams_limits_never_reaches_the_callback_and_the_next_one_does(loop, push_pull):
    push, pull = push_pull
    got = []
    Stream(pull, loop, max_msg_size=10, max_frames=2).on_recv(got.append)
    push.send(b"x" * 11)
    push.send_multipart([b"a", b"b", b"c"])
    push.send(b"fits")
    run_until(loop, lambda: got)
    assert got == [[b"fits"]]
    assert loop.refused == 2


def test_a_rep_stream_answers_a_request_its_limits_refused_and_serves_the_next(loop, rep_req):
    rep, req = rep_req
    stream = Stream(rep, loop, max_msg_size=10)
    stream.on_recv(lambda frames: stream.send(b"ok"))
    assert ask(loop, req, b"x" * 11) == [b""]
    assert ask(loop, req, b"small") == [b"ok"]
    assert stream.error_replies == 1 and loop.refused == 1


def test_a_socket_class_that_overrides_send_has_its_override_used_by_the_stream(ctx, loop, push_pull):
    _, pull = push_pull

    class CountingSocket(zmq.Socket):
        sends = 0

        def send(self, data, flags=0, copy=True, track=False, **kwargs):
            CountingSocket.sends += 1
            return super().send(data, flags, copy=copy, track=track, **kwargs)

    push = CountingSocket(ctx, zmq.PUSH)
    push.linger = 0
    push.connect("inproc://push-pull")
    try:
        Stream(push, loop).send_multipart([b"a", b"b"])
        assert pull.recv_multipart() == [b"a", b"b"]
        assert CountingSocket.sends == 2
    finally:
        push.close()
