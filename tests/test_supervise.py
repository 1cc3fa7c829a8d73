"""Supervision: the restart logic on numbers, then real children watched and restarted on a loop."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helper_procs import BadAddressProc, EchoProc, HangsInSetup, StopsItself, SupervisorProc

from pollframe.client import RequestClient, RequestTimeout
from pollframe.supervise import RestartPolicy, RestartTracker, Supervisor, watch_exit, watch_ready
from pollframe.testing import run_for, run_until

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


def test_only_a_child_that_was_ready_restarts_the_backoff_however_long_it_ran():
    policy = RestartPolicy(backoff=0.1, reset_after=10, max_restarts=100)
    tracker = RestartTracker(policy)
    delays = [tracker.exited(1, None, 0, 0.1).delay, tracker.exited(1, "not ready", None, 30).delay]
    assert delays == [0.1, 0.2]  # up since None: it hung 30 s before it was ready, never up
    assert tracker.exited(1, None, 30, 40).delay == 0.1  # ready at 30, up for 10 s: back to the start


def test_a_failed_start_counts_as_a_failure_whatever_its_exit_code():
    decision = RestartTracker(RestartPolicy(backoff=0.1)).exited(0, "not ready within 2 s", None, 5)
    assert (decision.action, decision.delay, decision.reason) == ("restart", 0.1, "not ready within 2 s")


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
    with pytest.raises(ValueError, match="ready_timeout must be None or > 0"):
        RestartPolicy(ready_timeout=0)


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


def test_watch_ready_lets_go_of_the_pipe_when_the_process_is_joined_before_its_child_said_a_word(loop):
    process = HangsInSetup()
    process.start()
    try:
        fd = process.ready_fileno()
        watch = watch_ready(loop, process, lambda p: pytest.fail("a child that never was ready"))
        assert fd is not None and loop.is_registered(fd) and watch.reports
        os.kill(process.pid, signal.SIGKILL)
        process.join(WAIT)  # closes the parent's end of the pipe
        assert process.exitcode == -signal.SIGKILL and not loop.is_registered(fd)
        for _ in range(5):
            loop.run_once(0)
        assert loop.errors == 0 and not watch.done
    finally:
        process.shutdown()


# ------------------------------------------------------------ the supervisor with real children


@pytest.fixture
def supervisor(loop):
    sup = Supervisor(loop)
    yield sup
    sup.close()


@pytest.fixture
def events(supervisor):
    """What the supervisor's callbacks said, in order: ("start", pid), ("ready", pid), ("exit", code), ..."""
    said: list[tuple[str, object]] = []
    supervisor.on_start = lambda child, process: said.append(("start", process.pid))
    supervisor.on_ready = lambda child, process: said.append(("ready", process.pid))
    supervisor.on_restart = lambda child, process: said.append(("restart", process.pid))
    supervisor.on_exit = lambda child, code: said.append(("exit", code))
    supervisor.on_give_up = lambda child, error: said.append(("give_up", str(error)))
    return said


def test_on_ready_fires_on_the_loop_after_the_child_bound_with_its_endpoint(
    loop, supervisor, events, ipc_endpoint
):
    child = supervisor.add(functools.partial(EchoProc, ipc_endpoint), name="echo")
    assert child.process is not None
    pid = child.process.pid
    assert events == [("start", pid)] and not child.ready  # started, not ready yet
    run_until(loop, lambda: child.ready, timeout=WAIT, what="the child to be ready")
    assert events == [("start", pid), ("ready", pid)]
    assert child.endpoints == [ipc_endpoint] and child.ready_at is not None
    print(f"reliability: on_ready {(child.ready_at - child.started_at) * 1000:.0f} ms after the start")
    assert (child.starts, child.restarts) == (1, 0)  # the first start is no restart


def test_on_ready_fires_when_wait_ready_read_the_childs_word_first(loop, supervisor, events, ipc_endpoint):
    child = supervisor.add(functools.partial(EchoProc, ipc_endpoint))
    assert child.process is not None
    assert child.process.wait_ready(WAIT) == [ipc_endpoint]  # the pipe holds nothing more to wake the loop
    run_until(loop, lambda: child.ready, timeout=WAIT, what="on_ready")
    assert [kind for kind, _ in events] == ["start", "ready"] and child.endpoints == [ipc_endpoint]


def test_a_restart_is_counted_and_on_restart_fires_once_the_replacement_is_ready(
    loop, supervisor, events, ipc_endpoint
):
    policy = RestartPolicy(restart="always", backoff=0.01)
    child = supervisor.add(functools.partial(EchoProc, ipc_endpoint), policy)
    run_until(loop, lambda: child.ready, timeout=WAIT, what="the first child to be ready")
    assert child.process is not None
    first = child.process.pid
    os.kill(first, signal.SIGKILL)
    run_until(loop, lambda: child.starts == 2, timeout=WAIT, what="the restart")
    second = child.process.pid
    assert child.restarts == 0 and not child.ready  # started again, not back yet
    run_until(loop, lambda: child.restarts == 1, timeout=WAIT, what="the replacement to be ready")
    assert events == [("start", first), ("ready", first), ("exit", -signal.SIGKILL),
                      ("start", second), ("ready", second), ("restart", second)]
    assert child.ready and child.endpoints == [ipc_endpoint]


