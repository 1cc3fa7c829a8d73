"""MessageHandler: dispatch by declared type, replies, and every refusal, without sockets."""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
from types import SimpleNamespace
from typing import Any

import pytest
import zmq

from pollframe.errors import BadArguments
from pollframe.handler import MessageHandler, message
from pollframe.stream import Stream
from pollframe.testing import FakeStream, run_for, run_until
from pollframe.units import MAX_MSG_SIZE as MAX_SIZE


class Pong(MessageHandler):
    """A handler with one of each kind of method."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[str] = []

    @message
    def ping(self, n):
        self.calls.append("ping")
        return ["pong", n]

    @message("say-hello")
    def hello(self, name, *, loud=False):
        self.calls.append("hello")
        self.reply("hello", name.upper() if loud else name)

    @message
    def crash(self):
        self.calls.append("crash")
        raise RuntimeError("secret internal detail")

    @message
    def length(self, value):
        self.calls.append("length")
        return ["length", len(value)]  # TypeError inside for an int

    @message
    def quiet(self):
        self.calls.append("quiet")

    @message
    def double(self):
        self.reply("first")
        return ["second", 2]

    @message
    def reply_then_crash(self):
        self.reply("partial")
        raise KeyError("late")

    @message
    def check(self, n):
        if n < 0:
            raise BadArguments("n must be >= 0")
        return ["ok", n]

    @message
    def give(self, value):
        return value  # whatever the test asks to return

    def helper(self):
        self.calls.append("helper")

    def _private(self):
        self.calls.append("_private")

    def run(self):
        self.calls.append("run")

    def terminate(self):
        self.calls.append("terminate")

    def kill(self):
        self.calls.append("kill")

    def join(self):
        self.calls.append("join")


def frame(*parts: Any) -> bytes:
    return json.dumps(list(parts)).encode()


@pytest.fixture
def stream() -> FakeStream:
    """The reply stream: the kit's FakeStream records every reply the handler sends."""
    return FakeStream()


@pytest.fixture
def pong(stream: FakeStream) -> Pong:
    return Pong(reply_stream=stream)


# -- dispatch and replies ----------------------------------------------------


def test_a_triple_reaches_its_handler_and_the_returned_pair_is_sent_as_a_triple(pong, stream):
    pong([frame("ping", [3], {})])
    assert stream.sent == [[b'["pong", [3], {}]']]


def test_the_pair_form_is_served_like_the_triple(pong, stream):
    pong([frame("ping", 7)])
    assert stream.sent_json()[0] == ["pong", [7], {}]


def test_keyword_arguments_reach_the_handler(pong, stream):
    pong([frame("say-hello", ["bob"], {"loud": True})])
    assert stream.sent_json()[0] == ["hello", ["BOB"], {}]


def test_a_renamed_handler_serves_its_given_name_and_not_its_method_name(pong, stream):
    pong([frame("hello", ["bob"], {})])
    assert pong.calls == [] and stream.sent_json()[0][0] == "error"


def test_a_stacked_decorator_serves_several_types_with_one_method(stream):
    class Both(MessageHandler):
        @message
        @message("also")
        def first(self):
            return ["ok", self.envelope]

    handler = Both(reply_stream=stream)
    handler([frame("first", [], {})])
    handler([frame("also", [], {})])
    assert [reply[0] for reply in stream.sent_json()] == ["ok", "ok"]


def test_message_called_without_a_name_serves_the_method_name(stream):
    class Empty(MessageHandler):
        @message()
        def ping(self, n):
            return ["pong", n]

    Empty(reply_stream=stream)([frame("ping", 4)])
    assert stream.sent_json()[0] == ["pong", [4], {}]


def test_the_router_envelope_is_kept_on_the_reply(pong, stream):
    pong([b"peer-7", b"", frame("ping", [1], {})])
    assert stream.sent == [[b"peer-7", b"", b'["pong", [1], {}]']]


def test_the_envelope_is_kept_on_an_error_reply_too(pong, stream):
    pong([b"peer-7", b"", b"not json"])
    assert stream.sent[0][:2] == [b"peer-7", b""]
    assert stream.sent_json()[0][0] == "error"


def test_json_load_picks_the_frame_and_frames_before_it_form_the_envelope(stream):
    handler = Pong(json_load=1, reply_stream=stream)
    handler([b"topic", frame("ping", [2], {}), b"trailing"])
    assert stream.sent == [[b"topic", b'["pong", [2], {}]']]


def test_the_envelope_is_visible_to_a_handler_while_it_runs(stream):
    class Who(MessageHandler):
        @message
        def who(self):
            return ["you", [frame.decode() for frame in self.envelope]]

    Who(reply_stream=stream)([b"id-1", b"", frame("who", [], {})])
    assert stream.sent_json()[0] == ["you", [["id-1", ""]], {}]


