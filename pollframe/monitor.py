"""Socket events on the loop: libzmq's socket monitor as plain callbacks, no thread.

libzmq reports what happens to a socket's connections (connected,
disconnected, accepted, a failed handshake and why, closed ...) as
two-frame messages on an ``inproc`` PAIR socket: ``zmq_socket_monitor``.
A :class:`Monitor` makes that PAIR socket (``Socket.get_monitor_socket``),
registers it on the same loop as the socket it watches, and turns each
message into a :class:`SocketEvent` for the callback, so events arrive in
order with the socket's messages and timers, on the loop's thread.

``Stream.on_event(callback)`` is the way to use it; the monitor closes with
the stream. Events that libzmq reports after the monitor was closed (those
of the socket's own close among them) are not delivered.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, NamedTuple, Optional

import zmq

from pollframe.loop import PollLoop

__all__ = ["Monitor", "SocketEvent"]

#: ``zmq.EVENT_*`` value -> the event's name in lower case ("connected", "handshake_failed_auth", ...).
EVENT_NAMES: Dict[int, str] = {
    int(e): str(e.name).lower()
    for e in zmq.Event
    if e.name and e.value and e.name != "ALL" and not e.name.startswith("PROTOCOL_ERROR_")
}

#: ``ZMQ_PROTOCOL_ERROR_*`` value -> its name without the prefix ("ZMTP_MECHANISM_MISMATCH", ...).
PROTOCOL_ERRORS: Dict[int, str] = {
    int(getattr(zmq, name)): name[len("PROTOCOL_ERROR_"):]
    for name in dir(zmq)
    if name.startswith("PROTOCOL_ERROR_")
}

_FAILURES_WITH_ERRNO = frozenset(
    int(e)
    for e in (zmq.EVENT_BIND_FAILED, zmq.EVENT_ACCEPT_FAILED, zmq.EVENT_CLOSE_FAILED,
              zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
)


class SocketEvent(NamedTuple):
    """One libzmq socket event.

    ``name`` is the ``zmq.EVENT_*`` name in lower case, ``event`` its int,
    ``endpoint`` the endpoint it concerns. ``value`` depends on the event
    (libzmq's ``zmq_socket_monitor``): the file descriptor for connected,
    accepted, listening, closed and disconnected; the next retry interval in
    ms for connect_retried; an errno for the ``*_failed`` events; a
    ``ZMQ_PROTOCOL_ERROR_*`` code for handshake_failed_protocol; the ZAP
    status code (e.g. 400) for handshake_failed_auth. ``reason`` says the
    last three in words.
    """

    name: str
    event: int
    value: int
    endpoint: str

    @property
    def reason(self) -> Optional[str]:
        """Why a ``*_failed`` event failed, in words; None for other events."""
        if self.event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return PROTOCOL_ERRORS.get(self.value, f"protocol error {self.value:#x}")
        if self.event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return f"ZAP status {self.value}"
        if self.event in _FAILURES_WITH_ERRNO:
            return os.strerror(self.value)
        return None


def parse_event(frames: list) -> SocketEvent:
    """The :class:`SocketEvent` of one monitor message (``zmq.utils.monitor``'s format)."""
    # Imported here: zmq.utils.monitor imports zmq.asyncio, hence asyncio,
    # which a process that never monitors a socket should not pay for.
    from zmq.utils.monitor import parse_monitor_message

    parsed = parse_monitor_message(frames)
    event = int(parsed["event"])
    return SocketEvent(
        EVENT_NAMES.get(event, f"event_{event:#x}"),
        event,
        int(parsed["value"]),
        parsed["endpoint"].decode("utf-8", "replace"),
    )


class Monitor:
    """Delivers ``sock``'s monitor events to ``callback(event)`` on ``loop``, until :meth:`close`.

    ``events`` is a mask of ``zmq.EVENT_*`` (default all). The callback's
    exceptions go to the loop's error policy, like a receive callback's.
    """

    def __init__(
        self,
        sock: zmq.Socket,
        loop: PollLoop,
        callback: Callable[[SocketEvent], Any],
        events: Optional[int] = None,
    ) -> None:
        self.callback = callback
        #: The mask libzmq was given (None: all events); fixed for the monitor's life.
        self.events = events
        self._watched = sock
        self._loop = loop
        self.socket: Optional[zmq.Socket] = sock.get_monitor_socket(events)
        # What register() does, untraced: the PAIR socket is plumbing, and its
        # events recorded as messages would split the traced conversation.
        loop.watch(self.socket, loop.reader(self.socket, self._deliver, traced=False), zmq.POLLIN)

    def _deliver(self, frames: list) -> None:
        self.callback(parse_event(frames))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self.socket is None

    def close(self) -> None:
        """Stop monitoring and close the PAIR socket; no callback is called afterwards."""
        mon, self.socket = self.socket, None
        if mon is None:
            return
        try:
            if not self._watched.closed:
                self._watched.disable_monitor()
        finally:
            if not self._loop.closed:
                self._loop.unregister(mon)
            mon.close(linger=0)
