"""ZmqProcess: real children under fork, spawn and forkserver, real sockets.

The stream() factory and run() are also checked in this process, where a
test can look at the sockets directly.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from helper_procs import (
    START_METHODS,
    BadAddressProc,
    CapturedPongProc,
    DiesInSetupProc,
    DrainProc,
    EchoProc,
    ForgetfulProc,
    GatedSetupProc,
    StartMethodProc,
    StopsItself,
    numbered,
)

from pollframe.loop import PollLoop
from pollframe.process import ProcessNotReady, ReadyTimeout, ZmqProcess
from pollframe.testing import Conversation, run_until, running

pytestmark = pytest.mark.timeout(30)

#: Seconds a test socket waits for a reply before it fails, naming the socket and what it expected.
REPLY_TIMEOUT = 5.0


@pytest.fixture(params=START_METHODS)
def method(request):
    return request.param


@pytest.fixture(scope="module", params=START_METHODS)
def shared_pong(request, tmp_path_factory):
    """One PongProc per start method for the tests that leave it running: its endpoint."""
    stderr_path = tmp_path_factory.mktemp("pong") / "stderr"
    with running(CapturedPongProc("127.0.0.1", str(stderr_path), mp_context=request.param)) as pong:
        yield pong.endpoint


@pytest.fixture
def client(make_socket):
    """``client(endpoint)``: a REQ test socket connected there; it fails after 5 s instead of hanging."""

    def connect(endpoint: str, sock_type: int = zmq.REQ):
        return make_socket(sock_type, connect=endpoint, timeout=REPLY_TIMEOUT)

    return connect


@pytest.fixture
def chat(client):
    """``chat(endpoint)``: a Conversation with the process over a fresh REQ test socket."""
    return lambda endpoint: Conversation(client(endpoint))


@pytest.fixture
def pong(start_process, method, tmp_path):
    """A PongProc child on a random port: (process, endpoint, path of its stderr)."""
    stderr_path = tmp_path / "pong.stderr"
    proc = CapturedPongProc("127.0.0.1", str(stderr_path), mp_context=method)
    return proc, start_process(proc).endpoint, stderr_path


# ------------------------------------------------------------ PongProc, a real child


def test_pong_proc_answers_each_ping_with_a_pong_of_the_same_count(shared_pong, chat):
    pong = chat(shared_pong)
    for count in (0, 1, 7):
        pong.ask(["ping", [count], {}], ["pong", [count], {}])


def test_pong_proc_reads_the_seeds_pair_form_too(shared_pong, chat):
    chat(shared_pong).send_frames([b'["ping", 3]']).expect(["pong", [3], {}])


@pytest.mark.parametrize(
    "bad",
    [b"not json", b'{"ping": 1}', b'["ping", ["three"], {}]', b'["_private", [], {}]', b'["run", [], {}]'],
)
def test_a_malformed_request_gets_an_error_reply_and_the_next_ping_is_served(shared_pong, client, bad):
    sock = client(shared_pong)
    sock.send(bad)
    msg_type, (reason,), kwargs = sock.recv_json(expect="an error reply")
    assert (msg_type, kwargs) == ("error", {})
    assert isinstance(reason, str) and reason and "Traceback" not in reason
    Conversation(sock).ask(["ping", [1], {}], ["pong", [1], {}])


def test_a_dealer_peer_is_served_through_its_envelope(shared_pong, client):
    sock = client(shared_pong, zmq.DEALER)
    sock.send_multipart([b"", b'["ping", [1], {}]'])
    sock.send_multipart([b"", b'["ping", [2], {}]'])
    assert sock.recv_multipart() == [b"", b'["pong", [1], {}]']
    assert sock.recv_multipart() == [b"", b'["pong", [2], {}]']


def test_plzdiekthxbye_is_answered_with_bye_and_the_process_exits_0(pong, chat):
    proc, endpoint, stderr_path = pong
    chat(endpoint).ask(["plzdiekthxbye", [], {}], ["bye", [], {}])
    proc.join(timeout=5)
    assert proc.exitcode == 0
    assert "Traceback" not in stderr_path.read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_the_child_with_exit_code_0_within_a_second(pong, chat, signum):
    proc, endpoint, stderr_path = pong
    chat(endpoint).ask(["ping", [0], {}], ["pong", [0], {}])
    os.kill(proc.pid, signum)
    proc.join(timeout=1.0)
    assert proc.exitcode == 0
    assert stderr_path.read_text() == ""


def test_stop_from_the_parent_ends_the_child_with_exit_code_0(pong):
    proc, _, stderr_path = pong
    proc.stop()
    proc.join(timeout=5)
    assert proc.exitcode == 0
    assert stderr_path.read_text() == ""


def test_the_child_stops_when_the_parent_end_of_its_control_pipe_closes(pong):
    # What the kernel does to the pipe when the parent dies.
    proc, _, _ = pong
    proc._control.close()
    proc.join(timeout=5)
    assert proc.exitcode == 0


# ------------------------------------------------------------ wait_ready and start-up


@pytest.fixture
def gated(tmp_path):
    """A started fork child whose setup() waits for ``gate.set()``: (process, gate).

    The harness cannot start it (it waits for ready once and stops a child
    that is not); the fixture opens the gate and shuts it down however the test ends.
    """
    gate = multiprocessing.get_context("fork").Event()
    proc = GatedSetupProc(gate, mp_context="fork")
    proc.stderr_path = str(tmp_path / "stderr")
    proc.start()
    yield proc, gate
    gate.set()
    proc.shutdown()


def test_a_child_whose_parent_is_gone_before_it_is_ready_exits_0_without_a_traceback(gated, tmp_path):
    proc, gate = gated
    proc._control.close()  # what the kernel does to the pipe when the parent dies
    gate.set()  # setup() ends; the child's ready message finds no reader
    proc.join(timeout=5)
    assert proc.exitcode == 0
    assert "Traceback" not in (tmp_path / "stderr").read_text()


def test_wait_ready_returns_every_endpoint_the_child_bound(start_process, method, ipc_endpoint):
    echo = start_process(EchoProc("127.0.0.1", ipc_endpoint, mp_context=method))
    endpoints = echo.endpoints  # what the harness's wait_ready() returned
    assert endpoints[0].startswith("tcp://127.0.0.1:") and endpoints[1] == ipc_endpoint
    assert echo.process.wait_ready() == endpoints
    assert echo.process.endpoints == endpoints


def test_the_random_port_reported_by_wait_ready_is_served(start_process, client):
    sock = client(start_process(EchoProc("127.0.0.1")).endpoint)
    sock.send(b"hello")
    assert sock.recv() == b"hello"


@pytest.mark.parametrize("as_context", [False, True], ids=["name", "context"])
def test_the_child_runs_under_the_start_method_it_was_given(start_process, client, method, as_context):
    mp_context = multiprocessing.get_context(method) if as_context else method
    sock = client(start_process(StartMethodProc(mp_context=mp_context)).endpoint)
    sock.send(b"?")
    assert sock.recv_string() == method


# The harness waits with wait_ready() and, when the child is not ready, stops it before the error
# reaches the test: the error is wait_ready()'s own.


def test_a_setup_that_fails_is_reported_by_wait_ready_with_its_reason(start_process, method, tmp_path):
    proc = BadAddressProc(mp_context=method)
    proc.stderr_path = str(tmp_path / "stderr")
    with pytest.raises(ProcessNotReady, match="bad address 'no-such-transport://x'"):
        start_process(proc)
    proc.join(timeout=5)
    assert proc.exitcode == 1


def test_a_setup_that_skips_super_setup_is_reported(start_process, tmp_path):
    proc = ForgetfulProc()
    proc.stderr_path = str(tmp_path / "stderr")
    with pytest.raises(ProcessNotReady, match=r"must call super\(\).setup\(\)"):
        start_process(proc)


def test_a_child_that_dies_before_it_is_ready_is_reported_with_its_exit_code(start_process, method):
    with pytest.raises(ProcessNotReady, match="exited with code 3"):
        start_process(DiesInSetupProc(mp_context=method))


def test_wait_ready_times_out_when_setup_does_not_finish(gated):
    proc, gate = gated
    with pytest.raises(ReadyTimeout):
        proc.wait_ready(timeout=0.1)
    gate.set()
    assert proc.wait_ready(timeout=10) == []


@pytest.fixture
def pipes(monkeypatch):
    """Every Connection that multiprocessing's Pipe() makes from now on, to check they get closed."""
    made = []
    real_pipe = multiprocessing.connection.Pipe

    def recording_pipe(duplex=True):
        ends = real_pipe(duplex)
        made.extend(ends)
        return ends

    monkeypatch.setattr(multiprocessing.connection, "Pipe", recording_pipe)
    return made


