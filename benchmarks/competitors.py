"""The receiving side of every competitor, written the way its users write it.

Two families, each a dict from competitor name to a factory:

- SINKS: ``factory(socks, n) -> run``; ``run()`` returns once ``n`` messages
  have been taken from the PULL sockets ``socks`` (fan-in: many sockets).
- ECHOES: ``factory(sock, n, idle) -> run``; ``run()`` serves ``n`` requests
  on the REP socket ``sock`` with an echo, while the sockets in ``idle`` are
  registered too (the "1 busy of 1,000" case) but never readable.

Setup (loops, registrations, streams) happens in the factory, outside the
timed ``run()``. Hand-written loops count inline, as their authors would;
loop-based competitors count in a callback, which is the price of a loop.
The pollframe factories import pollframe lazily, so the suite runs (and the
other numbers are real) before the core exists.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

import zmq

Run = Callable[[], None]
NOBLOCK = zmq.NOBLOCK
POLLIN = zmq.POLLIN


def _countdown(n: int, stop: Callable[[], None]) -> Callable[[object], None]:
    """A callback that calls stop() on the n-th message."""
    left = n

    def callback(_msg: object) -> None:
        nonlocal left
        left -= 1
        if not left:
            stop()

    return callback


# ------------------------------------------------------------------ sinks


def sink_raw(socks: Sequence[zmq.Socket], n: int) -> Run:
    """A blocking recv() loop on the first socket: the practical limit."""
    recv = socks[0].recv

    def run() -> None:
        for _ in range(n):
            recv()

    return run


def sink_poller(socks: Sequence[zmq.Socket], n: int) -> Run:
    """The seed's polling.py style: one recv per readable socket per poll."""
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, POLLIN)

    def run() -> None:
        left = n
        poll = poller.poll
        while left > 0:
            for sock, _ev in poll():
                sock.recv()
                left -= 1

    return run


def _sink_drain(socks: Sequence[zmq.Socket], n: int, multipart: bool) -> Run:
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, POLLIN)
    again = zmq.Again

    def run() -> None:
        left = n
        poll = poller.poll
        while left > 0:
            for sock, _ev in poll():
                recv = sock.recv_multipart if multipart else sock.recv
                try:
                    while True:
                        recv(NOBLOCK)
                        left -= 1
                except again:
                    pass

    return run


def sink_drain(socks: Sequence[zmq.Socket], n: int) -> Run:
    """A careful hand-written loop: drain recv_multipart(NOBLOCK) until EAGAIN."""
    return _sink_drain(socks, n, multipart=True)


def sink_drain_recv(socks: Sequence[zmq.Socket], n: int) -> Run:
    """The same, draining with recv(): right only for single-frame protocols."""
    return _sink_drain(socks, n, multipart=False)


def sink_zmqstream(socks: Sequence[zmq.Socket], n: int) -> Run:
    """pyzmq's ZMQStream.on_recv on Tornado's IOLoop."""
    from tornado.ioloop import IOLoop
    from zmq.eventloop.zmqstream import ZMQStream

    loop = IOLoop()
    callback = _countdown(n, loop.stop)
    streams = [ZMQStream(sock, loop) for sock in socks]
    for stream in streams:
        stream.on_recv(callback)
    return loop.start


def sink_asyncio(socks: Sequence[zmq.Socket], n: int) -> Run:
    """One task per socket awaiting recv_multipart() on zmq.asyncio."""
    import asyncio

    from zmq.asyncio import Socket as AsyncSocket

    loop = asyncio.new_event_loop()

    async def main() -> None:
        left = n
        done = asyncio.Event()

        async def reader(sock: AsyncSocket) -> None:
            nonlocal left
            while True:
                await sock.recv_multipart()
                left -= 1
                if not left:
                    done.set()

        asocks = [AsyncSocket.from_socket(s) for s in socks]
        tasks = [asyncio.ensure_future(reader(s)) for s in asocks]
        await done.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    return lambda: loop.run_until_complete(main())


def _loop_class(epoll: bool) -> Any:
    if epoll:
        from pollframe.epoll import EpollLoop

        return EpollLoop
    from pollframe.loop import PollLoop

    return PollLoop