def test_a_child_that_was_ready_and_ended_before_the_loop_looked_is_reported_ready_then_ended(
    loop, supervisor, events
):
    child = supervisor.add(StopsItself, RestartPolicy(restart="never"))
    assert child.process is not None
    pid = child.process.pid
    assert multiprocessing.connection.wait([child.process.sentinel], WAIT)  # not read: the loop finds both
    run_until(loop, lambda: child.exitcodes, timeout=WAIT, what="the exit")
    assert events == [("start", pid), ("ready", pid), ("exit", 0)] and not child.ready
    assert child.endpoints and child.endpoints[0].startswith("tcp://127.0.0.1:")


def test_a_child_that_hangs_in_setup_past_ready_timeout_is_stopped_and_counted_as_a_failure(
    loop, supervisor, events, caplog
):
    supervisor.stop_timeout = 0.1  # SIGTERM cannot end a setup() that waits: SIGKILL follows this soon
    policy = RestartPolicy(backoff=0.01, max_restarts=1, ready_timeout=0.2)
    child = supervisor.add(HangsInSetup, policy, name="hung")
    began = time.monotonic()
    run_until(loop, lambda: child.gave_up, timeout=WAIT, what="the supervisor to give up")
    print(f"reliability: two hung starts stopped and given up in {time.monotonic() - began:.2f} s, "
          f"exit codes {child.exitcodes}")
    assert [kind for kind, _ in events] == ["start", "exit", "start", "exit", "give_up"]  # never ready
    # SIGKILL; or SIGTERM, on a machine so loaded that the child had not reached run() yet
    assert set(child.exitcodes) <= {-signal.SIGKILL, -signal.SIGTERM} and len(child.exitcodes) == 2
    assert (child.starts, child.restarts) == (2, 0)
    assert "gave up on hung: 2 exits within 60 s, 1 restart(s) allowed; last: not ready within 0.2 s" in str(
        child.gave_up)
    assert "was not ready within 0.2 s; stopping it" in caplog.text


@pytest.fixture
def supervisor_on_clock(loop_on_clock):
    sup = Supervisor(loop_on_clock)
    yield sup
    sup.close()


def test_the_backoff_starts_again_only_for_a_child_that_stayed_up_reset_after_seconds_after_it_was_ready(
    loop_on_clock, fake_clock, supervisor_on_clock, ipc_endpoint
):
    loop, supervisor = loop_on_clock, supervisor_on_clock
    policy = RestartPolicy(restart="always", backoff=1, backoff_max=100, reset_after=10, max_restarts=10)
    child = supervisor.add(functools.partial(EchoProc, ipc_endpoint), policy)

    def ready_then_killed(before_ready: float, after_ready: float) -> int:
        """Let fake time pass before the parent sees the child ready, and after; kill it; the streak."""
        fake_clock.advance(before_ready)
        run_until(loop, lambda: child.ready, timeout=WAIT, what="the child to be ready")
        fake_clock.advance(after_ready)
        assert child.process is not None
        exits = len(child.exitcodes)
        os.kill(child.process.pid, signal.SIGKILL)
        run_until(loop, lambda: len(child.exitcodes) > exits, timeout=WAIT, what="the exit")
        starts = child.starts
        run_for(loop, fake_clock, 100)  # the backoff, on the fake clock
        run_until(loop, lambda: child.starts > starts, timeout=WAIT, what="the restart")
        return child.tracker.failures_in_a_row

    assert ready_then_killed(0, 0) == 1
    assert ready_then_killed(20, 5) == 2  # 25 s since it started, 5 since it was ready: one more failure
    assert ready_then_killed(0, 10) == 1  # up 10 s after it was ready: the backoff starts again


def test_a_plain_process_is_ready_once_started_and_has_no_ready_timeout(
    loop_on_clock, fake_clock, supervisor_on_clock
):
    supervisor = supervisor_on_clock
    ready = []
    supervisor.on_ready = lambda child, process: ready.append(process)
    plain = functools.partial(multiprocessing.get_context("fork").Process, target=time.sleep, args=(60,))
    child = supervisor.add(plain, RestartPolicy(ready_timeout=0.5))
    assert child.process is not None and not ready  # on the loop, not inside add()
    loop_on_clock.run_once(0)
    assert ready == [child.process] and child.ready and child.ready_at == child.started_at
    run_for(loop_on_clock, fake_clock, 5)  # ten times the ready_timeout, had it been armed
    assert child.process.is_alive() and child.starts == 1


def test_a_child_that_fails_in_setup_again_and_again_is_given_up_with_its_reason(loop, supervisor, caplog):
    given_up = []
    supervisor.on_give_up = lambda child, error: given_up.append(error)
    policy = RestartPolicy(backoff=0.01, max_restarts=2)
    child = supervisor.add(BadAddressProc, policy, name="bad")
    run_until(loop, lambda: given_up, timeout=WAIT, what="the supervisor to give up")
    assert (child.starts, child.restarts) == (3, 0) and child.exitcodes == [1, 1, 1]  # never back
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