def test_a_single_frame_given_as_bytes_is_served(pong, stream):
    pong(frame("ping", [5], {}))
    assert stream.sent == [[b'["pong", [5], {}]']]


def test_a_returned_tuple_triple_is_sent(pong, stream):
    pong([frame("give", [["pong", [1, 2], {"k": 3}]], {})])
    assert stream.sent_json()[0] == ["pong", [1, 2], {"k": 3}]


def test_a_handler_may_refuse_a_request_with_its_own_reason(pong, stream):
    pong([frame("check", [-1], {})])
    assert stream.sent_json()[0] == ["error", ["n must be >= 0"], {}]
    assert pong.errors["bad_arguments"] == 1


def test_the_dispatch_table_is_built_once_per_class_from_marked_methods_only():
    assert set(Pong._handlers) == {
        "ping", "say-hello", "crash", "length", "quiet", "double", "reply_then_crash", "check", "give",
    }
    assert MessageHandler._handlers == {}


# -- refused names ------------------------------------------------------------

REFUSED_NAMES = [
    "_private", "__class__", "__init__", "__call__", "__dict__", "__init_subclass__", "_handlers",
    "run", "terminate", "kill", "join", "helper", "reply", "handle_error", "envelope", "errors",
    "codec", "calls", "mro", "hello", "",
]


@pytest.mark.parametrize("name", REFUSED_NAMES)
def test_names_that_are_not_declared_handlers_get_an_unknown_type_error(pong, stream, name):
    pong([frame(name, [], {})])
    assert pong.calls == []
    assert stream.sent == [[json.dumps(["error", [f"unknown message type {name!r}"], {}]).encode()]]
    assert pong.errors == {"unknown_type": 1}


def test_methods_of_a_process_base_class_are_unreachable(stream):
    class ProcessHandler(MessageHandler, multiprocessing.Process):
        def __init__(self) -> None:
            MessageHandler.__init__(self, reply_stream=stream)
            multiprocessing.Process.__init__(self)

        @message
        def ping(self, n):
            return ["pong", n]

    handler = ProcessHandler()
    for name in ["run", "start", "terminate", "kill", "join", "close", "is_alive"]:
        handler([frame(name, [], {})])
    handler([frame("ping", 1)])
    assert [reply[0] for reply in stream.sent_json()] == ["error"] * 7 + ["pong"]
    assert not handler.is_alive()


def test_a_long_unknown_type_is_quoted_only_in_part(pong, stream):
    pong([frame("x" * 100_000, [], {})])
    reason = stream.sent_json()[0][1][0]
    assert reason.startswith("unknown message type 'xxx") and len(reason) < 80


# -- malformed messages --------------------------------------------------------

MALFORMED = [
    (b"not json", "not_json"),
    (b"\xff\xfe\x80", "not_json"),
    (b'{"ping": 1}', "bad_shape"),
    (b'"ping"', "bad_shape"),
    (b'["ping"]', "bad_shape"),
    (b'["ping", [1], {}, 4]', "bad_shape"),
    (b"[42, [], {}]", "bad_shape"),
    (b'["ping", 1, {}]', "bad_shape"),
    (b'["ping", [1], [2]]', "bad_shape"),
    (b'["ping", NaN]', "not_json"),
    (b"[" * 100_000 + b"]" * 100_000, "not_json"),
    (b'["ping", ' + b"9" * 5000 + b"]", "not_json"),
    (b'["ping", [], {}]', "bad_arguments"),
    (b'["ping", [1, 2], {}]', "bad_arguments"),
    (b'["ping", [1], {"m": 2}]', "bad_arguments"),
    (b'["ping", [], {"n": 1, "self": 2}]', "bad_arguments"),
    (b"x" * (MAX_SIZE + 1), "too_large"),
]


@pytest.mark.parametrize("data, kind", MALFORMED, ids=[k + "-" + repr(d[:16]) for d, k in MALFORMED])
def test_every_malformed_message_gets_one_error_reply_and_is_counted(pong, stream, data, kind):
    pong([data])
    assert len(stream.sent) == 1
    reply_type, (reason,), kwargs = stream.sent_json()[0]
    assert (reply_type, kwargs) == ("error", {})
    assert "\n" not in reason and len(reason) <= 200
    assert pong.errors == {kind: 1} and pong.calls == []


def test_the_next_message_is_served_after_each_malformed_one(pong, stream):
    for data, _ in MALFORMED:
        pong([data])
        pong([frame("ping", [0], {})])
    replies = [reply[0] for reply in stream.sent_json()]
    assert replies == ["error", "pong"] * len(MALFORMED)


def test_a_message_without_the_json_frame_gets_an_error_reply(stream):
    handler = Pong(json_load=2, reply_stream=stream)
    handler([b"id"])
    assert stream.sent_json()[0] == ["error", ["message of 1 frame(s) has no frame 2"], {}]
    assert handler.errors == {"bad_shape": 1}


