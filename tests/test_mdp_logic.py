"""Majordomo (MDP/0.1) logic: broker, worker session and client frames joined by a fake network.

No sockets, no clock: the network below does what the broker's ROUTER, a
client's REQ and a worker's DEALER do to frames, and time is a number.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import pytest

import pollframe
from pollframe.mdp import Broker, Disconnect, ProtocolError, Request, WorkerSession
from pollframe.mdp import protocol as mdp

HB = 1.0  # heartbeat interval of these tests; liveness 3, so a worker expires after 3 s of silence


class Network:
    """One broker on a ROUTER, peers named by their routing id; messages delivered at once.

    ``client_send`` is a REQ's send (the empty frame 0 added), ``worker_send``
    a DEALER's (frames as given). What the broker sends lands in the peer's
    inbox as its socket would return it: REQ strips the empty frame, DEALER
    keeps everything.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.now = 0.0
        self.clients: set = set()
        self.inbox: Dict[bytes, List[List[bytes]]] = defaultdict(list)

    def client_send(self, client: bytes, frames: List[bytes]) -> None:
        self.clients.add(client)
        self._route(self.broker.handle([client, b"", *frames], self.now))

    def worker_send(self, worker: bytes, frames: List[bytes]) -> None:
        self._route(self.broker.handle([worker, *frames], self.now))

    def tick(self, seconds: float = 0.0) -> None:
        self.now += seconds
        self._route(self.broker.tick(self.now))

    def take(self, peer: bytes) -> List[List[bytes]]:
        got, self.inbox[peer] = self.inbox[peer], []
        return got

    def _route(self, messages: List[List[bytes]]) -> None:
        for identity, *frames in messages:
            if identity in self.clients:
                assert frames[0] == b"", "a REQ client needs the empty delimiter"
                frames = frames[1:]
            self.inbox[identity].append(frames)


class EchoWorker:
    """A worker application on the fake network: a WorkerSession and an echo."""

    def __init__(self, net: Network, identity: bytes, service: str = "echo") -> None:
        self.net, self.identity = net, identity
        self.session = WorkerSession(service, heartbeat=HB, now=net.now)
        self.served: List[Request] = []
        net.worker_send(identity, self.session.connect(net.now))

    def serve(self) -> List[object]:
        """Handle everything in the inbox, echoing each request; return the events."""
        events = []
        for frames in self.net.take(self.identity):
            event = self.session.handle(frames, self.net.now)
            events.append(event)
            if isinstance(event, Request):
                self.served.append(event)
                self.net.worker_send(self.identity, self.session.reply(event, event.body, self.net.now))
        return events

    def stay_alive(self) -> None:
        """Serve what came, then heartbeat if nothing else was sent for an interval."""
        self.serve()
        for frames in self.session.tick(self.net.now):
            self.net.worker_send(self.identity, frames)


@pytest.fixture
def net():
    return Network(Broker(heartbeat=HB, liveness=3, request_expiry=5.0))


def ask(net: Network, client: bytes, body: bytes, service: bytes = b"echo") -> None:
    net.client_send(client, mdp.client_request(service, [body]))


def replies(net: Network, client: bytes, service: bytes = b"echo") -> List[List[bytes]]:
    return [mdp.client_body(frames, service) for frames in net.take(client)]


# ------------------------------------------------------------------ the wire, byte for byte


@pytest.mark.parametrize("module", ["peers.py", "liveness.py", "mdp/protocol.py", "mdp/broker.py",
                                    "mdp/session.py"])
def test_the_sans_io_modules_import_no_zmq_and_no_loop(module):
    path = Path(pollframe.__file__).parent / module  # the package under test, wherever it is installed
    tree = ast.parse(path.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported
                if name.split(".")[0] == "zmq" or name in {"pollframe.loop", "pollframe.stream"}}


