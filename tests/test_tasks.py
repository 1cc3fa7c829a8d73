"""Coroutines on a PollLoop without asyncio: spawn, sleep, call, timeouts, cancel, errors, close.

Time is the loop's fake clock (``run_for``): a sleep of 10 s costs nothing.
Requests go to a ROUTER of the test over inproc, answered by hand.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
import zmq

from pollframe.errors import RemoteError, RequestTimeout
from pollframe.loop import PollLoop
from pollframe.requester import Requester
from pollframe.stream import Stream
from pollframe.tasks import Cancelled, Timeout, Waiter, current_task, wait_for
from pollframe.testing import run_for, run_until

pytestmark = pytest.mark.timeout(10)

_names = itertools.count()


@pytest.fixture
def server(make_socket):
    return make_socket(zmq.ROUTER, bind=f"inproc://tasks-{next(_names)}")


@pytest.fixture
def req(clocked_loop, zmq_context, server):
    requester = Requester(clocked_loop, zmq_context, server.last_endpoint.decode(), timeout=0.5, retries=2)
    yield requester
    requester.close()


def answer(server: Any, reply: Any) -> None:
    request = server.recv_multipart()
    server.send_multipart(request[:-1] + [json.dumps(reply).encode()])


def test_spawn_runs_the_coroutine_up_to_its_first_await_at_once_and_result_gives_its_value(clocked_loop):
    steps = []

    async def job() -> int:
        steps.append("started")
        return 42

    task = clocked_loop.spawn(job())
    assert steps == ["started"] and task.done() and task.result() == 42 and task.exception() is None


def test_await_loop_sleep_resumes_the_task_after_that_many_seconds_and_not_before(clocked_loop, fake_clock):
    woke = []

    async def sleeper() -> None:
        await clocked_loop.sleep(10.0)
        woke.append(clocked_loop.time())

    start = clocked_loop.time()
    task = clocked_loop.spawn(sleeper())
    run_for(clocked_loop, fake_clock, 9.9)
    assert woke == [] and not task.done()
    run_for(clocked_loop, fake_clock, 0.1)
    assert woke == [start + 10.0] and task.done()


def test_send_call_has_a_timeout_and_retries_of_its_own_and_passes_kwargs_named_like_them(
    clocked_loop, fake_clock, req, server
):
    async def once() -> tuple:
        try:
            await req.send_call("wait", [], {"timeout": 9, "retries": 9}, timeout=0.1, retries=1)
        except RequestTimeout as exc:
            return clocked_loop.time(), exc.attempts
        return ()

    start = clocked_loop.time()
    task = clocked_loop.spawn(once())
    assert json.loads(server.recv_multipart()[-1]) == ["wait", [], {"timeout": 9, "retries": 9}]
    run_for(clocked_loop, fake_clock, 0.1)
    run_until(clocked_loop, task.done)
    assert task.result() == (start + 0.1, 1) and req.resent == 0  # not the requester's 0.5 s x 2


def test_await_call_returns_the_reply_triple(clocked_loop, req, server):
    task = clocked_loop.spawn(_call(req, "ping", 3))
    answer(server, ["pong", [3], {}])
    run_until(clocked_loop, task.done)
    assert task.result() == ("pong", [3], {})


async def _call(req: Requester, *args: Any) -> Any:
    return await req.call(*args)


def test_await_call_raises_remote_error_for_an_error_reply_and_request_timeout_after_the_last_attempt(
    clocked_loop, fake_clock, req, server
):
    async def both() -> list:
        out = []
        for msg in ("count", "ping"):
            try:
                await req.call(msg)
            except (RemoteError, RequestTimeout) as exc:
                out.append(type(exc))
        return out

    task = clocked_loop.spawn(both())
    answer(server, ["error", ["unknown message type 'count'"], {}])
    run_until(clocked_loop, lambda: server.poll(0))  # the second call is out
    run_for(clocked_loop, fake_clock, 1.0)  # two attempts of 0.5 s
    run_until(clocked_loop, task.done)  # a task resumes in the pass after its waiter completed
    assert task.result() == [RemoteError, RequestTimeout]


def test_wait_for_puts_a_timeout_on_any_await_and_abandons_what_it_awaited(
    clocked_loop, fake_clock, req, server
):
    async def impatient() -> list:
        out = []
        try:
            await wait_for(clocked_loop.sleep(10.0), 1.0)
        except Timeout:
            out.append(("sleep", clocked_loop.time()))
        try:
            await wait_for(req.call("ping", 1), 0.2)
        except Timeout:
            out.append(("call", clocked_loop.time()))
        out.append(await wait_for(_call(req, "ping", 2), 5.0))
        return out

    start = clocked_loop.time()
    task = clocked_loop.spawn(impatient())
    run_for(clocked_loop, fake_clock, 1.0)
    assert req.pending() == 1
    run_for(clocked_loop, fake_clock, 0.2)
    assert req.pending() == 1  # the first request was cancelled, the second is out
    answer(server, ["pong", [1], {}])  # the reply to the abandoned request: counted late
    answer(server, ["pong", [2], {}])
    run_until(clocked_loop, task.done)
    assert task.result() == [("sleep", start + 1.0), ("call", start + 1.2), ("pong", [2], {})]
    assert req.late == 1
    assert clocked_loop.next_deadline() is None  # no timer left behind: the 10 s sleep was cancelled


def test_a_task_that_stops_awaiting_another_task_cancels_it_and_what_it_awaited(
    clocked_loop, fake_clock, req
):
    async def inner() -> None:
        await req.call("ping", 1)

    async def outer(child) -> str:
        try:
            await wait_for(child, 0.1)
        except Timeout:
            return "timed out"
        return "answered"

    child = clocked_loop.spawn(inner())
    task = clocked_loop.spawn(outer(child))
    run_for(clocked_loop, fake_clock, 0.1)
    run_until(clocked_loop, task.done)
    assert task.result() == "timed out"
    assert child.cancelled() and req.pending() == 0  # its request was cancelled with it
    second = clocked_loop.spawn(inner())
    waiting = clocked_loop.spawn(outer(second))
    waiting.cancel()
    assert second.cancelled()


def test_cancel_throws_cancelled_where_the_task_waits_runs_its_finally_and_cancels_its_request(
    clocked_loop, req, server
):
    seen = []

    async def waiting() -> None:
        try:
            await req.call("ping", 1)
        finally:
            seen.append("finally")

    task = clocked_loop.spawn(waiting())
    done = []
    task.add_done_callback(done.append)
    assert task.cancel() is True and task.cancel() is False
    assert seen == ["finally"] and done == [task] and task.cancelled() and req.pending() == 0
    with pytest.raises(Cancelled):
        task.result()


def test_a_task_that_cancels_itself_gets_cancelled_at_its_next_await(clocked_loop):
    async def self_cancelling() -> str:
        current_task().cancel()
        try:
            await clocked_loop.sleep(1.0)
        except Cancelled:
            return "cancelled at the await"
        return "not cancelled"

    assert clocked_loop.spawn(self_cancelling()).result() == "cancelled at the await"


def test_a_task_that_raises_goes_through_the_loops_error_policy_and_its_awaiter_gets_the_exception():
    seen: list[tuple[BaseException, str]] = []
    loop = PollLoop(on_error=lambda exc, where: seen.append((exc, where)))
    try:
        async def failing() -> None:
            await loop.sleep(0)
            raise KeyError("boom")

        async def awaiting(task: Any) -> str:
            try:
                await task
            except KeyError:
                return "got KeyError"
            return "nothing"

        failed = loop.spawn(failing(), name="failing")
        waiter = loop.spawn(awaiting(failed))
        run_until(loop, waiter.done)
        assert waiter.result() == "got KeyError"
        [(exc, where)] = seen
        assert isinstance(exc, KeyError) and "failing" in where
        assert isinstance(failed.exception(), KeyError)
    finally:
        loop.close()


def test_a_task_awaiting_another_gets_its_result(clocked_loop, fake_clock):
    async def inner() -> int:
        await clocked_loop.sleep(1.0)
        return 7

    async def outer() -> int:
        return await clocked_loop.spawn(inner()) * 6

    task = clocked_loop.spawn(outer())
    run_for(clocked_loop, fake_clock, 1.0)
    run_until(clocked_loop, task.done)
    assert task.result() == 42


def test_tasks_still_pending_when_the_loop_closes_are_cancelled_and_run_their_finally():
    loop = PollLoop()
    seen = []

    async def forever() -> None:
        try:
            await loop.sleep(3600)
        finally:
            seen.append("finally")

    task = loop.spawn(forever())
    loop.close()
    assert task.cancelled() and seen == ["finally"]
    with pytest.raises(RuntimeError, match="closed"):
        loop.spawn(forever())


def test_awaiting_an_asyncio_awaitable_raises_type_error_inside_the_coroutine(clocked_loop):
    async def confused() -> str:
        try:
            await asyncio.sleep(0)
        except TypeError as exc:
            return str(exc)
        return "no error"

    assert "not asyncio's" in clocked_loop.spawn(confused()).result()


def test_a_waiter_completed_before_it_is_awaited_does_not_suspend_the_task(clocked_loop):
    waiter = Waiter()
    waiter.set_result("ready")

    async def quick() -> str:
        return await waiter

    assert clocked_loop.spawn(quick()).result() == "ready"


def test_a_done_callback_added_after_the_end_is_called_at_once(clocked_loop):
    async def nothing() -> None:
        return None

    task = clocked_loop.spawn(nothing())
    called = []
    task.add_done_callback(called.append)
    assert called == [task]


@pytest.mark.parametrize("register", [
    lambda loop, ctx, cb: loop.call_soon(cb),
    lambda loop, ctx, cb: loop.call_later(1.0, cb),
    lambda loop, ctx, cb: loop.call_every(1.0, cb),
    lambda loop, ctx, cb: loop.register(ctx.socket(zmq.PULL), cb),
    lambda loop, ctx, cb: Stream(ctx.socket(zmq.PULL), loop).on_recv(cb),
], ids=["call_soon", "call_later", "call_every", "register", "Stream.on_recv"])
def test_an_async_def_given_as_a_plain_callback_is_refused_at_once_pointing_to_spawn(
    clocked_loop, zmq_context, register
):
    async def handler(*args: Any) -> None:
        pass

    class Owner:
        async def method(self, *args: Any) -> None:
            pass

    for callback in (handler, Owner().method):
        with pytest.raises(TypeError, match=r"async def.*loop\.spawn"):
            register(clocked_loop, zmq_context, callback)
    assert clocked_loop.next_deadline() is None  # nothing was scheduled


def test_at_loop_close_a_task_awaiting_a_request_is_cancelled_before_the_requester_closes(
    zmq_context, server
):
    loop = PollLoop()
    req = Requester(loop, zmq_context, server.last_endpoint.decode())
    seen = []

    async def asking() -> None:
        try:
            await req.call("ping", 1)
        except BaseException as exc:
            seen.append(type(exc))
            raise

    task = loop.spawn(asking())
    loop.close()
    assert seen == [Cancelled] and task.cancelled() and req.closed


def test_an_outer_timeout_is_not_caught_by_an_inner_wait_for_handler_of_its_own_timeout(
    clocked_loop, fake_clock
):
    async def fetch() -> str:
        try:
            await wait_for(clocked_loop.sleep(10.0), 5.0)
        except Timeout:
            return "inner timed out"  # its own timeout only: 5 s
        return "slept"

    async def outer() -> str:
        try:
            return await wait_for(fetch(), 1.0)
        except Timeout:
            return "outer timed out"

    task = clocked_loop.spawn(outer())
    run_for(clocked_loop, fake_clock, 1.0)
    run_until(clocked_loop, task.done)
    assert task.result() == "outer timed out"