def test_an_empty_message_gets_an_error_reply_with_no_envelope(pong, stream):
    pong([])
    assert len(stream.sent) == 1 and len(stream.sent[0]) == 1


def test_an_oversized_frame_is_refused_before_decoding(stream):
    class SpyCodec:
        def __init__(self) -> None:
            self.seen: list[bytes] = []

        def decode(self, data):
            self.seen.append(data)
            return ("ping", [1], {})

        def encode(self, msg_type, args, kwargs):
            return msg_type.encode()

    codec = SpyCodec()
    handler = Pong(reply_stream=stream, codec=codec, max_size=10)
    handler([b"x" * 11])
    handler([b"y" * 10])
    assert codec.seen == [b"y" * 10]
    assert stream.sent == [[b"error"], [b"pong"]]


def test_max_size_none_disables_the_limit(stream):
    handler = Pong(reply_stream=stream, max_size=None)
    handler([frame("ping", ["z" * (MAX_SIZE + 10)], {})])
    assert stream.sent_json()[0][0] == "pong"


def test_a_codec_that_raises_anything_still_gives_a_not_json_error(stream):
    class BrokenCodec:
        def decode(self, data):
            raise KeyError(data)

        def encode(self, msg_type, args, kwargs):
            return json.dumps([msg_type, args, kwargs]).encode()

    handler = Pong(reply_stream=stream, codec=BrokenCodec())
    handler([b"anything"])
    assert stream.sent_json()[0] == ["error", ["cannot decode (KeyError)"], {}]


# -- handler failures ----------------------------------------------------------


def test_a_handler_that_raises_gets_an_error_reply_without_its_details(pong, stream):
    pong([frame("crash", [], {})])
    assert stream.sent == [[b'["error", ["handler for \'crash\' failed (RuntimeError)"], {}]']]
    assert pong.errors == {"handler_failed": 1}


def test_after_a_handler_raised_the_next_message_is_served(pong, stream):
    pong([frame("crash", [], {})])
    pong([frame("ping", [9], {})])
    assert stream.sent_json()[1] == ["pong", [9], {}]


def test_a_type_error_inside_a_handler_is_a_failure_not_bad_arguments(pong, stream):
    pong([frame("length", [5], {})])
    assert pong.calls == ["length"]
    assert pong.errors == {"handler_failed": 1}
    assert "failed (TypeError)" in stream.sent_json()[0][1][0]


def test_bad_arguments_never_run_the_handler(pong, stream):
    pong([frame("length", [], {})])
    assert pong.calls == [] and pong.errors == {"bad_arguments": 1}
    assert stream.sent_json()[0][1][0] == "bad arguments for 'length': missing a required argument: 'value'"


def test_a_handler_that_replied_and_then_raised_gets_no_second_reply(pong, stream):
    pong([frame("reply_then_crash", [], {})])
    assert [reply[0] for reply in stream.sent_json()] == ["partial"]
    assert pong.errors == {"handler_failed": 1}


def test_a_failure_is_logged_with_the_traceback_of_what_the_handler_raised(pong, caplog):
    with caplog.at_level(logging.WARNING, logger="pollframe.handler"):
        pong([frame("crash", [], {})])
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.name == "pollframe.handler"
    assert record.exc_info is not None and "secret internal detail" in str(record.exc_info[1])


def test_bad_input_is_logged_as_one_warning_line_without_traceback(pong, caplog):
    with caplog.at_level(logging.WARNING, logger="pollframe.handler"):
        pong([b'["' + b"q" * 10_000 + b'"'])
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "\n" not in record.getMessage() and len(record.getMessage()) < 250


def test_a_successful_message_logs_nothing(pong, caplog):
    with caplog.at_level(logging.DEBUG, logger="pollframe"):
        pong([frame("ping", [1], {})])
    assert caplog.records == []


# -- return values and missing replies -------------------------------------------


@pytest.mark.parametrize("value", [42, "ok", ["pong"], [1, 2], ["pong", 1, 2]])
def test_a_return_value_that_is_not_a_message_gets_an_error_reply(pong, stream, value):
    pong([frame("give", [value], {})])
    reply_type, (reason,), _ = stream.sent_json()[0]
    assert reply_type == "error" and "handler for 'give' returned" in reason
    assert pong.errors == {"handler_failed": 1}


def test_a_return_value_json_cannot_carry_gets_an_error_reply(stream):
    class Sets(MessageHandler):
        @message
        def members(self):
            return ["members", {1, 2}]

    handler = Sets(reply_stream=stream)
    handler([frame("members", [], {})])
    assert stream.sent_json()[0][0] == "error"
    assert handler.errors == {"encode_failed": 1}


