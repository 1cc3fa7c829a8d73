"""Supervision: the restart logic on numbers, then real children watched and restarted on a loop."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helper_procs import BadAddressProc, EchoProc, SupervisorProc

from pollframe.client import RequestClient, RequestTimeout
from pollframe.supervise import RestartPolicy, RestartTracker, Supervisor, watch_exit
from pollframe.testing import run_until

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0  # seconds a test waits for a child to start, exit or come back


# ------------------------------------------------------------ the restart logic, sans-io


def decisions(policy: RestartPolicy, exits: list[tuple[int, float, float]]) -> list[tuple[str, float]]:
    """Feed (exit code, started, now) exits to a fresh tracker; its (action, delay) answers."""
    tracker = RestartTracker(policy)
    answers = (tracker.exited(code, None, started, now) for code, started, now in exits)
    return [(d.action, d.delay) for d in answers]


def test_the_backoff_doubles_from_backoff_up_to_its_cap():
    policy = RestartPolicy(backoff=0.1, backoff_max=0.5, max_restarts=100)
    got = decisions(policy, [(1, t, t + 0.01) for t in range(6)])
    assert got == [("restart", 0.1), ("restart", 0.2), ("restart", 0.4)] + [("restart", 0.5)] * 3


def test_a_child_that_stayed_up_long_enough_starts_the_backoff_again():
    policy = RestartPolicy(backoff=0.1, reset_after=10, max_restarts=100)
    got = decisions(policy, [(1, 0, 0.1), (1, 1, 1.1), (1, 2, 20.0)])
    assert got == [("restart", 0.1), ("restart", 0.2), ("restart", 0.1)]


def test_more_restarts_than_allowed_within_the_window_give_up_and_older_ones_do_not_count():
    policy = RestartPolicy(backoff=0, max_restarts=2, window=10)
    actions = [a for a, _ in decisions(policy, [(1, 0, 1), (1, 1, 2), (1, 2, 3)])]
    assert actions == ["restart", "restart", "give_up"]
    assert [a for a, _ in decisions(policy, [(1, 0, 1), (1, 1, 2), (1, 20, 21)])] == ["restart"] * 3


@pytest.mark.parametrize(
    "restart, clean, failed",
    [("never", "leave", "leave"), ("on_failure", "leave", "restart"), ("always", "restart", "restart")],
)
def test_each_policy_restarts_what_it_says(restart, clean, failed):
    policy = RestartPolicy(restart=restart, backoff=0.1)
    assert RestartTracker(policy).exited(0, None, 0, 1).action == clean
    assert RestartTracker(policy).exited(1, None, 0, 1).action == failed
    assert RestartTracker(policy).exited(0, "ValueError: bad", 0, 1).action == failed  # setup() failed
    assert RestartTracker(policy).exited(0, None, 0, 1).delay == 0  # a clean exit comes back at once


def test_a_bad_policy_is_refused():
    with pytest.raises(ValueError, match="restart must be one of"):
        RestartPolicy(restart="sometimes")
    with pytest.raises(ValueError, match="backoff"):
        RestartPolicy(backoff=2, backoff_max=1)


# ------------------------------------------------------------ watching a child's exit on the loop


def test_watch_exit_calls_back_once_with_the_joined_process_and_unregisters_its_sentinel(loop, caplog):
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(7,))
    child.start()
    calls = []
    watch_exit(loop, child, calls.append)
    run_until(loop, lambda: calls, timeout=WAIT, what="the exit callback")
    for _ in range(20):  # a sentinel left registered would be readable, and called back, on each pass
        loop.run_once(0)
    assert calls == [child] and child.exitcode == 7
    assert not loop.is_registered(child.sentinel)
    assert "unregistered it" not in caplog.text  # the loop's guard against a spinning fd never had to act


# ------------------------------------------------------------ the supervisor with real children


@pytest.fixture
def supervisor(loop):
    sup = Supervisor(loop)
    yield sup
    sup.close()


def test_a_child_that_fails_in_setup_again_and_again_is_given_up_with_its_reason(loop, supervisor, caplog):
    given_up = []
    supervisor.on_give_up = lambda child, error: given_up.append(error)
    policy = RestartPolicy(backoff=0.01, max_restarts=2)
    child = supervisor.add(BadAddressProc, policy, name="bad")
    run_until(loop, lambda: given_up, timeout=WAIT, what="the supervisor to give up")
    assert child.restarts == 2 and child.exitcodes == [1, 1, 1]
    message = str(given_up[0])
    assert "gave up on bad" in message and "setup() failed" in message
    assert "bad address 'no-such-transport://x'" in message
    assert message in caplog.text
    for _ in range(5):
        loop.run_once(0.02)
    assert child.exitcodes == [1, 1, 1]  # nothing was started again


def test_a_child_under_never_is_watched_but_not_started_again(loop, supervisor, ipc_endpoint):
    exits = []
    supervisor.on_exit = lambda child, code: exits.append(code)
    child = supervisor.add(functools.partial(EchoProc, ipc_endpoint), RestartPolicy(restart="never"))
    assert child.process is not None
    child.process.wait_ready(WAIT)
    os.kill(child.process.pid, signal.SIGKILL)
    run_until(loop, lambda: exits, timeout=WAIT, what="the exit callback")
    assert exits == [-signal.SIGKILL] and child.restarts == 0 and not child.running


def test_close_stops_every_child_and_nothing_is_restarted(loop, supervisor, ipc_endpoint):
    child = supervisor.add(functools.partial(EchoProc, ipc_endpoint), RestartPolicy(restart="always"))
    assert child.process is not None
    child.process.wait_ready(WAIT)
    supervisor.close()
    assert child.process.exitcode == 0 and child.restarts == 0


def _gone(pid: int) -> bool:
    try:
        return Path("/proc", str(pid), "stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_killed_three_times_under_load_comes_back_each_time_and_clients_only_retry(
    start_process, tcp_endpoint
):
    # The supervisor is a ZmqProcess of its own: the parent that runs it on its loop, as deployed.
    supervising = start_process(SupervisorProc(tcp_endpoint))
    load = {"answered": 0, "timeouts": 0}
    done = threading.Event()

    def keep_asking() -> None:  # a second client, asking all the time: the load
        with contextlib.closing(RequestClient(tcp_endpoint, timeout=0.25, retries=4)) as other:
            while not done.is_set():
                try:
                    other.request("pid")
                    load["answered"] += 1
                except RequestTimeout:
                    load["timeouts"] += 1

    loader = threading.Thread(target=keep_asking)
    loader.start()
    client = RequestClient(tcp_endpoint, timeout=0.25, retries=20)
    pids: list[int] = []
    answered = timeouts = kills = served_by_this_one = 0
    deadline = time.monotonic() + 30
    try:
        while kills < 3 or len(pids) < 4 or served_by_this_one < 20:
            assert time.monotonic() < deadline, f"{kills} kills, workers {pids}, {answered} answered"
            try:
                _, (pid,), _ = client.request("pid")
            except RequestTimeout:  # allowed: the client retries on a fresh socket
                timeouts += 1
                continue
            answered += 1
            if not pids or pid != pids[-1]:
                assert pid not in pids  # a new worker, never an old one back
                pids.append(pid)
                served_by_this_one = 0
            served_by_this_one += 1
            if served_by_this_one == 20 and kills < 3:
                os.kill(pid, signal.SIGKILL)
                kills += 1
    finally:
        client.close()
        done.set()
        loader.join(WAIT)  # each of its requests ends within 4 x 0.25 s: a hang shows here
    assert not loader.is_alive()
    print(f"reliability: worker SIGKILLed 3 times: {answered} requests answered by {len(pids)} workers, "
          f"{timeouts} RequestTimeouts, {client.timeouts} attempts timed out and were retried; the second "
          f"client: {load['answered']} answered, {load['timeouts']} RequestTimeouts (4 attempts of 0.25 s)")
    assert len(pids) == 4 and timeouts == 0
    assert supervising.shutdown() == 0  # and its worker with it
    assert all(_gone(pid) for pid in pids)
