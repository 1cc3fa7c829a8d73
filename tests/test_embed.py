"""Embedding: a PollLoop served by asyncio, by tkinter and by a plain frame loop, each without a thread."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import pytest
import zmq
import zmq.asyncio
from test_examples import EXAMPLES, ROOT, SEED_OUTPUT, example_env

from pollframe.embed import AsyncioGuest, TkGuest, serve_until
from pollframe.stream import Stream

pytestmark = pytest.mark.timeout(30)

NO_DISPLAY = "tkinter needs an X display and $DISPLAY is not set (CI runs the suite under xvfb-run)"


@pytest.fixture
def counted(loop, monkeypatch):
    """``loop``, with the passes its host makes counted in ``loop.passes``."""
    run_once = loop.run_once
    loop.passes = 0

    def counting(timeout=None):
        loop.passes += 1
        run_once(timeout)

    monkeypatch.setattr(loop, "run_once", counting)
    return loop


@pytest.fixture
def pong(ctx, loop):
    """A REP stream on ``loop`` answering ``x`` with ``pong x``; its endpoint."""
    stream = Stream(ctx.socket(zmq.REP), loop)
    stream.socket.bind("tcp://127.0.0.1:*")
    stream.on_recv(lambda frames: stream.send(b"pong " + frames[0]))
    return stream.socket.last_endpoint.decode()


def run_async(coro, timeout=10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# ---------------------------------------------------------------- asyncio


def test_a_stream_embedded_in_asyncio_answers_requests_with_no_thread_and_no_pump(ctx, counted, pong):
    threads = threading.active_count()

    async def main():
        with AsyncioGuest(counted):
            req = zmq.asyncio.Context(ctx).socket(zmq.REQ)
            req.connect(pong)
            replies = []
            for i in range(20):
                await req.send(b"%d" % i)
                replies.append(await req.recv())
            idle_passes = counted.passes
            await asyncio.sleep(0.1)  # a host with nothing to do for the guest ...
            req.close(linger=0)
            return replies, counted.passes - idle_passes

    replies, passes_while_idle = run_async(main())
    assert replies == [b"pong %d" % i for i in range(20)]
    assert passes_while_idle == 0, "... makes no passes: nothing polls"
    assert threading.active_count() == threads


def test_a_pollframe_timer_fires_inside_asyncio_with_one_pass(counted):
    async def main():
        fired = asyncio.get_running_loop().create_future()
        with AsyncioGuest(counted) as guest:
            counted.call_later(0.05, fired.set_result, "fired")
            guest.wake()  # a timer made by host code: the guest's next deadline moved
            return await fired

    assert run_async(main()) == "fired"
    assert counted.passes == 1, "the host's timer woke the guest once, at the deadline"


def test_waking_the_guest_again_replaces_its_timer_so_one_deadline_makes_one_pass(counted):
    async def main():
        fired = asyncio.get_running_loop().create_future()
        with AsyncioGuest(counted) as guest:
            counted.call_later(0.05, fired.set_result, "fired")
            for _ in range(3):
                guest.wake()
            result = await fired
            await asyncio.sleep(0.1)  # any stale timer would have fired by now
            return result

    assert run_async(main()) == "fired"
    assert counted.passes == 1


def test_a_guest_whose_loop_was_closed_stops_being_served_when_woken(counted):
    async def main():
        host = asyncio.get_running_loop()
        guest = AsyncioGuest(counted)
        fd = counted.fileno()
        counted.close()
        guest.wake()
        return host.remove_reader(fd)

    assert run_async(main()) is False, "the guest removed its reader itself"


def test_call_soon_threadsafe_from_another_thread_wakes_the_guest_through_its_descriptor(counted):
    async def main():
        done = asyncio.get_running_loop().create_future()
        with AsyncioGuest(counted):
            thread = threading.Thread(target=counted.call_soon_threadsafe,
                                      args=(done.set_result, threading.get_ident))
            thread.start()
            thread.join(5)
            return await done

    assert run_async(main())() == threading.get_ident(), "run on the asyncio thread"


def test_a_send_from_host_code_goes_out_once_the_guest_is_woken(ctx, counted, tmp_path):
    endpoint = f"ipc://{tmp_path}/host-send"
    push = Stream(ctx.socket(zmq.PUSH), counted)
    push.socket.sndhwm = 1
    push.socket.bind(endpoint)
    pull = ctx.socket(zmq.PULL)
    pull.rcvhwm = 1
    pull.connect(endpoint)

    async def main():
        with AsyncioGuest(counted) as guest:
            for i in range(50):
                push.send(b"%d" % i)  # more than the pipes hold: the rest is queued
            guest.wake()
            got = []
            while len(got) < 50:
                await asyncio.sleep(0)  # let the host run: it serves the guest in between
                while pull.poll(0):
                    got.append(pull.recv())
            return got

    assert run_async(main()) == [b"%d" % i for i in range(50)]
    assert push.queued() == 0


def test_closing_the_guest_stops_the_host_serving_the_loop(counted):
    async def main():
        host = asyncio.get_running_loop()
        guest = AsyncioGuest(counted)
        guest.close()
        guest.close()
        fired = []
        counted.call_soon(fired.append, "not run")
        await asyncio.sleep(0.05)
        return fired, host.remove_reader(counted.fileno())

    fired, was_watched = run_async(main())
    assert fired == [] and not was_watched


# ---------------------------------------------------------------- tkinter


def tk_root():
    if not os.environ.get("DISPLAY"):
        pytest.skip(NO_DISPLAY)
    tkinter = pytest.importorskip("tkinter", reason="this Python has no tkinter")
    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        pytest.skip(f"no usable display at $DISPLAY={os.environ['DISPLAY']}: {exc}")
    root.withdraw()
    return root


def test_a_stream_embedded_in_tkinter_answers_requests_and_runs_pollframe_timers(ctx, counted, pong):
    root = tk_root()
    try:
        req = Stream(ctx.socket(zmq.REQ), counted)
        req.socket.connect(pong)
        replies = []

        def on_reply(frames):
            replies.append(frames[0])
            if len(replies) < 3:
                counted.call_later(0.01, req.send, b"%d" % len(replies))
            else:
                root.quit()

        req.on_recv(on_reply)
        guest = TkGuest(counted, root)
        req.send(b"0")
        guest.wake()
        root.after(5000, root.quit)
        root.mainloop()
        guest.close()
        assert replies == [b"pong 0", b"pong 1", b"pong 2"]
    finally:
        root.destroy()


# ------------------------------------------------------------- frame loop


def test_serve_until_serves_messages_and_timers_until_the_frame_ends(ctx, loop, pong):
    req = ctx.socket(zmq.REQ)
    req.connect(pong)
    fired = []
    loop.call_later(0.02, fired.append, "timer")
    req.send(b"in a frame")
    # The frame is long beside the timer, so a loaded machine cannot fold the request, the timer
    # and the end of the frame into one pass; the reply travels on libzmq's thread, hence the poll.
    frame_end = loop.time() + 0.5
    passes = serve_until(loop, frame_end)
    assert loop.time() >= frame_end
    assert fired == ["timer"]
    assert req.poll(5000) and req.recv() == b"pong in a frame"
    assert passes >= 2


def test_serve_until_a_deadline_already_past_is_one_pass_without_waiting(loop):
    fired = []
    loop.call_soon(fired.append, "due")
    assert serve_until(loop, 0) == 1
    assert fired == ["due"]


# ---------------------------------------------------------------- examples


@pytest.mark.system
@pytest.mark.parametrize("name", ["embed_asyncio.py", "embed_gameloop.py", "embed_tkinter.py"])
def test_each_embedding_example_plays_the_seeds_five_rounds_and_exits_0(name):
    if name == "embed_tkinter.py" and not os.environ.get("DISPLAY"):
        pytest.skip(NO_DISPLAY)
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          timeout=20, env=example_env(), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == SEED_OUTPUT
