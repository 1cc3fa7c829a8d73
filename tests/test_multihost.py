"""The application across hosts: the example, a frozen peer, partitions, a slow link, CURVE keys.

Each test puts processes on two or more network namespaces made by
``pollframe.testing.hosts`` (the ``hosts`` fixture), joined through one
switch, and faults the network between them. Needs root or CAP_NET_ADMIN
(CI has it); elsewhere these tests are skipped with the reason.

Deadlines scale with the link: a test that runs through the 50 ms proxy
gets deadlines that grow with its delay, never a skip.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from typing import Any, Callable, List, Optional

import pytest
import zmq
from helper_procs import EXAMPLE_APP

from pongproc import PongProc

from pollframe.auth import public_key, start_auth
from pollframe.client import RequestClient
from pollframe.connfile import advertise, read_connection_file, write_connection_file
from pollframe.errors import RequestTimeout
from pollframe.loop import PollLoop
from pollframe.process import ZmqProcess
from pollframe.stream import Stream
from pollframe.testing import Conversation, TimedSocket, run_until
from pollframe.testing.hosts import Host, Network

pytestmark = [pytest.mark.system, pytest.mark.multihost, pytest.mark.timeout(60)]

Hosts = Callable[..., Network]
ROOT = EXAMPLE_APP.parents[1]


def host_socket(host: Host, sock_type: int, connect: str) -> TimedSocket:
    """A test socket that connects from *host* (its context's I/O threads live there)."""
    sock = host.context().socket(sock_type)
    sock.linger = 0
    timed = TimedSocket(sock, timeout=5.0)
    timed.connect(connect)
    return timed


def read_line(stream: Any, timeout: float = 10.0) -> str:
    """One line from a child's pipe, or fail after *timeout* seconds (no sleeping)."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line within {timeout} s")
    return stream.readline()


def python_on(host: Host, *args: str) -> subprocess.Popen[str]:
    return host.run([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    cwd=ROOT)


# ---------------------------------------------------------------------------
# The example across two hosts


def test_the_three_tier_example_runs_across_two_hosts_with_the_seeds_output(hosts: Hosts) -> None:
    ping_host, pong_host = hosts(2)
    pong = python_on(pong_host, str(EXAMPLE_APP / "pongproc.py"), pong_host.address,
                     "--trust", ping_host.address)
    line = read_line(pong.stderr)
    assert line.startswith(f"PongProc serving on tcp://{pong_host.address}:"), line
    endpoint = line.split()[-1]
    ping = python_on(ping_host, str(EXAMPLE_APP / "pingproc.py"), endpoint, "--count", "5", "--stop")
    ping_out, ping_err = ping.communicate(timeout=30)
    pong_out, pong_err = pong.communicate(timeout=10)
    assert (ping.returncode, pong.returncode) == (0, 0), ping_err + pong_err
    assert ping_out.splitlines() == [f"Ping got reply: pong {i}" for i in range(5)]
    assert pong_out.splitlines() == [f"Pong got request: ping {i}" for i in range(5)]


def test_a_plzdiekthxbye_from_another_host_is_refused_and_pongproc_serves_on(hosts: Hosts) -> None:
    client_host, pong_host = hosts(2)
    pong = pong_host.start(PongProc(pong_host.address))  # ready handshake across namespaces
    chat = Conversation(host_socket(client_host, zmq.REQ, pong.endpoint))
    chat.ask(["plzdiekthxbye", [], {}], ["error", ["only a trusted peer may stop PongProc"], {}])
    chat.ask(["ping", [7], {}], ["pong", [7], {}])
    assert pong.process.is_alive()  # stopped by the harness (the parent) at teardown, cleanly


def test_a_host_pongproc_was_told_to_trust_may_stop_it(hosts: Hosts) -> None:
    client_host, pong_host = hosts(2)
    pong = pong_host.start(PongProc(pong_host.address, trusted=[client_host.address]))
    chat = Conversation(host_socket(client_host, zmq.REQ, pong.endpoint))
    chat.ask(["plzdiekthxbye", [], {}], ["bye", [], {}])
    pong.process.join(5)
    assert pong.exitcode == 0


# ---------------------------------------------------------------------------
# A frozen peer


HEARTBEAT = 0.2
HEARTBEAT_TIMEOUT = 0.6


def test_a_frozen_peer_is_declared_gone_within_the_heartbeat_bound_and_served_after_sigcont(
    hosts: Hosts,
) -> None:
    net = hosts(2)
    client_host, pong_host = net
    pong = pong_host.start(PongProc(pong_host.address))
    loop = PollLoop()
    dealer = client_host.context().socket(zmq.DEALER)
    dealer.linger = 0
    dealer.setsockopt(zmq.HEARTBEAT_IVL, int(HEARTBEAT * 1000))
    dealer.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(HEARTBEAT_TIMEOUT * 1000))
    stream = Stream(dealer, loop)
    events: List[str] = []
    replies: List[List[bytes]] = []
    stream.on_event(lambda event: events.append(event.name))
    stream.on_recv(replies.append)
    try:
        dealer.connect(pong.endpoint)
        stream.send_multipart([b"", b'["ping", [1], {}]'])
        run_until(loop, lambda: replies, what="the first pong")
        assert replies == [[b"", b'["pong", [1], {}]']]

        net.freeze(pong)
        frozen_at = time.monotonic()
        run_until(loop, lambda: "disconnected" in events, timeout=5, what="the frozen peer declared gone")
        gone_after = time.monotonic() - frozen_at
        # Silence is noticed between one timeout and one timeout plus an interval after the
        # freeze; the slack is for a loaded machine.
        assert gone_after <= HEARTBEAT_TIMEOUT + HEARTBEAT + 0.4, f"declared gone after {gone_after:.3f} s"
        print(f"\nmultihost: frozen peer declared gone after {gone_after * 1000:.0f} ms "
              f"(heartbeat {HEARTBEAT} s, timeout {HEARTBEAT_TIMEOUT} s)")

        net.thaw(pong)
        events.clear()
        run_until(loop, lambda: "handshake_succeeded" in events, what="the reconnection after SIGCONT")
        stream.send_multipart([b"", b'["ping", [2], {}]'])
        run_until(loop, lambda: len(replies) == 2, what="a pong after SIGCONT")
        assert replies[-1] == [b"", b'["pong", [2], {}]']
    finally:
        stream.close(linger=0)
        loop.close()


# ---------------------------------------------------------------------------
# Partition and heal, direct and through a slow link


class Outcome:
    def __init__(self) -> None:
        self.answered: List[int] = []
        self.timed_out: List[int] = []
        self.wrong: List[Any] = []


def send_requests(client: RequestClient, numbers: range, outcome: Outcome) -> None:
    for n in numbers:
        try:
            reply = client.request("ping", n)
        except RequestTimeout:
            outcome.timed_out.append(n)
            continue
        if tuple(reply) == ("pong", [n], {}):
            outcome.answered.append(n)
        else:
            outcome.wrong.append((n, reply))


@pytest.mark.parametrize(
    "delay, requests",
    [(None, 1000), (0.05, 40)],
    ids=["direct", "slow-link-50ms"],
)
def test_every_request_is_answered_or_times_out_across_a_partition_and_served_again_after_the_heal(
    hosts: Hosts, delay: Optional[float], requests: int
) -> None:
    net = hosts(2)
    client_host, pong_host = net
    pong = pong_host.start(PongProc(pong_host.address))
    endpoint = pong.endpoint
    if delay is not None:
        port = int(endpoint.rsplit(":", 1)[1])
        endpoint = net.proxy(pong_host, (pong_host.address, port), delay=delay).endpoint
    # An attempt waits for the round trip through the link plus a margin that does not shrink.
    timeout = 0.25 + 4 * (delay or 0.0)
    heartbeat = timeout  # a connect lost in the cut is retried within 0.7 of it, not after 1 s, 3 s, 7 s
    client = RequestClient(endpoint, timeout=timeout, retries=2, context=client_host.context(),
                           heartbeat=heartbeat)
    cut_from, cut_to = requests // 3, requests // 3 + 3  # three requests while partitioned
    outcome = Outcome()
    try:
        send_requests(client, range(cut_from), outcome)
        net.partition(client_host, pong_host)
        send_requests(client, range(cut_from, cut_to), outcome)
        net.heal()
        healed_at = time.monotonic()
        send_requests(client, range(cut_to, cut_to + 1), outcome)
        served_after = time.monotonic() - healed_at
        send_requests(client, range(cut_to + 1, requests), outcome)
    finally:
        client.close()
    assert outcome.wrong == []
    assert sorted(outcome.answered + outcome.timed_out) == list(range(requests))  # each exactly once
    assert set(range(cut_from, cut_to)) <= set(outcome.timed_out)  # nothing crosses a partition
    assert cut_to in outcome.answered, "the first request after the heal was not answered"
    assert served_after <= 2 * heartbeat
    print(f"\nmultihost: {requests} requests, {len(outcome.answered)} answered, "
          f"{len(outcome.timed_out)} timed out; first request after the heal served in "
          f"{served_after * 1000:.0f} ms (link delay {delay or 0} s)")


# ---------------------------------------------------------------------------
# A connection file across hosts: endpoint and CURVE key from the binder


class CurvePong(ZmqProcess):
    """A CURVE ROUTER that answers every message with ``pong`` and writes its connection file."""

    def __init__(self, interface: str, advertised: str, path: str, secret: bytes, client: bytes) -> None:
        super().__init__()
        self.interface, self.advertised, self.path = interface, advertised, path
        self.secret, self.client = secret, client

    def setup(self) -> None:
        super().setup()
        assert self.context is not None and self.loop is not None
        start_auth(self.context, self.loop, allow_keys=[self.client])
        stream, _ = self.stream(zmq.ROUTER, self.interface, bind=True, curve_secret_key=self.secret)
        stream.on_recv(lambda frames: stream.send_multipart(frames[:-1] + [b"pong"]))
        bound = advertise(self.endpoints[-1], self.advertised)
        write_connection_file(self.path, {"pong": bound}, {"pong": public_key(self.secret)})


def test_a_connector_on_another_host_finds_the_server_and_its_key_in_the_connection_file(
    hosts: Hosts, tmp_path: Any
) -> None:
    client_host, server_host = hosts(2)
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    path = str(tmp_path / "pong.json")
    server_host.start(CurvePong("0.0.0.0", server_host.address, path, server_secret, client_public))
    conn = read_connection_file(path)  # written before the process said it was ready
    assert conn.server_key("pong") == server_public
    sock = client_host.context().socket(zmq.DEALER)
    sock.linger = 0
    sock.curve_secretkey, sock.curve_publickey = client_secret, client_public
    sock.curve_serverkey = conn.server_key("pong")
    dealer = TimedSocket(sock, timeout=5.0)
    dealer.connect(conn.endpoint("pong"))
    dealer.send_multipart([b"", b"ping"])
    assert dealer.recv_multipart() == [b"", b"pong"]


# ---------------------------------------------------------------------------
# Majordomo: a broker, two workers and a client, each on its own host


MDP_HEARTBEAT = 0.2


def test_a_partition_that_isolates_one_majordomo_worker_loses_no_request(hosts: Hosts) -> None:
    from multihost_peers import TaggedEchoWorker

    from pollframe.mdp.client import Client
    from pollframe.mdp.process import BrokerProcess

    net = hosts(4)
    broker_host, left_host, right_host, client_host = net
    broker = broker_host.start(BrokerProcess(broker_host.address, heartbeat=MDP_HEARTBEAT, liveness=3))
    for host, tag in ((left_host, "left"), (right_host, "right")):
        host.start(TaggedEchoWorker(broker.endpoint, tag, heartbeat=MDP_HEARTBEAT, backoff=MDP_HEARTBEAT))
    served_by: List[bytes] = []
    with Client(broker.endpoint, timeout=0.5, retries=4, context=client_host.context()) as client:
        while not client.service_available("echo") or len(set(served_by)) < 2:  # both workers ready
            served_by.append(client.request("echo", b"warm-up")[0])
        served_by.clear()
        for n in range(200):
            if n == 50:
                net.partition(left_host, broker_host)  # "left" holds a request, or will get one
            reply = client.request("echo", b"%d" % n)  # raises RequestTimeout if a request is lost
            assert reply[1:] == [b"%d" % n]
            served_by.append(reply[0])
        net.heal()
    assert served_by[50:] == [b"right"] * 150  # a request sent to "left" was retried to "right"
    print(f"\nmultihost: MDP, 200 requests, none lost; {client.timeouts} attempt(s) timed out and were "
          "retried to the other worker")


@pytest.mark.parametrize("delay", [None, 0.05], ids=["direct", "slow-link-50ms"])
def test_1000_requests_across_a_partition_end_once_run_once_and_are_served_within_2_heartbeats_of_the_heal(
    hosts: Hosts, delay: Optional[float]
) -> None:
    from multihost_peers import CountingServer

    from pollframe.requester import Pending, Requester

    net = hosts(2)
    client_host, server_host = net
    server = server_host.start(CountingServer(server_host.address))  # idempotent: a reply cache
    endpoint = server.endpoint
    if delay is not None:
        port = int(endpoint.rsplit(":", 1)[1])
        endpoint = net.proxy(server_host, (server_host.address, port), delay=delay).endpoint
    link = delay or 0.0
    # The heartbeat outlasts a PING's round trip through the link many times; an attempt's deadline
    # outlasts the partition below (about 3 heartbeats) plus the heal, so the requests pending at the
    # heal are the ones that show how soon it is served again.
    heartbeat = 0.25 + 4 * link
    loop = PollLoop()
    requester = Requester(loop, client_host.context(), endpoint, timeout=1.0 + 8 * link, retries=3,
                          heartbeat=heartbeat)
    outcomes: dict[int, List[Any]] = {}
    replied_at: List[float] = []

    def send(numbers: range, **policy: Any) -> List[Pending]:
        sent = []
        for n in numbers:
            def record(outcome: Any, n: int = n) -> None:
                outcomes.setdefault(n, []).append(outcome)
                if not isinstance(outcome, BaseException):
                    replied_at.append(time.monotonic())

            sent.append(requester.send_request("ping", [n], {}, record, record, **policy))
        return sent

    def settled(count: int) -> Callable[[], bool]:
        return lambda: sum(map(len, outcomes.values())) == count

    try:
        send(range(300))  # many in flight at once on one DEALER
        run_until(loop, settled(300), timeout=10, what="300 outcomes")
        disconnects = requester.disconnects
        net.partition(client_host, server_host)
        cut_at = time.monotonic()
        send(range(300, 310), timeout=0.2, retries=2)  # give up within the partition
        long = send(range(310, 320))  # still pending when it heals
        run_until(loop, lambda: requester.disconnects > disconnects, timeout=10,
                  what="the dead connection noticed")
        noticed_after = time.monotonic() - cut_at
        run_until(loop, settled(310), timeout=10, what="the short requests' timeouts")
        # The cut lasts until the long requests were retried once (into no connection): by then the
        # requester is somewhere in its cycle of connects lost in the partition, not at its start.
        run_until(loop, lambda: all(p.attempts >= 2 for p in long), timeout=10,
                  what="the long requests' retries")
        assert requester.pending() == 10
        replied_at.clear()
        healed_at = time.monotonic()  # from the call: the rules go one by one
        net.heal()
        heal_took = time.monotonic() - healed_at
        run_until(loop, lambda: replied_at, timeout=10, what="the first reply after the heal")
        served_after = replied_at[0] - healed_at
        send(range(320, 1000))
        run_until(loop, settled(1000), timeout=20, what="1,000 outcomes")
        counted: List[Any] = []
        requester.request("executions", on_reply=counted.append, on_error=counted.append)
        run_until(loop, lambda: counted, what="the server's execution counts")
    finally:
        requester.close()
        loop.close()
    assert all(len(outcome) == 1 for outcome in outcomes.values())  # exactly one outcome each
    timed_out = {n for n, (outcome,) in outcomes.items() if isinstance(outcome, RequestTimeout)}
    assert timed_out == set(range(300, 310))  # nothing crosses a partition; all the others are served
    for n, (outcome,) in outcomes.items():
        assert n in timed_out or tuple(outcome) == ("pong", [n], {}), (n, outcome)
    [(reply_type, [executions], _)] = counted
    assert reply_type == "executions"
    assert max(executions.values()) == 1, "a request was executed twice"
    assert {int(n) for n in executions} >= set(range(1000)) - timed_out
    print(f"\nmultihost: requester, heartbeat {heartbeat:g} s, link delay {link:g} s: dead connection "
          f"noticed after {noticed_after * 1000:.0f} ms; served {served_after * 1000:.0f} ms after the heal "
          f"began ({served_after / heartbeat:.2f} heartbeats; heal() took {heal_took * 1000:.0f} ms); "
          f"{1000 - len(timed_out)} replies, {len(timed_out)} RequestTimeout, none executed twice "
          f"(replayed={requester.replayed}, resent={requester.resent}, late={requester.late})")
    # Heartbeats on: silence is noticed within 3 heartbeats, and after the heal a new connection is up
    # and carries the pending requests within 2 (a connect every 0.5 H to 0.7 H, then the handshake
    # and a round trip through the link). The slack of the first is for a loaded machine.
    assert noticed_after <= 3 * heartbeat + 0.4, f"noticed after {noticed_after:.3f} s"
    assert served_after <= 2 * heartbeat, f"served {served_after:.3f} s after the heal"