def test_a_start_that_fails_closes_both_ends_of_the_control_pipe(pipes):
    proc = EchoProc(mp_context="spawn")
    proc.lock = threading.Lock()  # cannot be pickled into a spawn child
    with pytest.raises(TypeError, match="pickle"):
        proc.start()
    assert pipes and all(end.closed for end in pipes)


def test_joining_a_stopped_child_closes_the_control_pipe(pipes):
    proc = EchoProc("127.0.0.1", mp_context="fork")
    proc.start()
    try:
        proc.wait_ready()
        proc.stop()
        proc.join(timeout=5)
        assert proc.exitcode == 0
        assert pipes and all(end.closed for end in pipes)
    finally:
        proc.shutdown()


def test_wait_ready_after_join_still_returns_the_endpoints_of_a_child_that_stopped_itself(ipc_endpoint):
    proc = StopsItself(ipc_endpoint)
    proc.start()
    try:
        proc.join(timeout=10)
        assert proc.exitcode == 0
        assert proc.wait_ready(timeout=0) == [ipc_endpoint]
    finally:
        proc.shutdown()


def test_wait_ready_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="start"):
        EchoProc().wait_ready(timeout=0)


def test_start_after_setup_in_the_parent_is_refused():
    proc = EchoProc()
    proc.setup()
    try:
        with pytest.raises(RuntimeError, match="setup\\(\\) ran in the parent"):
            proc.start()
    finally:
        proc.teardown()


