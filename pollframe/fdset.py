"""FdSet: a loop's registrations mirrored in one epoll set (Linux).

``EpollLoop`` polls this set instead of calling ``zmq_poll``, and
``PollLoop.fileno()`` hands it to a foreign event loop as the one
descriptor to watch. A zmq socket is represented by its ``ZMQ_FD``, which
is edge-triggered and only ever signals readability ("look at
``ZMQ_EVENTS``"); plain descriptors keep the events they were registered
for and are level-triggered, as with ``zmq_poll``.
"""
from __future__ import annotations

import select
from typing import Any, Dict, List, Tuple

import zmq

__all__ = ["FdSet"]

_POLLIN, _POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)


class FdSet:
    """Descriptors in an epoll set, keyed like the loop's registrations (socket or fd)."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.fds: Dict[Any, int] = {}  # key -> descriptor in the epoll set
        self.keys: Dict[int, Any] = {}  # descriptor -> key

    def fileno(self) -> int:
        """The epoll descriptor: readable when any watched target may have work."""
        return self.epoll.fileno()

    def update(self, key: Any, events: int) -> bool:
        """Watch ``key`` for ``events`` (0: not at all); True when ``key`` is a socket now watched."""
        is_socket = isinstance(key, zmq.Socket)
        if is_socket:
            mask = select.EPOLLIN if events else 0  # ZMQ_FD only ever signals readability
        else:
            mask = (select.EPOLLIN if events & _POLLIN else 0) | (select.EPOLLOUT if events & _POLLOUT else 0)
        fd = self.fds.get(key)
        if not mask:
            if fd is not None:
                self.forget(key)
            return False
        if fd is None:
            if is_socket and key.closed:
                return False  # closed behind the loop's back: the loop drops it
            fd = key.get(zmq.FD) if is_socket else key
            self.epoll.register(fd, mask)
            self.fds[key] = fd
            self.keys[fd] = key
        else:
            self.epoll.modify(fd, mask)
        return is_socket

    def forget(self, key: Any) -> None:
        """Stop watching ``key``; a descriptor number already reused by another target is left alone."""
        fd = self.fds.pop(key)
        if self.keys.get(fd) is not key:
            return  # key's descriptor was closed and its number now belongs to another target
        del self.keys[fd]
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):
            pass  # the descriptor was already closed

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        """``epoll_wait`` for at most ``timeout`` seconds (-1: forever): ``(fd, events)`` pairs."""
        return self.epoll.poll(timeout)

    def close(self) -> None:
        """Close the epoll descriptor and forget every target."""
        self.fds.clear()
        self.keys.clear()
        self.epoll.close()