def test_the_frames_are_those_of_rfc_7():
    assert mdp.ready(b"echo") == [b"", b"MDPW01", b"\x01", b"echo"]
    assert mdp.worker_request(b"C", [b"x"]) == [b"", b"MDPW01", b"\x02", b"C", b"", b"x"]
    assert mdp.worker_reply(b"C", [b"x", b"y"]) == [b"", b"MDPW01", b"\x03", b"C", b"", b"x", b"y"]
    assert list(mdp.HEARTBEAT_FRAMES) == [b"", b"MDPW01", b"\x04"]
    assert list(mdp.DISCONNECT_FRAMES) == [b"", b"MDPW01", b"\x05"]
    assert mdp.client_request(b"echo", [b"x"]) == [b"MDPC01", b"echo", b"x"]


def test_the_broker_sends_a_worker_the_request_with_the_client_address_and_the_client_the_reply(net):
    net.worker_send(b"W", mdp.ready(b"echo"))
    ask(net, b"C", b"hello")
    assert net.take(b"W") == [[b"", b"MDPW01", b"\x02", b"C", b"", b"hello"]]
    net.worker_send(b"W", mdp.worker_reply(b"C", [b"HELLO", b"2"]))
    assert net.take(b"C") == [[b"MDPC01", b"echo", b"HELLO", b"2"]]


# ------------------------------------------------------------------ request and reply


def test_a_request_reaches_a_worker_of_its_service_and_its_reply_comes_back(net):
    worker = EchoWorker(net, b"W1")
    ask(net, b"C1", b"ping")
    worker.serve()
    assert replies(net, b"C1") == [[b"ping"]]
    assert net.broker.requests == net.broker.replies == 1


def test_a_request_waits_for_a_worker_of_its_service(net):
    ask(net, b"C1", b"early")
    assert net.broker.queued() == 1
    worker = EchoWorker(net, b"W1")
    worker.serve()
    assert replies(net, b"C1") == [[b"early"]]


def test_requests_go_only_to_workers_of_the_service_they_name(net):
    echo, other = EchoWorker(net, b"W1", "echo"), EchoWorker(net, b"W2", "other")
    ask(net, b"C1", b"for other", service=b"other")
    assert echo.serve() == [] and len(other.serve()) == 1
    assert replies(net, b"C1", service=b"other") == [[b"for other"]]


def test_work_goes_to_the_worker_idle_longest(net):
    workers = [EchoWorker(net, b"W%d" % n) for n in range(3)]
    for n in range(3):
        ask(net, b"C%d" % n, b"%d" % n)
    assert [len(net.inbox[w.identity]) for w in workers] == [1, 1, 1]
    workers[1].serve()  # W1 replies first, so it is idle longest when the next request comes
    workers[0].serve()
    ask(net, b"C9", b"next")
    assert net.take(b"W1") == [mdp.worker_request(b"C9", [b"next"])]
    assert net.take(b"W0") == []


def test_a_busy_worker_gets_no_second_request_before_it_replied(net):
    worker = EchoWorker(net, b"W1")
    ask(net, b"C1", b"one")
    ask(net, b"C2", b"two")
    assert len(net.inbox[b"W1"]) == 1
    worker.serve()  # replies to one; two is sent at once
    worker.serve()
    assert replies(net, b"C1") == [[b"one"]] and replies(net, b"C2") == [[b"two"]]


def test_many_requests_through_three_workers_are_each_answered_once(net):
    workers = [EchoWorker(net, b"W%d" % n) for n in range(3)]
    clients = [b"C%d" % n for n in range(4)]
    for n in range(100):
        client = clients[n % 4]
        ask(net, client, b"%d" % n)
        for worker in workers:
            worker.serve()
    answered = [body for c in clients for body in replies(net, c)]
    assert sorted(int(body[0]) for body in answered) == list(range(100))
    assert sum(len(w.served) for w in workers) == 100