def test_a_handler_that_returns_none_without_replying_sends_nothing_and_warns(pong, stream, caplog):
    with caplog.at_level(logging.WARNING, logger="pollframe.handler"):
        pong([frame("quiet", [], {})])
    assert pong.calls == ["quiet"] and stream.sent == []
    assert pong.errors == {"no_reply": 1}
    assert "sent no reply" in caplog.records[0].getMessage()


def test_a_handler_on_a_rep_stream_that_returns_none_without_replying_gets_an_error_reply(stream):
    stream.socket = SimpleNamespace(type=zmq.REP)  # a REP socket that stays unanswered is stuck for good
    handler = Pong(reply_stream=stream)
    handler([frame("quiet", [], {})])
    assert stream.sent_json() == [["error", ["handler sent no reply"], {}]]
    assert handler.errors == {"no_reply": 1}


def test_always_reply_answers_a_silent_handler_through_the_envelope_on_any_stream(stream):
    handler = Pong(reply_stream=stream, always_reply=True)
    handler([b"peer", b"", frame("quiet", [], {})])
    assert stream.sent == [[b"peer", b"", b'["error", ["handler sent no reply"], {}]']]


def test_always_reply_false_lets_a_handler_on_a_rep_stream_answer_by_other_means(stream):
    stream.socket = SimpleNamespace(type=zmq.REP)
    handler = Pong(reply_stream=stream, always_reply=False)
    handler([frame("quiet", [], {})])
    assert stream.sent == [] and handler.errors == {"no_reply": 1}


@pytest.mark.timeout(10)
def test_a_req_peer_of_a_silent_handler_on_a_real_rep_socket_gets_an_error_and_is_served_next(
    ctx, loop, make_socket
):
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    replies = Stream(rep, loop)
    replies.on_recv(Pong(reply_stream=replies))
    req = make_socket(zmq.REQ, connect=f"tcp://127.0.0.1:{port}", timeout=5)
    got = []
    for request in (frame("quiet", [], {}), frame("ping", [1], {})):
        req.send(request)
        run_until(loop, lambda: req.poll(0), what="the reply on the REQ socket")
        got.append(json.loads(req.recv()))
    assert got == [["error", ["handler sent no reply"], {}], ["pong", [1], {}]]
    replies.close(linger=0)


def test_a_handler_that_replied_and_returned_a_value_sends_only_the_reply(pong, stream):
    pong([frame("double", [], {})])
    assert [reply[0] for reply in stream.sent_json()] == ["first"]
    assert pong.errors == {"handler_failed": 1}


# -- without a reply stream ------------------------------------------------------


def test_without_a_reply_stream_bad_input_is_counted_and_nothing_raises():
    handler = Pong()
    handler([b"junk"])
    handler([frame("crash", [], {})])
    handler([frame("quiet", [], {})])
    assert handler.errors == {"not_json": 1, "handler_failed": 1}


def test_without_a_reply_stream_return_values_are_ignored():
    handler = Pong()
    handler([frame("ping", [1], {})])
    assert handler.calls == ["ping"] and handler.errors == {}


def test_reply_outside_a_message_is_a_runtime_error(pong):
    with pytest.raises(RuntimeError):
        pong.reply("pong", 1)
    with pytest.raises(RuntimeError):
        _ = pong.envelope


def test_handle_error_can_be_overridden_to_reraise(stream):
    class Strict(Pong):
        def handle_error(self, err):
            raise err

    with pytest.raises(BadArguments):
        Strict(reply_stream=stream)([frame("ping", [], {})])


def test_any_object_with_send_multipart_can_be_the_reply_stream():
    sent = []

    class Minimal:
        send_multipart = staticmethod(sent.append)

    Pong(reply_stream=Minimal())([frame("ping", 1)])
    assert sent == [[b'["pong", [1], {}]']]


# -- declaring handlers ------------------------------------------------------------


def test_a_private_name_cannot_be_declared_a_message():
    with pytest.raises(ValueError):

        @message
        def _hidden(self):
            pass

    with pytest.raises(ValueError):
        message("__class__")


def test_only_plain_functions_can_be_declared_messages():
    with pytest.raises(TypeError):
        message(staticmethod(lambda: None))


def test_a_message_method_may_not_replace_a_message_handler_method():
    with pytest.raises(TypeError, match="MessageHandler.reply"):

        class Bad(MessageHandler):
            @message
            def reply(self):
                pass


def test_a_message_method_may_not_take_the_name_of_a_handler_attribute():
    with pytest.raises(TypeError, match="errors"):

        class Bad(MessageHandler):
            @message
            def errors(self):
                pass


def test_declaring_one_type_twice_in_one_class_is_an_error():
    with pytest.raises(ValueError, match="twice"):

        class Twice(MessageHandler):
            @message("x")
            def a(self):
                pass

            @message("x")
            def b(self):
                pass


