"""RequestClient (Lazy Pirate): deadlines, retries on fresh sockets, a server that dies and comes back.

The servers here are ROUTER sockets served by a thread of the test (they
decide which copy of a request to answer), and the example's PongProc in a
real child process, SIGKILLed and restarted on the same port.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Callable, Iterator

import pytest
import zmq

from pollframe.client import RemoteError, RequestClient, RequestTimeout
from pollframe.testing import terminate_context

pytestmark = pytest.mark.timeout(20)

#: Seconds per attempt where an outcome must not depend on the machine's speed. A fresh socket's
#: connect, handshake and round trip on loopback take milliseconds, but 0.1 s once proved too short
#: on a loaded machine. Only an attempt whose copy the server drops waits this long.
GENEROUS = 1.0

Behaviour = Callable[[zmq.Socket, int, list], None]
"""``behaviour(router, n, frames)``: serve the n-th request (from 0), frames with envelope."""


class ThreadServer:
    """A ROUTER on a random port, served by a thread that calls ``behaviour`` per request."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.bind("tcp://127.0.0.1:*")
        self.endpoint = self.router.last_endpoint.decode()
        self.received: list[list[bytes]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            if self.router.poll(20, zmq.POLLIN):
                frames = self.router.recv_multipart()
                self.received.append(frames)
                self.behaviour(self.router, len(self.received) - 1, frames)

    def close(self) -> None:
        """Stop the thread, then close the ROUTER and end the context: a hang fails, never blocks."""
        self._done.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the server thread did not stop within 5 s"
        terminate_context(self.context, timeout=5.0)


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], ThreadServer]]:
    servers: list[ThreadServer] = []

    def start(behaviour: Behaviour) -> ThreadServer:
        servers.append(ThreadServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., RequestClient]]:
    made: list[RequestClient] = []

    def make(endpoint: str, **options: object) -> RequestClient:
        made.append(RequestClient(endpoint, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for client in made:
        client.close()


def reply(router: zmq.Socket, frames: list, msg: list) -> None:
    """Answer the request ``frames`` (identity, empty delimiter, body) with ``msg``."""
    router.send_multipart(frames[:-1] + [json.dumps(msg).encode()])


def pong(router: zmq.Socket, n: int, frames: list) -> None:
    msg_type, args, kwargs = json.loads(frames[-1])
    reply(router, frames, ["pong", args, kwargs])


def never(router: zmq.Socket, n: int, frames: list) -> None:
    """Receive and never answer: the server of a client that must time out."""


def body(frames: list) -> list:
    return json.loads(frames[-1])


# --------------------------------------------------------------- replies


def test_a_request_returns_the_reply_as_a_triple(serve, clients):
    client = clients(serve(pong).endpoint)
    assert client.request("ping", 7, flag=True) == ("pong", [7], {"flag": True})


def test_an_error_reply_raises_remote_error_with_the_servers_reason(serve):
    def refuse(router, n, frames):
        reply(router, frames, ["error", ["unknown message type 'pign'"], {}])

    with RequestClient(serve(refuse).endpoint) as client:
        with pytest.raises(RemoteError, match="unknown message type 'pign'") as info:
            client.request("pign", 1)
    assert info.value.reason == "unknown message type 'pign'"


def test_send_recv_carries_raw_frames_both_ways(serve, clients):
    def echo(router, n, frames):
        router.send_multipart(frames)

    client = clients(serve(echo).endpoint)
    assert client.send_recv([b"not json", b"\xff"]) == [b"not json", b"\xff"]


def test_endpoint_forms_of_the_stream_factory_are_accepted(serve, clients):
    port = int(serve(pong).endpoint.rsplit(":", 1)[1])
    assert clients(f"127.0.0.1:{port}").request("ping", 1)[0] == "pong"
    assert clients(("127.0.0.1", port)).request("ping", 2)[0] == "pong"


# -------------------------------------------------------- timeouts, retries


def test_an_unanswered_request_is_sent_once_per_attempt_each_on_a_fresh_socket(serve, clients):
    server = serve(never)
    client = clients(server.endpoint, timeout=0.1, retries=3)
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        client.request("ping", 1)
    elapsed = time.monotonic() - started
    assert (info.value.attempts, info.value.timeout) == (3, 0.1)
    assert elapsed >= 0.3  # no attempt gave up before its deadline
    assert client.timeouts == 3 and client.sockets == 3
    # Each copy came from a peer of its own. (A copy may never leave when connecting
    # a fresh socket takes longer than an attempt: closing with linger 0 drops it.)
    peers = [frames[0] for frames in server.received]
    assert 1 <= len(peers) <= 3 and len(set(peers)) == len(peers)
    assert client.socket is None  # the timed-out socket is closed, not kept


def test_a_retry_returns_the_reply_the_first_attempt_missed(serve, clients):
    def drop_the_first_copy(router, n, frames):
        if n >= 1:
            pong(router, n, frames)

    # The first attempt always waits out its timeout (its copy is dropped on purpose); a generous
    # one makes sure that copy reached the server and that the retry's round trip fits in time.
    server = serve(drop_the_first_copy)
    client = clients(server.endpoint, timeout=GENEROUS, retries=3)
    assert client.request("ping", 5) == ("pong", [5], {})
    assert client.timeouts == 1 and client.sockets == 2
    first, retry = server.received  # the copy dropped, then the one answered
    assert body(first) == body(retry) == ["ping", [5], {}]
    assert first[0] != retry[0]  # the retry came from a fresh socket


def test_after_the_last_retry_the_next_request_is_sent_without_efsm(serve, clients):
    def drop_the_first(router, n, frames):
        if n >= 1:
            pong(router, n, frames)

    client = clients(serve(drop_the_first).endpoint, timeout=GENEROUS, retries=1)
    with pytest.raises(RequestTimeout):
        client.request("ping", 1)
    assert client.request("ping", 2) == ("pong", [2], {})


def test_a_late_reply_to_an_abandoned_attempt_is_never_returned(serve, clients):
    held: list[list[bytes]] = []

    def late(router, n, frames):
        if n == 0:
            held.append(frames)  # the first attempt: answered too late
        elif n == 1:
            pong(router, n, frames)
            reply(router, held[0], ["late", body(held[0])[1], {}])
        else:
            pong(router, n, frames)

    client = clients(serve(late).endpoint, timeout=GENEROUS, retries=2)
    assert client.request("ping", 1) == ("pong", [1], {})
    assert client.request("ping", 2) == ("pong", [2], {})


def test_per_request_timeout_and_retries_override_the_clients(serve, clients):
    server = serve(never)
    client = clients(server.endpoint, timeout=5.0, retries=5)
    with pytest.raises(RequestTimeout) as info:
        client.send_recv([b"[]"], timeout=0.05, retries=2)
    assert (info.value.attempts, info.value.timeout) == (2, 0.05)
    assert client.sockets == 2 and len(server.received) <= 2


@pytest.mark.parametrize(
    "options",
    [{"timeout": 0}, {"timeout": -1.0}, {"retries": 0}, {"retries": 1.5}, {"retries": True}],
)
def test_a_timeout_or_retry_count_that_makes_no_sense_is_refused(options):
    with pytest.raises(ValueError):
        RequestClient("127.0.0.1:5555", **options)


def test_a_bad_address_is_refused_before_any_socket_exists():
    with pytest.raises(ValueError, match="bad address"):
        RequestClient("127.0.0.1:*")


def test_a_closed_client_refuses_requests_and_closing_twice_is_harmless(serve):
    client = RequestClient(serve(pong).endpoint)
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.request("ping", 1)


def test_a_context_given_to_the_client_outlives_it(serve, zmq_context):
    with RequestClient(serve(pong).endpoint, context=zmq_context) as client:
        assert client.request("ping", 1)[0] == "pong"
    assert not zmq_context.closed


# ------------------------------------------------------ a server that dies


def test_a_killed_server_times_out_at_the_deadline_and_its_restart_answers_every_request(
    pong_procs, clients
):
    first, endpoint = pong_procs("127.0.0.1", check_exit=False)  # SIGKILLed below
    client = clients(endpoint, timeout=0.25, retries=2)
    assert client.request("ping", 0) == ("pong", [0], {})

    os.kill(first.pid, signal.SIGKILL)
    first.join(5)
    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        client.request("ping", 1)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.5 + 0.5  # two attempts of 0.25 s: at the deadline, not long after

    second, endpoint_again = pong_procs(endpoint.removeprefix("tcp://"))
    assert endpoint_again == endpoint
    restarted = time.monotonic()
    replies = [client.request("ping", n) for n in range(2, 52)]
    assert replies == [("pong", [n], {}) for n in range(2, 52)]
    assert second.is_alive()
    print(f"reliability: lazy pirate: timeout_after_s={elapsed:.3f} (2 x 0.25 s), "
          f"50_requests_after_restart_s={time.monotonic() - restarted:.3f}, timeouts={client.timeouts}")


def test_with_immediate_a_request_waits_for_a_connection_within_its_deadline(serve, clients):
    client = clients("127.0.0.1:1", timeout=0.1, retries=1, sockopts={zmq.IMMEDIATE: 1})
    with pytest.raises(RequestTimeout):  # nothing listens on port 1: the send never gets a pipe
        client.request("ping", 1)
    late = clients(serve(pong).endpoint, timeout=2.0, sockopts={zmq.IMMEDIATE: 1})
    assert late.request("ping", 2) == ("pong", [2], {})


def test_a_heartbeat_watches_every_socket_the_client_opens_and_given_sockopts_still_win(serve, clients):
    server = serve(lambda router, n, frames: n > 0 and pong(router, n, frames))  # drops the first request
    client = clients(server.endpoint, timeout=GENEROUS, heartbeat=0.2, sockopts={zmq.RECONNECT_IVL: 77})
    with pytest.raises(RequestTimeout):
        client.send_recv([b'["ping", [0], {}]'], timeout=0.1, retries=1)
    assert client.request("ping", 1) == ("pong", [1], {})  # on the second socket the client opened
    sock = client.socket
    assert client.sockets == 2 and sock is not None
    assert (sock.heartbeat_ivl, sock.heartbeat_timeout, sock.heartbeat_ttl) == (200, 400, 600)
    assert (sock.tcp_maxrt, sock.connect_timeout, sock.immediate, sock.reconnect_ivl) == (600, 100, 1, 77)


@pytest.mark.parametrize("endpoint, bad, reason", [
    ("127.0.0.1:5555", 0, "heartbeat must be a number of seconds"),
    ("127.0.0.1:5555", 1e6, "heartbeat must be a number of seconds"),
    ("inproc://nowhere", 0.5, "inproc and has none"),
])
def test_a_heartbeat_out_of_range_or_on_inproc_is_refused_when_the_client_is_made(endpoint, bad, reason):
    with pytest.raises(ValueError, match=reason):
        RequestClient(endpoint, heartbeat=bad)


def test_with_a_heartbeat_a_request_whose_connection_is_cut_goes_again_on_a_fresh_socket_in_the_same_attempt(
    serve, clients
):
    from pollframe.testing.faultproxy import FaultProxy

    proxies: list[FaultProxy] = []

    def cut_the_first(router: zmq.Socket, n: int, frames: list) -> None:
        if n == 0:
            proxies[0].cut()  # the request is taken, its connection broken, no reply
        else:
            pong(router, n, frames)

    server = serve(cut_the_first)
    port = int(server.endpoint.rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port)) as proxy:
        proxies.append(proxy)
        # One attempt with a deadline the test would fail on: only the resend can answer it in time.
        client = clients(proxy.endpoint, timeout=10.0, retries=1, heartbeat=0.2)
        assert client.request("ping", 1) == ("pong", [1], {})  # not RequestTimeout after 10 s
    assert (client.disconnects, client.replayed, client.timeouts, client.sockets) == (1, 1, 0, 2)
    assert [body(r) for r in server.received] == [["ping", [1], {}]] * 2
