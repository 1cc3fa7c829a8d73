"""Message limits under attack: the example's PongProc against messages built to exhaust its memory.

libzmq's ``MAXMSGSIZE`` bounds each frame, so a message of 64 frames of
exactly 1 MiB, or of 100,000 empty frames, passes it. The stream's reader
bounds the whole message (``ZmqProcess.max_msg_size``, ``max_frames``):
such a message is discarded frame by frame without being copied, never
reaches the handler and is never echoed back. Measured numbers are printed
with the prefix ``reliability:`` (``pytest -s``); docs/reliability.md
collects them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import zmq
from robust_peers import FixedMmapPongProc

from pollframe.client import RequestClient
from pollframe.units import MAX_MSG_SIZE

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20
#: Frames of exactly libzmq's per-frame limit: each passes MAXMSGSIZE, the message does not.
BIG_FRAMES = 64
BIG_MESSAGES = 4
EMPTY_FRAMES = 100_000
EMPTY_MESSAGES = 10
#: What the process may hold beyond libzmq's own copy of the one message in flight.
SLACK_KIB = 32 * 1024


def status_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> bool:
    """Start ``VmHWM`` again from the current RSS (Linux ``clear_refs`` 5); False where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def answered_within(client: RequestClient, n: int) -> float:
    """Seconds the good client waited for its pong."""
    started = time.monotonic()
    assert client.request("ping", n) == ("pong", [n], {})
    return time.monotonic() - started


def ping_in_line(attacker: zmq.Socket, n: int) -> list:
    """A valid ping on the attacker's own connection: its pong proves every earlier message was read.

    Returns every reply that came first (an echoed attack message would be one).
    """
    attacker.send_multipart([b"", json.dumps(["ping", [n], {}]).encode()])
    before = []
    while True:
        assert attacker.poll(20_000), "the attacker's ping was not answered within 20 s"
        frames = attacker.recv_multipart(copy=False)
        body = frames[-1].bytes
        if len(frames) == 2 and json.loads(body) == ["pong", [n], {}]:
            return before
        before.append(len(frames))


@pytest.fixture
def pongproc(start_process, tmp_path):
    proc = FixedMmapPongProc("127.0.0.1")
    proc.log_path = str(tmp_path / "pongproc.log")
    return start_process(proc)


def test_messages_built_to_exhaust_memory_are_refused_unread_and_a_good_client_is_answered_within_1_s(
        pongproc, ctx, tmp_path):
    endpoint, pid = pongproc.endpoint, pongproc.pid
    good = RequestClient(endpoint, timeout=1.0, retries=1)
    attacker = ctx.socket(zmq.DEALER)
    attacker.linger = 0
    attacker.connect(endpoint)
    try:
        for n in range(20):  # warm up: the process's steady state before the attack
            answered_within(good, n)
        assert ping_in_line(attacker, 0) == []
        baseline = status_kib(pid, "VmRSS")
        peak_from = baseline if reset_peak(pid) else status_kib(pid, "VmHWM")

        frame = b"x" * MAX_MSG_SIZE  # exactly the per-frame limit: libzmq lets each one through
        waits, echoed = [], []
        for n in range(BIG_MESSAGES):
            attacker.send_multipart([b""] + [frame] * BIG_FRAMES, copy=False)
            echoed += ping_in_line(attacker, n + 1)  # read, one at a time: one message in flight
            waits.append(answered_within(good, n))
        peak_big = status_kib(pid, "VmHWM")
        for n in range(EMPTY_MESSAGES):
            attacker.send_multipart([b""] * EMPTY_FRAMES)
            if n % 5 == 4:
                echoed += ping_in_line(attacker, 100 + n)
                waits.append(answered_within(good, 100 + n))
        echoed += ping_in_line(attacker, 1000)
        retained = status_kib(pid, "VmRSS") - baseline
        peak = status_kib(pid, "VmHWM") - peak_from
    finally:
        good.close()
        attacker.close(linger=0)

    in_flight_kib = BIG_FRAMES * MAX_MSG_SIZE // 1024  # libzmq holds the whole message before we see it
    print(f"reliability: limits under attack: baseline={baseline} KiB, peak_growth={peak} KiB "
          f"(big messages: {peak_big - peak_from} KiB; allowed {in_flight_kib + SLACK_KIB}), "
          f"retained={retained} KiB, slowest_good_reply={max(waits) * 1000:.0f} ms, echoed={echoed}")
    assert echoed == [], "a refused message must never be echoed back"
    assert peak <= in_flight_kib + SLACK_KIB
    assert retained < SLACK_KIB
    assert max(waits) < 1.0
    log = Path(tmp_path / "pongproc.log").read_text()
    refused_lines = [line for line in log.splitlines() if "refused a message" in line]
    assert 1 <= len(refused_lines) <= 3, "logged on the 1st and 10th refusal, not on each"