@pytest.mark.parametrize("seed", range(6))
def test_under_random_load_no_service_has_idle_workers_and_queued_requests_and_each_is_answered_once(
    seed,
):
    import random

    rng = random.Random(seed)
    net = Network(Broker(heartbeat=HB, liveness=3, request_expiry=1e9))
    services = [b"echo", b"other"]
    live, frozen = [], set()
    counter = 0
    sent: Dict[bytes, int] = {}

    def join() -> None:
        identity = b"W%d" % len(live + list(frozen))
        net.worker_send(identity, mdp.ready(rng.choice(services)))
        live.append(identity)

    def serve(identity: bytes) -> None:
        for frames in net.take(identity):
            if frames[2] == mdp.REQUEST:
                net.worker_send(identity, mdp.worker_reply(frames[3], frames[5:]))

    def check_invariant() -> None:
        for name, (_, idle, queued) in net.broker.services().items():
            assert not (idle and queued), f"service {name}: {idle} idle workers and {queued} queued requests"

    for _ in range(3):
        join()
    for _ in range(600):
        action = rng.random()
        if action < 0.45:
            counter += 1
            service = rng.choice(services)
            ask(net, b"C%d" % rng.randrange(4), b"%d" % counter, service)
            sent[b"%d" % counter] = 0
        elif action < 0.8 and live:
            serve(rng.choice(live))
        elif action < 0.85:
            join()
        elif action < 0.88 and len(live) > 2:
            victim = live.pop(rng.randrange(len(live)))
            frozen.add(victim)  # silent from now on: expired, its request goes to another worker
        else:
            for identity in live:
                net.worker_send(identity, list(mdp.HEARTBEAT_FRAMES))
            net.tick(HB * rng.choice([0.5, 1.5]))
        check_invariant()
    for name in services:  # make sure every service has a live worker, then serve until quiet
        net.worker_send(b"last-" + name, mdp.ready(name))
        live.append(b"last-" + name)
    for _ in range(3):  # long enough for the frozen workers to expire and their requests to move on
        for identity in live:
            net.worker_send(identity, list(mdp.HEARTBEAT_FRAMES))
        net.tick(HB * 1.5)
    while any(net.inbox[identity] for identity in live):
        for identity in live:
            serve(identity)
        check_invariant()
    for client in (b"C0", b"C1", b"C2", b"C3"):
        for frames in net.take(client):
            sent[frames[2]] += 1
    assert set(sent.values()) == {1}, "every request answered exactly once"


# ------------------------------------------------------------------ heartbeats and expiry


def test_the_broker_heartbeats_every_worker_once_an_interval(net):
    EchoWorker(net, b"W1")
    EchoWorker(net, b"W2")
    net.tick(HB / 2)
    assert net.take(b"W1") == []
    net.tick(HB / 2)
    assert net.take(b"W1") == net.take(b"W2") == [list(mdp.HEARTBEAT_FRAMES)]


def test_a_worker_silent_for_liveness_intervals_is_forgotten(net):
    EchoWorker(net, b"W1")
    net.tick(2.9)
    assert net.broker.workers == 1
    net.tick(0.2)
    assert net.broker.workers == 0
    assert net.broker.expired_workers == 1


def test_a_heartbeating_worker_stays(net):
    worker = EchoWorker(net, b"W1")
    for _ in range(10):
        net.tick(HB)
        worker.stay_alive()
    assert net.broker.workers == 1


def test_the_request_of_a_worker_that_went_silent_goes_to_another_worker(net):
    EchoWorker(net, b"DEAD")
    ask(net, b"C1", b"lost?")
    assert len(net.take(b"DEAD")) == 1  # it got the request and died with it
    alive = EchoWorker(net, b"W2")
    for _ in range(4):
        net.tick(HB)
        alive.stay_alive()
    assert replies(net, b"C1") == [[b"lost?"]]
    assert net.broker.requeued == 1


def test_the_late_reply_of_an_expired_worker_is_refused_with_disconnect(net):
    EchoWorker(net, b"SLOW")
    ask(net, b"C1", b"x")
    net.take(b"SLOW")
    net.tick(3.5)
    net.worker_send(b"SLOW", mdp.worker_reply(b"C1", [b"x"]))
    assert net.take(b"SLOW") == [list(mdp.DISCONNECT_FRAMES)]
    assert net.take(b"C1") == []


