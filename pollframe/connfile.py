"""Connection files: how a process's peers on other machines learn where it is.

Theory of operation
-------------------
On one machine a parent learns what its child bound through the control
pipe (``wait_ready``). Across machines there is no pipe, so pollframe does
what Jupyter does with its kernels' connection files: whoever *binds*
writes a small JSON file naming its endpoints and the CURVE *public* keys
of its servers, and whoever *connects* reads it (from a shared directory,
or copied by the deployment tool)::

    {"format": "pollframe-connection/1",
     "endpoints": {"pong": "tcp://10.0.0.2:5678"},
     "server_keys": {"pong": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"}}

The file is written whole or not at all (a temporary file in the same
directory, ``fsync``, then ``rename``), so a reader never sees half of
one. It holds no secret: only public keys go in, and the file is made
with mode 0644.

An endpoint as bound is not always one a peer can use: ``tcp://0.0.0.0:5678``
(bound to every interface) means nothing on another machine.
:func:`write_connection_file` refuses wildcard hosts; pass the address
the peers reach through :func:`advertise` (``advertise(bound, "10.0.0.2")``).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Union

from pollframe.address import parse_address

__all__ = ["FORMAT", "Connection", "ConnectionFileError", "advertise", "read_connection_file",
           "write_connection_file"]

FORMAT = "pollframe-connection/1"
"""The value of the file's ``format`` field; a reader refuses any other."""

_WILDCARDS = ("0.0.0.0", "*", "::", "[::]", "")
_Z85 = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")

PathLike = Union[str, "os.PathLike[str]"]


class ConnectionFileError(ValueError):
    """A connection file cannot be written or read as asked; the message names the file."""


@dataclass(frozen=True)
class Connection:
    """What a connection file says: endpoints by name, and the servers' CURVE public keys by name."""

    endpoints: Dict[str, str]
    server_keys: Dict[str, bytes] = field(default_factory=dict)

    def endpoint(self, name: str) -> str:
        """The endpoint called *name*; a :class:`KeyError` that lists the names there are."""
        return _lookup(self.endpoints, "endpoint", name)

    def server_key(self, name: str) -> bytes:
        """The Z85 CURVE public key of the server at endpoint *name*."""
        return _lookup(self.server_keys, "server key", name)


def _lookup(table: Mapping[str, Any], kind: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"no {kind} {name!r} in the connection file; it has {sorted(table)}") from None


def advertise(endpoint: str, host: str) -> str:
    """Return the bound *endpoint* with its host replaced by *host*, the address peers reach.

    ``advertise("tcp://0.0.0.0:5678", "10.0.0.2")`` is ``"tcp://10.0.0.2:5678"``.
    """
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"only tcp:// endpoints carry a host to advertise, not {endpoint!r}")
    port = endpoint.rsplit(":", 1)[1]
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"tcp://{shown}:{port}"


def _check_endpoint(name: str, endpoint: str) -> None:
    if not isinstance(endpoint, str):
        raise ValueError(f"endpoint {name!r} is not a string: {endpoint!r}")
    parsed = parse_address(endpoint, bind=False)  # raises ValueError naming a bad one
    if parsed.url.startswith("tcp://"):
        host = parsed.url[len("tcp://"):].rsplit(":", 1)[0]
        if host in _WILDCARDS:
            raise ValueError(f"endpoint {name!r} is {endpoint!r}, a wildcard no peer can connect to; "
                             "write the address peers reach (see advertise())")


def _check_key(name: str, key: Any) -> bytes:
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if not isinstance(text, str) or len(text) != 40 or not _Z85.issuperset(text):
        raise ValueError(f"server key {name!r} is not a 40-character Z85 public key")
    return text.encode("ascii")


def write_connection_file(
    path: PathLike, endpoints: Mapping[str, str], server_keys: Mapping[str, Union[bytes, str]] = {}
) -> None:
    """Write *endpoints* (name -> endpoint) and *server_keys* (name -> Z85 key) to *path* atomically.

    Wildcard hosts are refused (see :func:`advertise`). Only public keys
    belong here: the file is world-readable (0644). An existing file is
    replaced in one step.
    """
    where = os.fspath(path)
    try:
        for name, endpoint in endpoints.items():
            _check_endpoint(name, endpoint)
        keys = {name: _check_key(name, key).decode() for name, key in server_keys.items()}
    except ValueError as exc:
        raise ConnectionFileError(f"{where}: {exc}") from None
    text = json.dumps({"format": FORMAT, "endpoints": dict(endpoints), "server_keys": keys}, indent=1)
    directory = os.path.dirname(os.path.abspath(where))
    fd, temporary = tempfile.mkstemp(prefix=".connection-", dir=directory)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, where)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def read_connection_file(path: PathLike) -> Connection:
    """Read a connection file; :class:`ConnectionFileError` naming it if it is not a valid one."""
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as file:
            data = json.loads(file.read(1 << 20))
    except OSError as exc:
        raise ConnectionFileError(f"{where}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ConnectionFileError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConnectionFileError(f"{where}: not a {FORMAT} connection file")
    endpoints, keys = data.get("endpoints"), data.get("server_keys", {})
    if not isinstance(endpoints, dict) or not isinstance(keys, dict):
        raise ConnectionFileError(f"{where}: endpoints and server_keys must be objects")
    try:
        for name, endpoint in endpoints.items():
            _check_endpoint(name, endpoint)
        checked = {name: _check_key(name, key) for name, key in keys.items()}
    except ValueError as exc:
        raise ConnectionFileError(f"{where}: {exc}") from None
    return Connection(dict(endpoints), checked)
