"""The testing kit: fakes, loop drivers, test sockets, the process harness and conversations."""
from __future__ import annotations

import logging
import os
import signal
import textwrap
import threading
import time
from pathlib import Path
from unittest.mock import ANY

import pytest
import zmq
from kit_peers import BrokenPeer, PingPongPeer, SilentPeer, StubbornPeer

from pollframe.handler import MessageHandler, message
from pollframe.process import ProcessNotReady
from pollframe.testing import (
    ContextHang,
    Conversation,
    FakeClock,
    FakeStream,
    SocketTimeout,
    TimedSocket,
    UncleanExit,
    WaitTimeout,
    run_for,
    run_until,
    running,
    terminate_context,
)

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(30)

TESTS = Path(__file__).resolve().parent


def gone(pid: int) -> bool:
    """True when no process (not even a zombie or an orphan) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# --------------------------------------------------------------------------- FakeStream


class Greeter(MessageHandler):
    @message
    def hello(self, name):
        return ["hello", [f"hi {name}"], {}]

    @message
    def shout(self, text):
        self.reply("shout", text.upper())


def test_a_fake_stream_records_a_handlers_reply_without_any_socket():
    stream = FakeStream()
    handler = Greeter(reply_stream=stream)
    handler([b'["hello", ["ada"], {}]'])
    assert stream.sent_json() == [["hello", ["hi ada"], {}]]


def test_a_fake_stream_delivers_to_its_callback_and_the_reply_keeps_the_router_envelope():
    stream = FakeStream()
    stream.on_recv(Greeter(reply_stream=stream))
    stream.deliver([b"peer-1", b"", b'["shout", ["hey"], {}]'])
    assert stream.sent == [[b"peer-1", b"", b'["shout", ["HEY"], {}]']]


def test_a_fake_stream_records_every_send_variant_as_bytes_frames():
    stream = FakeStream()
    stream.send(b"raw")
    stream.send_string("text")
    stream.send_json({"a": 1})
    stream.send_multipart([b"x", memoryview(b"y")])
    assert stream.sent == [[b"raw"], [b"text"], [b'{"a":1}'], [b"x", b"y"]]
    with pytest.raises(TypeError, match="str"):
        stream.send_multipart(["not bytes"])


def test_a_handler_error_reply_is_recorded_too():
    stream = FakeStream()
    Greeter(reply_stream=stream)([b"not json"])
    [(kind, [reason], kwargs)] = stream.sent_json()
    assert kind == "error" and "not JSON" in reason


# --------------------------------------------------------------------------- FakeClock


@pytest.mark.timeout(5)
def test_the_fake_clock_fires_hour_long_timers_in_deadline_order_without_sleeping(clocked_loop, fake_clock):
    fired = []
    start = fake_clock()
    clocked_loop.call_later(3 * 3600, lambda: fired.append(("third", fake_clock() - start)))
    clocked_loop.call_later(3600, lambda: fired.append(("first", fake_clock() - start)))
    clocked_loop.call_at(start + 2 * 3600, lambda: fired.append(("second", fake_clock() - start)))
    run_for(clocked_loop, fake_clock, 3 * 3600)
    assert fired == [("first", 3600), ("second", 7200), ("third", 10800)]


def test_advancing_the_clock_and_one_pass_fire_a_timer_exactly_at_its_deadline(clocked_loop, fake_clock):
    fired = []
    clocked_loop.call_later(5, fired.append, "due")
    fake_clock.advance(4.999)
    clocked_loop.run_once(0)
    assert fired == []
    fake_clock.advance(0.001)
    clocked_loop.run_once(0)
    assert fired == ["due"]


def test_run_for_fires_a_periodic_timer_once_per_period_and_ends_on_time(clocked_loop, fake_clock):
    start = fake_clock()
    ticks = []
    clocked_loop.call_every(10, lambda: ticks.append(fake_clock() - start))
    run_for(clocked_loop, fake_clock, 35)
    assert ticks == [10, 20, 30]
    assert fake_clock() == start + 35


def test_ten_small_advances_make_exactly_one_second():
    clock = FakeClock(start=0.0)
    for _ in range(10):
        clock.advance(0.1)
    assert clock() == 1.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_run_for_refuses_a_loop_on_another_clock(poll_loop, fake_clock):
    with pytest.raises(ValueError, match="clock"):
        run_for(poll_loop, fake_clock, 1)


# --------------------------------------------------------------------------- run_until


def test_run_until_returns_once_the_condition_holds(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    push.send(b"x")
    run_until(loop, lambda: got)
    assert got == [[b"x"]]


def test_run_until_fails_naming_the_condition_and_the_callback_errors_meanwhile(loop, caplog):
    got = []
    loop.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.CRITICAL, logger="pollframe"):
        with pytest.raises(WaitTimeout) as failure:
            run_until(loop, lambda: len(got) == 1, timeout=0.2)
    assert "`len(got) == 1` not reached within 0.2 s" in str(failure.value)
    assert "1 callback error(s)" in str(failure.value)


# --------------------------------------------------------------------------- test sockets


def test_a_test_socket_that_receives_nothing_fails_naming_itself_and_what_was_expected(make_socket):
    pull = make_socket(zmq.PULL, bind="tcp://127.0.0.1:*")
    with pytest.raises(SocketTimeout) as failure:
        pull.recv(timeout=0.1, expect="the first tick")
    message_text = str(failure.value)
    assert message_text.startswith("PULL socket bound to tcp://127.0.0.1:")
    assert "received nothing within 0.1 s; expected the first tick" in message_text


def test_a_req_socket_that_may_not_send_again_fails_instead_of_blocking(make_socket, tcp_endpoint):
    make_socket(zmq.ROUTER, bind=tcp_endpoint)
    req = make_socket(zmq.REQ, connect=tcp_endpoint)
    req.send(b"first")
    with pytest.raises(SocketTimeout, match=r"REQ socket connected to tcp://.*could not send.*0\.1 s.*REQ"):
        req.send(b"second", timeout=0.1)


def test_a_push_socket_without_a_peer_fails_to_send_within_its_timeout(make_socket):
    push = make_socket(zmq.PUSH, timeout=0.1)
    with pytest.raises(SocketTimeout, match="neither bound nor connected: could not send"):
        push.send(b"lost")


def test_test_sockets_exchange_messages_and_set_options_on_the_real_socket(make_socket, ipc_endpoint):
    pull = make_socket(zmq.PULL, bind=ipc_endpoint)
    push = make_socket(zmq.PUSH, connect=ipc_endpoint)
    push.sndhwm = 7
    assert push.socket.getsockopt(zmq.SNDHWM) == 7
    push.send_json(["tick", [1], {}])
    push.send_multipart([b"a", b"b"])
    assert pull.recv_json() == ["tick", [1], {}]
    assert pull.recv_multipart() == [b"a", b"b"]
    pull.expect_nothing(within=0.05)


def test_a_test_socket_takes_its_closing_linger_in_seconds_like_a_stream():
    closed_with = []

    class RecordingSocket:
        def close(self, linger=None):
            closed_with.append(linger)

    TimedSocket(RecordingSocket()).close(linger=0.5)
    assert closed_with == [500]  # what libzmq gets, in milliseconds


def test_expect_nothing_fails_when_a_message_arrives(make_socket):
    pull = make_socket(zmq.PULL, bind="inproc://quiet")
    make_socket(zmq.PUSH, connect="inproc://quiet").send(b"noise")
    with pytest.raises(AssertionError, match="expected no message"):
        pull.expect_nothing(within=0.5)


def test_the_ipc_endpoint_is_a_short_path_of_this_tests_own(ipc_endpoint, tmp_path):
    path = ipc_endpoint[len("ipc://"):]
    assert len(path.encode()) <= 100
    assert os.path.isdir(os.path.dirname(path)) and not os.path.exists(path)


# --------------------------------------------------------------------------- contexts


@pytest.mark.timeout(10)
def test_terminating_a_context_closes_a_socket_with_unsent_messages_at_once():
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.linger = -1  # would keep zmq_ctx_term waiting forever for a peer that never comes
    push.connect("tcp://127.0.0.1:9")
    push.send(b"undeliverable", zmq.NOBLOCK)
    terminate_context(ctx, timeout=5)
    assert push.closed and ctx.closed


@pytest.mark.timeout(10)
def test_a_context_that_cannot_terminate_fails_loudly_instead_of_hanging():
    ctx = zmq.Context()
    hidden = zmq.Context.shadow(ctx.underlying).socket(zmq.PUSH)  # a socket ctx does not know of
    try:
        with pytest.raises(ContextHang, match="did not terminate within 0.2 s"):
            terminate_context(ctx, timeout=0.2)
    finally:
        hidden.close(linger=0)  # lets the blocked zmq_ctx_term finish
    for thread in threading.enumerate():
        if thread.name == "pollframe-context-term":
            thread.join(5)


# --------------------------------------------------------------------------- the process harness


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_the_harness_hands_back_the_endpoint_and_stops_the_process_cleanly(method, make_socket):
    with running(PingPongPeer(mp_context=method)) as peer:
        assert peer.endpoint.startswith("tcp://127.0.0.1:")
        chat = Conversation(make_socket(zmq.REQ, connect=peer.endpoint))
        chat.ask(["ping", [1], {}], ["pong", [1], {}])
    assert peer.steps == ["stop"] and peer.exitcode == 0
    assert gone(peer.pid)


def test_a_silent_peer_fails_the_test_within_its_timeout_and_leaves_no_process(make_socket):
    with pytest.raises(SocketTimeout) as failure:
        with running(SilentPeer()) as peer:
            chat = Conversation(make_socket(zmq.REQ, connect=peer.endpoint, timeout=0.3))
            chat.ask(["ping", [1], {}], ["pong", [1], {}])
    assert str(failure.value).startswith(f"REQ socket connected to {peer.endpoint}: received nothing "
                                         "within 0.3 s; expected ['pong', [1], {}]")
    assert peer.steps == ["stop"] and peer.exitcode == 0
    assert gone(peer.pid)


def test_the_harness_stops_the_process_when_the_body_raises():
    with pytest.raises(ZeroDivisionError):
        with running(PingPongPeer()) as peer:
            raise ZeroDivisionError("the test's own failure")
    assert peer.steps == ["stop"] and peer.exitcode == 0 and gone(peer.pid)


def test_the_harness_sends_the_stop_message_first_when_given_one(make_socket):
    said_bye = []

    def bye():
        said_bye.append(chat.ask(["bye", [], {}], ["bye", [], {}]))

    with running(PingPongPeer(), stop=bye) as peer:
        chat = Conversation(make_socket(zmq.REQ, connect=peer.endpoint))
    assert said_bye and peer.steps == ["stop"] and peer.exitcode == 0


def test_the_harness_kills_a_child_that_ignores_its_stop_request_and_sigterm():
    with running(StubbornPeer(), stop_timeout=0.2, term_timeout=0.2, check_exit=False) as peer:
        pass
    assert peer.steps == ["stop", "SIGTERM", "SIGKILL"]
    assert peer.exitcode == -signal.SIGKILL and gone(peer.pid)


def test_a_process_that_had_to_be_killed_fails_an_otherwise_passing_test():
    with pytest.raises(UncleanExit, match=r"StubbornPeer \(pid \d+\) did not exit cleanly: "
                                          "the harness sent stop then SIGTERM then SIGKILL"):
        with running(StubbornPeer(), stop_timeout=0.2, term_timeout=0.2) as peer:
            pass
    assert gone(peer.pid)


def test_a_stop_message_that_gets_no_answer_is_reported_and_the_process_still_ends(make_socket):
    def bye():
        chat.ask(["bye", [], {}], ["bye", [], {}])

    with pytest.raises(UncleanExit, match="the stop request failed: REQ socket"):
        with running(SilentPeer(), stop=bye, stop_timeout=0.2, term_timeout=5) as peer:
            chat = Conversation(make_socket(zmq.REQ, connect=peer.endpoint, timeout=0.2))
    assert peer.steps == ["stop", "SIGTERM"] and peer.exitcode == 0 and gone(peer.pid)


class Interrupted(BaseException):
    """Stands for Ctrl-C or pytest-timeout's signal arriving in the middle of a shutdown."""


