"""mdp.Worker, the message tier: FakeStreams from its factory, a loop on a fake clock, no sockets."""
from __future__ import annotations

import pytest

from pollframe.mdp import protocol as mdp
from pollframe.mdp.worker import Worker
from pollframe.testing import FakeStreamFactory, run_for

HB = 1.0
READY = mdp.ready(b"echo")


@pytest.fixture
def factory():
    return FakeStreamFactory()


@pytest.fixture
def worker(clocked_loop, factory):
    w = Worker(clocked_loop, "echo", lambda body: [b"re:" + body[0], *body[1:]], factory,
               heartbeat=HB, liveness=3, backoff=0.5, max_backoff=2.0)
    yield w
    if not w.connection.closed:
        w.close()


def test_a_worker_opens_its_connection_with_ready(worker, factory):
    assert factory.current.sent == [READY]


def test_a_request_is_answered_with_the_handlers_reply_to_the_same_client(worker, factory):
    factory.current.deliver(mdp.worker_request(b"CLIENT", [b"hi", b"2"]))
    assert factory.current.sent[-1] == mdp.worker_reply(b"CLIENT", [b"re:hi", b"2"])
    assert worker.served == 1


def test_an_idle_worker_heartbeats_once_an_interval(worker, factory, clocked_loop, fake_clock):
    run_for(clocked_loop, fake_clock, 2.0)
    beats = [m for m in factory.current.sent if m == list(mdp.HEARTBEAT_FRAMES)]
    assert len(beats) == 2


def test_a_broker_that_says_disconnect_gets_a_new_connection_and_a_new_ready(
    worker, factory, clocked_loop, fake_clock
):
    first = factory.current
    first.deliver(list(mdp.DISCONNECT_FRAMES))
    assert first.closed
    run_for(clocked_loop, fake_clock, 0.5)
    assert len(factory.made) == 2 and factory.current.sent == [READY]
    assert worker.generation == 2


def test_a_silent_broker_is_left_and_the_worker_registers_anew(worker, factory, clocked_loop, fake_clock):
    run_for(clocked_loop, fake_clock, 3.0)  # no word from the broker for 3 intervals
    assert factory.made[0].closed
    run_for(clocked_loop, fake_clock, 0.5)
    assert factory.current.sent == [READY]


def test_heartbeats_from_the_broker_keep_the_connection(worker, factory, clocked_loop, fake_clock):
    for _ in range(6):
        run_for(clocked_loop, fake_clock, HB)
        factory.current.deliver(list(mdp.HEARTBEAT_FRAMES))
    assert len(factory.made) == 1


def test_a_handler_that_raises_leaves_with_disconnect_and_registers_anew(clocked_loop, fake_clock, factory):
    errors = []
    clocked_loop.on_error = lambda exc, where: errors.append(exc)

    def broken(body):
        raise RuntimeError("boom")

    w = Worker(clocked_loop, "echo", broken, factory, heartbeat=HB, backoff=0.5)
    first = factory.current
    first.deliver(mdp.worker_request(b"C", [b"x"]))
    assert first.sent == [READY, list(mdp.DISCONNECT_FRAMES)] and first.closed
    assert [str(e) for e in errors] == ["boom"] and w.failed == 1
    run_for(clocked_loop, fake_clock, 0.5)
    assert factory.current.sent == [READY]
    w.close()


def test_a_reply_whose_connection_was_replaced_while_the_handler_ran_is_dropped(
        clocked_loop, fake_clock, factory):
    def reconnecting(body):  # stands in for anything that replaces the connection meanwhile
        w.connection.reconnect()
        return body

    w = Worker(clocked_loop, "echo", reconnecting, factory, heartbeat=HB, backoff=0.5)
    first = factory.current
    first.deliver(mdp.worker_request(b"C", [b"x"]))
    run_for(clocked_loop, fake_clock, 0.5)
    assert first.sent == [READY] and factory.current is not first
    assert factory.current.sent == [READY]  # the reply was not sent to the new broker connection
    assert w.served == 0 and w.connection.dropped == 1
    w.close()


def test_a_message_that_is_not_mdp_is_dropped_and_counted(worker, factory):
    factory.current.deliver([b"", b"MDPW02", b"\x02"])
    assert worker.invalid == 1
    assert factory.current.sent == [READY]


def test_close_says_disconnect_and_stops_reconnecting(worker, factory, clocked_loop, fake_clock):
    worker.close()
    assert factory.current.sent[-1] == list(mdp.DISCONNECT_FRAMES) and factory.current.closed
    run_for(clocked_loop, fake_clock, 10.0)
    assert len(factory.made) == 1