def test_a_request_no_worker_took_expires_after_request_expiry(net):
    ask(net, b"C1", b"nobody")
    net.tick(5.5)
    assert net.broker.queued() == 0
    assert net.broker.expired_requests == 1
    assert net.broker.services() == {}  # a service with no workers and no requests is forgotten


def test_requests_beyond_max_queue_are_dropped_and_counted():
    net = Network(Broker(max_queue=2))
    for n in range(3):
        ask(net, b"C%d" % n, b"x")
    assert net.broker.queued() == 2
    assert net.broker.dropped == 1


# ------------------------------------------------------------------ valid but unexpected: DISCONNECT


def test_a_second_ready_gets_disconnect_and_the_worker_is_forgotten(net):
    net.worker_send(b"W1", mdp.ready(b"echo"))
    net.worker_send(b"W1", mdp.ready(b"echo"))
    assert net.take(b"W1") == [list(mdp.DISCONNECT_FRAMES)]
    assert net.broker.workers == 0


@pytest.mark.parametrize("frames", [list(mdp.HEARTBEAT_FRAMES), mdp.worker_reply(b"C1", [b"x"])])
def test_a_heartbeat_or_reply_from_an_unknown_worker_gets_disconnect(net, frames):
    net.worker_send(b"STRANGER", frames)
    assert net.take(b"STRANGER") == [list(mdp.DISCONNECT_FRAMES)]
    assert net.broker.disconnects == 1


def test_a_reply_from_an_idle_worker_gets_disconnect(net):
    net.worker_send(b"W1", mdp.ready(b"echo"))
    net.worker_send(b"W1", mdp.worker_reply(b"C1", [b"unasked"]))
    assert net.take(b"W1") == [list(mdp.DISCONNECT_FRAMES)]
    assert net.take(b"C1") == []


def test_a_reply_to_another_client_than_the_one_asking_gets_disconnect(net):
    net.worker_send(b"W1", mdp.ready(b"echo"))
    ask(net, b"C1", b"x")
    net.take(b"W1")
    net.worker_send(b"W1", mdp.worker_reply(b"C2", [b"x"]))
    assert net.take(b"W1") == [list(mdp.DISCONNECT_FRAMES)]
    assert net.take(b"C2") == []


def test_a_worker_may_not_offer_a_management_service(net):
    net.worker_send(b"W1", mdp.ready(b"mmi.service"))
    assert net.take(b"W1") == [list(mdp.DISCONNECT_FRAMES)]


def test_a_worker_that_says_disconnect_is_forgotten_and_sent_nothing(net):
    net.worker_send(b"W1", mdp.ready(b"echo"))
    net.worker_send(b"W1", list(mdp.DISCONNECT_FRAMES))
    net.tick(HB)
    assert net.broker.workers == 0
    assert net.take(b"W1") == []


def test_a_broker_that_shuts_down_sends_every_worker_disconnect(net):
    EchoWorker(net, b"W1")
    EchoWorker(net, b"W2")
    out = net.broker.disconnect_all()
    assert sorted(out) == [[b"W1", *mdp.DISCONNECT_FRAMES], [b"W2", *mdp.DISCONNECT_FRAMES]]
    assert net.broker.workers == 0


# ------------------------------------------------------------------ invalid: dropped, named error


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([b"X"], "empty frame 0"),
        ([b"X", b"junk", b"MDPC01"], "empty frame 0"),
        ([b"X", b"", b"MDPX99", b"svc", b"body"], "unknown protocol header"),
        ([b"X", b"", b"MDPC01", b"echo"], "a service and a body"),
        ([b"X", b"", b"MDPC01", b"", b"body"], "names no service"),
        ([b"X", b"", b"MDPW01"], "command frame"),
        ([b"X", b"", b"MDPW01", b"\x09"], "unknown MDP worker command"),
        ([b"X", b"", b"MDPW01", b"\x01"], "READY has 4 frames"),
        ([b"X", b"", b"MDPW01", b"\x04", b"extra"], "HEARTBEAT has 3 frames"),
        ([b"X", b"", b"MDPW01", b"\x03", b"C", b"not empty", b"body"], "REPLY needs"),
    ],
)
def test_an_invalid_message_is_dropped_with_a_protocol_error_that_says_why(net, frames, reason):
    with pytest.raises(ProtocolError, match=reason):
        net.broker.handle(frames, 0.0)
    assert net.take(b"X") == []


