"""The examples: their logic and message tiers without sockets, then each run as a user would."""

from __future__ import annotations

import ast
import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq
from helper_procs import EXAMPLE_APP

from logic import PingHandler, Pinger
from pingproc import PingProc, PingSide
from pongproc import PongProc, RepStreamHandler

from pollframe.errors import RemoteError, RequestTimeout
from pollframe.testing import FakeStream, TimedSocket

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SEED_OUTPUT = [
    line for i in range(5) for line in (f"Pong got request: ping {i}", f"Ping got reply: pong {i}")
]
RUN_TIMEOUT = 30


# ------------------------------------------------------------ logic tier: plain values, no sockets


def test_the_logic_tier_imports_neither_zmq_nor_pollframe():
    tree = ast.parse((EXAMPLE_APP / "logic.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name and name.split(".")[0] in {"zmq", "pollframe"}}


def test_ping_handler_answers_a_ping_with_a_pong_of_the_same_count_and_counts_pings():
    handler = PingHandler()
    assert handler.make_pong(3) == ["pong", [3], {}]
    assert handler.make_pong(4) == ["pong", [4], {}]
    assert handler.pings == 2


def test_pinger_sends_its_pings_in_turn_and_is_done_after_the_last_pong():
    pinger = Pinger(total=3)
    assert pinger.first_message() == ["ping", [0], {}]
    assert pinger.on_pong(0) == ["ping", [1], {}]
    assert pinger.on_pong(1) == ["ping", [2], {}]
    assert not pinger.done
    assert pinger.on_pong(2) is None
    assert pinger.done


def test_pinger_asked_to_stop_its_peer_ends_with_plzdiekthxbye_and_waits_for_bye():
    pinger = Pinger(total=1, stop_pong=True)
    pinger.first_message()
    assert pinger.on_pong(0) == ["plzdiekthxbye", [], {}]
    assert not pinger.done
    pinger.on_bye()
    assert pinger.done


def test_pinger_refuses_a_pong_that_does_not_answer_its_last_ping():
    pinger = Pinger(total=3)
    pinger.first_message()
    with pytest.raises(ValueError, match="pong 5 does not answer ping 0"):
        pinger.on_pong(5)


def test_pinger_refuses_a_bye_it_did_not_ask_for():
    pinger = Pinger(total=2, stop_pong=True)
    pinger.first_message()
    with pytest.raises(ValueError, match="bye"):
        pinger.on_bye()


# ------------------------------------------------------------ message tier: the kit's fake stream


LOCAL = {"Peer-Address": "127.0.0.1"}  # the properties of a message from a loopback peer


@pytest.fixture
def rep():
    """A RepStreamHandler on a fake stream: (handler, stream, list of stop calls)."""
    stream, stops = FakeStream(), []
    return RepStreamHandler(stream, lambda: stops.append(True), PingHandler()), stream, stops


def test_rep_handler_replies_through_the_router_envelope(rep, capsys):
    handler, stream, _ = rep
    handler.receive([b"peer-1", b"", b'["ping", [2], {}]'], LOCAL)
    assert stream.sent == [[b"peer-1", b"", b'["pong", [2], {}]']]
    assert capsys.readouterr().out == "Pong got request: ping 2\n"


@pytest.mark.parametrize("count", ['"2"', "2.5", "true", "null", "[2]"])
def test_rep_handler_answers_a_count_that_is_not_an_integer_with_an_error(rep, count):
    handler, stream, _ = rep
    handler([b"peer-1", b"", f'["ping", [{count}], {{}}]'.encode()])
    (reply,) = stream.sent
    assert reply[:2] == [b"peer-1", b""]
    msg_type, (reason,), _ = json.loads(reply[2])
    assert msg_type == "error" and "integer" in reason


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_rep_handler_stops_on_plzdiekthxbye_from_a_loopback_peer_and_still_replies_bye(rep, address):
    handler, stream, stops = rep
    handler.receive([b"peer-1", b"", b'["plzdiekthxbye", [], {}]'], {"Peer-Address": address})
    assert stops == [True]
    assert stream.sent == [[b"peer-1", b"", b'["bye", [], {}]']]


@pytest.mark.parametrize("props", [{"Peer-Address": "10.1.2.3"}, {"Peer-Address": None}, {}],
                         ids=["remote", "unknown", "no-properties"])
def test_rep_handler_refuses_plzdiekthxbye_from_an_untrusted_peer_with_an_error_and_keeps_serving(
    rep, props
):
    handler, stream, stops = rep
    handler.receive([b"peer-1", b"", b'["plzdiekthxbye", [], {}]'], props)
    handler.receive([b"peer-1", b"", b'["ping", [3], {}]'], props)
    assert stops == []
    assert stream.sent == [
        [b"peer-1", b"", b'["error", ["only a trusted peer may stop PongProc"], {}]'],
        [b"peer-1", b"", b'["pong", [3], {}]'],
    ]
    assert handler.errors == {"not_trusted": 1}


def test_rep_handler_called_without_properties_trusts_nobody(rep):
    handler, stream, stops = rep
    handler([b"peer-1", b"", b'["plzdiekthxbye", [], {}]'])
    assert stops == [] and handler.errors == {"not_trusted": 1}


@pytest.mark.parametrize("address", ["10.1.2.3", "::ffff:10.1.2.3"])
def test_rep_handler_stops_for_an_address_it_was_told_to_trust(address):
    stream, stops = FakeStream(), []
    handler = RepStreamHandler(stream, lambda: stops.append(True), PingHandler(), trusted=["10.1.2.3"])
    handler.receive([b"peer-1", b"", b'["plzdiekthxbye", [], {}]'], {"Peer-Address": address})
    assert stops == [True]


def _finish(coro):
    """Run a coroutine that never suspends to its end; return what it returned."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine suspended")


def test_the_ping_side_sends_each_request_in_turn_and_dispatches_each_reply_by_type(capsys):
    sent = []

    async def call(msg_type, *args, **kwargs):
        sent.append([msg_type, list(args), kwargs])
        return ("pong", list(args), {}) if msg_type == "ping" else ("bye", [], {})

    assert _finish(PingSide(call, Pinger(2, stop_pong=True)).run()) is None
    assert sent == [["ping", [0], {}], ["ping", [1], {}], ["plzdiekthxbye", [], {}]]
    assert capsys.readouterr().out == "Ping got reply: pong 0\nPing got reply: pong 1\n"


@pytest.mark.parametrize("outcome, failure", [
    (RequestTimeout("tcp://x:1", 3, 0.5), "no reply to 'ping': no reply from tcp://x:1 after 3 attempt(s)"),
    (RemoteError("unknown message type"), "PongProc refused a request: unknown message type"),
    (("pong", [7], {}), "bad reply 'pong' to 'ping': pong 7 does not answer ping 0"),
    (("what", [], {}), "unexpected reply 'what' to 'ping'"),
])
def test_the_ping_side_ends_with_what_went_wrong_when_a_reply_fails_or_does_not_fit(outcome, failure):
    async def call(msg_type, *args, **kwargs):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert _finish(PingSide(call, Pinger(3)).run()).startswith(failure)


# ------------------------------------------------------------ process tier: real children


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pingproc_runs_as_a_child_under_each_start_method(start_process, method):
    # spawn and forkserver pickle the process object: it must hold only plain settings.
    pong = start_process(PongProc("127.0.0.1"))
    ping = start_process(PingProc(pong.endpoint, count=2, mp_context=method))
    ping.process.join(timeout=20)
    assert ping.exitcode == 0


# ------------------------------------------------------------ system tests: run them as a user would


def example_env() -> dict[str, str]:
    """The user's environment; run from a checkout, that checkout's pollframe comes first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=example_env(),
        cwd=ROOT,
    )


def finish(proc: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> tuple[str, str]:
    """Wait for *proc* (killing it if it overruns); return its stdout and stderr."""
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


SCRIPTS = ["blocking_recv.py", "polling.py", "pollloop.py", "pollloop_subclass.py", "example_app/main.py"]


@pytest.mark.system
@pytest.mark.parametrize("script", SCRIPTS)
def test_each_example_prints_the_seed_output_and_exits_0_even_beside_a_twin(script):
    # Two copies at once: each picks its own port, so they never collide.
    procs = [spawn(str(EXAMPLES / script)) for _ in range(2)]
    try:
        results = [(finish(proc), proc.returncode) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for (out, err), returncode in results:
        assert out.splitlines() == SEED_OUTPUT, err
        assert returncode == 0, err
        assert "Traceback" not in err


def read_line(stream, timeout: float = 10.0) -> str:
    """One line from a child's pipe, or fail after *timeout* seconds (no sleeping)."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line within {timeout} s")
    return stream.readline()


@pytest.fixture
def pongproc():
    """``pongproc.py 127.0.0.1`` running alone: (process, endpoint it serves on)."""
    proc = spawn(str(EXAMPLE_APP / "pongproc.py"), "127.0.0.1")
    try:
        line = read_line(proc.stderr)
        assert line.startswith("PongProc serving on tcp://127.0.0.1:"), line
        yield proc, line.split()[-1]
    finally:
        if proc.poll() is None:
            proc.terminate()
        finish(proc, timeout=5)


@pytest.fixture
def req(make_socket):
    """``req(endpoint)``: a REQ test socket; a PongProc that stays silent fails it within 5 s."""

    def connect(endpoint: str) -> TimedSocket:
        return make_socket(zmq.REQ, connect=endpoint, timeout=5)

    return connect


@pytest.mark.system
def test_pongproc_alone_serves_the_triple_protocol(pongproc, req):
    _, endpoint = pongproc
    sock = req(endpoint)
    sock.send(b'["ping", [42], {}]')
    assert sock.recv() == b'["pong", [42], {}]'


@pytest.mark.system
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_pongproc_alone_exits_0_within_a_second_on_a_stop_signal(pongproc, req, signum):
    proc, endpoint = pongproc
    sock = req(endpoint)
    sock.send(b'["ping", [0], {}]')
    assert sock.recv() == b'["pong", [0], {}]'
    proc.send_signal(signum)
    out, err = finish(proc, timeout=1.0)
    assert proc.returncode == 0
    assert out == "Pong got request: ping 0\n"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.system
def test_pongproc_alone_exits_0_after_plzdiekthxbye(pongproc, req):
    proc, endpoint = pongproc
    sock = req(endpoint)
    sock.send(b'["plzdiekthxbye", [], {}]')
    assert sock.recv() == b'["bye", [], {}]'
    _, err = finish(proc, timeout=5)
    assert proc.returncode == 0
    assert "Traceback" not in err


def _has_ipv6() -> bool:
    import socket

    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::", 0))
        except OSError:
            return False
    return True


@pytest.mark.timeout(30)
@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 here: no dual-stack socket")
def test_a_dual_stack_pongproc_is_stopped_by_an_ipv4_loopback_peer(start_process, make_socket):
    pong = start_process(PongProc("[::]"))  # IPv4 peers arrive as ::ffff:127.0.0.1
    port = pong.endpoint.rsplit(":", 1)[1]
    sock = make_socket(zmq.REQ, connect=f"tcp://127.0.0.1:{port}")
    sock.send(b'["plzdiekthxbye", [], {}]')
    assert sock.recv() == b'["bye", [], {}]'
    pong.process.join(5)
    assert pong.exitcode == 0


@pytest.mark.system
def test_pingproc_pings_a_running_pongproc_and_stops_it(pongproc):
    pong, endpoint = pongproc
    ping = spawn(str(EXAMPLE_APP / "pingproc.py"), endpoint, "--count", "3", "--stop")
    out, err = finish(ping)
    assert ping.returncode == 0, err
    assert out.splitlines() == [f"Ping got reply: pong {i}" for i in range(3)]
    pong_out, _ = finish(pong, timeout=5)
    assert pong.returncode == 0
    assert pong_out.splitlines() == [f"Pong got request: ping {i}" for i in range(3)]


@pytest.mark.system
def test_pingproc_with_no_pongproc_gives_up_at_its_timeout_with_exit_code_1(make_socket):
    # A bound socket that never answers: the port is ours, so no one else can.
    silent = make_socket(zmq.ROUTER, bind="tcp://127.0.0.1:*")
    port = silent.last_endpoint.decode().rsplit(":", 1)[1]
    ping = spawn(str(EXAMPLE_APP / "pingproc.py"), f"127.0.0.1:{port}", "--timeout", "0.2")
    out, err = finish(ping)
    assert ping.returncode == 1
    assert out == ""
    assert "no reply to 'ping'" in err and "Traceback" not in err