def test_a_subclass_inherits_handlers_and_may_override_them_with_the_decorator(stream):
    class Louder(Pong):
        @message
        def ping(self, n):
            return ["PONG", n]

    handler = Louder(reply_stream=stream)
    handler([frame("ping", 1)])
    handler([frame("say-hello", "al")])
    assert [reply[0] for reply in stream.sent_json()] == ["PONG", "hello"]


def test_an_undecorated_override_is_no_longer_reachable(stream):
    class Plain(Pong):
        def ping(self, n):
            return ["pong", n]

    handler = Plain(reply_stream=stream)
    handler([frame("ping", 1)])
    assert stream.sent_json()[0] == ["error", ["unknown message type 'ping'"], {}]


def test_a_mixin_contributes_its_declared_handlers(stream):
    class StopMixin:
        stopped = False

        @message
        def plzdiekthxbye(self):
            self.stopped = True
            return ["bye", None]

    class Server(StopMixin, MessageHandler):
        pass

    server = Server(reply_stream=stream)
    server([frame("plzdiekthxbye", [], {})])
    assert server.stopped and stream.sent_json()[0] == ["bye", [None], {}]


class RefusingStream:
    """A reply stream whose queue is full: every send raises."""

    def send_multipart(self, frames: list[bytes]) -> None:
        raise RuntimeError("send queue is full")


def test_a_reply_that_cannot_be_sent_is_counted_and_the_next_message_still_handled(caplog):
    pong = Pong(reply_stream=RefusingStream())
    with caplog.at_level(logging.WARNING, logger="pollframe.handler"):
        pong([b'["ping", [1], {}]'])
        pong([b'["ping", [2], {}]'])
    assert pong.calls == ["ping", "ping"]
    assert pong.errors["reply_failed"] == 2
    assert all(record.exc_info is None for record in caplog.records), "one line, no traceback"


def test_replies_that_cannot_be_sent_are_logged_throttled_to_powers_of_ten(caplog):
    pong = Pong(reply_stream=RefusingStream())
    with caplog.at_level(logging.WARNING, logger="pollframe.handler"):
        for n in range(100):
            pong([f'["ping", [{n}], {{}}]'.encode()])
    assert pong.errors["reply_failed"] == 100
    assert [r.getMessage().rsplit("(", 1)[1] for r in caplog.records] == [
        f"{n} failed so far)" for n in (1, 10, 100)]


# ------------------------------------------------- replies that come later


