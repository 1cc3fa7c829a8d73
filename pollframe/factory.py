"""The socket factory behind ``ZmqProcess.stream()``: one socket, its options as one value.

Theory of operation
-------------------
:class:`SocketOptions` holds every option a pollframe socket can have, in
seconds and plain values, and checks them when it is made, before any
socket exists. :func:`make_socket` applies them in the one order that
works (everything before ``bind``/``connect``, since libzmq reads most
options only then), binds or connects, and closes the socket with linger 0
if any step fails, so a bad option or a taken port leaks nothing. CURVE
goes through :func:`pollframe.auth.apply_curve`, the one place that knows
how a socket becomes a CURVE server or client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from pollframe.address import Endpoint
from pollframe.units import MAX_MSG_SIZE, to_ms

__all__ = ["SocketOptions", "make_socket"]


@dataclass(frozen=True)
class SocketOptions:
    """The options of one socket; times in seconds.

    ``linger``: how long a closing socket keeps trying to deliver.
    ``max_msg_size``: libzmq's ``MAXMSGSIZE`` in bytes (-1: none).
    ``heartbeat``: ZMTP heartbeats every so many seconds; a peer silent for
    ``heartbeat_timeout`` (libzmq's default: one interval) is disconnected,
    and ``heartbeat_ttl`` asks the peer to do the same.
    ``curve_secret_key`` alone makes a CURVE server (an authenticator must
    run on the context); with ``curve_server_key`` a CURVE client.
    ``subscribe``: the prefixes a SUB socket subscribes to.
    ``router_mandatory``: a ROUTER reports a message it cannot route
    (``EHOSTUNREACH``, ``EAGAIN``) instead of dropping it silently.
    ``sockopts``: any other ``zmq`` option, set last (so it can override).
    """

    linger: float = 0.5
    max_msg_size: int = MAX_MSG_SIZE
    heartbeat: float | None = None
    heartbeat_timeout: float | None = None
    heartbeat_ttl: float | None = None
    curve_secret_key: bytes | str | None = None
    curve_server_key: bytes | str | None = None
    subscribe: tuple[bytes, ...] = (b"",)
    router_mandatory: bool = True
    sockopts: Mapping[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.heartbeat is None:
            if self.heartbeat_timeout is not None or self.heartbeat_ttl is not None:
                raise ValueError("heartbeat_timeout and heartbeat_ttl need heartbeat=<interval>")
        elif not self.heartbeat > 0:
            raise ValueError(f"heartbeat must be a positive interval in seconds, not {self.heartbeat!r}")
        if self.curve_server_key is not None and self.curve_secret_key is None:
            raise ValueError("curve_server_key needs curve_secret_key (the client's own key)")
        for prefix in self.subscribe:
            if not isinstance(prefix, bytes):
                raise TypeError(f"a subscription prefix is bytes, not {type(prefix).__name__}")


def make_socket(
    context: zmq.Context[Any], sock_type: int, endpoint: Endpoint, bind: bool, options: SocketOptions
) -> tuple[zmq.Socket[Any], str | None]:
    """Make a ``sock_type`` socket with ``options`` and bind or connect it to ``endpoint``.

    Returns the socket and, for a bind, the endpoint as bound (a random
    port filled in); ``None`` for a connect. On any failure the socket is
    closed with linger 0 and the error raised.
    """
    sock = context.socket(sock_type)
    try:
        _apply(sock, sock_type, endpoint, options)
        if not bind:
            sock.connect(endpoint.url)
            return sock, None
        sock.bind(endpoint.url)
        return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)
    except BaseException:
        sock.close(linger=0)
        raise


def _apply(sock: zmq.Socket[Any], sock_type: int, endpoint: Endpoint, options: SocketOptions) -> None:
    sock.linger = to_ms(options.linger)
    sock.setsockopt(zmq.MAXMSGSIZE, options.max_msg_size)
    if endpoint.ipv6:
        sock.ipv6 = True
    if sock_type == zmq.ROUTER and options.router_mandatory:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if options.heartbeat is not None:
        sock.setsockopt(zmq.HEARTBEAT_IVL, to_ms(options.heartbeat))
        if options.heartbeat_timeout is not None:
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, to_ms(options.heartbeat_timeout))
        if options.heartbeat_ttl is not None:
            sock.setsockopt(zmq.HEARTBEAT_TTL, to_ms(options.heartbeat_ttl))
    if options.curve_secret_key is not None:
        from pollframe import auth  # only CURVE users pay for it

        if options.curve_server_key is None:
            auth.apply_curve(sock, server_secret=options.curve_secret_key)
        else:
            auth.apply_curve(
                sock, client_secret=options.curve_secret_key, server_public=options.curve_server_key
            )
    for option, value in options.sockopts.items():
        sock.setsockopt(option, value)
    if sock_type == zmq.SUB:
        for prefix in options.subscribe:
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
