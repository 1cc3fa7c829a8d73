"""EpollLoop: a PollLoop whose poll costs what is ready, not what is registered.

``zmq_poll`` looks at every registered socket on every call: about 1 µs per
idle socket, so a process with a thousand sockets pays close to a
millisecond per wake-up even when only one of them is busy. Linux's epoll
costs the same at any count. This loop puts each zmq socket's ``ZMQ_FD``
into an epoll set and asks ``ZMQ_EVENTS`` only of the sockets whose
descriptor fired.

The rules that make this correct (libzmq's ``ZMQ_FD`` is edge-triggered):

* ``ZMQ_FD`` becoming readable means "look at ``ZMQ_EVENTS``", not "a
  message is here"; the socket is dispatched only with the events that
  ``ZMQ_EVENTS`` reports.
* Any operation on the socket — a receive, a send, asking ``ZMQ_EVENTS`` —
  may consume the edge while messages remain. So every socket dispatched in
  a pass, every socket newly registered or re-armed, and every socket a
  ``Stream`` sent on (``touched``) is checked again on the next pass, which
  then polls without sleeping. A socket used directly, outside its own
  callback, must be passed to ``loop.touched(sock)`` (``edge_triggered`` is
  True). A dispatched socket is marked for that re-check *before* its
  handler runs, so a handler that raises (even ``KeyboardInterrupt``)
  cannot leave it unwatched.
* Plain file descriptors are level-triggered, as with ``zmq_poll``.

A pass first asks ``ZMQ_EVENTS`` of the sockets to re-check. If none of
them has work it sleeps on the epoll set in that same pass (which returns
at once for any descriptor already ready): asking ``ZMQ_EVENTS`` has
handled every edge up to now, so the next one wakes the epoll. A
request/reply socket thus costs one pass and one ``epoll_wait`` per
request, not two of each.
``ZMQ_EVENTS`` of the sockets to re-check is read with one ``zmq_poll``
without a timeout, which asks libzmq for all of them in C.

EpollLoop is the documented way to give PollLoop a backend: a ``Core``
subclass named by ``core_class``. Linux only (``select.epoll``).
"""
from __future__ import annotations

import errno
from typing import Any, Dict, List, Tuple

import zmq
from zmq.backend import zmq_poll

from pollframe.core import Core
from pollframe.fdset import FdSet
from pollframe.loop import PollLoop

__all__ = ["EpollLoop", "EpollCore"]

_EVENTS = int(zmq.EVENTS)
# Plain ints: `&` and `|` on pyzmq's IntFlag members run enum code in Python.
_POLLIN, _POLLOUT, _POLLERR = int(zmq.POLLIN), int(zmq.POLLOUT), int(zmq.POLLERR)
_EPOLLIN, _EPOLLOUT, _EPOLLHUP, _EPOLLERR = 0x001, 0x004, 0x010, 0x008


class EpollCore(Core):
    """The loop's core over an epoll set of ``ZMQ_FD`` and plain descriptors."""

    edge_triggered = True

    def __init__(self, loop: PollLoop, clock: Any) -> None:
        self.fdset = FdSet()
        self.recheck: Dict[zmq.Socket, None] = {}  # sockets whose ZMQ_EVENTS to ask next pass
        super().__init__(loop, clock)
        self.changed(self.wake_r)

    def touched(self, sock: zmq.Socket) -> None:
        """``sock`` was used outside its callback: check its events on the next pass."""
        if sock in self.fdset.fds:
            self.recheck[sock] = None

    def changed(self, key: Any) -> None:
        events = self.events.get(key, 0) if key in self.handlers else 0
        if self.fdset.update(key, events):
            self.recheck[key] = None  # messages may already be waiting: no edge will tell
        else:
            self.recheck.pop(key, None)

    def may_hold_messages(self) -> bool:
        """A socket to re-check, or a descriptor ready now (a zero-timeout epoll, which consumes nothing)."""
        return bool(self.recheck) or bool(self.fdset.poll(0))

    def fileno(self) -> int:
        return self.fdset.fileno()

    def poll(self, ms: int) -> List[Tuple[Any, int]]:
        # Whatever is dispatched now is re-checked next pass, even if its handler never returns:
        # a drain may leave messages behind with no edge left to announce them.
        recheck, self.recheck = self.recheck, {}
        events: List[Tuple[Any, int]] = []
        gone = self.ask(recheck, events) if recheck else False
        # Nothing among them: sleep on the set (it returns at once for any descriptor that is ready).
        ready = self.fdset.poll(0 if events or not ms else (-1 if ms < 0 else ms / 1000))
        if ready:
            keys = self.fdset.keys
            fired: Dict[zmq.Socket, None] = {}
            for fd, mask in ready:
                key = keys.get(fd)
                if isinstance(key, zmq.Socket):
                    if key not in self.recheck:  # not already among this pass's events
                        fired[key] = None
                elif key is not None:
                    events.append((key, _poll_events(mask)))
            if fired:
                gone = self.ask(fired, events) or gone
        if gone:
            self.drop_closed_sockets()
        return events

    def ask(self, socks: Dict[zmq.Socket, None], events: List[Tuple[Any, int]]) -> bool:
        """Add each socket's ``ZMQ_EVENTS`` of interest to ``events``; True if one was closed.

        One ``zmq_poll`` with no timeout asks them all: libzmq reads
        ``ZMQ_EVENTS`` of each in C, for less than one ``sock.get`` costs
        in pyzmq (which builds a ``SocketOption`` enum per call).
        """
        wanted = self.events
        items = [(sock, wanted.get(sock, 0)) for sock in socks]
        try:
            found = zmq_poll(items, 0)
        except zmq.ZMQError as exc:
            if exc.errno not in (errno.ENOTSOCK, zmq.ETERM):
                raise
            return self.ask_each(items, events)  # one was closed behind the loop's back
        for sock, revents in found:
            events.append((sock, revents))
            self.recheck[sock] = None
        return False

    def ask_each(self, items: List[Tuple[zmq.Socket, int]], events: List[Tuple[Any, int]]) -> bool:
        """:meth:`ask`, one socket at a time, when one of them is closed; True if one was."""
        gone = False
        for sock, interest in items:
            if not interest:
                continue
            try:
                revents = int(sock.get(_EVENTS)) & interest
            except zmq.ZMQError as exc:
                if exc.errno not in (errno.ENOTSOCK, zmq.ETERM):
                    raise
                gone = True
                continue
            if revents:
                events.append((sock, revents))
                self.recheck[sock] = None
        return gone

    def close(self) -> None:
        """Close the epoll set and forget the sockets to re-check."""
        self.recheck.clear()
        self.fdset.close()


class EpollLoop(PollLoop):
    """A drop-in PollLoop for processes with many mostly idle sockets (Linux)."""

    core_class = EpollCore


def _poll_events(mask: int) -> int:
    """epoll's bits in zmq_poll's terms, so handlers see the same values under both loops.

    As in libzmq's ``zmq_poll``, a hang-up is an error: ``POLLERR``, with ``POLLIN`` only
    while there is data to read.
    """
    return (
        (_POLLIN if mask & _EPOLLIN else 0)
        | (_POLLOUT if mask & _EPOLLOUT else 0)
        | (_POLLERR if mask & (_EPOLLERR | _EPOLLHUP) else 0)
    )