class Later(MessageHandler):
    """Handlers that answer after other work: async ones, and a plain one with a token."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens: list[Any] = []
        self.events: list[str] = []

    @message
    async def lookup(self, key, delay=1.0):
        self.events.append(f"start {key}")
        await self.loop.sleep(delay)
        self.events.append(f"reply {key}")
        return ["value", [key], {}]

    @message
    async def fails(self):
        await self.loop.sleep(0.1)
        raise RuntimeError("secret")

    @message
    async def refuses(self):
        raise BadArguments("no such key")

    @message
    async def silent(self):
        await self.loop.sleep(0.1)

    @message
    def count(self):
        self.tokens.append(self.reply_later())


def routed(peer: bytes, msg: list) -> list[bytes]:
    return [peer, b"", json.dumps(msg).encode()]


@pytest.fixture
def later(clocked_loop):
    stream = FakeStream()
    handler = Later(reply_stream=stream, loop=clocked_loop)
    return handler, stream


def test_an_async_handler_replies_with_its_return_value_when_it_returns(later, clocked_loop, fake_clock):
    handler, stream = later
    handler(routed(b"a", ["lookup", ["k"], {}]))
    assert stream.sent == [] and handler.events == ["start k"]
    run_for(clocked_loop, fake_clock, 1.0)
    run_until(clocked_loop, lambda: stream.sent)
    assert stream.sent == [routed(b"a", ["value", ["k"], {}])]
    assert handler.errors == {}


def test_several_async_requests_are_in_progress_at_once_and_each_reply_reaches_its_own_sender(
    later, clocked_loop, fake_clock
):
    handler, stream = later
    for peer, delay in ((b"slow", 3.0), (b"fast", 1.0), (b"mid", 2.0)):
        handler(routed(peer, ["lookup", [peer.decode()], {"delay": delay}]))
    assert handler.events == ["start slow", "start fast", "start mid"]
    run_for(clocked_loop, fake_clock, 3.0)
    run_until(clocked_loop, lambda: len(stream.sent) == 3)
    assert stream.sent == [routed(p, ["value", [p.decode()], {}]) for p in (b"fast", b"mid", b"slow")]


def test_an_exception_in_an_async_handler_becomes_the_error_reply_to_its_sender(
    later, clocked_loop, fake_clock, caplog
):
    handler, stream = later
    handler(routed(b"a", ["fails", [], {}]))
    handler(routed(b"b", ["refuses", [], {}]))
    run_for(clocked_loop, fake_clock, 0.1)
    run_until(clocked_loop, lambda: len(stream.sent) == 2)
    assert stream.sent == [routed(b"b", ["error", ["no such key"], {}]),
                           routed(b"a", ["error", ["handler for 'fails' failed (RuntimeError)"], {}])]
    assert handler.errors == {"handler_failed": 1, "bad_arguments": 1}
    assert "secret" in caplog.text  # the traceback is logged, not sent


def test_an_async_handler_that_returns_none_counts_no_reply_and_under_always_reply_answers_with_an_error(
    clocked_loop, fake_clock
):
    stream = FakeStream()
    handler = Later(reply_stream=stream, loop=clocked_loop, always_reply=True)
    handler(routed(b"a", ["silent", [], {}]))
    run_for(clocked_loop, fake_clock, 0.1)
    run_until(clocked_loop, lambda: stream.sent)
    assert stream.sent == [routed(b"a", ["error", ["handler sent no reply"], {}])]
    assert handler.errors == {"no_reply": 1}


def test_bad_arguments_to_an_async_handler_are_refused_before_it_runs(later):
    handler, stream = later
    handler(routed(b"a", ["lookup", [], {"nope": 1}]))
    assert handler.events == [] and handler.errors == {"bad_arguments": 1}
    assert stream.sent_json()[0][0] == "error"


def test_an_async_handler_still_waiting_when_the_loop_closes_is_cancelled_without_reply_or_warning(caplog):
    from pollframe.loop import PollLoop

    loop = PollLoop()
    stream = FakeStream()
    handler = Later(reply_stream=stream, loop=loop, always_reply=True)
    handler(routed(b"a", ["lookup", ["k"], {"delay": 3600}]))
    loop.close()
    gc.collect()  # the token goes with the cancelled task: it must not count as forgotten
    assert stream.sent == [] and handler.errors == {} and "token" not in caplog.text


def test_on_a_rep_socket_async_requests_are_handled_one_at_a_time(loop, ctx):
    stream = Stream(ctx.socket(zmq.REP), loop)
    endpoint = "inproc://async-rep"
    stream.socket.bind(endpoint)
    handler = Later(reply_stream=stream)
    stream.on_recv(handler)
    clients = []
    try:
        for n in range(2):
            client = ctx.socket(zmq.REQ)
            client.connect(endpoint)
            client.send_json(["lookup", [n], {"delay": 0.01}])
            clients.append(client)
        run_until(loop, lambda: len(handler.events) == 4)
        assert handler.events in (["start 0", "reply 0", "start 1", "reply 1"],
                                  ["start 1", "reply 1", "start 0", "reply 0"])
        replies = sorted(c.recv_json() for c in clients if c.poll(1000))
        assert replies == [["value", [0], {}], ["value", [1], {}]]
    finally:
        for client in clients:
            client.close(linger=0)
        stream.close(linger=0)


def test_a_plain_handler_replies_later_through_its_token_with_no_warning_and_nothing_counted(
    later, caplog
):
    handler, stream = later
    handler(routed(b"a", ["count", [], {}]))
    handler(routed(b"b", ["count", [], {}]))
    assert stream.sent == [] and handler.errors == {} and caplog.text == ""
    second, first = handler.tokens[1], handler.tokens[0]
    second.reply("counted", 2)
    first.error("not today")
    assert stream.sent == [routed(b"b", ["counted", [2], {}]), routed(b"a", ["error", ["not today"], {}])]
    with pytest.raises(RuntimeError, match="already sent"):
        first.reply("again")
    assert handler.errors == {}


def test_a_reply_token_that_is_dropped_unused_is_logged_counted_and_under_always_reply_answered(
    clocked_loop, caplog
):
    stream = FakeStream()
    handler = Later(reply_stream=stream, loop=clocked_loop, always_reply=True)
    handler(routed(b"a", ["count", [], {}]))
    handler.tokens.clear()  # the only reference: collected at once
    assert handler.errors == {"reply_forgotten": 1}
    assert "dropped its reply token" in caplog.text
    run_until(clocked_loop, lambda: stream.sent)  # sent from the loop, not from __del__
    assert stream.sent == [routed(b"a", ["error", ["handler dropped its reply token without replying"], {}])]


def test_reply_later_outside_a_message_and_reply_after_taking_a_token_are_runtime_errors(later):
    handler, _ = later
    with pytest.raises(RuntimeError):
        handler.reply_later()

    class Both(MessageHandler):
        @message
        def twice(self):
            self.reply_later()
            self.reply("now")

    stream = FakeStream()
    Both(reply_stream=stream)(routed(b"a", ["twice", [], {}]))
    assert stream.sent_json()[0][0] == "error"


def test_send_puts_a_message_that_is_not_a_reply_on_the_handlers_stream():
    stream = FakeStream()
    handler = MessageHandler(reply_stream=stream)
    handler.send("hello", 1, loud=True)
    assert stream.sent == [[b'["hello", [1], {"loud": true}]']]
    with pytest.raises(RuntimeError):
        MessageHandler().send("hello")


# ------------------------------------------------------ limits against one peer


@pytest.mark.parametrize("junk, kind, answered", [
    ([b"\xff junk"], "not_json", 1000),
    ([b"x"] * 100 + [b'["ping", [1], {}]'], "bad_envelope", 0),  # refused before decoding, never answered
])
def test_peer_fault_warnings_are_throttled_to_powers_of_ten_while_the_counts_stay_exact(
    pong, stream, caplog, junk, kind, answered
):
    with caplog.at_level(logging.WARNING, logger="pollframe.handler"):
        for _ in range(1000):
            pong(junk)
    assert pong.errors == {kind: 1000}
    assert len(stream.sent) == answered
    lines = [r.getMessage() for r in caplog.records if r.name == "pollframe.handler"]
    assert len(lines) == 4 and [line.rsplit("(", 1)[1] for line in lines] == [
        f"{n} refused so far)" for n in (1, 10, 100, 1000)]


def test_a_message_whose_envelope_is_over_the_bounds_is_counted_and_never_answered(pong, stream):
    payload = json.dumps(["ping", 1]).encode()
    pong([b"x"] * 100 + [payload])  # too many frames
    pong([b"peer", b"y" * 10_000, payload])  # too many bytes
    assert stream.sent == [] and pong.errors == {"bad_envelope": 2} and pong.calls == []
    pong([b"peer", b"", payload])
    assert stream.sent == [[b"peer", b"", b'["pong", [1], {}]']]


# ------------------------------------------------- retried requests: the reply cache


class Counted(Later):
    """Later's handlers, and a plain one that counts its executions."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.executed: list[Any] = []

    @message
    def add(self, n):
        self.executed.append(n)
        return ["sum", [len(self.executed)], {}]  # not idempotent: a second run answers differently

    @message
    def broken(self):
        self.executed.append("broken")
        raise RuntimeError("secret")