def test_shutdown_of_a_process_never_started_takes_no_step():
    assert EchoProc().shutdown() == []


def test_shutdown_says_which_steps_it_took_and_a_second_call_takes_none(start_process):
    proc = start_process(EchoProc("127.0.0.1")).process
    assert proc.shutdown() == ["stop"] and proc.exitcode == 0
    assert proc.shutdown() == []


def test_shutdown_goes_on_to_sigterm_when_the_stop_callable_fails(start_process, caplog):
    proc = start_process(EchoProc("127.0.0.1")).process

    def broken_stop():
        raise ConnectionError("no route to the stop message's peer")

    assert proc.shutdown(stop=broken_stop, term_timeout=5) == ["stop", "SIGTERM"]
    assert proc.exitcode == 0  # SIGTERM is a clean stop too
    assert "the stop request failed: ConnectionError" in caplog.text


def test_shutdown_asks_with_the_stop_callable_instead_of_stop(start_process, client):
    echo = start_process(EchoProc("127.0.0.1"))
    sock = client(echo.endpoint)
    answers = []

    def stop_message():
        sock.send(b"stop")
        answers.append(sock.recv())

    assert echo.process.shutdown(stop=stop_message, stop_timeout=5) == ["stop"]
    assert answers == [b"stop"] and echo.exitcode == 0


# ------------------------------------------------------------ the stream() factory, in this process


@pytest.fixture
def local():
    """A ZmqProcess set up in this process (no child), torn down after the test."""
    proc = ZmqProcess()
    proc.setup()
    yield proc
    proc.teardown()


def test_stream_binds_a_random_port_and_returns_it(local):
    stream, port = local.stream(zmq.PULL, "127.0.0.1", bind=True)
    assert stream.socket.last_endpoint.decode() == f"tcp://127.0.0.1:{port}"
    assert local.endpoints == [f"tcp://127.0.0.1:{port}"]


def test_stream_connects_to_host_port_and_returns_the_port(local, make_socket):
    server = make_socket(zmq.REP, timeout=REPLY_TIMEOUT)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    stream, got = local.stream(zmq.REQ, ("127.0.0.1", port), bind=False)
    assert got == port
    assert local.endpoints == []  # only binds are reported
    stream.send(b"hi")
    assert server.recv() == b"hi"


