"""Ping-pong with pollframe as a guest in an asyncio program: no polling pump, no thread.

The asyncio side is the application: a coroutine that sends five pings over
a ``zmq.asyncio`` REQ socket. The pong side is a pollframe ``Stream`` on a
``PollLoop`` that asyncio serves through ``AsyncioGuest``: asyncio watches
``loop.fileno()`` and keeps one timer at ``loop.next_deadline()``, so the
pollframe loop runs a pass exactly when it has work. Run:
python examples/embed_asyncio.py
"""

import asyncio

import zmq
import zmq.asyncio

from pollframe.embed import AsyncioGuest
from pollframe.loop import PollLoop
from pollframe.stream import Stream


def make_pong(ctx, loop):
    """The pollframe side: a REP stream that answers each ping with a pong."""
    stream = Stream(ctx.socket(zmq.REP), loop)
    port = stream.socket.bind_to_random_port("tcp://127.0.0.1")
    count = 0

    def handle_ping(msg):
        nonlocal count
        print("Pong got request:", msg[0].decode(), flush=True)
        stream.send_string(f"pong {count}")
        count += 1

    stream.on_recv(handle_ping)
    return stream, port


async def ping(actx, port):
    """The asyncio side: five pings, each awaited."""
    sock = actx.socket(zmq.REQ)
    sock.connect(f"tcp://127.0.0.1:{port}")
    try:
        for i in range(5):
            await sock.send_string(f"ping {i}")
            rep = await asyncio.wait_for(sock.recv_string(), 5.0)
            print("Ping got reply:", rep, flush=True)
    finally:
        sock.close(linger=0)


async def main():
    ctx = zmq.Context()
    loop = PollLoop()
    pong, port = make_pong(ctx, loop)
    try:
        with AsyncioGuest(loop):  # from here on, asyncio serves the pollframe loop
            await ping(zmq.asyncio.Context(ctx), port)
    finally:
        pong.close(linger=0)
        loop.close()
        ctx.term()


if __name__ == "__main__":
    asyncio.run(main())
