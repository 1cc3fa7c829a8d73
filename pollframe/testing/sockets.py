"""Sockets and endpoints for tests: nothing waits forever, no two tests share a port.

A :class:`TimedSocket` is a real zmq socket whose every send and receive has
a deadline. A blocking ``recv()`` on a peer that never answers is the
classic way a ZeroMQ test hangs until CI kills it; here it fails after a
second with a message that names the socket and what the test expected.

:func:`terminate_context` ends a context with a deadline for the same
reason: ``zmq_ctx_term`` blocks while any socket made on it is open.
"""
from __future__ import annotations

import json
import os
import random as _random
import socket as _stdlib_socket
import threading
from typing import Any, List, Optional, Sequence

import zmq

from pollframe.errors import shorten
from pollframe.testing.errors import ContextHang, SocketTimeout
from pollframe.units import to_ms

__all__ = [
    "DEFAULT_TIMEOUT",
    "IPC_PATH_MAX",
    "TimedSocket",
    "free_tcp_endpoint",
    "ipc_endpoint",
    "terminate_context",
]

#: Seconds a test socket waits for a message or for room to send.
DEFAULT_TIMEOUT = 1.0
#: Longest ipc:// path that fits ``sun_path`` on every platform (104 on macOS, 108 on Linux).
IPC_PATH_MAX = 100

#: How many characters of a message a failure message quotes.
PREVIEW_LIMIT = 120

_OWN = frozenset({"socket", "timeout", "endpoints"})


def socket_type_name(sock_type: Any) -> str:
    try:
        return zmq.SocketType(sock_type).name
    except (ValueError, TypeError):
        return str(sock_type)


