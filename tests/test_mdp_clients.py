"""The Majordomo clients: blocking Client and AsyncClient (on a loop), against a broker and its absence."""
from __future__ import annotations

import pytest
import zmq
from mdp_peers import RawWorker

from pollframe.errors import RequestTimeout
from pollframe.mdp import AsyncClient, BrokerProcess, Client, ProtocolError
from pollframe.requester import Requester
from pollframe.testing import free_tcp_endpoint, run_until


@pytest.fixture
def broker(start_process):
    return start_process(BrokerProcess("127.0.0.1", heartbeat=0.25)).endpoint


@pytest.fixture
def echo(ctx, broker):
    with RawWorker(ctx, broker, b"echo") as worker:
        yield worker
    assert worker.invalid == []


# ------------------------------------------------------------------ blocking


@pytest.mark.timeout(20)
def test_the_blocking_client_gets_each_reply_body_and_asks_mmi_whether_a_service_is_there(ctx, broker, echo):
    with Client(broker, timeout=5.0, context=ctx) as client:
        assert client.request("echo", b"a", b"b") == [b"a", b"b"]
        assert client.service_available("echo")
        assert not client.service_available("nothing")


@pytest.mark.timeout(10)
def test_the_blocking_client_times_out_after_its_retries_when_no_broker_answers(ctx):
    with Client(free_tcp_endpoint(), timeout=0.05, retries=2, context=ctx) as client:
        with pytest.raises(RequestTimeout, match="2 attempt"):
            client.request("echo", b"x")
        assert client.timeouts == 2


# ------------------------------------------------------------------ on the loop


@pytest.mark.timeout(20)
def test_async_requests_made_at_once_are_answered_in_order_each_with_its_own_body(ctx, loop, broker, echo):
    client = AsyncClient(loop, ctx, broker, timeout=5.0)
    replies, errors = [], []
    for n in range(20):
        client.request("echo", b"%d" % n, on_reply=replies.append, on_error=errors.append)
    run_until(loop, lambda: len(replies) + len(errors) == 20)
    client.close()
    assert errors == [] and replies == [[b"%d" % n] for n in range(20)]


@pytest.mark.timeout(20)
def test_a_task_awaits_an_async_call_for_the_reply_body(ctx, loop, broker, echo):
    client = AsyncClient(loop, ctx, broker, timeout=5.0)

    async def ask():
        return await client.call("echo", b"from a task")

    task = loop.spawn(ask())
    run_until(loop, task.done)
    client.close()
    assert task.result() == [b"from a task"]


@pytest.mark.timeout(10)
def test_an_async_request_nobody_answers_ends_in_request_timeout(ctx, loop):
    client = AsyncClient(loop, ctx, free_tcp_endpoint(), timeout=0.05, retries=2)
    errors = []
    client.request("echo", b"x", on_reply=errors.append, on_error=errors.append)
    run_until(loop, lambda: errors)
    client.close()
    assert isinstance(errors[0], RequestTimeout) and errors[0].attempts == 2


@pytest.mark.timeout(10)
def test_an_async_reply_from_another_service_is_a_protocol_error(ctx, loop, make_socket):
    fake = make_socket(zmq.ROUTER, bind="tcp://127.0.0.1:*")
    client = AsyncClient(loop, ctx, fake.last_endpoint.decode(), timeout=5.0)
    errors = []
    client.request("echo", b"x", on_reply=errors.append, on_error=errors.append)
    run_until(loop, lambda: fake.poll(0))
    client_id, _, _, _, body = fake.recv_multipart()
    fake.send_multipart([client_id, b"", b"MDPC01", b"other", body])
    run_until(loop, lambda: errors)
    client.close()
    assert isinstance(errors[0], ProtocolError) and "other" in str(errors[0])


def test_raw_frames_need_a_lockstep_requester(ctx, loop):
    requester = Requester(loop, ctx, free_tcp_endpoint())
    try:
        with pytest.raises(ValueError, match="lockstep"):
            requester.send_frames([b"x"], print, print)
    finally:
        requester.close()
