"""RequestClient: a blocking request/reply client that survives a dead server.

Theory of operation
-------------------
This is the zguide's *Lazy Pirate* pattern. A plain REQ socket waits
forever for a reply that a crashed server will never send, and it refuses
to send again before that reply came (``EFSM``). So each attempt sends the
request and polls for the reply until its deadline. When the deadline
passes, the socket is closed with ``linger=0`` (whatever it still held is
thrown away, a late reply included) and the next attempt opens a fresh
socket and sends the request again. After the last attempt
:class:`RequestTimeout` is raised; the client stays usable and the next
request starts on a fresh socket, so a server restarted on the same address
answers it.

A retried request may be served twice (the first copy reached the server,
its reply did not come back in time): retry only requests that are safe to
repeat, or pass ``retries=1``.

Across machines, ``heartbeat=H`` sets the options of
:func:`heartbeat_sockopts`: libzmq notices a dead connection within 3H and
a connect lost in a partition is tried again within about 0.7H, and a
request whose connection is lost goes again at once on a fresh socket,
so after a heal the request is served within about 0.7H, not after TCP's
backoff or its deadline.

The client is meant for programs and tests that may block: a command-line
tool, a main job talking to its processes. Inside a :class:`PollLoop`
process use a :class:`~pollframe.requester.Requester` instead. One client
serves one thread; make it in the process that uses it (it may own a zmq
context, and a context must not cross a fork).

Deadlines and signals: pyzmq restarts a ``zmq_poll`` interrupted by a
signal with the elapsed time rounded down to whole seconds, so under a
continuous storm of signals an attempt can last up to about one second
longer than its timeout. Ordinary signals (one ``SIGCHLD`` now and then)
cost nothing.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import zmq
from zmq.backend import zmq_poll

from pollframe import trace
from pollframe.address import parse_address
from pollframe.codec import Codec, JsonCodec, Triple
from pollframe.errors import RemoteError, RequestTimeout
from pollframe.units import poll_ms

__all__ = ["RemoteError", "RequestClient", "RequestTimeout"]


class RequestClient:
    """A REQ client with a deadline per attempt and a fresh socket per retry.

    ``endpoint`` takes the forms of ``ZmqProcess.stream()`` for connecting:
    ``"host:port"``, ``("host", port)`` or a ``tcp://``, ``ipc://`` or
    ``inproc://`` endpoint. ``timeout`` is the seconds each attempt waits
    for its reply, ``retries`` the number of attempts (1: no retry).
    ``context`` is used if given (``inproc://`` needs the server's);
    otherwise the client makes its own and destroys it in :meth:`close`.
    ``sockopts`` are set on every socket before it connects (after, and
    over, the heartbeat's). ``codec`` encodes :meth:`request` messages
    (default :class:`~pollframe.codec.JsonCodec`).

    ``heartbeat`` (seconds, not ``inproc://``) sets the options of
    :func:`heartbeat_sockopts` on each socket: a dead connection is
    dropped within 3 heartbeats, a connect lost in a partition is tried
    again within about 0.7 heartbeat instead of after the kernel's SYN
    backoff (1, 3, 7 ... s), and a request waits (within its deadline)
    until there is a connection instead of being queued for one. A
    socket monitor is polled beside the reply: when the connection is
    lost during an attempt (a REQ would wait for the lost reply until the
    deadline), the request goes again at once on a fresh socket, within
    the same attempt and deadline.

    Counters: ``timeouts`` counts attempts that timed out, ``sockets``
    the sockets opened so far; with a heartbeat also ``disconnects``
    (connections lost during an attempt) and ``replayed`` (requests sent
    again on a fresh socket because of one).
    """

    def __init__(
        self,
        endpoint: str | tuple[str, int | str],
        *,
        timeout: float = 2.5,
        retries: int = 3,
        context: zmq.Context[Any] | None = None,
        sockopts: Mapping[int, Any] | None = None,
        codec: Codec | None = None,
        heartbeat: float | None = None,
    ) -> None:
        check_policy(timeout, retries)
        self.endpoint = parse_address(endpoint, bind=False).url
        self.timeout = timeout
        self.retries = retries
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.sockopts = dict(sockopts or {})
        #: Seconds between ZMTP heartbeats on each connection (None: no heartbeats).
        self.heartbeat = heartbeat
        if heartbeat is not None:
            self.sockopts = {**heartbeat_sockopts(heartbeat, self.endpoint), **self.sockopts}
        self.timeouts = 0
        self.sockets = 0
        self.disconnects = 0
        self.replayed = 0
        self._monitor: zmq.Socket[Any] | None = None
        self._own_context = context is None
        self._context: zmq.Context[Any] = zmq.Context() if context is None else context
        self._socket: zmq.Socket[Any] | None = None
        self._traced: trace.Channel | None = None  # records the socket's messages when tracing
        self._closed = False

    # ------------------------------------------------------------------ API

    def request(self, msg_type: str, /, *args: Any, **kwargs: Any) -> Triple:
        """Send ``[msg_type, args, kwargs]`` and return the reply as a triple.

        Raises :class:`RemoteError` for an ``"error"`` reply,
        :class:`RequestTimeout` when every attempt timed out, and a
        :class:`~pollframe.errors.MessageError` for a reply that cannot be
        decoded.
        """
        frames = self.send_recv([self.codec.encode(msg_type, args, kwargs)])
        reply_type, reply_args, reply_kwargs = self.codec.decode(frames[-1])
        if reply_type == "error":
            reason = reply_args[0] if reply_args else ""
            raise RemoteError(reason if isinstance(reason, str) else repr(reason))
        return reply_type, reply_args, reply_kwargs

    def send_recv(
        self,
        frames: Sequence[Any],
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> list[bytes]:
        """Send one multipart request and return the reply's frames.

        ``timeout`` and ``retries`` override the client's for this request.
        Raises :class:`RequestTimeout` after the last attempt.
        """
        if self._closed:
            raise RuntimeError(f"this RequestClient for {self.endpoint} is closed")
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        check_policy(timeout, retries)
        for _ in range(retries):
            reply = self._attempt(frames, time.monotonic() + timeout)
            if reply is not None:
                return reply
            self.timeouts += 1
            self._drop_socket()
        raise RequestTimeout(self.endpoint, retries, timeout)

    def close(self) -> None:
        """Close the socket (linger 0) and the context if the client made it."""
        if self._closed:
            return
        self._closed = True
        self._drop_socket()
        if self._own_context:
            self._context.destroy(linger=0)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def socket(self) -> zmq.Socket[Any] | None:
        """The current socket, or None between a timeout and the next request."""
        return self._socket

    def __enter__(self) -> RequestClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RequestClient {self.endpoint} timeout={self.timeout:g} retries={self.retries}>"

    # ------------------------------------------------------------ internals

    def _attempt(self, frames: Sequence[Any], deadline: float) -> list[bytes] | None:
        """Send and wait for the reply until ``deadline``; None when it passed.

        With a heartbeat, a connection lost meanwhile took the request with
        it and the REQ waits for a reply that cannot come: the request goes
        again on a fresh socket, within the same attempt and deadline.
        """
        while True:
            sock = self._socket if self._socket is not None else self._open()
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:  # no pipe yet (IMMEDIATE) or at the high-water mark
                if not _wait(sock, zmq.POLLOUT, deadline):
                    return None
                sock.send_multipart(frames, zmq.NOBLOCK)
            if self._traced is not None:
                self._traced.sent(frames)
            answered = self._wait_reply(sock, deadline)
            if answered is not _LOST:
                break
            self.replayed += 1
            self._drop_socket()
        if not answered:
            return None
        reply = sock.recv_multipart(zmq.NOBLOCK)
        if self._traced is not None:
            self._traced.received(reply)
        return reply

    def _wait_reply(self, sock: zmq.Socket[Any], deadline: float) -> bool | object:
        """True when the reply is there, False at the deadline, ``_LOST`` when the connection was lost."""
        monitor = self._monitor
        if monitor is None:
            return _wait(sock, zmq.POLLIN, deadline)
        while True:
            remaining = deadline - time.monotonic()
            ready = dict(zmq_poll([(sock, zmq.POLLIN), (monitor, zmq.POLLIN)], poll_ms(max(remaining, 0.0))))
            if ready.get(sock):
                return True
            if ready.get(monitor):
                lost = False
                while monitor.poll(0):
                    event = monitor.recv_multipart()
                    lost |= struct.unpack("=hi", event[0][:6])[0] == zmq.EVENT_DISCONNECTED
                if lost:
                    self.disconnects += 1
                    return _LOST
            elif remaining <= 0:
                return False

    def _watch(self, sock: zmq.Socket[Any]) -> None:
        """Before the connect: a monitor for the connection's loss, polled beside the reply."""
        self._monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)

    def _open(self) -> zmq.Socket[Any]:
        watch = self._watch if self.heartbeat is not None else None
        try:
            sock = connect_socket(self._context, zmq.REQ, self.endpoint, self.sockopts, watch)
        except BaseException:
            self._close_monitor()
            raise
        recorder = trace.recorder()  # decided per socket: None (and free) unless tracing is on
        self._traced = None if recorder is None else recorder.channel(sock)
        self._socket = sock
        self.sockets += 1
        return sock

    def _drop_socket(self) -> None:
        """Close the socket at once: a REQ that missed its reply cannot send again (EFSM)."""
        if self._socket is not None:
            if self._monitor is not None:
                self._socket.disable_monitor()
            self._close_monitor()
            self._socket.close(linger=0)
            self._socket = None

    def _close_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.close(linger=0)


#: What ``_wait_reply`` returns when the connection was lost before the reply came.
_LOST = object()


def _wait(sock: zmq.Socket[Any], event: int, deadline: float) -> bool:
    """Poll ``sock`` for ``event`` until ``deadline`` (monotonic seconds)."""
    while True:
        remaining = deadline - time.monotonic()
        if zmq_poll([(sock, event)], poll_ms(max(remaining, 0.0))):
            return True
        if remaining <= 0:
            return False


def connect_socket(
    ctx: zmq.Context[Any],
    sock_type: int,
    endpoint: str,
    sockopts: Mapping[int, Any],
    prepare: Callable[[zmq.Socket[Any]], Any] | None = None,
) -> zmq.Socket[Any]:
    """A socket with linger 0 and ``sockopts``, connected to ``endpoint``; closed again if a step fails.

    Linger 0: a request client throws away what a closed socket still
    holds (a late reply, a copy for a dead server), never waits for it.
    ``prepare(sock)`` runs just before the connect (a monitor that must
    see the first connection).
    """
    sock = ctx.socket(sock_type)
    try:
        sock.linger = 0
        for option, value in sockopts.items():
            sock.setsockopt(option, value)
        if prepare is not None:
            prepare(sock)
        sock.connect(endpoint)
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def check_policy(timeout: float, retries: int) -> None:
    """Refuse a retry policy at the call that gives it, not at the first request that uses it."""
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 1:
        raise ValueError(f"retries must be an integer of at least 1, not {retries!r}")


#: Shortest heartbeat interval: libzmq's timers and reconnects work in milliseconds.
MIN_HEARTBEAT = 0.01
#: Longest: the time-to-live the peer is told (3 intervals) fits ZMTP's 16 bits of deciseconds.
MAX_HEARTBEAT = 2000.0


def heartbeat_sockopts(heartbeat: float, endpoint: str) -> dict[int, int]:
    """The libzmq options that bound a dead or unreachable connection by ``heartbeat`` seconds (H).

    * ``HEARTBEAT_IVL`` H, ``HEARTBEAT_TIMEOUT`` 2H: a ZMTP PING every H,
      and a connection that brought nothing back for 2H after one is
      dropped, so silence is noticed within 3H. The peer's libzmq answers
      (ZMTP 3.1, libzmq 4.2 on): no server code.
    * ``TCP_MAXRT`` 3H (Linux ``TCP_USER_TIMEOUT``): data unacknowledged
      for 3H also drops it. Under a backlog bigger than the kernel's send
      buffer libzmq cannot even write its PING; without this, TCP would
      retransmit into a cut link for many minutes.
    * ``HEARTBEAT_TTL`` 3H: the peer drops its end too when it hears
      nothing for 3H (a dead client is not kept by the server).
    * ``CONNECT_TIMEOUT`` H/2 and ``RECONNECT_IVL`` H/10 (libzmq adds up
      to as much again at random): a connect whose SYN was lost is
      abandoned and tried again, instead of waiting out the kernel's SYN
      backoff (1, 3, 7 ... s), so within about 0.7H of a heal a new
      connection is up.
    * ``IMMEDIATE`` 1: a socket without a connection takes no message
      (EAGAIN) instead of queueing it for the next one, so nothing stale,
      and no request already given up, goes out after a heal.

    Refuses ``inproc://`` endpoints, which have no connection to watch.
    """
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) \
            or not MIN_HEARTBEAT <= heartbeat <= MAX_HEARTBEAT:
        raise ValueError(f"heartbeat must be a number of seconds from {MIN_HEARTBEAT} to {MAX_HEARTBEAT:g}, "
                         f"not {heartbeat!r}")
    if endpoint.startswith("inproc://"):
        raise ValueError(f"heartbeat watches a network connection; {endpoint} is inproc and has none")
    ms = round(heartbeat * 1000)
    return {
        zmq.HEARTBEAT_IVL: ms,
        zmq.HEARTBEAT_TIMEOUT: 2 * ms,
        zmq.HEARTBEAT_TTL: 3 * ms,
        zmq.TCP_MAXRT: 3 * ms,
        zmq.CONNECT_TIMEOUT: max(1, ms // 2),
        zmq.RECONNECT_IVL: max(1, ms // 10),
        zmq.IMMEDIATE: 1,
    }