class TimedSocket:
    """A real zmq socket for tests whose sends and receives fail instead of blocking.

    Every ``recv*`` and ``send*`` takes ``timeout`` (seconds; default the
    socket's :attr:`timeout`). When it runs out they raise
    :class:`~pollframe.testing.errors.SocketTimeout`, an ``AssertionError``
    naming the socket type, its endpoints and, for receives, what was
    expected (``expect=`` text). Anything else (``setsockopt``,
    ``subscribe``, ...) goes to the wrapped :attr:`socket`.
    """

    def __init__(self, sock: zmq.Socket[Any], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket = sock
        self.timeout = timeout
        #: ``"bound to tcp://..."`` / ``"connected to ipc://..."``, in order.
        self.endpoints: List[str] = []

    # ----------------------------------------------------------- endpoints

    def bind(self, endpoint: str) -> str:
        """Bind and return the endpoint as bound (``tcp://127.0.0.1:*`` comes back with its port)."""
        self.socket.bind(endpoint)
        bound = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.endpoints.append(f"bound to {bound}")
        return bound

    def connect(self, endpoint: str) -> str:
        """Connect to ``endpoint``, remembered for failure messages; return it."""
        self.socket.connect(endpoint)
        self.endpoints.append(f"connected to {endpoint}")
        return endpoint

    def describe(self) -> str:
        """``"REQ socket connected to tcp://127.0.0.1:5678"``: how failures name this socket."""
        kind = socket_type_name(self.socket.type)
        where = ", ".join(self.endpoints) if self.endpoints else "neither bound nor connected"
        return f"{kind} socket {where}"

    # ----------------------------------------------------------- receiving

    def recv_multipart(self, timeout: Optional[float] = None, *, expect: str = "a message") -> List[bytes]:
        """The next message's frames; fail if none arrives within ``timeout`` seconds."""
        __tracebackhide__ = True
        self._wait(zmq.POLLIN, timeout, lambda t: f"{self.describe()}: received nothing within {t} s; "
                                                  f"expected {expect}")
        return self.socket.recv_multipart(zmq.NOBLOCK)

    def recv(self, timeout: Optional[float] = None, *, expect: str = "a message") -> bytes:
        """The next message, which must be one frame."""
        __tracebackhide__ = True
        frames = self.recv_multipart(timeout, expect=expect)
        if len(frames) != 1:
            raise AssertionError(f"{self.describe()}: expected {expect} in one frame, "
                                 f"got {len(frames)} frames: {shorten(frames, PREVIEW_LIMIT)}")
        return frames[0]

    def recv_string(self, timeout: Optional[float] = None, *, expect: str = "a message",
                    encoding: str = "utf-8") -> str:
        """A one-frame message decoded with ``encoding``; fails as :meth:`recv` does."""
        __tracebackhide__ = True
        return self.recv(timeout, expect=expect).decode(encoding)

    def recv_json(self, timeout: Optional[float] = None, *, expect: str = "a JSON message",
                  frame: int = -1) -> Any:
        """The next message with its frame ``frame`` (default the last) decoded as JSON."""
        __tracebackhide__ = True
        frames = self.recv_multipart(timeout, expect=expect)
        try:
            return json.loads(frames[frame])
        except (IndexError, ValueError) as exc:
            raise AssertionError(f"{self.describe()}: expected {expect}, but frame {frame} of "
                                 f"{shorten(frames, PREVIEW_LIMIT)} is not JSON ({exc})") from None

    def expect_nothing(self, within: float = 0.1) -> None:
        """Fail if a message arrives within ``within`` seconds (the message is left unread)."""
        __tracebackhide__ = True
        if self.socket.poll(to_ms(max(within, 0.0)), zmq.POLLIN):
            raise AssertionError(f"{self.describe()}: expected no message within {within} s, "
                                 "but one arrived")

    # ------------------------------------------------------------- sending

    def send_multipart(self, frames: Sequence[Any], timeout: Optional[float] = None) -> None:
        """Send ``frames`` as one message; fail if the socket cannot take it within ``timeout``."""
        __tracebackhide__ = True
        # Failure messages are built only on failure: quoting a large message costs.
        self._wait(zmq.POLLOUT, timeout, lambda t: f"{self.describe()}: could not send "
                                                   f"{shorten(list(frames), PREVIEW_LIMIT)} "
                                                   f"within {t} s{self._send_hint()}")
        try:
            self.socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            shown = shorten(list(frames), PREVIEW_LIMIT)
            raise SocketTimeout(f"{self.describe()}: the socket refused {shown} "
                                f"(EAGAIN){self._send_hint()}") from None

    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        """Send a one-frame message; fails as :meth:`send_multipart` does."""
        __tracebackhide__ = True
        self.send_multipart([data], timeout)

    def send_string(self, text: str, timeout: Optional[float] = None, encoding: str = "utf-8") -> None:
        """Send ``text`` as one frame, encoded with ``encoding``."""
        __tracebackhide__ = True
        self.send_multipart([text.encode(encoding)], timeout)

    def send_json(self, obj: Any, timeout: Optional[float] = None) -> None:
        """Send ``obj`` as one frame of JSON."""
        __tracebackhide__ = True
        self.send_multipart([json.dumps(obj).encode()], timeout)

    # ------------------------------------------------------------- the rest

    def close(self, linger: Optional[float] = 0) -> None:
        """Close the socket; ``linger`` in seconds, as for a Stream (``None`` keeps the ``LINGER`` option)."""
        self.socket.close(linger=None if linger is None else to_ms(linger))

    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return bool(self.socket.closed)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN:  # not set yet: do not recurse
            raise AttributeError(name)
        return getattr(self.socket, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``sock.linger = 0`` sets the option on the zmq socket, as it would without the wrapper.
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self.socket, name, value)

    def __enter__(self) -> TimedSocket:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TimedSocket {self.describe()} timeout={self.timeout}>"

    def _wait(self, event: int, timeout: Optional[float], message: Any) -> None:
        __tracebackhide__ = True
        seconds = self.timeout if timeout is None else timeout
        if not self.socket.poll(to_ms(max(seconds, 0.0)), event) & event:
            raise SocketTimeout(message(seconds))

    def _send_hint(self) -> str:
        if self.socket.type == zmq.REQ:
            return (" (a REQ socket sends only to a connected peer, and only once the reply"
                    " to its last request came)")
        if self.socket.type == zmq.REP:
            return " (a REP socket can only send a reply to the request it received last)"
        return " (no peer connected yet, or the peer is not reading: high-water mark reached)"


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    """A ``tcp://host:port`` endpoint whose port was free a moment ago.

    The port is below the kernel's ephemeral range (the ports it gives
    connecting sockets), so a client that connects to it before the server
    binds can never connect to itself: a TCP connect from an ephemeral
    port to a free port on the same host may pick that very port and
    "succeed" (simultaneous open), and then hold it, so the server's bind
    fails. Another program may still take the port before the test binds
    it, so where the test (or the process under test) binds itself,
    binding ``tcp://127.0.0.1:*`` and reading the port back is safer.
    """
    low = _ephemeral_low()
    for _ in range(100):
        port = _random.randrange(max(1024, low - 12000), low)
        with _stdlib_socket.socket(_stdlib_socket.AF_INET, _stdlib_socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return f"tcp://{host}:{port}"
    raise RuntimeError(f"no free port below {low} on {host} in 100 tries")


def _ephemeral_low(default: int = 32768) -> int:
    """The first port of the kernel's ephemeral range (Linux's setting, else its default)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return max(int(f.read().split()[0]), 2048)
    except (OSError, ValueError, IndexError):
        return default


def ipc_endpoint(directory: str | os.PathLike[str], name: str = "sock") -> str:
    """``ipc://directory/name``; a clear ValueError when the path is too long for a Unix socket."""
    path = os.path.join(os.fspath(directory), name)
    if len(os.fsencode(path)) > IPC_PATH_MAX:
        raise ValueError(f"ipc path {path!r} is {len(os.fsencode(path))} bytes; a Unix socket path "
                         f"must stay under {IPC_PATH_MAX}: use a shorter directory")
    return f"ipc://{path}"


def terminate_context(ctx: zmq.Context[Any], timeout: float = 5.0) -> None:
    """Close every socket of ``ctx`` with linger 0 and terminate it; never hang.

    The sockets are closed here, in the caller's thread: a socket is not
    thread-safe, and one closed by a helper thread while the garbage
    collector finalises (and so closes) it in this one aborts the process.
    Only ``zmq_ctx_term`` runs in a helper thread, joined with ``timeout``:
    if it is still blocked then (a socket made on the context is open in
    another thread, or was made by a copy of the context), this raises
    :class:`~pollframe.testing.errors.ContextHang` instead of hanging the
    test run. The helper thread is a daemon and cannot keep the
    interpreter alive.
    """
    __tracebackhide__ = True
    failure: List[BaseException] = []
    if ctx.closed:
        return
    for sock in list(getattr(ctx, "_sockets", None) or ()):
        if sock is not None and not sock.closed:
            sock.close(linger=0)

    def destroy() -> None:
        try:
            ctx.term()
        except BaseException as exc:  # reported in the test's thread
            failure.append(exc)

    worker = threading.Thread(target=destroy, name="pollframe-context-term", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ContextHang(f"zmq context did not terminate within {timeout} s: a socket made on it "
                          "is still open (in another thread?) and zmq_ctx_term waits for it")
    if failure:
        raise failure[0]