def _sink_pollframe(socks: Sequence[zmq.Socket], n: int, multipart: bool, epoll: bool = False) -> Run:
    loop = _loop_class(epoll)()
    callback = _countdown(n, loop.stop)
    for sock in socks:
        loop.register(sock, callback, multipart=multipart)
    return loop.run


def sink_pf_register(socks: Sequence[zmq.Socket], n: int) -> Run:
    """PollLoop.register(sock, cb): frame lists."""
    return _sink_pollframe(socks, n, multipart=True)


def sink_pf_single(socks: Sequence[zmq.Socket], n: int) -> Run:
    """PollLoop.register(sock, cb, multipart=False): the single-frame path."""
    return _sink_pollframe(socks, n, multipart=False)


def sink_pf_epoll(socks: Sequence[zmq.Socket], n: int) -> Run:
    """EpollLoop.register(sock, cb): frame lists, epoll over ZMQ_FD."""
    return _sink_pollframe(socks, n, multipart=True, epoll=True)


def sink_pf_stream(socks: Sequence[zmq.Socket], n: int) -> Run:
    """Stream(sock, loop).on_recv(cb)."""
    from pollframe.loop import PollLoop
    from pollframe.stream import Stream

    loop = PollLoop()
    callback = _countdown(n, loop.stop)
    streams = [Stream(sock, loop) for sock in socks]
    for stream in streams:
        stream.on_recv(callback)
    return loop.run


def sink_pf_stream_traced(socks: Sequence[zmq.Socket], n: int) -> Run:
    """Stream.on_recv(cb) with the tracer on (POLLFRAME_TRACE), writing to a temporary directory."""
    import tempfile

    from pollframe import trace

    trace.enable(tempfile.mkdtemp(prefix="pollframe-bench-trace-"))
    return sink_pf_stream(socks, n)


# ----------------------------------------------------------------- echoes