def test_a_shutdown_interrupted_midway_still_kills_the_process():
    def interrupted_stop():
        raise Interrupted()

    with pytest.raises(Interrupted):
        with running(PingPongPeer(), stop=interrupted_stop) as peer:
            pass
    assert peer.exitcode == -signal.SIGKILL and gone(peer.pid)


def wait_until_stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until the kernel shows ``pid`` as stopped by a signal (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
        assert time.monotonic() < deadline, f"pid {pid} was not stopped within {timeout} s"
        time.sleep(0.001)  # sleep-ok: polling kernel state, which has no event to wait on


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process state from /proc")
def test_the_harness_continues_a_frozen_child_so_that_it_stops_cleanly():
    with running(PingPongPeer()) as peer:
        os.kill(peer.pid, signal.SIGSTOP)
        wait_until_stopped(peer.pid)
    assert peer.steps == ["stop"] and peer.exitcode == 0


def test_a_process_whose_setup_fails_is_reported_and_reaped():
    peer = BrokenPeer()
    with pytest.raises(ProcessNotReady, match="no configuration found"):
        with running(peer):
            pass  # pragma: no cover - never reached
    assert not peer.is_alive() and gone(peer.pid)


# --------------------------------------------------------------------------- conversations


@pytest.fixture
def pair(make_socket):
    """Two connected PAIR test sockets: the test plays both sides of a conversation."""
    here = make_socket(zmq.PAIR, bind="inproc://conversation", timeout=0.5)
    there = make_socket(zmq.PAIR, connect="inproc://conversation", timeout=0.5)
    return here, there


def test_expect_matches_any_and_reads_tuples_as_arrays(pair):
    here, there = pair
    chat = Conversation(here)
    there.send_json(["pong", [7, "x"], {"at": 12.5}])
    got = chat.expect(("pong", [7, ANY], {"at": ANY}))
    assert got == ["pong", [7, "x"], {"at": 12.5}]


def test_the_json_frame_and_the_envelope_are_where_the_conversation_says(pair):
    here, there = pair
    chat = Conversation(here, envelope=[b""], json_frame=1)
    chat.send(["ping", [1], {}])
    assert there.recv_multipart() == [b"", b'["ping", [1], {}]']
    there.send_multipart([b"", b'["pong", [1], {}]', b"trailer"])
    chat.expect(["pong", [1], {}])


def test_a_wrong_reply_fails_showing_expected_got_and_the_conversation_so_far(pair):
    here, there = pair
    chat = Conversation(here)
    chat.send(["ping", [1], {}])
    there.send_json(["error", ["unknown message type 'ping'"], {}])
    with pytest.raises(AssertionError) as failure:
        chat.expect(["pong", [1], {}])
    assert str(failure.value) == (
        "PAIR socket bound to inproc://conversation:\n"
        "  expected ['pong', [1], {}]\n"
        "  got      ['error', [\"unknown message type 'ping'\"], {}]\n"
        "conversation so far:\n"
        "  -> ['ping', [1], {}]\n"
        "  <- ['error', [\"unknown message type 'ping'\"], {}]"
    )


def test_a_reply_that_is_not_json_fails_naming_the_frame(pair):
    here, there = pair
    there.send_multipart([b"id", b"\xff"])
    with pytest.raises(AssertionError) as failure:
        Conversation(here).expect(["pong", [1], {}])
    assert "got      frames [b'id', b'\\xff'], whose frame -1 is not JSON" in str(failure.value)


# --------------------------------------------------------------------------- as a user's test run sees it

INNER_CONFTEST = textwrap.dedent('''\
    import pollframe.testing.plugin

    def pytest_configure(config):
        if not config.pluginmanager.has_plugin("pollframe"):
            config.pluginmanager.register(pollframe.testing.plugin, "pollframe")
''')

USER_TESTS = '''\
import zmq
from kit_peers import PingPongPeer, SilentPeer
from pollframe.testing import Conversation, running


def test_silent(make_socket, tmp_path_factory):
    with running(SilentPeer()) as peer:
        (tmp_path_factory.getbasetemp() / "silent.pid").write_text(str(peer.pid))
        chat = Conversation(make_socket(zmq.REQ, connect=peer.endpoint, timeout=0.3))
        chat.ask(["ping", [1], {}], ["pong", [1], {}])


def test_wrong_reply(make_socket, tmp_path_factory):
    with running(PingPongPeer()) as peer:
        (tmp_path_factory.getbasetemp() / "pingpong.pid").write_text(str(peer.pid))
        chat = Conversation(make_socket(zmq.REQ, connect=peer.endpoint, timeout=5))
        chat.ask(["ping", [1], {}], ["pong", [2], {}])
'''


def literal(text: str) -> str:
    """``text`` as an fnmatch pattern that matches only itself."""
    return text.replace("[", "[[]").replace("*", "[*]").replace("?", "[?]")


def line_of(source: str, needle: str) -> int:
    """The 1-based line of the first line of ``source`` that holds ``needle``."""
    return next(number for number, line in enumerate(source.splitlines(), 1) if needle in line)


def run_inner_tests(pytester, monkeypatch, **files: str):
    """Run the test files ``files`` (name=source) in a pytest subprocess: (result, its basetemp)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(TESTS.parent),
                                                      os.environ.get("PYTHONPATH", "")]))
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(**files)
    basetemp = pytester.path / "basetemp"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                           f"--basetemp={basetemp}", "-o", "timeout=20")
    return result, basetemp


@pytest.mark.timeout(60)
def test_failing_process_tests_report_at_the_tests_own_line_and_leave_no_process(pytester, monkeypatch):
    result, basetemp = run_inner_tests(pytester, monkeypatch, test_user=USER_TESTS)
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    silent_line = line_of(USER_TESTS, '["pong", [1], {}])')
    wrong_line = line_of(USER_TESTS, '["pong", [2], {}])')
    result.stdout.fnmatch_lines([
        ">*" + literal('chat.ask(["ping", [1], {}], ["pong", [1], {}])'),
        "E*SocketTimeout: REQ socket connected to tcp://127.0.0.1:*: "
        + literal("received nothing within 0.3 s; expected ['pong', [1], {}]"),
        f"test_user.py:{silent_line}: SocketTimeout",
        ">*" + literal('chat.ask(["ping", [1], {}], ["pong", [2], {}])'),
        "E*AssertionError: REQ socket connected to tcp://127.0.0.1:*:",
        "E*" + literal("expected ['pong', [2], {}]"),
        "E*" + literal("got      ['pong', [1], {}]"),
        f"test_user.py:{wrong_line}: AssertionError",
    ])
    assert "pollframe/testing" not in output, "the kit's own frames are hidden from the report"
    for name in ("silent.pid", "pingpong.pid"):
        assert gone(int((basetemp / name).read_text()))



FIXTURE_TESTS = '''\
from kit_peers import PingPongPeer, StubbornPeer

FAST = dict(stop_timeout=0.2, term_timeout=0.2)


def test_passes_but_its_process_must_be_killed(start_process):
    start_process(StubbornPeer(), **FAST)


def test_fails_and_its_process_must_be_killed(start_process):
    start_process(StubbornPeer(), **FAST)
    assert False, "the test's own failure"


def test_passes_and_spares_its_process_the_check(start_process):
    start_process(StubbornPeer(), check_exit=False, **FAST)


def test_passes_with_two_processes_that_stop_cleanly(start_process, tmp_path_factory):
    pids = [start_process(PingPongPeer()).pid for _ in range(2)]
    (tmp_path_factory.getbasetemp() / "clean.pids").write_text(" ".join(map(str, pids)))


class Interrupted(BaseException):
    """Stands for Ctrl-C arriving while the fixture stops a process."""


def interrupted():
    raise Interrupted()


def test_an_interrupted_shutdown_spares_no_other_process(start_process):
    start_process(PingPongPeer())
    start_process(PingPongPeer(), stop=interrupted)  # stopped first, and its stop is interrupted
'''


@pytest.mark.timeout(60)
def test_the_start_process_fixture_stops_every_process_and_checks_exits_only_of_passing_tests(
    pytester, monkeypatch
):
    result, basetemp = run_inner_tests(pytester, monkeypatch, test_fixture_user=FIXTURE_TESTS)
    result.assert_outcomes(passed=4, failed=1, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_passes_but_its_process_must_be_killed*",
        "E*UncleanExit: StubbornPeer (pid *) did not exit cleanly: the harness sent stop then SIGTERM "
        "then SIGKILL, exit code -9",
    ])
    assert "ERROR at teardown of test_fails_and_its_process_must_be_killed" not in result.stdout.str()
    assert all(gone(int(pid)) for pid in (basetemp / "clean.pids").read_text().split())
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_an_interrupted_shutdown_spares_no_other_process*",
        "E*Interrupted*",
    ])
    # Each process was stopped by its own test's teardown: the session's safety net found none left.
    assert "killed left-over process" not in result.stdout.str()


DROPPING_TEST = '''\
from kit_peers import PingPongPeer
from pollframe.testing.harness import start_process


def test_drops_its_process(tmp_path_factory):
    handle = start_process(PingPongPeer())  # never shut down
    (tmp_path_factory.getbasetemp() / "dropped.pid").write_text(str(handle.pid))
'''


@pytest.mark.timeout(60)
def test_a_process_a_test_dropped_without_shutdown_is_killed_at_the_end_of_the_session(pytester, monkeypatch):
    result, basetemp = run_inner_tests(pytester, monkeypatch, test_dropping=DROPPING_TEST)
    result.assert_outcomes(passed=1)
    pid = int((basetemp / "dropped.pid").read_text())
    result.stdout.fnmatch_lines([f"*killed left-over process(es): PingPongPeer (pid {pid})"])
    assert gone(pid)


def test_a_free_tcp_endpoint_is_bindable_and_below_the_ports_the_kernel_gives_connectors():
    from pollframe.testing.sockets import _ephemeral_low, free_tcp_endpoint

    endpoint = free_tcp_endpoint()
    port = int(endpoint.rsplit(":", 1)[1])
    # A connector's own port comes from the ephemeral range: it can never be this one, so a client
    # that connects before the server binds cannot connect to itself and take the port.
    assert 1024 <= port < _ephemeral_low()
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.ROUTER)
        sock.bind(endpoint)
        sock.close(linger=0)
    finally:
        ctx.term()