def test_stream_has_no_port_for_ipc_and_inproc(local, tmp_path):
    assert local.stream(zmq.PULL, f"ipc://{tmp_path}/s", bind=True)[1] is None
    assert local.stream(zmq.PULL, "inproc://s", bind=True)[1] is None


def test_stream_binds_ipv6_in_brackets(local):
    try:
        _, port = local.stream(zmq.PULL, "[::1]", bind=True)
    except zmq.ZMQError as exc:  # a host without IPv6
        pytest.skip(f"no IPv6 loopback here: {exc}")
    assert local.endpoints == [f"tcp://[::1]:{port}"]


def test_a_bad_address_raises_a_value_error_naming_it(local):
    with pytest.raises(ValueError, match="'127.0.0.1:http'"):
        local.stream(zmq.PULL, "127.0.0.1:http", bind=True)


def test_a_sub_stream_sends_its_subscription(local, make_socket):
    xpub = make_socket(zmq.XPUB, timeout=REPLY_TIMEOUT)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    local.stream(zmq.SUB, f"127.0.0.1:{port}", bind=False, subscribe="news")
    assert xpub.recv() == b"\x01news"


def test_stream_options_are_set_before_the_socket_is_used(local):
    stream, _ = local.stream(
        zmq.DEALER,
        "inproc://opts",
        bind=True,
        linger=0.25,
        heartbeat=0.5,
        heartbeat_timeout=1.5,
        heartbeat_ttl=2.0,
        sockopts={zmq.SNDHWM: 7},
    )
    sock = stream.socket
    assert sock.linger == 250
    assert sock.getsockopt(zmq.MAXMSGSIZE) == 1 << 20
    assert sock.getsockopt(zmq.HEARTBEAT_IVL) == 500
    assert sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 1500
    assert sock.getsockopt(zmq.HEARTBEAT_TTL) == 2000
    assert sock.getsockopt(zmq.SNDHWM) == 7


def test_stream_defaults_come_from_the_class(local):
    sock = local.stream(zmq.DEALER, "inproc://defaults", bind=True)[0].socket
    assert sock.linger == 500
    assert sock.getsockopt(zmq.HEARTBEAT_IVL) == 0
    assert local.stream(zmq.DEALER, "inproc://x", bind=True, max_msg_size=-1)[0].socket.getsockopt(
        zmq.MAXMSGSIZE
    ) == -1


def test_heartbeat_details_without_heartbeat_are_refused(local):
    with pytest.raises(ValueError, match="heartbeat"):
        local.stream(zmq.DEALER, "inproc://hb", bind=True, heartbeat_timeout=1.0)


def test_a_curve_server_without_an_authenticator_is_refused(local):
    from pollframe.auth import AuthError

    secret = zmq.curve_keypair()[1]
    with pytest.raises(AuthError):
        local.stream(zmq.ROUTER, "127.0.0.1", bind=True, curve_secret_key=secret)


def test_stream_calls_the_callback_with_each_message(local):
    got: list = []
    local.stream(zmq.PULL, "inproc://cb", bind=True, callback=got.append)
    push = local.context.socket(zmq.PUSH)  # inproc: same context
    push.connect("inproc://cb")
    push.send_multipart([b"a", b"b"])
    run_until(local.loop, lambda: got, timeout=REPLY_TIMEOUT, what="the message reaching the callback")
    assert got == [[b"a", b"b"]]


def test_stream_before_setup_is_an_error():
    with pytest.raises(RuntimeError, match="setup"):
        ZmqProcess().stream(zmq.PULL, "127.0.0.1", bind=True)


def test_teardown_keeps_a_streams_shorter_linger_and_cuts_a_longer_one_to_the_bound(local):
    lingers = {"none": 0, "long": 5, "default": None, "forever": -1}
    streams = {
        name: local.stream(zmq.PUSH, f"inproc://{name}", bind=True, linger=linger)[0]
        for name, linger in lingers.items()
    }
    closed_with = {}  # name -> the LINGER (ms) libzmq gets when the socket closes

    def spy(name, stream):
        close = stream.close

        def recording_close(linger=None):
            closed_with[name] = stream.socket.linger if linger is None else round(linger * 1000)
            close(linger)

        return recording_close

    for name, stream in streams.items():
        stream.close = spy(name, stream)
    local.teardown()
    assert closed_with == {"none": 0, "long": 500, "default": 500, "forever": 500}