def router_stream() -> FakeStream:
    stream = FakeStream()
    stream.socket = SimpleNamespace(type=zmq.ROUTER)  # the handler strips the routing id frame
    return stream


def request(peer: bytes, rid: bytes, msg: list) -> list[bytes]:
    """A Requester's request as a ROUTER server reads it: ``[routing id, id, b"", json]``."""
    return [peer, rid, b"", json.dumps(msg).encode()]


@pytest.fixture
def cached(clocked_loop):
    from pollframe.replycache import ReplyCache

    stream = router_stream()
    handler = Counted(reply_stream=stream, loop=clocked_loop, replies=ReplyCache(ttl=10.0))
    return handler, stream


def test_a_retried_request_is_not_executed_again_and_gets_the_same_reply_bytes_on_its_new_connection(cached):
    handler, stream = cached
    handler(request(b"conn-1", b"id-7", ["add", [5], {}]))
    handler(request(b"conn-2", b"id-7", ["add", [5], {}]))  # the retry, after a reconnect
    assert handler.executed == [5]
    first, again = stream.sent
    assert first == [b"conn-1", b"id-7", b"", b'["sum", [1], {}]']
    assert again == [b"conn-2", b"id-7", b"", b'["sum", [1], {}]']
    assert handler.replies.resent == 1 and handler.errors == {}


def test_requests_with_other_ids_or_another_body_under_the_same_id_are_each_executed(cached):
    handler, stream = cached
    handler(request(b"c", b"id-1", ["add", [1], {}]))
    handler(request(b"c", b"id-2", ["add", [1], {}]))
    handler(request(b"c", b"id-1", ["add", [2], {}]))  # an id reused for another request: not a retry
    assert handler.executed == [1, 1, 2]
    assert stream.sent_json() == [["sum", [n], {}] for n in (1, 2, 3)]


def test_a_request_without_an_id_of_its_own_is_executed_each_time(cached):
    handler, stream = cached
    for _ in range(2):
        handler([b"req-client", b"", b'["add", [1], {}]'])  # a REQ through the ROUTER: only the delimiter
    assert handler.executed == [1, 1] and len(handler.replies) == 0


def test_a_retry_of_a_request_whose_handler_failed_gets_the_same_error_reply_without_running_it(cached):
    handler, stream = cached
    for conn in (b"c1", b"c2"):
        handler(request(conn, b"id-1", ["broken", [], {}]))
    assert handler.executed == ["broken"] and handler.errors == {"handler_failed": 1}
    assert [frames[0] for frames in stream.sent] == [b"c1", b"c2"]
    assert stream.sent[0][1:] == stream.sent[1][1:] == [
        b"id-1", b"", b'["error", ["handler for \'broken\' failed (RuntimeError)"], {}]']


