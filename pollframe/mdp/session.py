"""One MDP/0.1 worker's side of its conversation with a broker (sans-io).

A :class:`WorkerSession` turns the broker's frames into events for the
application (:class:`Request`, :class:`Disconnect`, or None for a heartbeat)
and the application's answers into frames. It owns no socket and no clock:
``connect`` opens a conversation (READY), ``tick(now)`` says when a
heartbeat is due. Whether the broker is still there is the business of a
:class:`~pollframe.liveness.Liveness` tracker fed by the same messages
(:class:`~pollframe.mdp.worker.Worker` wires both).

Heartbeats go out only when the worker sent nothing else for a whole
interval (the RFC: peers SHOULD NOT send HEARTBEAT while also sending other
commands; every command counts as one).
"""
from __future__ import annotations

from typing import List, Sequence, Union

from pollframe.errors import shorten
from pollframe.mdp import protocol as mdp
from pollframe.mdp.protocol import WORKER, Frames, ProtocolError, as_service

__all__ = ["Disconnect", "Request", "WorkerSession"]


class Request:
    """A client's request as the worker gets it: ``client`` (its address at the broker) and ``body``."""

    __slots__ = ("client", "body")

    def __init__(self, client: bytes, body: Frames) -> None:
        self.client = client
        self.body = body

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and (self.client, self.body) == (other.client, other.body)

    def __repr__(self) -> str:
        return f"<Request from {shorten(self.client)} body={shorten(self.body)}>"


class Disconnect:
    """The broker said DISCONNECT: send nothing more, close the socket, connect anew."""

    __eq__ = object.__eq__

    def __repr__(self) -> str:
        return "<Disconnect>"


Event = Union[Request, Disconnect, None]


class WorkerSession:
    """A worker of ``service``: READY, then requests in and replies out, heartbeats between."""

    def __init__(self, service: Union[str, bytes], *, heartbeat: float = 2.5, now: float = 0.0) -> None:
        if not heartbeat > 0:
            raise ValueError(f"heartbeat must be a positive number of seconds, not {heartbeat!r}")
        self.service = as_service(service)
        self.heartbeat = heartbeat
        self._last_sent = now

    def connect(self, now: float) -> Frames:
        """The READY that opens a conversation on a new connection."""
        self._last_sent = now
        return mdp.ready(self.service)

    def handle(self, frames: Sequence[bytes], now: float) -> Event:
        """A message from the broker, as the worker's DEALER received it.

        Returns a :class:`Request` to serve, a :class:`Disconnect`, or None
        (a heartbeat). Raises :class:`ProtocolError` for anything else.
        """
        if len(frames) < 3 or frames[0] != b"" or frames[1] != WORKER:
            raise ProtocolError(f"not an MDP/Worker 0.1 command: {shorten([bytes(f) for f in frames[:3]])}")
        command = frames[2]
        if command == mdp.REQUEST:
            if len(frames) < 6 or frames[4] != b"":
                raise ProtocolError("an MDP REQUEST needs a client address, an empty frame and a body")
            return Request(frames[3], list(frames[5:]))
        if command == mdp.HEARTBEAT and len(frames) == 3:
            return None
        if command == mdp.DISCONNECT and len(frames) == 3:
            return Disconnect()
        raise ProtocolError(f"unexpected MDP command from the broker: {mdp.command_name(command)}"
                            f" in {len(frames)} frames")

    def reply(self, request: Request, body: Sequence[bytes], now: float) -> Frames:
        """The REPLY to ``request`` carrying ``body`` (one frame or more)."""
        if not body:
            raise ValueError("an MDP reply needs a body of at least one frame")
        self._last_sent = now
        return mdp.worker_reply(request.client, body)

    def tick(self, now: float) -> List[Frames]:
        """A HEARTBEAT if the worker sent nothing for a whole interval, else nothing."""
        if now - self._last_sent < self.heartbeat:
            return []
        self._last_sent = now
        return [list(mdp.HEARTBEAT_FRAMES)]

    def disconnect(self) -> Frames:
        """The DISCONNECT a worker sends when it leaves."""
        return list(mdp.DISCONNECT_FRAMES)

    def __repr__(self) -> str:
        return f"<WorkerSession {shorten(self.service)} heartbeat={self.heartbeat:g}>"