def test_teardown_closes_every_stream_and_the_context(local):
    stream, _ = local.stream(zmq.PULL, "127.0.0.1", bind=True)
    local.teardown()
    assert stream.closed and local.loop.closed and local.context.closed


# ------------------------------------------------------------ run() in this process




def test_run_in_process_returns_after_stop_and_cleans_up():
    proc = StopsItself()
    proc.run()
    assert proc.loop.closed and proc.context.closed


def test_run_in_process_gives_the_caller_its_signal_handlers_back():
    before = {signum: signal.getsignal(signum) for signum in ZmqProcess.stop_signals}
    StopsItself().run()
    assert {signum: signal.getsignal(signum) for signum in ZmqProcess.stop_signals} == before


class CountsRuns(ZmqProcess):
    runs = 0

    def setup(self) -> None:
        super().setup()
        self.loop.call_soon(self._ran)

    def _ran(self) -> None:
        self.runs += 1
        self.stop()


def test_an_in_process_run_can_be_run_again_after_a_stop():
    proc = CountsRuns()
    proc.run()
    proc.run()  # the first run's stop() must not cancel this one
    assert proc.runs == 2


def test_stop_from_another_thread_ends_an_in_process_run():
    started = threading.Event()

    class Announces(ZmqProcess):
        def setup(self) -> None:
            super().setup()
            self.loop.call_soon(started.set)

    proc = Announces()
    stopper = threading.Thread(target=lambda: (started.wait(10), proc.stop()))
    stopper.start()
    try:
        proc.run()
    finally:
        stopper.join()
    assert proc.loop.closed


# ------------------------------------------------------------ stream() defaults that keep nothing hidden


def test_a_process_runs_on_its_loop_class(local):
    from pollframe.epoll import EpollLoop

    class Counting(PollLoop):
        made = 0

        def __init__(self) -> None:
            super().__init__()
            Counting.made += 1

    for loop_class in (EpollLoop, Counting):
        proc = type("Proc", (ZmqProcess,), {"loop_class": loop_class})()
        proc.setup()
        try:
            assert type(proc.loop) is loop_class
        finally:
            proc.teardown()
    assert Counting.made == 1
    assert type(local.loop) is PollLoop  # the default


def test_sub_and_pull_streams_close_with_linger_0_and_the_others_keep_the_class_linger(local):
    lingers = {
        sock_type: local.stream(sock_type, f"inproc://linger-{int(sock_type)}", bind=True)[0].socket.linger
        for sock_type in (zmq.SUB, zmq.PULL, zmq.PUSH, zmq.PUB, zmq.DEALER)
    }
    assert lingers == {zmq.SUB: 0, zmq.PULL: 0, zmq.PUSH: 500, zmq.PUB: 500, zmq.DEALER: 500}
    assert local.stream(zmq.PULL, "inproc://own", bind=True, linger=2)[0].socket.linger == 2000


def test_a_closed_stream_is_forgotten_by_the_process(local, make_socket):
    import gc
    import weakref

    server = make_socket(zmq.PULL, timeout=REPLY_TIMEOUT)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    closed = []
    for _ in range(1000):  # a client that reconnects by remaking its stream
        stream, _ = local.stream(zmq.PUSH, ("127.0.0.1", port), bind=False, linger=0)
        if closed:
            closed[-1]().close()
        closed.append(weakref.ref(stream))
        del stream
    gc.collect()
    assert [ref() for ref in closed[:-2]] == [None] * 998  # all but the newest two: gone
    assert len(local._streams) == 2