def echo_raw(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """A blocking REP loop; it can ignore the idle sockets, nobody else can."""
    recv, send = sock.recv, sock.send

    def run() -> None:
        for _ in range(n):
            send(recv())

    return run


def _poller_for(sock: zmq.Socket, idle: Sequence[zmq.Socket]) -> zmq.Poller:
    poller = zmq.Poller()
    poller.register(sock, POLLIN)
    for other in idle:
        poller.register(other, POLLIN)
    return poller


def echo_poller(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """One recv per wake-up, then the reply."""
    poller = _poller_for(sock, idle)

    def run() -> None:
        left = n
        poll = poller.poll
        while left > 0:
            for ready, _ev in poll():
                if ready is sock:
                    sock.send(sock.recv())
                    left -= 1

    return run


def _echo_drain(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket], multipart: bool) -> Run:
    poller = _poller_for(sock, idle)
    recv = sock.recv_multipart if multipart else sock.recv
    send: Callable[[Any], Any] = sock.send_multipart if multipart else sock.send
    again = zmq.Again

    def run() -> None:
        left = n
        poll = poller.poll
        while left > 0:
            for ready, _ev in poll():
                if ready is not sock:
                    continue
                try:
                    while left > 0:
                        send(recv(NOBLOCK))
                        left -= 1
                except again:
                    pass

    return run


def echo_drain(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """Drain with recv_multipart(NOBLOCK) until EAGAIN, replying to each."""
    return _echo_drain(sock, n, idle, multipart=True)


def echo_drain_recv(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """The same with recv()/send()."""
    return _echo_drain(sock, n, idle, multipart=False)


def _noop(_msg: object) -> None:
    """Receive callback of the idle sockets (never called)."""


def echo_zmqstream(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """ZMQStream.on_recv replying with stream.send_multipart."""
    from tornado.ioloop import IOLoop
    from zmq.eventloop.zmqstream import ZMQStream

    loop = IOLoop()
    stream = ZMQStream(sock, loop)
    others = [ZMQStream(s, loop) for s in idle]
    for other in others:
        other.on_recv(_noop)
    left = n

    def on_request(msg: List[bytes]) -> None:
        nonlocal left
        stream.send_multipart(msg)
        left -= 1
        if not left:
            stream.flush()
            loop.stop()

    stream.on_recv(on_request)
    return loop.start


def echo_asyncio(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """await recv_multipart() / send_multipart() on zmq.asyncio."""
    import asyncio

    from zmq.asyncio import Socket as AsyncSocket

    loop = asyncio.new_event_loop()

    async def main() -> None:
        asock = AsyncSocket.from_socket(sock)
        others = [AsyncSocket.from_socket(s) for s in idle]
        waiting = [asyncio.ensure_future(s.recv_multipart()) for s in others]
        for _ in range(n):
            await asock.send_multipart(await asock.recv_multipart())
        for fut in waiting:
            fut.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    return lambda: loop.run_until_complete(main())


def _echo_pollframe(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket], multipart: bool,
                    epoll: bool = False) -> Run:
    loop = _loop_class(epoll)()
    send: Callable[[Any], Any] = sock.send_multipart if multipart else sock.send
    left = n

    def on_request(msg: object) -> None:
        nonlocal left
        send(msg)
        left -= 1
        if not left:
            loop.stop()

    loop.register(sock, on_request, multipart=multipart)
    for other in idle:
        loop.register(other, _noop, multipart=multipart)
    return loop.run


def echo_pf_register(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """PollLoop.register, replying on the socket from the callback."""
    return _echo_pollframe(sock, n, idle, multipart=True)


def echo_pf_single(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """PollLoop.register(multipart=False), replying with sock.send."""
    return _echo_pollframe(sock, n, idle, multipart=False)


def echo_pf_epoll(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """EpollLoop.register, replying on the socket from the callback."""
    return _echo_pollframe(sock, n, idle, multipart=True, epoll=True)


def echo_pf_stream(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket]) -> Run:
    """Stream.on_recv replying with stream.send_multipart."""
    holder: List[Any] = []
    loop = pf_stream_echo(sock, n, idle, lambda: holder[0].stop())
    holder.append(loop)
    return loop.run


def pf_stream_echo(sock: zmq.Socket, n: int, idle: Sequence[zmq.Socket], finished: Callable[[], None]) -> Any:
    """A PollLoop whose Stream on ``sock`` echoes ``n`` requests, then calls ``finished()``; not run yet."""
    from pollframe.loop import PollLoop
    from pollframe.stream import Stream

    loop = PollLoop()
    stream = Stream(sock, loop)
    others = [Stream(s, loop) for s in idle]
    for other in others:
        other.on_recv(_noop)
    left = n

    def on_request(msg: List[bytes]) -> None:
        nonlocal left
        stream.send_multipart(msg)
        left -= 1
        if not left:
            stream.flush()
            finished()

    stream.on_recv(on_request)
    return loop


SINKS: Dict[str, Callable[[Sequence[zmq.Socket], int], Run]] = {
    "raw": sink_raw,
    "poller": sink_poller,
    "poller-drain": sink_drain,
    "poller-drain-recv": sink_drain_recv,
    "zmqstream": sink_zmqstream,
    "zmq.asyncio": sink_asyncio,
    "pf-register": sink_pf_register,
    "pf-single": sink_pf_single,
    "pf-stream": sink_pf_stream,
    "pf-epoll": sink_pf_epoll,
    "pf-stream-traced": sink_pf_stream_traced,  # only in the tracing scenario (not an echo)
}

ECHOES: Dict[str, Callable[[zmq.Socket, int, Sequence[zmq.Socket]], Run]] = {
    "raw": echo_raw,
    "poller": echo_poller,
    "poller-drain": echo_drain,
    "poller-drain-recv": echo_drain_recv,
    "zmqstream": echo_zmqstream,
    "zmq.asyncio": echo_asyncio,
    "pf-register": echo_pf_register,
    "pf-single": echo_pf_single,
    "pf-stream": echo_pf_stream,
    "pf-epoll": echo_pf_epoll,
}

NEEDS_TORNADO = {"zmqstream"}

#: Competitors 10-100x slower than the rest take 1/SLOW[name] of the messages
#: and round trips, so that the default run stays within minutes; their
#: per-message cost does not depend on the count.
SLOW = {"zmqstream": 4, "zmq.asyncio": 4}


def count_for(competitor: str, n: int) -> int:
    """How many messages (round trips) this competitor is measured over."""
    return max(1, n // SLOW.get(competitor, 1))
NEEDS_POLLFRAME = {"pf-register", "pf-single", "pf-stream", "pf-epoll", "pf-stream-traced"}
