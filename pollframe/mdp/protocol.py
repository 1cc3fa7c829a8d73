"""The frames of MDP/0.1 (ZeroMQ RFC 7, Majordomo Protocol), built and checked (sans-io).

Every command is a list of frames, written here as the sender passes them
to ``send_multipart`` on its own socket. A ROUTER adds (on receipt) and
takes (on sending) one routing-id frame in front; REQ adds and strips the
empty frame 0 of a client's messages, so a REQ client sends
``[MDPC01, service, *body]``, and a DEALER client sends the empty frame
itself. A worker's DEALER sends every command with its empty frame 0.

Client (MDP/Client), strictly one request, then its reply::

    REQUEST  ['', 'MDPC01', service, body...]          body: one frame or more
    REPLY    ['', 'MDPC01', service, body...]

Worker (MDP/Worker)::

    READY       ['', 'MDPW01', 0x01, service]
    REQUEST     ['', 'MDPW01', 0x02, client, '', body...]   broker -> worker
    REPLY       ['', 'MDPW01', 0x03, client, '', body...]   worker -> broker
    HEARTBEAT   ['', 'MDPW01', 0x04]                        either way
    DISCONNECT  ['', 'MDPW01', 0x05]                        either way

Services whose names start with ``mmi.`` belong to the broker (RFC 8,
Majordomo Management Interface); ``mmi.service`` answers ``200`` when the
named service has workers, ``404`` when not, and an unknown ``mmi.`` name
``501``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

from pollframe.errors import shorten

__all__ = [
    "CLIENT",
    "DISCONNECT",
    "DISCONNECT_FRAMES",
    "HEARTBEAT",
    "HEARTBEAT_FRAMES",
    "MMI_PREFIX",
    "MdpError",
    "ProtocolError",
    "READY",
    "REPLY",
    "REQUEST",
    "WORKER",
    "as_service",
    "client_body",
    "client_request",
    "command_name",
    "ready",
    "worker_reply",
    "worker_request",
]

#: Frame 1 of every client command: MDP/Client version 0.1.
CLIENT = b"MDPC01"
#: Frame 1 of every worker command: MDP/Worker version 0.1.
WORKER = b"MDPW01"

READY = b"\x01"
REQUEST = b"\x02"
REPLY = b"\x03"
HEARTBEAT = b"\x04"
DISCONNECT = b"\x05"

_NAMES = {
    READY: "READY", REQUEST: "REQUEST", REPLY: "REPLY", HEARTBEAT: "HEARTBEAT", DISCONNECT: "DISCONNECT",
}

#: The service names the broker answers itself (RFC 8).
MMI_PREFIX = b"mmi."

Frames = List[bytes]


class MdpError(Exception):
    """Base of the Majordomo errors."""


class ProtocolError(MdpError, ValueError):
    """A peer sent something MDP/0.1 does not allow; ``reason`` says what, in one line.

    The message is dropped; nothing is sent back for it (the RFC: "drop
    invalid messages and treat that peer as invalid").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_service(name: Union[str, bytes]) -> bytes:
    """A service name as the frame that carries it; an empty name is refused."""
    service = name.encode() if isinstance(name, str) else bytes(name)
    if not service:
        raise ValueError("an MDP service name must not be empty")
    return service


def command_name(command: bytes) -> str:
    """READY, REQUEST, ... for a worker command byte; its repr for anything else."""
    return _NAMES.get(command, shorten(command))


# ------------------------------------------------------------------ worker commands


def ready(service: bytes) -> Frames:
    """The READY frames a worker sends to offer ``service``."""
    return [b"", WORKER, READY, service]


def worker_request(client: bytes, body: Sequence[bytes]) -> Frames:
    """The REQUEST frames the broker sends a worker: the client's address, an empty frame, the body."""
    return [b"", WORKER, REQUEST, client, b"", *body]


def worker_reply(client: bytes, body: Sequence[bytes]) -> Frames:
    """The REPLY frames a worker sends the broker for ``client``'s request."""
    return [b"", WORKER, REPLY, client, b"", *body]


HEARTBEAT_FRAMES: Tuple[bytes, ...] = (b"", WORKER, HEARTBEAT)
DISCONNECT_FRAMES: Tuple[bytes, ...] = (b"", WORKER, DISCONNECT)


# ------------------------------------------------------------------ client commands


def client_request(service: bytes, body: Sequence[bytes]) -> Frames:
    """A REQUEST as a REQ client sends it (REQ adds the empty frame 0; a DEALER prepends ``b""``)."""
    if not body:
        raise ValueError("an MDP request needs a body of at least one frame")
    return [CLIENT, service, *body]


def client_body(frames: Sequence[bytes], service: bytes) -> Frames:
    """The body of a client REPLY as a REQ client receives it: ``[MDPC01, service, body...]``.

    Raises :class:`ProtocolError` for a reply that is not MDP/Client 0.1
    or that answers another service.
    """
    if len(frames) < 3:
        raise ProtocolError(f"an MDP reply has at least 3 frames after the delimiter, not {len(frames)}")
    if frames[0] != CLIENT:
        raise ProtocolError(f"not an MDP/Client 0.1 reply: header {shorten(frames[0])}")
    if frames[1] != service:
        raise ProtocolError(f"a reply from service {shorten(frames[1])} to a request for {shorten(service)}")
    return list(frames[2:])