def test_a_router_stream_counts_every_message_it_cannot_deliver_to_a_reading_dealer(local, ctx):
    router, port = local.stream(zmq.ROUTER, "127.0.0.1", bind=True)
    hello: list = []
    router.on_recv(hello.append)
    total, delivered, done = 20_000, [0], threading.Event()

    def read() -> None:
        dealer = ctx.socket(zmq.DEALER)
        dealer.routing_id = b"reader"
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"hello")
        try:
            while not done.is_set():
                if dealer.poll(50):
                    dealer.recv()
                    delivered[0] += 1
        finally:
            dealer.close(linger=0)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        run_until(local.loop, lambda: hello, timeout=REPLY_TIMEOUT, what="the dealer's hello")
        for n in range(total):
            router.send_multipart([b"reader", b"%0999d" % n])
        lost = router.dropped + router.unroutable
        run_until(local.loop, lambda: delivered[0] >= total - lost, timeout=REPLY_TIMEOUT,
                  what=f"{total - lost} messages at the dealer (dropped {router.dropped})")
    finally:
        done.set()
        reader.join(REPLY_TIMEOUT)
    print(f"reliability: ROUTER burst of {total}: {delivered[0]} delivered, {router.dropped} dropped, "
          f"{router.unroutable} unroutable")
    assert delivered[0] + router.dropped + router.unroutable == total


@pytest.mark.parametrize("mandatory, counted", [(None, 1), (0, 0)], ids=["default", "turned-off"])
def test_a_router_stream_counts_a_message_for_an_unknown_peer_unless_told_not_to(local, mandatory, counted):
    # ROUTER_MANDATORY is write-only in libzmq: its effect is the only way to see it.
    sockopts = None if mandatory is None else {zmq.ROUTER_MANDATORY: mandatory}
    router, _ = local.stream(zmq.ROUTER, "inproc://lax", bind=True, sockopts=sockopts)
    router.send_multipart([b"nobody", b"hello"])
    assert router.unroutable == counted


def test_a_sub_stream_sends_each_of_several_subscriptions(local, make_socket):
    xpub = make_socket(zmq.XPUB, timeout=REPLY_TIMEOUT)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    local.stream(zmq.SUB, f"127.0.0.1:{port}", bind=False, subscribe=["news", b"sport", ""])
    assert sorted(xpub.recv() for _ in range(3)) == [b"\x01", b"\x01news", b"\x01sport"]


def test_a_sub_stream_with_no_prefixes_subscribes_to_nothing_and_a_bad_prefix_is_refused(local, make_socket):
    xpub = make_socket(zmq.XPUB, timeout=0.2)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    local.stream(zmq.SUB, f"127.0.0.1:{port}", bind=False, subscribe=[])
    assert xpub.poll(200) == 0
    with pytest.raises(TypeError, match="prefix is bytes or str, not int"):
        local.stream(zmq.SUB, f"127.0.0.1:{port}", bind=False, subscribe=[b"ok", 7])


# ------------------------------------------------------------ a tree of processes always ends

