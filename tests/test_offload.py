"""Offload: blocking functions in worker threads, their outcomes back as callbacks on the loop."""
from __future__ import annotations

import threading

import pytest

from pollframe.offload import Offload
from pollframe.stream import Stream
from pollframe.tasks import Timeout, wait_for
from pollframe.testing import run_until

pytestmark = pytest.mark.timeout(20)

WAIT = 10.0  # a blocked worker gives up after this long, so that a failing test cannot hang


@pytest.fixture
def offload(loop):
    with Offload(loop, max_workers=2) as pool:
        yield pool


def blocked_until(event, value=None):
    """A blocking function: returns ``value`` once ``event`` is set."""

    def work():
        if not event.wait(WAIT):
            raise TimeoutError("never released")
        return value

    return work


def workers():
    return sum(thread.name.startswith("pollframe-offload") for thread in threading.enumerate())


def test_the_loop_keeps_serving_while_a_blocking_function_runs_and_its_result_comes_back_on_the_loop(
    loop, offload, push_pull
):
    push, pull = push_pull
    release = threading.Event()
    results, got = [], []
    offload.run(blocked_until(release, "the answer"),
                on_done=lambda result: results.append((result, threading.get_ident())))
    Stream(pull, loop).on_recv(got.append)
    for i in range(100):
        push.send(b"%d" % i)
    run_until(loop, lambda: len(got) == 100, what="messages served while the worker blocks")
    assert results == []
    release.set()
    run_until(loop, lambda: results)
    assert results == [("the answer", threading.get_ident())], "delivered on the loop's thread"


def test_arguments_reach_the_function_and_its_exception_comes_back_to_on_error(loop, offload):
    errors = []

    def divide(a, b, *, offset=0):
        return a / b + offset

    results = []
    offload.run(divide, 6, 3, offset=1, on_done=results.append)
    offload.run(divide, 1, 0, on_done=results.append, on_error=errors.append)
    run_until(loop, lambda: results and errors)
    assert results == [3.0]
    assert isinstance(errors[0], ZeroDivisionError)


def test_without_on_error_the_functions_exception_goes_to_the_loops_error_policy(loop, offload):
    def fail():
        raise ValueError("in the worker")

    offload.run(fail, on_done=print)
    run_until(loop, lambda: loop.errors == 1)


def test_no_more_than_max_workers_threads_run_functions(loop, offload):
    release = threading.Event()
    results = []
    for i in range(5):
        offload.run(blocked_until(release, i), on_done=results.append)
    assert workers() == 2, "two threads for five blocked functions"
    release.set()
    run_until(loop, lambda: len(results) == 5)
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert workers() == 2


def test_a_cancelled_job_calls_no_callback_and_one_not_started_never_runs(loop):
    release = threading.Event()
    ran, results = [], []
    with Offload(loop, max_workers=1) as pool:
        running = pool.run(blocked_until(release, "dropped"), on_done=results.append)
        waiting = pool.run(lambda: ran.append("waiting ran"), on_done=results.append)
        assert waiting.cancel() is True, "not started: it never will"
        assert running.cancel() is False, "running: it finishes, its outcome is dropped"
        done = pool.run(lambda: "after", on_done=results.append)
        release.set()
        run_until(loop, done.done)
    assert results == ["after"]
    assert ran == []
    assert running.cancelled and waiting.cancelled


def test_a_job_cancelled_after_it_finished_but_before_the_loop_delivered_it_calls_no_callback(loop):
    results = []
    next_started = threading.Event()
    with Offload(loop, max_workers=1) as pool:
        finished = pool.run(lambda: "finished", on_done=results.append)
        # The only worker starts the next function once it has handed the first one's outcome to the loop.
        after = pool.run(next_started.set, on_done=results.append)
        assert next_started.wait(WAIT)
        finished.cancel()
        run_until(loop, after.done)
    assert results == [None], "only the second job's outcome was delivered"


def test_await_offload_call_in_a_task_gives_the_result_or_raises(loop, offload):
    def lookup(key):
        if key == "missing":
            raise KeyError(key)
        return key.upper()

    async def task():
        found = await offload.call(lookup, "key")
        try:
            await offload.call(lookup, "missing")
        except KeyError as exc:
            return found, exc.args

    spawned = loop.spawn(task())
    run_until(loop, spawned.done)
    assert spawned.result() == ("KEY", ("missing",))


def test_a_task_that_stops_waiting_cancels_its_job(loop):
    release = threading.Event()
    with Offload(loop, max_workers=1) as pool:
        pool.run(blocked_until(release), on_done=print)  # keeps the only worker busy
        ran = []

        async def task():
            await wait_for(pool.call(ran.append, "ran"), 0.01)

        spawned = loop.spawn(task())
        run_until(loop, spawned.done)
        assert isinstance(spawned.exception(), Timeout)
        release.set()
        later = pool.run(lambda: "later", on_done=print)  # queued behind the cancelled job
        run_until(loop, later.done)
    assert ran == [], "the job the task stopped waiting for was cancelled before it started"


def test_a_closed_offload_refuses_work_and_cancels_what_had_not_started(loop):
    release = threading.Event()
    ran = []
    pool = Offload(loop, max_workers=1)
    pool.run(blocked_until(release), on_done=print)
    pool.run(lambda: ran.append("queued"), on_done=print)
    pool.close(wait=False)  # while the first still blocks: the second has not started
    release.set()
    pool.close()  # now join the worker
    assert ran == []
    with pytest.raises(RuntimeError, match="closed"):
        pool.run(print, on_done=print)


def test_an_outcome_that_arrives_after_its_loop_closed_is_dropped_with_a_warning(loop, caplog):
    release = threading.Event()
    results = []
    pool = Offload(loop, max_workers=1)
    pool.run(blocked_until(release, "too late"), on_done=results.append)
    loop.close()
    with caplog.at_level("WARNING", logger="pollframe"):
        release.set()
        pool.close()  # joins the worker, which has tried to hand the outcome back by then
    assert results == []
    assert "after its loop closed" in caplog.text
