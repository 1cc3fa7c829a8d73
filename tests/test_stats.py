"""loop.stats(): per-socket and per-loop counters, the slow-callback warning, stats served on request."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from pollframe import stats, trace
from pollframe.loop import PollLoop
from pollframe.process import ZmqProcess
from pollframe.stream import Stream
from pollframe.testing import run_until

ROOT = Path(__file__).resolve().parents[1]


def socket_stats(loop, sock_type):
    (found,) = [s for s in loop.stats()["sockets"] if s["type"] == sock_type]
    return found


def busy(seconds):
    """Keep the CPU busy (a slow callback), without sleeping."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_reader_counts_the_messages_and_bytes_it_received(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    for frames in ([b"a"], [b"bb", b"ccc"], [b"dddd"]):
        push.send_multipart(frames)
    run_until(loop, lambda: len(got) == 3)
    counts = socket_stats(loop, "PULL")
    assert (counts["msgs_in"], counts["bytes_in"]) == (3, 10)
    assert counts["registered_at"].startswith("test_stats.py:")


def test_the_single_frame_reader_counts_too(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append, multipart=False)
    push.send(b"12345")
    push.send(b"67")
    run_until(loop, lambda: len(got) == 2)
    assert (socket_stats(loop, "PULL")["msgs_in"], socket_stats(loop, "PULL")["bytes_in"]) == (2, 7)


def test_a_stream_counts_what_it_sent_and_its_queue_high_water_mark(loop, ctx):
    push = ctx.socket(zmq.PUSH)
    push.sndhwm = 1
    push.connect("inproc://nobody-yet")  # no peer: sends queue in the stream
    stream = Stream(push, loop)
    for i in range(3):
        stream.send(b"x" * (i + 1))
    counts = socket_stats(loop, "PUSH")
    taken = counts["msgs_out"]  # libzmq's pipe to the pending inproc peer holds up to its HWM
    assert taken < 3 and (counts["queued"], counts["queue_hwm"]) == (3 - taken, 3 - taken)
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://nobody-yet")
    run_until(loop, lambda: stream.queued() == 0)
    counts = socket_stats(loop, "PUSH")
    assert (counts["msgs_out"], counts["bytes_out"], counts["queued"]) == (3, 6, 0)
    assert counts["queue_hwm"] == 3 - taken
    stream.close(linger=0)


def test_a_routers_unroutable_messages_show_in_its_stats(loop, ctx):
    router = ctx.socket(zmq.ROUTER)
    router.router_mandatory = 1
    router.bind("inproc://unroutable")
    stream = Stream(router, loop)
    stream.send_multipart([b"nobody", b"", b"hello"])
    assert socket_stats(loop, "ROUTER")["unroutable"] == 1
    stream.close(linger=0)


def test_a_closed_stream_leaves_the_stats(loop, ctx):
    stream = Stream(ctx.socket(zmq.PUSH), loop)
    assert [s["type"] for s in loop.stats()["sockets"]] == ["PUSH"]
    stream.close(linger=0)
    assert loop.stats()["sockets"] == []


def test_the_loop_counts_passes_callbacks_errors_and_how_late_timers_ran(loop_on_clock, fake_clock):
    loop = loop_on_clock
    loop.call_at(fake_clock() + 5, lambda: None)
    loop.call_soon(lambda: 1 / 0)
    fake_clock.advance(5.25)
    loop.run_once(0)
    snapshot = loop.stats()["loop"]
    assert snapshot["passes"] == 1
    assert snapshot["callbacks"] >= 2 and snapshot["errors"] == 1
    assert snapshot["timer_batches"] == 1
    assert snapshot["max_timer_lateness"] == pytest.approx(0.25)


class Touchy(PollLoop):
    """A loop with a 20 ms slow-callback threshold, so the test needs no 100 ms callback."""

    slow_callback = 0.02


def test_a_slow_callback_is_logged_once_with_its_name_and_duration_and_counted_each_time(caplog):
    loop = Touchy()
    try:
        def dawdle():
            busy(0.03)
        for _ in range(2):
            loop.call_soon(dawdle)
            with caplog.at_level(logging.WARNING, logger="pollframe"):
                loop.run_once(0)
    finally:
        loop.close()
    warnings = [r.getMessage() for r in caplog.records if "blocked the loop" in r.getMessage()]
    assert len(warnings) == 1
    assert "dawdle" in warnings[0] and "test_stats.py" in warnings[0] and " ms" in warnings[0]
    snapshot = loop.stats()["loop"]
    assert snapshot["slow"] == 2 and snapshot["slowest"]["seconds"] >= 0.03
    assert "dawdle" in snapshot["slowest"]["what"]


def test_a_slow_receive_callback_is_reported_with_its_socket_and_registration(caplog, push_pull):
    push, pull = push_pull
    loop = Touchy()
    try:
        got = []
        loop.register(pull, lambda frames: (busy(0.03), got.append(frames)))
        push.send(b"slow")
        with caplog.at_level(logging.WARNING, logger="pollframe"):
            run_until(loop, lambda: got)
    finally:
        loop.close()
    (warning,) = [r.getMessage() for r in caplog.records if "blocked the loop" in r.getMessage()]
    assert "receive callback" in warning and "PULL inproc://push-pull" in warning
    assert "registered at test_stats.py:" in warning


def test_the_default_slow_callback_threshold_is_100_ms():
    assert stats.SLOW_CALLBACK == PollLoop.slow_callback == 0.1


class StatsServer(ZmqProcess):
    """A process that serves its stats on a REP stream bound to a random port."""

    def setup(self):
        super().setup()
        stream, _ = self.stream(zmq.REP, "127.0.0.1", bind=True)
        stats.serve_stats(self.loop, stream)


def test_pollframe_stats_reads_the_stats_a_process_serves(start_process):
    server = start_process(StatsServer())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path))
    env.pop(trace.ENV, None)
    run = [sys.executable, "-m", "pollframe", "stats"]
    done = subprocess.run(run + [server.endpoint], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    assert "passes" in done.stdout and "REP" in done.stdout and server.endpoint in done.stdout
    done = subprocess.run(run + ["--json", server.endpoint], capture_output=True, text=True, timeout=30,
                          env=env)
    snapshot = json.loads(done.stdout)
    (rep,) = [s for s in snapshot["sockets"] if s["type"] == "REP"]
    # The first request and its reply; this request's drain is still running when the snapshot is taken.
    assert rep["msgs_in"] == 1 and rep["msgs_out"] == 1
    done = subprocess.run(run + ["127.0.0.1:x"], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2 and "bad address" in done.stderr and "Traceback" not in done.stderr


def test_a_stats_socket_answers_anything_else_with_an_error(start_process):
    server = start_process(StatsServer())
    from pollframe.client import RemoteError, RequestClient

    with RequestClient(server.endpoint, timeout=5, retries=1) as client:
        with pytest.raises(RemoteError, match="only answers 'stats'"):
            client.request("ping", 1)
