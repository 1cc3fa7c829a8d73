"""Address parsing for ``ZmqProcess.stream()``, with no sockets involved.

Theory of operation: the user names a place to bind or connect in one of a
few friendly forms; :func:`parse_address` turns it into the one endpoint
string that ``zmq.Socket.bind`` / ``connect`` understands, or raises a
:class:`ValueError` that names the offending address.  Keeping this pure
lets every accepted and refused form be tested without a context.

Accepted forms:

- ``"host:port"`` and ``("host", port)`` -- TCP; ``[v6addr]:port`` and
  ``("v6addr", port)`` for IPv6.
- ``"host"`` alone -- with ``bind=True``: a random free port, chosen by the
  OS (``tcp://host:*``) and read back after binding with :func:`port_of`.
- ``"tcp://host:port"``, ``"tcp://host:*"`` (bind only), ``"ipc://path"``,
  ``"inproc://name"`` -- full endpoints, passed on as they are.

``host`` may be ``*`` (all interfaces) when binding only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Endpoint", "parse_address", "port_of"]

_SCHEMES = ("tcp", "ipc", "inproc")
_RANDOM = "*"
# A host name, an IPv4 address, an interface name or the wild-card: no
# spaces, no colons, no slashes, nothing that would change the endpoint.
_HOST_RE = re.compile(r"^(\*|[A-Za-z0-9_.%-]+)$")
_V6_RE = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")


@dataclass(frozen=True)
class Endpoint:
    """A parsed address, ready for ``bind`` / ``connect``.

    ``url`` is the endpoint string; ``port`` the TCP port when known before
    binding (``None`` for a random port, ``ipc://`` and ``inproc://``);
    ``ipv6`` says the socket needs the ``IPV6`` option.
    """

    url: str
    port: int | None
    ipv6: bool = False


def parse_address(addr: object, bind: bool) -> Endpoint:
    """Turn *addr* into an :class:`Endpoint` for binding (or connecting).

    Raises :class:`ValueError` naming *addr* when it is not one of the forms
    in the module docstring, or names a random port / wild-card host for a
    connect.
    """
    try:
        endpoint = _parse(addr, bind)
    except _Refused as exc:
        raise ValueError(f"bad address {addr!r}: {exc}") from None
    return endpoint


def port_of(endpoint: str) -> int | None:
    """The TCP port of a bound endpoint such as ``tcp://127.0.0.1:5678``.

    ``None`` for ``ipc://`` and ``inproc://`` endpoints, which have none.
    Used on ``socket.last_endpoint`` after binding to a random port.
    """
    if not endpoint.startswith("tcp://"):
        return None
    _, _, port = endpoint.rpartition(":")
    return int(port) if port.isdigit() else None


class _Refused(Exception):
    """Internal: why an address was refused (wrapped in ValueError)."""


def _parse(addr: object, bind: bool) -> Endpoint:
    if isinstance(addr, str):
        if "://" in addr:
            return _parse_endpoint(addr, bind)
        host, port = _split_host_port(addr)
        return _tcp(host, port, bind)
    if isinstance(addr, (tuple, list)):
        if len(addr) != 2:
            raise _Refused("expected a (host, port) pair")
        host, port = addr
        if not isinstance(host, str):
            raise _Refused("host must be a string")
        return _tcp(host, port, bind)
    raise _Refused("expected 'host:port', ('host', port), 'host' or an endpoint")


def _parse_endpoint(addr: str, bind: bool) -> Endpoint:
    scheme, _, rest = addr.partition("://")
    if scheme not in _SCHEMES:
        raise _Refused(f"unknown transport {scheme!r} (use one of {', '.join(_SCHEMES)})")
    if not rest or rest != rest.strip():
        raise _Refused(f"empty or padded {scheme} address")
    if scheme != "tcp":
        return Endpoint(addr, None)
    host, port = _split_host_port(rest)
    if port is None:
        raise _Refused("a tcp:// endpoint needs a port (or '*' to bind a random one)")
    return _tcp(host, port, bind)


def _split_host_port(text: str) -> tuple[str, str | None]:
    """``host:port`` / ``[v6]:port`` / ``host`` / ``[v6]`` -> (host, port or None)."""
    if text.startswith("["):
        host, sep, tail = text[1:].partition("]")
        if not sep:
            raise _Refused("unclosed '[' in IPv6 address")
        if not tail:
            return host, None
        if not tail.startswith(":"):
            raise _Refused("expected ':port' after ']'")
        return host, tail[1:]
    if text.count(":") > 1:
        raise _Refused("write an IPv6 host in brackets: '[::1]:5678'")
    host, sep, port = text.partition(":")
    return host, (port if sep else None)


def _tcp(host: str, port: object, bind: bool) -> Endpoint:
    ipv6 = ":" in host
    _check_host(host, ipv6, bind)
    number = _check_port(port, bind)
    shown = f"[{host}]" if ipv6 else host
    if number is None:
        return Endpoint(f"tcp://{shown}:{_RANDOM}", None, ipv6)
    return Endpoint(f"tcp://{shown}:{number}", number, ipv6)


def _check_host(host: str, ipv6: bool, bind: bool) -> None:
    if not host:
        raise _Refused("empty host")
    pattern = _V6_RE if ipv6 else _HOST_RE
    if not pattern.match(host):
        raise _Refused(f"invalid host {host!r}")
    if host == _RANDOM and not bind:
        raise _Refused("cannot connect to the wild-card host '*'")


def _check_port(port: object, bind: bool) -> int | None:
    """The port number, or ``None`` for "let the OS pick" (bind only)."""
    if isinstance(port, bool):
        raise _Refused("port must be an integer")
    if isinstance(port, str) and port != _RANDOM:
        if not port.isdigit() or not port.isascii():
            raise _Refused(f"port {port!r} is not a number")
        port = int(port)
    if port is None or port == _RANDOM or port == 0:
        if not bind:
            raise _Refused("connecting needs a port")
        return None
    if not isinstance(port, int):
        raise _Refused("port must be an integer")
    if not 0 < port < 65536:
        raise _Refused(f"port {port} out of range 1-65535")
    return port
