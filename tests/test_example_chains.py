"""The Majordomo and Paranoid Pirate READMEs' message chains, held against what goes over the wire.

Each test runs the example scripts as a user would, with ``POLLFRAME_TRACE``
set, makes the chain happen (a request, a frozen worker, a broker stopped)
and checks the README's block against the recorded trace with
:func:`~pollframe.testing.chains.assert_chain`. Heartbeats come on their
own clock, so a chain made of them is waited for (the trace is read again
until it shows the chain or the deadline passes), and any other chain is
matched with the heartbeats left out: under load one may come between two
steps of a request.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest
from scripts import EXAMPLES, Script, stop_all

from pollframe.testing import free_tcp_endpoint
from pollframe.testing.chains import assert_chain, chains_in
from pollframe.tracefmt import Step

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]

MAJORDOMO = EXAMPLES / "majordomo"
PIRATE = EXAMPLES / "paranoid_pirate"
MDP_CHAINS = chains_in(MAJORDOMO / "README.md")
PIRATE_CHAINS = chains_in(PIRATE / "README.md")
#: "The broker stops" as the broker sent it: a worker that hears of the stop first from its socket's
#: disconnected event reconnects at once and never reads it (the README says so).
DISCONNECT_SENT = """
    1 IN : [worker_id, '', b'MDPW01', 0x05]
    1 OUT: ...
"""
HB = "0.2"  # the scripts' heartbeat: a silent peer is gone after 0.6 s
#: The client's request, received by the broker (no diagram: any participants; the waiting client
#: may not have written its side yet).
REQUEST_AT_THE_BROKER = """
    1 IN : ...
    1 OUT: [client_id, '', b'MDPC01', b'echo', b'1']
"""


def mdp_heartbeat(step: Step) -> bool:
    frames = step.sent if step.sent is not None else step.received
    return frames is not None and frames[-1:] == [b"\x04"] and b"MDPW01" in frames


def pirate_heartbeat(step: Step) -> bool:
    frames = step.sent if step.sent is not None else step.received
    return frames is not None and frames[-1:] == [b"\x02"]


def chain_appears(trace: Path, block: str, timeout: float = 10.0,
                  skip: Optional[Callable[[Step], bool]] = None) -> None:
    """Read the trace again until it holds ``block``; fail with the closest diff after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert_chain(trace, block, skip=skip)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)  # sleep-ok: polling the trace files with a deadline (no event to wait on)


@pytest.fixture
def traced(tmp_path: Path) -> Iterator["Traced"]:
    run = Traced(tmp_path)
    try:
        yield run
    finally:
        stop_all(run.scripts)


class Traced:
    """Example scripts started with tracing on, into one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.scripts: List[Optional[Script]] = []

    def start(self, path: Path, *args: str, ready: Optional[str] = None) -> Script:
        script = Script(path, *args, env={"POLLFRAME_TRACE": str(self.directory)})
        self.scripts.append(script)
        if ready is not None:
            script.wait_for_line(ready)
        return script


def mdp_client(traced: Traced, endpoint: str, count: int) -> Script:
    return traced.start(MAJORDOMO / "client.py", endpoint, str(count), "--timeout", "10", "--retries", "1")


def mdp_broker_and_worker(traced: Traced, endpoint: str) -> "tuple[Script, Script]":
    """A broker and a worker, once the broker has the worker's READY (so mmi.service says 200)."""
    broker = traced.start(MAJORDOMO / "broker.py", endpoint, "--heartbeat", HB, ready="MDP broker on")
    worker = traced.start(MAJORDOMO / "worker.py", endpoint, "--heartbeat", HB, ready="MDP worker for")
    chain_appears(traced.directory, MDP_CHAINS["A worker registers"])
    return broker, worker


# ------------------------------------------------------------------ Majordomo


def test_the_majordomo_readme_documents_its_chains() -> None:
    assert list(MDP_CHAINS) == ["A worker registers", "Both sides heartbeat", "A request and its reply",
                                "A worker dies with a request in hand", "The broker stops",
                                "Asking whether a service is there (RFC 8)"]


def test_the_majordomo_chains_of_asking_requesting_heartbeating_and_stopping_are_what_the_scripts_send(
        traced: Traced) -> None:
    endpoint = free_tcp_endpoint()
    broker, _ = mdp_broker_and_worker(traced, endpoint)
    assert mdp_client(traced, endpoint, 1).finish()[:2] == (0, "OK")
    assert_chain(traced.directory, MDP_CHAINS["Asking whether a service is there (RFC 8)"],
                 skip=mdp_heartbeat)
    assert_chain(traced.directory, MDP_CHAINS["A request and its reply"], skip=mdp_heartbeat)
    chain_appears(traced.directory, MDP_CHAINS["Both sides heartbeat"])
    returncode, _, err = broker.stop()
    assert returncode == 0, err
    chain_appears(traced.directory, DISCONNECT_SENT, skip=mdp_heartbeat)


def test_the_majordomo_chain_of_a_worker_that_answers_too_late_is_what_the_scripts_send(
        traced: Traced) -> None:
    endpoint = free_tcp_endpoint()
    traced.start(MAJORDOMO / "broker.py", endpoint, "--heartbeat", HB, ready="MDP broker on")
    # Busy for 5 heartbeat intervals on each request: silent that long, so the broker forgets it.
    traced.start(MAJORDOMO / "worker.py", endpoint, "--heartbeat", HB, "--work", "1.0",
                 ready="MDP worker for")
    chain_appears(traced.directory, MDP_CHAINS["A worker registers"])
    client = mdp_client(traced, endpoint, 1)
    chain_appears(traced.directory, REQUEST_AT_THE_BROKER, skip=mdp_heartbeat)  # handed to the only worker
    traced.start(MAJORDOMO / "worker.py", endpoint, "--heartbeat", HB, ready="MDP worker for")
    assert client.finish()[:2] == (0, "OK")  # answered by the second worker
    # The slow worker may take the broker for gone too and reconnect before it reads DISCONNECT.
    documented = MDP_CHAINS["A worker dies with a request in hand"]
    late_reply = documented.replace("2 OUT: ['', b'MDPW01', 0x05]", "2 OUT: ...")
    assert late_reply != documented
    chain_appears(traced.directory, late_reply, skip=mdp_heartbeat)


# ------------------------------------------------------------------ Paranoid Pirate


def test_the_paranoid_pirate_readme_documents_its_chains() -> None:
    assert list(PIRATE_CHAINS) == ["A worker joins", "Both sides heartbeat", "A request and its reply"]


def test_the_paranoid_pirate_chains_are_what_the_scripts_send(traced: Traced) -> None:
    frontend, backend = free_tcp_endpoint(), free_tcp_endpoint()
    traced.start(PIRATE / "ppqueue.py", frontend, backend, "--heartbeat", HB, ready="queue:")
    traced.start(PIRATE / "worker.py", backend, "--heartbeat", HB, ready="worker:")
    client = traced.start(PIRATE / "client.py", frontend, "1", "--timeout", "10", "--retries", "1")
    returncode, out, err = client.finish()
    assert (returncode, out) == (0, '{"answered": 1, "timed_out": 0, "wrong": 0, "twice": 0}'), err
    assert_chain(traced.directory, PIRATE_CHAINS["A worker joins"])
    assert_chain(traced.directory, PIRATE_CHAINS["A request and its reply"], skip=pirate_heartbeat)
    chain_appears(traced.directory, PIRATE_CHAINS["Both sides heartbeat"])
