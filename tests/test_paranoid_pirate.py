"""Paranoid Pirate (examples/paranoid_pirate/): its logic without sockets, then the scripts under SIGKILL."""
from __future__ import annotations

import importlib.util
import json
import signal

import pytest
from scripts import EXAMPLES, Script, stop_all

from pollframe.testing import free_tcp_endpoint

PIRATE = EXAMPLES / "paranoid_pirate"


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pirate = _load("paranoid_pirate_logic", PIRATE / "pirate.py")
READY, HEARTBEAT, FRONT, BACK = pirate.READY, pirate.HEARTBEAT, pirate.FRONT, pirate.BACK


@pytest.fixture
def queue():
    return pirate.PirateQueue(heartbeat=1.0, liveness=3, now=0.0)


# ------------------------------------------------------------------ logic: the queue


def test_a_request_goes_to_the_worker_idle_longest(queue):
    queue.from_worker([b"W1", READY], 0.0)
    queue.from_worker([b"W2", READY], 0.1)
    assert queue.from_client([b"C", b"", b"1"], 0.2) == [(BACK, [b"W1", b"C", b"", b"1"])]
    assert queue.from_client([b"D", b"", b"2"], 0.2) == [(BACK, [b"W2", b"D", b"", b"2"])]


def test_a_request_waits_for_a_worker_and_the_queue_says_when_none_is_idle(queue):
    assert queue.from_client([b"C", b"", b"1"], 0.0) == []
    assert not queue.has_idle_worker()
    assert queue.from_worker([b"W1", READY], 0.5) == [(BACK, [b"W1", b"C", b"", b"1"])]


def test_a_reply_goes_back_to_its_client_and_the_worker_is_idle_again(queue):
    queue.from_worker([b"W1", READY], 0.0)
    queue.from_client([b"C", b"", b"1"], 0.0)
    assert queue.from_worker([b"W1", b"C", b"", b"1"], 0.1) == [(FRONT, [b"C", b"", b"1"])]
    assert queue.has_idle_worker()


def test_idle_workers_are_heartbeaten_once_an_interval(queue):
    queue.from_worker([b"W1", READY], 0.0)
    assert queue.tick(0.5) == []
    assert queue.tick(1.0) == [(BACK, [b"W1", HEARTBEAT])]


def test_a_worker_silent_for_three_intervals_gets_no_more_requests(queue):
    queue.from_worker([b"W1", READY], 0.0)
    queue.from_worker([b"W2", READY], 0.0)
    queue.from_worker([b"W2", HEARTBEAT], 2.0)
    queue.tick(3.5)
    assert queue.from_client([b"C", b"", b"1"], 3.5) == [(BACK, [b"W2", b"C", b"", b"1"])]


def test_a_heartbeat_from_an_unknown_worker_does_not_make_it_idle(queue):
    queue.from_worker([b"STRANGER", HEARTBEAT], 0.0)
    assert not queue.has_idle_worker()


def test_malformed_messages_are_counted_and_dropped(queue):
    assert queue.from_worker([b"W1"], 0.0) == []
    assert queue.from_worker([b"W1", b"\x09"], 0.0) == []
    assert queue.from_client([b"C", b"not empty", b"1"], 0.0) == []
    assert queue.invalid == 3


# ------------------------------------------------------------------ logic: the worker and the client


def test_the_worker_echoes_a_request_with_its_envelope_and_ignores_heartbeats():
    worker = pirate.PirateWorker()
    assert worker.connect() == [READY]
    assert worker.handle([b"C", b"", b"7"]) == [b"C", b"", b"7"]
    assert worker.handle([HEARTBEAT]) is None
    assert worker.served == 1


def test_the_tally_counts_a_request_with_two_outcomes_and_a_wrong_reply():
    tally = pirate.Tally()
    tally.reply(1, [b"1"])
    tally.timeout(2)
    tally.reply(2, [b"2"])
    tally.reply(3, [b"4"])
    assert tally.summary() == {"answered": 3, "timed_out": 1, "wrong": 1, "twice": 1}


# ------------------------------------------------------------------ the scripts, killed mid-run


def queue_script(frontend: str, backend: str) -> Script:
    queue = Script(PIRATE / "ppqueue.py", frontend, backend, "--heartbeat", "0.2")
    assert queue.read_line().startswith("queue: clients on")
    return queue


def worker_script(backend: str) -> Script:
    worker = Script(PIRATE / "worker.py", backend, "--heartbeat", "0.2", "--backoff", "0.1")
    assert worker.read_line().startswith("worker: serving")
    return worker


@pytest.mark.system
@pytest.mark.timeout(60)
def test_every_request_is_answered_or_times_out_and_none_twice_when_the_queue_and_a_worker_are_killed():
    frontend, backend = free_tcp_endpoint(), free_tcp_endpoint()
    scripts = []
    try:
        scripts.append(queue_script(frontend, backend))
        workers = [worker_script(backend) for _ in range(2)]
        scripts += workers
        client = Script(PIRATE / "client.py", frontend, "300", "--timeout", "0.3", "--retries", "3",
                        "--progress", "50")
        scripts.append(client)
        client.wait_for_line("100 requests", "stderr", timeout=30)
        workers[0].proc.send_signal(signal.SIGKILL)
        client.wait_for_line("150 requests", "stderr", timeout=30)
        scripts[0].proc.send_signal(signal.SIGKILL)
        assert scripts[0].finish()[0] == -signal.SIGKILL
        scripts.append(queue_script(frontend, backend))  # the same ports: the worker must come back to it
        returncode, out, err = client.finish(timeout=40)
        assert returncode == 0, err
        summary = json.loads(out)
        print(f"reliability: paranoid pirate, queue and a worker killed: {summary}")
        assert summary["answered"] + summary["timed_out"] == 300
        assert summary["twice"] == 0 and summary["wrong"] == 0
        assert summary["answered"] > 150  # requests after the restart were answered too
        for script in [workers[1], scripts[-1]]:
            returncode, _, err = script.stop()
            assert returncode == 0, err
            assert "Traceback" not in err
    finally:
        stop_all(scripts)
