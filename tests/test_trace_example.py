"""examples/example_app/README.md's message chains, held against what really goes over the wire."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helper_procs import EXAMPLE_APP, PongProc

from pingproc import PingProc

from pollframe import trace
from pollframe.testing.chains import assert_chain, chains_in

ROOT = Path(__file__).resolve().parents[1]
README = EXAMPLE_APP / "README.md"
CHAINS = chains_in(README)


@pytest.fixture(scope="module")
def traced_main_run(tmp_path_factory):
    """The trace of ``POLLFRAME_TRACE=DIR python examples/example_app/main.py``, run as a user runs it."""
    directory = tmp_path_factory.mktemp("main-trace")
    env = dict(os.environ, POLLFRAME_TRACE=str(directory),
               PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path))
    done = subprocess.run([sys.executable, str(EXAMPLE_APP / "main.py")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture
def tracing(tmp_path):
    """Tracing on in this process (and the children it starts) for one test."""
    trace.enable(tmp_path)
    try:
        yield tmp_path
    finally:
        trace.disable()


def test_the_readme_documents_three_chains():
    assert list(CHAINS) == ["Sending pings", "Stopping the pong process", "Refusing a request"]


def test_the_sending_pings_chain_is_what_main_py_sends(traced_main_run):
    assert_chain(traced_main_run, CHAINS["Sending pings"])


def test_the_stopping_chain_is_what_main_py_sends(traced_main_run):
    assert_chain(traced_main_run, CHAINS["Stopping the pong process"])


def test_the_refusing_chain_is_what_pongproc_answers_a_count_that_is_not_an_integer(tracing, start_process):
    pong = start_process(PongProc("127.0.0.1"))
    ping = PingProc(pong.endpoint, count=1)
    ping.pinger.first_message = lambda: ["ping", ["three"], {}]  # type: ignore[method-assign]
    with pytest.raises(SystemExit, match="PongProc refused a request"):
        ping.run()
    pong.shutdown()
    assert_chain(tracing, CHAINS["Refusing a request"])


def test_a_child_process_traces_as_its_parent_did_when_it_started_it(tmp_path, start_process):
    from pollframe.client import RequestClient

    def ask(pong):
        with RequestClient(pong.endpoint, timeout=5, retries=1) as client:
            client.request("ping", 1)

    start_process(PongProc("127.0.0.1")).shutdown()  # the forkserver now runs, started without tracing
    trace.enable(tmp_path)
    try:
        traced = start_process(PongProc("127.0.0.1"))
        ask(traced)
        traced.shutdown()
    finally:
        trace.disable()
    untraced = start_process(PongProc("127.0.0.1"))
    ask(untraced)
    untraced.shutdown()
    (name,) = [p.name for p in tmp_path.glob("PongProc-*.pftrace")]  # the asking client's file is beside it
    assert name.startswith(f"PongProc-{traced.pid}")
