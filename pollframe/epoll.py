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
  callback, must be passed to ``loop.touched(sock)``.
* Plain file descriptors are level-triggered, as with ``zmq_poll``.

Linux only (``select.epoll``).
"""
from __future__ import annotations

import select
from typing import Any, Dict, List, Optional, Tuple

import zmq

from pollframe.loop import ErrorHandler, PollLoop

__all__ = ["EpollLoop"]

_EVENTS = int(zmq.EVENTS)
# Plain ints: `&` and `|` on pyzmq's IntFlag members run enum code in Python.
_POLLIN, _POLLOUT, _POLLERR = int(zmq.POLLIN), int(zmq.POLLOUT), int(zmq.POLLERR)


class EpollLoop(PollLoop):
    """A drop-in PollLoop for processes with many mostly idle sockets (Linux)."""

    def __init__(self, on_error: Optional[ErrorHandler] = None, **options: Any) -> None:
        super().__init__(on_error, **options)
        self._epoll = select.epoll()
        self._fds: Dict[Any, int] = {}  # key -> descriptor in the epoll set
        self._keys: Dict[int, Any] = {}  # descriptor -> key
        self._recheck: Dict[zmq.Socket, None] = {}  # sockets whose ZMQ_EVENTS to ask next pass
        self._changed(self._wake_r)

    def touched(self, sock: zmq.Socket) -> None:
        """``sock`` was used outside its callback: check its events on the next pass."""
        if sock in self._fds:
            self._recheck[sock] = None

    def close(self) -> None:
        super().close()
        if not self.closed:
            return  # called from a callback: closed when run() returns
        self._fds.clear()
        self._keys.clear()
        self._recheck.clear()
        self._epoll.close()

    # ------------------------------------------------------------ internals

    def _changed(self, key: Any) -> None:
        events = self._events.get(key, 0) if key in self._handlers else 0
        is_socket = isinstance(key, zmq.Socket)
        if is_socket:
            mask = select.EPOLLIN if events else 0  # ZMQ_FD only ever signals readability
        else:
            mask = (select.EPOLLIN if events & _POLLIN else 0) | (select.EPOLLOUT if events & _POLLOUT else 0)
        fd = self._fds.get(key)
        if not mask:
            if fd is not None:
                self._forget(key, fd)
            return
        if fd is None:
            fd = key.get(zmq.FD) if is_socket else key
            self._epoll.register(fd, mask)
            self._fds[key] = fd
            self._keys[fd] = key
        else:
            self._epoll.modify(fd, mask)
        if is_socket:
            self._recheck[key] = None  # messages may already be waiting: no edge will tell

    def _forget(self, key: Any, fd: int) -> None:
        del self._fds[key]
        self._recheck.pop(key, None)
        if self._keys.get(fd) is not key:
            return  # key's descriptor was closed and its number now belongs to another target
        del self._keys[fd]
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # the descriptor was already closed

    def _poll(self, ms: int) -> List[Tuple[Any, int]]:
        recheck = self._recheck
        timeout = 0 if recheck else (-1 if ms < 0 else ms / 1000)
        ready = self._epoll.poll(timeout)
        self._recheck = {}
        keys, wanted = self._keys, self._events
        events: List[Tuple[Any, int]] = []
        for fd, mask in ready:
            key = keys.get(fd)
            if isinstance(key, zmq.Socket):
                recheck[key] = None
            elif key is not None:
                events.append((key, _poll_events(mask)))
        for sock in recheck:
            interest = wanted.get(sock, 0)
            if interest and not sock.closed:
                revents = int(sock.get(_EVENTS)) & interest
                if revents:
                    events.append((sock, revents))
        return events

    def _dispatch(self, events: List[Tuple[Any, int]]) -> None:
        super()._dispatch(events)
        recheck, fds = self._recheck, self._fds
        for key, _ in events:
            if key in fds and isinstance(key, zmq.Socket):
                recheck[key] = None  # it may hold more than one drain took, with no edge left


def _poll_events(mask: int) -> int:
    """epoll's bits in zmq_poll's terms, so handlers see the same values under both loops."""
    return (
        (_POLLIN if mask & (select.EPOLLIN | select.EPOLLHUP) else 0)
        | (_POLLOUT if mask & select.EPOLLOUT else 0)
        | (_POLLERR if mask & select.EPOLLERR else 0)
    )
