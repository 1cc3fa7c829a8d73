"""The draining readers that ``PollLoop.register`` installs for zmq sockets.

A reader is a ``handler(revents)`` that, on ``POLLIN``, reads its socket with
``NOBLOCK`` until ``EAGAIN`` or ``limit`` messages and calls the user's
callback per message. The drain stops as soon as ``owner`` is no longer the
handler registered for the socket (the callback unregistered, re-registered
or closed it).

Two fast paths (multipart frames, single frames) are kept apart because a
shared helper would cost a call per message. A reader asked for message
properties or for limits is a third, checked reader: only sockets that ask
pay for it.

Limits are checked before any copy: a message whose frames add up to more
than ``max_msg_size`` bytes, or that has more than ``max_frames`` frames,
has the rest of its frames read and discarded without ``.bytes``, is counted
by ``refused(sock, frames, size)`` and never reaches the callback. libzmq's
own ``MAXMSGSIZE`` bounds a single frame only. On a ROUTER the routing id
that libzmq puts first is not counted in the size: the limit is on what the
peer sent.

Each drain adds the messages it read and their bytes to ``counts`` (a
:class:`~pollframe.stats.SocketStats`) once, at its end: the per-message
cost is one ``len`` and one addition.

Lone messages. Draining ends with an ``EAGAIN``, and pyzmq's ``zmq.Again``
costs several µs to build. A socket whose last drain found a single
message (one request per wake-up: REQ/REP lockstep) most likely holds one
again, so after that one message the reader asks a zero-timeout poll (a
third of the cost) whether to go on. Even that poll repeats what the
loop's next poll does anyway, so three lone drains out of four skip it and
leave the rest to the loop's next pass (it finds a waiting message at once,
as it finds one left by ``limit``); the fourth asks, so that a burst is
drained as a whole again after at most three passes of one message. A
drain skips only while ``quiet()`` (the loop's) says that nothing else
would run before that next poll: no timer due, no callback queued. So a
message that arrived while a slow callback ran is still read before the
timers that came due meanwhile (a heartbeat check must see the heartbeat
that is waiting), exactly as without the skip.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional, Sequence

import zmq
from zmq.backend import zmq_poll

__all__ = ["make_reader", "message_properties"]

_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_Again = zmq.Again
_ZMQError = zmq.ZMQError


def message_properties(frame: zmq.Frame, names: Sequence[str]) -> Dict[str, Optional[str]]:
    """``frame.get(name)`` for each name, None where libzmq has no such property."""
    props: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            value = frame.get(name)
            props[name] = value if isinstance(value, str) else str(value)
        except _ZMQError:
            props[name] = None
    return props


def make_reader(
    sock: zmq.Socket,
    callback: Callable[..., Any],
    *,
    multipart: bool,
    limit: int,
    report: Callable[[BaseException, str], None],
    where: Callable[[], str],
    handlers: Dict[Any, Any],
    owner: Optional[Callable[[int], None]],
    properties: Sequence[str] = (),
    max_msg_size: Optional[int] = None,
    max_frames: Optional[int] = None,
    refused: Callable[[zmq.Socket, int, int], None],
    counts: Any,
    quiet: Callable[[], bool] = lambda: False,
) -> Callable[[int], None]:
    """The ``handler(revents)`` for ``sock``; see the module docstring."""
    recv = sock.recv
    probe = [(sock, _POLLIN)]
    # See "Lone messages" in the module docstring: after one message, a drain
    # that expects no more leaves (lone & 3, while the loop is quiet) or asks
    # `probe` whether to go on.
    expect_one = False
    lone = 0

    # Each drain counts its messages from the loop index: `n` were read when
    # it leaves before reading (EAGAIN, nothing waiting), `n + 1` after one.
    def read_frames(revents: int) -> None:
        nonlocal expect_one, lone
        n = size = 0
        try:
            for n in range(limit):
                if n == 1 and expect_one:
                    lone += 1
                    if lone & 3 and quiet() or not zmq_poll(probe, 0):
                        return
                    expect_one = False
                try:
                    frame = recv(_NOBLOCK, copy=False)
                except _Again:
                    expect_one = n == 1
                    return
                data = frame.bytes
                frames = [data]
                size += len(data)
                while frame.more:
                    frame = recv(_NOBLOCK, copy=False)
                    data = frame.bytes
                    frames.append(data)
                    size += len(data)
                try:
                    callback(frames)
                except Exception as exc:
                    report(exc, where())
                if handlers.get(sock) is not owner:
                    n += 1
                    return
            n = limit
        finally:
            counts.msgs_in += n
            counts.bytes_in += size
            counts.last_drain = n

    def read_frame(revents: int) -> None:
        nonlocal expect_one, lone
        n = size = 0
        try:
            for n in range(limit):
                if n == 1 and expect_one:
                    lone += 1
                    if lone & 3 and quiet() or not zmq_poll(probe, 0):
                        return
                    expect_one = False
                try:
                    data = recv(_NOBLOCK)
                except _Again:
                    expect_one = n == 1
                    return
                size += len(data)
                try:
                    callback(data)
                except Exception as exc:
                    report(exc, where())
                if handlers.get(sock) is not owner:
                    n += 1
                    return
            n = limit
        finally:
            counts.msgs_in += n
            counts.bytes_in += size
            counts.last_drain = n

    names = tuple(properties)
    # On a ROUTER the first frame is the routing id libzmq adds: not counted against the limit
    # (own_head 0), but counted in the bytes in. No limit is the largest size, not a sentinel.
    own_head = 0 if multipart and sock.type == zmq.ROUTER else 1
    max_size = sys.maxsize if max_msg_size is None else max_msg_size
    most_frames = sys.maxsize if max_frames is None else max_frames

    def read_checked(revents: int) -> None:
        nonlocal expect_one, lone
        n = total = 0
        try:
            for n in range(limit):
                if n == 1 and expect_one:
                    lone += 1
                    if lone & 3 and quiet() or not zmq_poll(probe, 0):
                        return
                    expect_one = False
                try:
                    frame = recv(_NOBLOCK, copy=False)
                except _Again:
                    expect_one = n == 1
                    return
                props = message_properties(frame, names) if names else None
                head = len(frame)
                size = head * own_head
                count = 1
                frames = [frame.bytes] if size <= max_size else None
                while multipart and frame.more:
                    frame = recv(_NOBLOCK, copy=False)
                    count += 1
                    size += len(frame)
                    if frames is not None:
                        if size <= max_size and count <= most_frames:
                            frames.append(frame.bytes)
                        else:
                            frames = None  # refused: the rest is read and discarded, never copied
                total += size + head - head * own_head  # bytes in: a routing id counts here
                if frames is None:
                    refused(sock, count, size)
                else:
                    message: Any = frames if multipart else frames[0]
                    try:
                        if props is None:
                            callback(message)
                        else:
                            callback(message, props)
                    except Exception as exc:
                        report(exc, where())
                if handlers.get(sock) is not owner:
                    n += 1
                    return
            n = limit
        finally:
            counts.msgs_in += n
            counts.bytes_in += total
            counts.last_drain = n

    if names or max_msg_size is not None or max_frames is not None:
        read = read_checked
    else:
        read = read_frames if multipart else read_frame
    if owner is None:
        owner = read
    return read
