"""The fault proxy on loopback: bytes arrive whole and in order, no sooner than the faults allow.

Times are only ever checked from below: a delay the proxy adds is a
floor the machine cannot undercut, however loaded it is.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Iterator, Tuple

import pytest
import zmq

from pollframe.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(20)


class EchoServer:
    """A TCP server on 127.0.0.1 that echoes every byte, on a thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address: Tuple[str, int] = self.listener.getsockname()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def round_trip(proxy: FaultProxy, payload: bytes) -> Tuple[bytes, float]:
    """Send *payload* through *proxy* to the echo server; return what came back and how long it took."""
    with socket.create_connection(proxy.address, timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(65536)
            assert chunk, "the proxy closed the connection early"
            received += chunk
        return received, time.monotonic() - start


def test_bytes_pass_both_ways_unchanged(echo: EchoServer) -> None:
    with FaultProxy(echo.address) as proxy:
        payload = bytes(range(256)) * 1000
        assert round_trip(proxy, payload)[0] == payload
        assert proxy.connections == 1


def test_a_delay_holds_back_each_direction(echo: EchoServer) -> None:
    with FaultProxy(echo.address, delay=0.05) as proxy:
        data, took = round_trip(proxy, b"ping")
    assert data == b"ping" and took >= 0.1  # 50 ms up, 50 ms down


def test_a_lost_chunk_arrives_one_retransmission_later(echo: EchoServer) -> None:
    with FaultProxy(echo.address, loss=1.0, retransmit_delay=0.1) as proxy:
        data, took = round_trip(proxy, b"ping")
    assert data == b"ping" and took >= 0.2


def test_a_narrow_link_paces_bytes_by_the_bandwidth(echo: EchoServer) -> None:
    with FaultProxy(echo.address, bandwidth=1_000_000) as proxy:
        data, took = round_trip(proxy, b"x" * 100_000)  # 0.1 s each way, the two overlapping
    assert len(data) == 100_000 and took >= 0.1


def test_jitter_never_reorders_the_byte_stream(echo: EchoServer) -> None:
    with FaultProxy(echo.address, jitter=0.005, seed=1) as proxy, \
            socket.create_connection(proxy.address, timeout=10) as sock:
        sent = b"".join(b"%05d," % i for i in range(300))
        for i in range(0, len(sent), 6):
            sock.sendall(sent[i:i + 6])  # many small chunks, each with its own jitter
        received = b""
        while len(received) < len(sent):
            received += sock.recv(65536)
    assert received == sent


def test_cut_closes_open_connections_and_new_ones_are_still_served(echo: EchoServer) -> None:
    with FaultProxy(echo.address) as proxy:
        with socket.create_connection(proxy.address, timeout=10) as sock:
            sock.sendall(b"a")
            assert sock.recv(1) == b"a"
            proxy.cut()
            assert sock.recv(1) == b""  # end of file (or a reset, also b"" here after shutdown)
        assert round_trip(proxy, b"b")[0] == b"b"


def test_close_ends_every_proxy_thread(echo: EchoServer) -> None:
    proxy = FaultProxy(echo.address, delay=0.01).start()
    round_trip(proxy, b"x")
    proxy.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("FaultProxy")]


def test_a_zmq_request_and_reply_pass_through_a_slow_proxy(make_socket) -> None:
    rep = make_socket(zmq.REP, bind="tcp://127.0.0.1:*")
    port = int(rep.endpoints[0].rsplit(":", 1)[1])
    with FaultProxy(("127.0.0.1", port), delay=0.02) as proxy:
        req = make_socket(zmq.REQ, connect=proxy.endpoint)
        req.send(b"ping")
        assert rep.recv() == b"ping"
        rep.send(b"pong")
        assert req.recv() == b"pong"


@pytest.mark.parametrize("bad", [{"delay": -1}, {"loss": 1.5}, {"bandwidth": 0}])
def test_impossible_faults_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        FaultProxy(("127.0.0.1", 1), **bad)