TREE = Path(__file__).with_name("tree_procs.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "how, method",
    [("SIGTERM", "default"), ("stop", "default"), ("SIGKILL", "default"), ("SIGKILL", "fork-held")],
)
def test_a_process_tree_ends_whole_when_its_top_is_stopped_or_killed(how, method, tmp_path):
    # Three levels, the top with two children: the script ends the top and waits, on each process's
    # exit (pidfds), until nothing is left below it; a tree that does not end is cut off after 10 s.
    script = subprocess.Popen(
        [sys.executable, str(TREE), how, method, "3", "2", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
    )
    try:
        stdout, stderr = script.communicate(timeout=25)
    finally:
        try:
            os.killpg(script.pid, signal.SIGKILL)  # the whole tree, if a failure left any of it
        except ProcessLookupError:
            pass
        script.wait()
    run = subprocess.CompletedProcess(script.args, script.returncode, stdout, stderr)
    assert run.returncode == 0, run.stderr
    tree = json.loads(run.stdout)
    print(f"reliability: tree of 5 ended by {how} ({method}) in {tree['elapsed'] * 1000:.0f} ms")
    assert tree["left"] == {}, f"left behind after {tree['elapsed']:.2f} s"
    assert tree["names"] == ["top", "top.0", "top.0.0", "top.1", "top.1.0"]
    below_top = [name for name in tree["names"] if name != "top"]
    if how == "SIGKILL":
        assert tree["codes"].pop("top") == -signal.SIGKILL
        if method == "fork-held":  # the top was their parent: the script adopted them and saw their codes
            assert {"top.0", "top.1"} <= set(tree["codes"])
        assert tree["done"] == below_top  # every other one shut down cleanly
    else:
        assert tree["done"] == tree["names"]
    assert all(code == 0 for code in tree["codes"].values()), tree["codes"]


def test_the_default_start_method_is_forkserver_where_there_is_one(start_process, client):
    expected = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    sock = client(start_process(StartMethodProc()).endpoint)
    sock.send(b"?")
    assert sock.recv_string() == expected


def _listening_socket_inode(port: int) -> str:
    """The inode of the TCP socket listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _holds_socket(pid: int, inode: str) -> bool:
    fds = Path("/proc", str(pid), "fd")
    return any(os.readlink(fd) == f"socket:[{inode}]" for fd in fds.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_default_child_does_not_inherit_the_listening_socket_of_its_parent(start_process, ctx):
    listener = ctx.socket(zmq.ROUTER)
    port = listener.bind_to_random_port("tcp://127.0.0.1")
    inode = _listening_socket_inode(port)
    child = start_process(EchoProc("127.0.0.1"))  # a fork child would keep it open: the port stays taken
    assert _holds_socket(os.getpid(), inode)  # the check sees what it looks for
    assert not _holds_socket(child.pid, inode)



# ------------------------------------------------------------ nothing lost silently at shutdown

SLOW_PEER_PACE_MS = 2  # the slow peer reads one message every 2 ms


def _read_slowly(pull, pace, proc, count: int) -> list[bytes]:
    """Read up to ``count`` messages, one per 2 ms while ``proc`` runs, then what is left, fast."""
    got: list[bytes] = []
    while len(got) < count:
        # Once the process has exited, all it sent is here already: a short wait tells the end.
        if not pull.poll(int(REPLY_TIMEOUT * 1000) if proc.is_alive() else 300):
            break  # nothing more is coming
        got.append(pull.recv())
        if proc.is_alive():
            pace.poll(SLOW_PEER_PACE_MS)  # a pause of 2 ms: nothing ever arrives on it
    return got


@pytest.fixture
def slow_peer(make_socket):
    """(PULL socket bound on a random port, its endpoint, a socket to pause on)."""
    pull = make_socket(zmq.PULL, timeout=REPLY_TIMEOUT)
    endpoint = pull.bind("tcp://127.0.0.1:*")
    pace = make_socket(zmq.PULL)  # never bound nor connected: poll() on it only waits
    return pull.socket, endpoint, pace.socket


@pytest.fixture
def sigterm_while_feeding(start_process, slow_peer, tmp_path):
    """``run(drain_timeout)``: a DrainProc feeding the slow peer 5,000 messages gets SIGTERM at once.

    Returns (messages the peer read, exit code, the process's stderr).
    """

    def run(drain_timeout: float) -> tuple[list[bytes], int | None, str]:
        pull, endpoint, pace = slow_peer
        stderr_path = tmp_path / "stderr"
        proc = start_process(DrainProc(endpoint, 5000, drain_timeout, str(stderr_path))).process
        os.kill(proc.pid, signal.SIGTERM)
        got = _read_slowly(pull, pace, proc, 5000)
        proc.join(REPLY_TIMEOUT)
        return got, proc.exitcode, stderr_path.read_text()

    return run


@pytest.mark.timeout(90)
def test_sigterm_delivers_every_queued_message_to_a_slow_peer_within_the_drain_timeout(sigterm_while_feeding):
    got, exitcode, log = sigterm_while_feeding(60.0)
    print(f"reliability: drain to a peer reading every 2 ms: {len(got)} of 5000 arrived")
    assert len(got) == 5000, f"exit code {exitcode}, stderr: {log}"
    assert got == [numbered(n) for n in range(5000)]
    assert exitcode == 0 and log == ""


def test_a_drain_cut_short_by_its_deadline_says_how_many_messages_the_streams_still_held(
    sigterm_while_feeding,
):
    got, exitcode, log = sigterm_while_feeding(0.2)
    assert exitcode == 0
    match = re.search(r"drain ran out of time .*: (\d+) message\(s\) still queued in 1 stream\(s\)", log)
    assert match, log
    held = int(match[1])
    print(f"reliability: drain cut after 0.2 s: {len(got)} arrived, {held} reported still queued")
    assert held > 0 and len(got) < 5000  # closing offers the queue to the socket once more: some get out
    assert got == [numbered(n) for n in range(len(got))]  # what arrived came in order, none twice



# ------------------------------------------------------------ the parts ZmqProcess is made of


def test_the_control_pipe_carries_json_words_and_reports_the_other_end_gone():
    from pollframe.control import READY, ControlPipe

    parent, child = ControlPipe.pair(multiprocessing.get_context("spawn"))
    try:
        assert parent.read_if_any() is None  # nothing yet
        child.send(READY, ["tcp://127.0.0.1:5"])
        assert parent.read() == ("ready", ["tcp://127.0.0.1:5"])
        child.close()
        assert parent.poll(REPLY_TIMEOUT)  # the end of file is readable
        with pytest.raises(EOFError):
            parent.read()
        assert parent.read_if_any() is None
    finally:
        parent.close()


@pytest.mark.parametrize(
    "options, error",
    [
        ({"heartbeat_timeout": 1.0}, "need heartbeat"),
        ({"heartbeat": 0}, "positive interval"),
        ({"curve_server_key": "x" * 40}, "needs curve_secret_key"),
        ({"subscribe": ("text",)}, "prefix is bytes"),
    ],
)
def test_socket_options_are_checked_before_any_socket_exists(options, error):
    from pollframe.factory import SocketOptions

    with pytest.raises((ValueError, TypeError), match=error):
        SocketOptions(**options)


def test_the_factory_closes_the_socket_when_binding_fails(ctx):
    from pollframe.address import parse_address
    from pollframe.factory import SocketOptions, make_socket

    taken, bound = make_socket(ctx, zmq.PULL, parse_address("127.0.0.1", True), True, SocketOptions())
    made = []
    real_socket = ctx.socket

    def recording_socket(*args, **kwargs):
        made.append(real_socket(*args, **kwargs))
        return made[-1]

    ctx.socket = recording_socket
    try:
        with pytest.raises(zmq.ZMQError):
            make_socket(ctx, zmq.PULL, parse_address(bound, True), True, SocketOptions())
    finally:
        del ctx.socket
        taken.close(linger=0)
    assert len(made) == 1 and made[0].closed


class DrainsToNobody(ZmqProcess):
    """Run in-process: a PUSH stream with a message for a peer that never comes, a PULL stream that records.

    Stops as soon as its loop runs; ``during_drain(self)`` is called 0.05 s later, from a timer
    (timers keep running while the shutdown drains).
    """

    def __init__(self, nobody: str, drain_timeout: float, during_drain) -> None:
        super().__init__()
        self.nobody, self.drain_timeout, self.during_drain, self.got = nobody, drain_timeout, during_drain, []

    def setup(self) -> None:
        super().setup()
        # A free port, never connected; IMMEDIATE: no pipe before a connection, so the stream queues.
        push, _ = self.stream(zmq.PUSH, self.nobody, bind=False, sockopts={zmq.IMMEDIATE: 1})
        push.send(b"never delivered")  # keeps the drain busy until its deadline
        self.stream(zmq.PULL, "inproc://drain-input", bind=True, callback=self.got.append)
        self.loop.call_soon(self.stop)
        self.loop.call_later(0.05, self.during_drain, self)


def test_input_that_arrives_while_the_shutdown_drains_is_not_read(tcp_endpoint, caplog):
    def send_input(proc) -> None:
        sock = proc.context.socket(zmq.PUSH)
        sock.connect("inproc://drain-input")
        sock.send(b"too late")
        sock.close(linger=0)

    proc = DrainsToNobody(tcp_endpoint, 0.3, send_input)
    proc.run()
    assert proc.got == []
    assert "drain ran out of time" in caplog.text
    assert "1 message(s) still queued in 1 stream(s)" in caplog.text


def test_a_second_stop_ends_the_drain_at_once(tcp_endpoint):
    proc = DrainsToNobody(tcp_endpoint, 60.0, lambda proc: proc.stop())
    started = time.monotonic()
    proc.run()  # without the second stop: 60 s (the test's timeout fails it first)
    assert time.monotonic() - started < 10


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.12 added the fork-with-threads warning")
def test_starting_a_default_child_while_a_thread_runs_warns_nothing(start_process):
    import warnings

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start_process(EchoProc("127.0.0.1"))
    finally:
        stop.set()
        other.join()
    assert [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)] == []
