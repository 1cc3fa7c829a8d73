"""Majordomo end to end: the example scripts run as a user would, and interop with independent peers.

The independent MDP/0.1 peers (tests/mdp_peers.py) are written from RFC 7's
frame tables with raw pyzmq and share no code with pollframe.
"""
from __future__ import annotations

import signal

import pytest
from mdp_peers import RawBroker, RawWorker, raw_request
from scripts import EXAMPLES, Script, stop_all

from pollframe.mdp.client import Client
from pollframe.mdp.process import BrokerProcess
from pollframe.testing import free_tcp_endpoint

MAJORDOMO = EXAMPLES / "majordomo"
HB = "0.5"  # heartbeat of the scripts in these tests: a dead worker is noticed within 1.5 s


def broker_script(endpoint: str) -> Script:
    broker = Script(MAJORDOMO / "broker.py", endpoint, "--heartbeat", HB)
    assert broker.read_line() == f"MDP broker on {endpoint}"
    return broker


def worker_script(endpoint: str, service: str = "echo") -> Script:
    worker = Script(MAJORDOMO / "worker.py", endpoint, service, "--heartbeat", HB, "--backoff", "0.1")
    assert worker.read_line().startswith("MDP worker for")
    return worker


# ------------------------------------------------------------------ the scripts


@pytest.mark.system
@pytest.mark.timeout(60)
def test_ten_thousand_requests_from_four_clients_via_three_workers_are_all_answered_when_one_is_killed():
    endpoint = free_tcp_endpoint()
    scripts = []
    try:
        scripts.append(broker := broker_script(endpoint))
        workers = [worker_script(endpoint) for _ in range(3)]
        scripts += workers
        clients = [Script(MAJORDOMO / "client.py", endpoint, "2500", "--prefix", f"c{n}-", "--timeout", "1",
                          "--retries", "10", "--progress", "1250") for n in range(4)]
        scripts += clients
        clients[0].wait_for_line("1250 replies", "stderr", timeout=30)  # midway for the first client
        workers[0].proc.send_signal(signal.SIGKILL)
        results = [client.finish(timeout=40) for client in clients]
        for returncode, out, err in results:
            assert (returncode, out) == (0, "OK"), err
        assert workers[0].finish()[0] == -signal.SIGKILL
        for script in [*workers[1:], broker]:
            returncode, _, err = script.stop()
            assert returncode == 0, err
            assert "Traceback" not in err
    finally:
        stop_all(scripts)


@pytest.mark.system
@pytest.mark.timeout(30)
def test_a_worker_registers_with_a_broker_that_starts_after_it():
    endpoint = free_tcp_endpoint()
    worker = worker_script(endpoint)
    broker = None
    try:
        broker = broker_script(endpoint)
        client = Script(MAJORDOMO / "client.py", endpoint, "5", "--timeout", "2")
        assert client.finish()[:2] == (0, "OK")
    finally:
        stop_all([worker, broker])


@pytest.mark.system
@pytest.mark.timeout(30)
def test_a_worker_comes_back_to_a_broker_restarted_after_a_kill():
    endpoint = free_tcp_endpoint()
    scripts = []
    try:
        scripts.append(worker := worker_script(endpoint))
        first = broker_script(endpoint)
        scripts.append(first)
        assert Script(MAJORDOMO / "client.py", endpoint, "3").finish()[:2] == (0, "OK")
        first.proc.send_signal(signal.SIGKILL)
        first.finish()
        scripts.append(broker_script(endpoint))  # the worker must notice and say READY again
        again = Script(MAJORDOMO / "client.py", endpoint, "3", "--timeout", "2", "--retries", "5")
        assert again.finish()[:2] == (0, "OK")
        assert worker.proc.poll() is None
    finally:
        stop_all(scripts)


@pytest.mark.system
@pytest.mark.timeout(20)
def test_the_client_exits_1_when_no_worker_offers_the_service():
    endpoint = free_tcp_endpoint()
    broker = broker_script(endpoint)
    try:
        returncode, out, err = Script(MAJORDOMO / "client.py", endpoint, "1", "--timeout", "0.2",
                                      "--retries", "1").finish()
        assert returncode == 1 and out == ""
        assert "request 1 failed: no reply" in err
    finally:
        stop_all([broker])


# ------------------------------------------------------------------ interop with independent MDP/0.1 peers


@pytest.fixture
def pollframe_broker(start_process):
    return start_process(BrokerProcess("127.0.0.1", heartbeat=0.25)).endpoint


@pytest.mark.timeout(20)
def test_an_independent_mdp_client_and_worker_talk_through_the_pollframe_broker(ctx, pollframe_broker):
    with RawWorker(ctx, pollframe_broker, b"echo") as worker:
        for n in range(50):
            assert raw_request(ctx, pollframe_broker, b"echo", [b"%d" % n, b"more"]) == [b"%d" % n, b"more"]
        assert worker.heard_heartbeat.wait(5.0), "the pollframe broker's heartbeats never reached the worker"
        assert worker.served == 50
    assert worker.invalid == []


@pytest.mark.timeout(20)
def test_the_pollframe_broker_answers_an_independent_client_on_mmi_service(ctx, pollframe_broker):
    with RawWorker(ctx, pollframe_broker, b"echo") as worker:
        raw_request(ctx, pollframe_broker, b"echo", [b"warm up"])  # the worker is registered by now
        assert raw_request(ctx, pollframe_broker, b"mmi.service", [b"echo"]) == [b"200"]
        assert raw_request(ctx, pollframe_broker, b"mmi.service", [b"none"]) == [b"404"]
    assert worker.invalid == []


@pytest.mark.timeout(20)
def test_a_pollframe_broker_that_stops_tells_an_independent_worker_disconnect(ctx, start_process):
    broker = start_process(BrokerProcess("127.0.0.1", heartbeat=0.25))
    with RawWorker(ctx, broker.endpoint, b"echo") as worker:
        raw_request(ctx, broker.endpoint, b"echo", [b"registered"])
        broker.shutdown()
        assert worker.disconnect_heard.wait(5.0)
    assert worker.invalid == []


@pytest.mark.timeout(30)
def test_the_pollframe_worker_and_client_talk_through_an_independent_broker(ctx):
    with RawBroker(ctx) as broker:
        worker = worker_script(broker.endpoint)
        try:
            with Client(broker.endpoint, timeout=5.0, retries=1, context=ctx) as client:
                for n in range(50):
                    assert client.request("echo", b"%d" % n, b"more") == [b"%d" % n, b"more"]
            assert broker.heard_heartbeat.wait(5.0), "the pollframe worker's heartbeats never came"
            returncode, _, err = worker.stop()
            assert returncode == 0, err
            assert broker.disconnect_heard.wait(5.0), "the pollframe worker left without DISCONNECT"
        finally:
            stop_all([worker])
        assert broker.replies == 50
    assert broker.invalid == []