def test_a_retry_of_a_request_refused_as_bad_input_is_answered_from_the_cache_without_decoding(cached):
    handler, stream = cached
    handler([b"c", b"id-1", b"", b"not json"])
    handler([b"c", b"id-1", b"", b"not json"])
    assert handler.errors == {"not_json": 1}
    assert stream.sent[0] == stream.sent[1]


def test_a_retry_while_a_reply_token_is_out_is_dropped_and_one_after_the_reply_gets_it(cached):
    handler, stream = cached
    handler(request(b"c1", b"id-1", ["count", [], {}]))
    handler(request(b"c2", b"id-1", ["count", [], {}]))  # in progress: dropped, the reply will come
    assert len(handler.tokens) == 1 and stream.sent == [] and handler.replies.dropped == 1
    handler.tokens[0].reply("counted", 1)
    handler(request(b"c3", b"id-1", ["count", [], {}]))
    assert len(handler.tokens) == 1
    assert stream.sent == [[b"c1", b"id-1", b"", b'["counted", [1], {}]'],
                           [b"c3", b"id-1", b"", b'["counted", [1], {}]']]


def test_an_async_handler_is_in_progress_until_it_returns_and_its_reply_answers_later_retries(
    cached, clocked_loop, fake_clock
):
    handler, stream = cached
    handler(request(b"c1", b"id-1", ["lookup", ["k"], {}]))
    run_for(clocked_loop, fake_clock, 0.5)
    handler(request(b"c2", b"id-1", ["lookup", ["k"], {}]))  # while it awaits: dropped
    run_for(clocked_loop, fake_clock, 0.5)
    run_until(clocked_loop, lambda: stream.sent)
    handler(request(b"c3", b"id-1", ["lookup", ["k"], {}]))
    assert handler.events == ["start k", "reply k"]  # executed once
    assert stream.sent == [[b"c1", b"id-1", b"", b'["value", ["k"], {}]'],
                           [b"c3", b"id-1", b"", b'["value", ["k"], {}]']]


def test_a_retry_after_its_entry_expired_is_executed_again(cached, clocked_loop, fake_clock):
    handler, _ = cached
    handler(request(b"c", b"id-1", ["add", [1], {}]))
    run_for(clocked_loop, fake_clock, 9.9)
    handler(request(b"c", b"id-1", ["add", [1], {}]))
    assert handler.executed == [1]
    run_for(clocked_loop, fake_clock, 0.1)  # the ttl runs from the first copy
    handler(request(b"c", b"id-1", ["add", [1], {}]))
    assert handler.executed == [1, 1]


def test_a_stored_reply_that_cannot_be_sent_again_is_counted_as_reply_failed(clocked_loop):
    from pollframe.replycache import ReplyCache

    stream = router_stream()
    handler = Counted(reply_stream=stream, loop=clocked_loop, replies=ReplyCache())
    handler(request(b"c", b"id-1", ["add", [1], {}]))
    stream.close()
    handler(request(b"c", b"id-1", ["add", [1], {}]))
    assert handler.executed == [1] and handler.errors == {"reply_failed": 1}


def test_a_reply_cache_on_a_rep_stream_is_refused_because_rep_strips_the_request_ids():
    from pollframe.replycache import ReplyCache

    stream = FakeStream()
    stream.socket = SimpleNamespace(type=zmq.REP)
    with pytest.raises(ValueError, match="ROUTER"):
        MessageHandler(reply_stream=stream, replies=ReplyCache())



def test_the_error_replies_the_handler_sends_on_its_own_are_stored_for_the_retries_too(
    clocked_loop, fake_clock
):
    from pollframe.replycache import ReplyCache

    stream = router_stream()
    handler = Counted(reply_stream=stream, loop=clocked_loop, replies=ReplyCache(), always_reply=True)
    handler(request(b"c1", b"id-1", ["silent", [], {}]))  # an async handler that returns None
    handler(request(b"c1", b"id-2", ["count", [], {}]))
    handler.tokens.clear()  # its token dropped unused: answered with an error, from the loop
    run_for(clocked_loop, fake_clock, 0.1)
    run_until(clocked_loop, lambda: len(stream.sent) == 2)
    handler(request(b"c2", b"id-1", ["silent", [], {}]))
    handler(request(b"c2", b"id-2", ["count", [], {}]))
    assert handler.tokens == [] and handler.errors == {"no_reply": 1, "reply_forgotten": 1}
    first = {frames[1]: frames[1:] for frames in stream.sent[:2]}
    assert {frames[1]: frames[1:] for frames in stream.sent[2:]} == first
    assert first[b"id-1"][-1] == b'["error", ["handler sent no reply"], {}]'
    assert first[b"id-2"][-1] == b'["error", ["handler dropped its reply token without replying"], {}]'
