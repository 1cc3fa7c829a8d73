"""The pollframe command, run as a user runs it: a subprocess per test."""
from __future__ import annotations

import configparser
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq
from helper_procs import PongProc

from pollframe import cli, trace

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 30


def command_env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path), **extra)
    env.pop(trace.ENV, None)
    env.update(extra)
    return env


def pollframe(*args, **env):
    """Run ``python -m pollframe ARGS`` to its end: (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "pollframe", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=command_env(**env))
    return proc.returncode, proc.stdout, proc.stderr


def start(*args, **env):
    return subprocess.Popen([sys.executable, "-m", "pollframe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=command_env(**env))


def read_line(stream, timeout=TIMEOUT):
    """The next line of a child's pipe, or fail after ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        assert sel.select(timeout), f"no line within {timeout} s"
    return stream.readline()


@pytest.fixture
def rep_server(ctx):
    """A plain REP server in a thread that answers every request with its frames reversed in a list."""
    sock = ctx.socket(zmq.REP)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve():
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not stop.is_set():
            if poller.poll(50):
                request = json.loads(sock.recv())
                sock.send(json.dumps(["echo", request[1], {}]).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{port}"
    stop.set()
    thread.join(5)
    sock.close(linger=0)


# --------------------------------------------------------------------------- ask


def test_ask_prints_pongprocs_reply_and_exits_0(start_process):
    pong = start_process(PongProc("127.0.0.1"))
    status, out, err = pollframe("ask", pong.endpoint, "ping", "3")
    assert (status, out) == (0, '["pong", [3], {}]\n'), err


def test_ask_from_a_dealer_exits_1_on_an_error_reply_and_prints_the_reason(start_process):
    pong = start_process(PongProc("127.0.0.1"))
    status, out, err = pollframe("ask", "--dealer", pong.endpoint, "ping", "three")
    assert status == 1
    assert json.loads(out) == ["error", ["ping count must be an integer, not 'three'"], {}]
    assert "error reply: ping count must be an integer, not 'three'" in err


def test_ask_parses_each_arg_as_json_and_a_word_that_is_not_json_as_a_string(rep_server):
    status, out, _ = pollframe("ask", rep_server, "anything", "1", '"two"', "three", "[4]", '{"five": 5}')
    assert status == 0
    assert json.loads(out) == ["echo", [1, "two", "three", [4], {"five": 5}], {}]


def test_ask_exits_3_when_no_reply_comes_within_the_timeout_of_each_retry(ctx):
    silent = ctx.socket(zmq.ROUTER)  # takes requests, never answers
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    status, out, err = pollframe("ask", f"127.0.0.1:{port}", "ping", "1",
                                 "--timeout", "0.1", "--retries", "2")
    assert (status, out) == (3, "")
    assert f"no reply from tcp://127.0.0.1:{port} after 2 attempt(s) of 0.1 s each" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("endpoint, reason", [
    ("127.0.0.1:port", "port 'port' is not a number"),
    ("udp://127.0.0.1:5", "unknown transport 'udp'"),
])
def test_ask_names_a_bad_endpoint_and_exits_2_without_a_traceback(endpoint, reason):
    status, _, err = pollframe("ask", endpoint, "ping")
    assert status == 2 and reason in err and "Traceback" not in err


# ------------------------------------------------------------------------ listen


def test_listen_prints_each_published_message_decoded_until_count(ctx):
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    child = start("listen", f"tcp://127.0.0.1:{port}", "--sub", "news", "--count", "2")
    try:
        read_line(child.stderr)  # connected; its subscription reaches us a moment later
        while child.poll() is None:  # publish until it has had its two (no sleep: the poll waits)
            pub.send_multipart([b"news", b'["weather", ["rain"], {}]'])
            pub.send_multipart([b"sport", b'["ignored", [], {}]'])
            zmq.Poller().poll(20)
        out = child.stdout.read()
    finally:
        child.kill()
        child.wait(TIMEOUT)
    assert child.returncode == 0
    assert out.splitlines()[:2] == ["[b'news', 'weather, [\"rain\"], {}']"] * 2


def test_listen_with_pull_stops_on_ctrl_c_with_status_130_and_no_traceback(ctx):
    push = ctx.socket(zmq.PUSH)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    child = start("listen", "--pull", f"127.0.0.1:{port}")
    try:
        assert "PULL connected to" in read_line(child.stderr)
        push.send(b'["hello", [], {}]')
        assert read_line(child.stdout) == "['hello, [], {}']\n"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=TIMEOUT)
    finally:
        child.kill()
    assert child.returncode == 130
    assert "Traceback" not in err and "interrupted" in err


# ------------------------------------------------------------------------- trace


def test_trace_prints_the_chain_of_a_traced_run(tmp_path, start_process, monkeypatch):
    pong = start_process(PongProc("127.0.0.1"))
    status, _, err = pollframe("ask", pong.endpoint, "ping", "5", POLLFRAME_TRACE=str(tmp_path))
    assert status == 0, err
    status, out, err = pollframe("trace", str(tmp_path))
    assert status == 0, err
    assert "    1 IN : ['ping, [5], {}']" in out
    assert "    2 OUT: ['pong, [5], {}']" in out
    status, out, _ = pollframe("trace", str(tmp_path), "--mermaid")
    assert status == 0 and "sequenceDiagram" in out


def test_trace_of_a_directory_without_traces_says_so_and_exits_1(tmp_path):
    status, out, err = pollframe("trace", str(tmp_path))
    assert (status, out) == (1, "") and "no trace files" in err
    status, _, err = pollframe("trace", str(tmp_path / "missing"))
    assert status == 2 and "no such directory" in err


# ------------------------------------------------------------------ installation


def test_the_pollframe_console_script_runs_cli_main():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in config["options.entry_points"]["console_scripts"].split("\n")
                   if line.strip())
    assert scripts["pollframe"] == "pollframe.cli:main"
    assert cli.main is not None
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