def test_a_worker_that_breaks_the_protocol_is_forgotten(net):
    net.worker_send(b"W1", mdp.ready(b"echo"))
    with pytest.raises(ProtocolError):
        net.worker_send(b"W1", [b"", b"MDPW01", b"\x04", b"extra"])
    assert net.broker.workers == 0


# ------------------------------------------------------------------ management interface (RFC 8)


def test_mmi_service_says_200_for_a_service_with_workers_and_404_without(net):
    EchoWorker(net, b"W1")
    net.client_send(b"C1", mdp.client_request(b"mmi.service", [b"echo"]))
    net.client_send(b"C2", mdp.client_request(b"mmi.service", [b"nothing"]))
    assert net.take(b"C1") == [[b"MDPC01", b"mmi.service", b"200"]]
    assert net.take(b"C2") == [[b"MDPC01", b"mmi.service", b"404"]]


def test_an_unknown_mmi_service_says_501(net):
    net.client_send(b"C1", mdp.client_request(b"mmi.nope", [b"x"]))
    assert net.take(b"C1") == [[b"MDPC01", b"mmi.nope", b"501"]]


# ------------------------------------------------------------------ the worker's side


def test_a_worker_session_opens_with_ready_for_its_service():
    assert WorkerSession("echo").connect(0.0) == [b"", b"MDPW01", b"\x01", b"echo"]


def test_a_worker_session_turns_the_broker_commands_into_events():
    session = WorkerSession(b"echo")
    assert session.handle(mdp.worker_request(b"C", [b"a", b"b"]), 0.0) == Request(b"C", [b"a", b"b"])
    assert session.handle(list(mdp.HEARTBEAT_FRAMES), 0.0) is None
    assert isinstance(session.handle(list(mdp.DISCONNECT_FRAMES), 0.0), Disconnect)


@pytest.mark.parametrize(
    "frames",
    [[b"MDPW01", b"\x04"], [b"", b"MDPC01", b"\x04"], [b"", b"MDPW01", b"\x01", b"echo"],
     [b"", b"MDPW01", b"\x02", b"C", b"x", b"body"], [b"", b"MDPW01", b"\x04", b"extra"]],
)
def test_a_worker_session_refuses_what_a_broker_may_not_send(frames):
    with pytest.raises(ProtocolError):
        WorkerSession(b"echo").handle(frames, 0.0)


def test_a_worker_heartbeats_only_after_sending_nothing_for_an_interval():
    session = WorkerSession(b"echo", heartbeat=1.0, now=0.0)
    assert session.tick(0.5) == []
    session.reply(Request(b"C", [b"x"]), [b"x"], 0.8)
    assert session.tick(1.5) == []
    assert session.tick(1.8) == [list(mdp.HEARTBEAT_FRAMES)]
    assert session.tick(2.0) == []


def test_a_reply_needs_a_body():
    with pytest.raises(ValueError, match="body"):
        WorkerSession(b"echo").reply(Request(b"C", [b"x"]), [], 0.0)


# ------------------------------------------------------------------ the client's side


def test_a_client_refuses_a_reply_from_another_service_or_protocol():
    with pytest.raises(ProtocolError, match="service"):
        mdp.client_body([b"MDPC01", b"other", b"x"], b"echo")
    with pytest.raises(ProtocolError, match="header"):
        mdp.client_body([b"MDPC02", b"echo", b"x"], b"echo")
    with pytest.raises(ProtocolError, match="at least 3"):
        mdp.client_body([b"MDPC01", b"echo"], b"echo")


def test_a_client_request_needs_a_body_and_a_service_name():
    with pytest.raises(ValueError, match="body"):
        mdp.client_request(b"echo", [])
    with pytest.raises(ValueError, match="empty"):
        mdp.as_service("")
