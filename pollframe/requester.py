"""Requester: JSON requests to another process from inside a PollLoop, never blocking it.

Theory of operation
-------------------
A request is the frame ``[msg_type, args, kwargs]``; its outcome is exactly
one call of ``on_reply(reply)`` with the decoded reply triple, or of
``on_error(exc)`` with a named error, unless the caller cancels it first.

The default mode runs on one DEALER socket and keeps many requests in
flight. Each request carries a correlation id as the first envelope frame,
``[id, b"", json]``; a REP server, or a ROUTER server that keeps the envelope
(PongProc, any ``MessageHandler`` with a reply stream), returns the envelope
untouched, so a reply names its request. An id is one 16-byte frame: 8
random bytes drawn when the Requester is made (``os.urandom``) and then an
8-byte counter. It is never reused by its Requester, so a reply that comes
after its request timed out or was cancelled finds no request: it is
dropped and counted in ``late``, never given to another request. And it is
unique across requesters, processes and reconnections (two requesters
share a prefix with odds of 2**-64 per pair), so a server that remembers the ids it
served (:mod:`pollframe.replycache`) recognises a retried request even when
it arrives on a new connection, under a new ROUTER routing id.

Each request has its own deadline (a loop timer, ``timeout`` seconds per
attempt); when it passes, the same frames (same id) are sent again on the
same socket, up to ``retries`` attempts in all, and a reply to any attempt
completes the request. A DEALER reconnects by itself,
so a server restarted on the same address answers the next attempt.

Heartbeats (``heartbeat=H`` seconds): TCP alone does not
notice a connection whose peer vanished without a word (a cut cable, a
partition, a frozen host); it retransmits into the silence for minutes,
and everything the DEALER sends meanwhile is lost with it. With a
heartbeat, libzmq sends a ZMTP PING every H and drops the connection when
nothing came back for 2H, or when data stays unacknowledged for 3H
(:func:`~pollframe.client.heartbeat_sockopts` has the options and why):
a dead connection is noticed within 3H. A lost connect is abandoned
after H/2 and tried again within H/5, so about 0.7H after the network
heals a new connection is up. The socket takes no request while it has
no connection (``IMMEDIATE``), and a socket monitor on the loop watches
its connections: when one is lost, every pending request (what the dead
connection held is gone) goes out again, same id, in the order made, as
soon as the next one is up, without waiting for its deadline; so is an
attempt the socket refused (no connection, or the high-water mark). This
is not an attempt: ``attempts`` and the deadline stay, and the counter is
``replayed``. A request that timed out while there was no connection is
never sent afterwards. In lockstep mode a REQ cannot send its request
again on a new connection (it waits for the reply that was lost), so a
lost connection closes it and the request on the wire goes at once on a
fresh REQ (also ``replayed``), which holds it until it connects
(``IMMEDIATE`` stays 0 there: the REQ is closed at every deadline, so
nothing it holds outlives its request).

The lockstep mode (``lockstep=True``) is the zguide's Lazy Pirate on REQ,
for servers that need strict alternation: one request on the wire at a
time, the others wait in order. A REQ that missed its reply can never send
again, so a timed-out attempt closes the socket (linger 0: whatever it held
is thrown away, a late reply included) and the retry goes out on a fresh
one. A request's deadline starts when it is sent, not while it waits.

Bounds: at most ``max_in_flight`` requests may be pending at once (sent or,
in lockstep mode, waiting their turn); past it ``request`` raises
:class:`~pollframe.errors.TooManyRequests` and sends nothing, so a caller
that outruns the server learns it at once instead of queueing forever.

A send never blocks: a DEALER at its high-water mark (``EAGAIN``) does not
take the attempt, which is counted in ``unsent`` and left to its deadline
like a lost one (with a heartbeat: sent when the socket takes it).

A retried or replayed request may be served twice (the first copy reached
the server, its reply did not come back in time, or was lost with its
connection): at least once, not exactly once. Retry only requests that
are safe to repeat, or pass ``retries=1`` (and no heartbeat), or serve
them with a reply cache (:mod:`pollframe.replycache`), which knows a
request again by its id and answers it without running it twice.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any, Callable, Deque, Dict, Mapping, Optional, Sequence

import zmq
import zmq.backend

from pollframe import trace
from pollframe.address import parse_address
from pollframe.client import check_policy, connect_socket, heartbeat_sockopts
from pollframe.codec import Codec, JsonCodec, Triple
from pollframe.errors import (
    RemoteError,
    RequesterClosed,
    RequestTimeout,
    TooManyRequests,
    worth_logging,
)
from pollframe.loop import PollLoop
from pollframe.monitor import Monitor, SocketEvent
from pollframe.tasks import Waiter, close_with
from pollframe.timers import Timer

__all__ = ["Pending", "Requester"]

log = logging.getLogger("pollframe.requester")

OnReply = Callable[[Triple], Any]
OnError = Callable[[BaseException], Any]

# Plain ints: pyzmq's IntFlag members run enum code on every `|`.
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_POLLIN_OUT = int(zmq.POLLIN | zmq.POLLOUT)
_CONNECTED = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EMPTY = b""
# The backend's send, without pyzmq's Python layer (routing-id, group and Frame checks this
# never needs): a request is three frames, so that layer would cost more than the sends.
_SEND = zmq.backend.Socket.send
#: A request id: a random prefix per Requester, then a counter of 8 bytes.
_PREFIX_BYTES = 8
_ID_BYTES = _PREFIX_BYTES + 8


class Pending:
    """One request that has not had its outcome yet; ``cancel()`` it to give it up."""

    __slots__ = ("id", "frame", "msg_type", "on_reply", "on_error", "timeout", "retries",
                 "attempts", "timer", "done", "_requester")

    def __init__(self, requester: Requester, rid: bytes, frame: bytes, msg_type: str,
                 on_reply: OnReply, on_error: OnError, timeout: float, retries: int) -> None:
        self._requester = requester
        self.id = rid
        self.frame = frame
        self.msg_type = msg_type
        self.on_reply = on_reply
        self.on_error = on_error
        self.timeout = timeout
        self.retries = retries
        #: Attempts sent so far.
        self.attempts = 0
        self.timer: Optional[Timer] = None
        #: True once the request had its outcome or was cancelled.
        self.done = False

    def cancel(self) -> bool:
        """Give the request up: neither callback is called, a later reply is dropped.

        Returns False when it had already completed (or was cancelled).
        """
        if self.done:
            return False
        self._requester._cancel(self)
        return True

    def __repr__(self) -> str:
        state = "done" if self.done else f"attempt {self.attempts}/{self.retries}"
        return f"<Pending {self.msg_type!r} id={self.id.hex()} {state}>"


class Requester:
    """Send requests to ``endpoint`` from a loop; each gets a reply or a named error.

    ``endpoint`` takes the forms of ``ZmqProcess.stream()`` for connecting.
    ``ctx`` makes the socket(s); the requester never owns or ends it.
    ``timeout`` is the seconds each attempt waits, ``retries`` the number of
    attempts in all (1: no retry); both can be set per request with
    :meth:`send_request` and :meth:`send_call`. ``lockstep`` picks REQ and
    Lazy Pirate instead of DEALER. ``max_in_flight`` bounds pending requests (default 1,000).
    ``codec`` encodes requests and decodes replies (default
    :class:`~pollframe.codec.JsonCodec`); ``sockopts`` are set on every
    socket before it connects (after, and over, the heartbeat's).
    ``heartbeat`` (seconds, not ``inproc://``) watches the connection: a
    dead one is noticed within 3 heartbeats and replaced, and the pending
    requests (lockstep: the one on the wire) go out again at once on the
    new one.

    Counters: ``late`` (replies to requests that had timed out, were
    cancelled or are unknown: dropped), ``malformed`` (replies without the
    ``[id, b"", frame]`` shape: dropped), ``resent`` (attempts after the
    first), ``timeouts`` (requests that ran out of attempts), ``unsent``
    (attempts the socket did not take at once), ``sockets`` (sockets
    opened); with a heartbeat also ``connections`` (made), ``disconnects``
    (lost) and ``replayed`` (requests sent again on a new connection, or
    when the socket took them at last).
    """

    #: Default bound on pending requests (sent, or waiting their turn in lockstep mode).
    max_in_flight: int = 1000

    def __init__(
        self,
        loop: PollLoop,
        ctx: zmq.Context[Any],
        endpoint: Any,
        timeout: float = 1.0,
        retries: int = 3,
        lockstep: bool = False,
        *,
        max_in_flight: Optional[int] = None,
        codec: Optional[Codec] = None,
        sockopts: Optional[Mapping[int, Any]] = None,
        heartbeat: Optional[float] = None,
    ) -> None:
        check_policy(timeout, retries)
        if max_in_flight is not None:
            if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
                raise ValueError(f"max_in_flight must be an integer of at least 1, not {max_in_flight!r}")
            self.max_in_flight = max_in_flight
        self.loop = loop
        # An edge-triggered loop must hear of every send made outside this socket's own reader:
        # a send can take the readable edge of a reply that came meanwhile.
        self._touched = loop.touched if loop.edge_triggered else None
        self.context = ctx
        self.endpoint = parse_address(endpoint, bind=False).url
        self.timeout = timeout
        self.retries = retries
        self.lockstep = lockstep
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.sockopts = dict(sockopts or {})
        #: Seconds between ZMTP heartbeats on the connection (None: no heartbeats).
        self.heartbeat = heartbeat
        if heartbeat is not None:
            watch = heartbeat_sockopts(heartbeat, self.endpoint)
            if lockstep:  # a fresh REQ holds its one request until it connects; it has no backlog
                watch[zmq.IMMEDIATE] = 0
            self.sockopts = {**watch, **self.sockopts}
        self.late = 0
        self.malformed = 0
        self.resent = 0
        self.timeouts = 0
        self.unsent = 0
        self.sockets = 0
        self.connections = 0
        self.disconnects = 0
        self.replayed = 0
        # The prefix and the counter as one int: an id costs one add and one to_bytes.
        self._next_id = int.from_bytes(os.urandom(_PREFIX_BYTES), "big") << 64
        self._pending: Dict[bytes, Pending] = {}  # insertion order: the order requests were made
        self._waiting: Deque[Pending] = deque()  # lockstep: requests waiting their turn
        self._current: Optional[Pending] = None  # lockstep: the request on the wire
        self._closed = False
        self._socket: Optional[zmq.Socket[Any]] = None
        self._traced: Optional[trace.Channel] = None  # records this socket's sends when tracing
        self._monitor: Optional[Monitor] = None  # heartbeat: the DEALER's connections
        # heartbeat: requests to send when the socket takes them, by id, in the order made
        self._backlog: Dict[bytes, Pending] = {}
        self._writing = False  # heartbeat: the socket's handler also sends the backlog on POLLOUT
        self._lost = False  # heartbeat: a connection was lost since the last one was made
        self._on_reply: Callable[[list[bytes]], None] = self._on_dealer_reply
        if not lockstep:
            self._open(zmq.DEALER, self._on_dealer_reply)
        close_with(loop, self.close)  # a loop closed first closes its requesters: no request left behind

    # ------------------------------------------------------------------ API

    def request(self, msg_type: str, /, *args: Any, on_reply: OnReply, on_error: OnError,
                **kwargs: Any) -> Pending:
        """Send ``[msg_type, args, kwargs]``; call ``on_reply(reply)`` or ``on_error(exc)`` later.

        ``reply`` is the decoded triple ``(type, args, kwargs)``. ``exc`` is
        :class:`~pollframe.errors.RequestTimeout` after the last attempt,
        :class:`~pollframe.errors.RemoteError` for an ``["error", [reason],
        {}]`` reply, a :class:`~pollframe.errors.MessageError` for a reply
        that cannot be decoded, or :class:`~pollframe.errors.RequesterClosed`
        from :meth:`close`. Raises at once (and sends nothing) when the
        requester is closed, ``max_in_flight`` requests are pending
        (:class:`~pollframe.errors.TooManyRequests`) or the request cannot be
        encoded (:class:`~pollframe.errors.EncodeError`). Never blocks.
        """
        return self.send_request(msg_type, args, kwargs, on_reply, on_error)

    def send_request(
        self,
        msg_type: str,
        args: Any,
        kwargs: Dict[str, Any],
        on_reply: OnReply,
        on_error: OnError,
        *,
        timeout: Optional[float] = None,
        retries: Optional[int] = None,
    ) -> Pending:
        """:meth:`request` with the message given as values, and a policy of its own."""
        self._check_new(timeout, retries)
        frame = self.codec.encode(msg_type, args, kwargs)
        return self._submit(frame, msg_type, on_reply, on_error, timeout, retries)

    def send_frames(
        self,
        frames: Sequence[bytes],
        on_reply: Callable[[list[bytes]], Any],
        on_error: OnError,
        *,
        timeout: Optional[float] = None,
        retries: Optional[int] = None,
    ) -> Pending:
        """Lockstep only: send ``frames`` as they are; ``on_reply(frames)`` gets the reply undecoded.

        For protocols with frames of their own on REQ (an MDP/0.1 client:
        :class:`pollframe.mdp.AsyncClient`); deadlines, retries on a fresh
        socket, ``on_error`` and ``cancel`` are those of :meth:`request`.
        """
        if not self.lockstep:
            raise ValueError("send_frames needs a lockstep Requester (REQ): a DEALER request carries its id")
        if not frames:
            raise ValueError("send_frames needs at least one frame")
        self._check_new(timeout, retries)
        return self._submit(tuple(frames), "<frames>", on_reply, on_error, timeout, retries)

    def _check_new(self, timeout: Optional[float], retries: Optional[int]) -> None:
        """Refuse a request the requester cannot take now (closed, bad policy, too many pending)."""
        if self._closed:
            raise RequesterClosed(f"the Requester for {self.endpoint} is closed")
        if timeout is not None or retries is not None:
            check_policy(self.timeout if timeout is None else timeout,
                         self.retries if retries is None else retries)
        pending = self._pending
        if len(pending) >= self.max_in_flight:
            raise TooManyRequests(f"{len(pending)} requests to {self.endpoint} are pending "
                                  f"(max_in_flight={self.max_in_flight}); this one was not sent")

    def _submit(self, frame: Any, msg_type: str, on_reply: Any, on_error: OnError,
                timeout: Optional[float], retries: Optional[int]) -> Pending:
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        pending = self._pending
        self._next_id += 1
        rid = self._next_id.to_bytes(_ID_BYTES, "big")
        p = Pending(self, rid, frame, msg_type, on_reply, on_error, timeout, retries)
        pending[rid] = p
        if not self.lockstep:
            self._send_dealer(p)
        elif self._current is None:
            self._send_lockstep(p)
        else:
            self._waiting.append(p)
        return p

    def call(self, msg_type: str, /, *args: Any, **kwargs: Any) -> Waiter:
        """Inside a task, ``reply = await req.call("ping", 3)``: the reply triple, or the error raised.

        The request is sent at once, when ``call`` is called. Raises the
        errors of :meth:`request`; the await raises those of ``on_error``.
        A task cancelled (or timed out by :func:`~pollframe.tasks.wait_for`)
        while it awaits cancels the request. For a timeout or retries of its
        own, :meth:`send_call`.
        """
        return self.send_call(msg_type, args, kwargs)

    def send_call(
        self,
        msg_type: str,
        args: Any,
        kwargs: Dict[str, Any],
        *,
        timeout: Optional[float] = None,
        retries: Optional[int] = None,
    ) -> Waiter:
        """:meth:`call` with the message given as values, and a policy of its own.

        Separate from :meth:`call` so that a message may have keyword
        arguments named ``timeout`` or ``retries``.
        """
        waiter = Waiter()
        waiter.on_cancel = self.send_request(msg_type, args, kwargs, waiter.set_result,
                                             waiter.set_exception, timeout=timeout, retries=retries).cancel
        return waiter

    def pending(self) -> int:
        """Requests still waiting for their outcome (sent, or waiting their turn)."""
        return len(self._pending)

    def close(self) -> None:
        """End the requester: each pending request gets ``on_error(RequesterClosed)``, in order.

        The socket closes with linger 0. Later calls of :meth:`request`
        raise :class:`~pollframe.errors.RequesterClosed`; closing twice is
        harmless. The context is the caller's and stays open. Closing the
        loop closes its requesters first, so a process that only closes
        its loop (``ZmqProcess.teardown``) leaves no request without its
        outcome and no socket open behind the context.
        """
        if self._closed:
            return
        self._closed = True
        left = list(self._pending.values())
        self._pending.clear()
        self._waiting.clear()
        self._current = None
        self._drop_socket()
        for p in left:
            if p.timer is not None:
                p.timer.cancel()
            p.done = True
            self._call(p.on_error, RequesterClosed(f"the Requester for {self.endpoint} was closed "
                                                   f"before {p.msg_type!r} had its reply"), p)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def socket(self) -> Optional[zmq.Socket[Any]]:
        """The current socket (None in lockstep mode between a timeout and the next request)."""
        return self._socket

    def __repr__(self) -> str:
        mode = "lockstep" if self.lockstep else "dealer"
        return f"<Requester {self.endpoint} {mode} pending={len(self._pending)}>"

    # ------------------------------------------------------------ the DEALER

    def _send_dealer(self, p: Pending) -> None:
        p.attempts += 1
        sock = self._socket
        assert sock is not None
        try:
            _SEND(sock, p.id, _MORE)
        except zmq.Again:  # at the high-water mark: this attempt is lost, its deadline retries
            self.unsent += 1
            if self._monitor is not None:  # or no connection: it goes out when the socket takes it
                self._defer(p)
        else:
            _SEND(sock, _EMPTY, _MORE)
            _SEND(sock, p.frame, _NOBLOCK)
            if self._traced is not None:
                self._traced.sent((p.id, _EMPTY, p.frame))
        if self._touched is not None:
            self._touched(sock)
        p.timer = self.loop.call_later(p.timeout, self._expired, p)

    def _on_dealer_reply(self, frames: list[bytes]) -> None:
        if len(frames) != 3 or frames[1]:
            self.malformed += 1
            if worth_logging(self.malformed):
                log.warning("pollframe: reply from %s is not [id, '', frame] (%d frames); "
                            "%d such dropped so far", self.endpoint, len(frames), self.malformed)
            return
        p = self._pending.pop(frames[0], None)
        if p is None:
            self.late += 1
            return
        p.timer.cancel()  # type: ignore[union-attr]
        self._complete(p, frames[2])

    # ----------------------------------------------------------- lockstep REQ

    def _send_lockstep(self, p: Pending) -> None:
        self._current = p
        p.attempts += 1
        self._put_on_req(p)
        p.timer = self.loop.call_later(p.timeout, self._expired, p)

    def _put_on_req(self, p: Pending) -> None:
        sock = self._socket
        if sock is None:
            sock = self._open(zmq.REQ, self._on_req_reply)
        try:
            if type(p.frame) is tuple:  # send_frames
                for frame in p.frame[:-1]:
                    _SEND(sock, frame, _MORE)
                _SEND(sock, p.frame[-1], _NOBLOCK)
            else:
                _SEND(sock, p.frame, _NOBLOCK)
        except zmq.Again:
            self.unsent += 1
        else:
            if self._traced is not None:
                self._traced.sent((p.frame,))
        if self._touched is not None:
            self._touched(sock)

    def _on_req_reply(self, frames: list[bytes]) -> None:
        p = self._current
        if p is None:  # cannot happen on a REQ: a reply comes only to the request sent
            self.late += 1
            return
        del self._pending[p.id]
        p.timer.cancel()  # type: ignore[union-attr]
        self._current = None
        self._next_in_line()
        if type(p.frame) is tuple:  # send_frames: the reply goes to on_reply as it came
            p.done = True
            try:
                p.on_reply(frames)
            except Exception as exc:
                self.loop.report(exc, f"on_reply callback of {p!r} to {self.endpoint}")
            return
        if len(frames) != 1:
            self.malformed += 1
        self._complete(p, frames[-1])

    def _next_in_line(self) -> None:
        if self._waiting and not self._closed:
            self._send_lockstep(self._waiting.popleft())

    # ----------------------------------------------------------- both modes

    def _expired(self, p: Pending) -> None:
        """An attempt's deadline passed: send again, or fail the request."""
        if self.lockstep:
            self._drop_socket()  # the REQ waits for a reply that may never come
        if p.attempts < p.retries:
            self.resent += 1
            if self.lockstep:
                self._send_lockstep(p)
            else:
                self._send_dealer(p)
            return
        del self._pending[p.id]
        self.timeouts += 1
        p.done = True
        if self.lockstep:
            self._current = None
            self._next_in_line()
        self._call(p.on_error, RequestTimeout(self.endpoint, p.attempts, p.timeout), p)

    def _complete(self, p: Pending, frame: bytes) -> None:
        p.done = True
        try:
            reply = self.codec.decode(frame)
        except Exception as exc:  # a MessageError, or a replacement codec's own failure
            self._call(p.on_error, exc, p)
            return
        if reply[0] == "error":
            args = reply[1]
            reason = args[0] if args else ""
            self._call(p.on_error, RemoteError(reason if isinstance(reason, str) else repr(reason)), p)
            return
        try:
            p.on_reply(reply)
        except Exception as exc:
            self.loop.report(exc, f"on_reply callback of {p!r} to {self.endpoint}")

    def _cancel(self, p: Pending) -> None:
        p.done = True
        del self._pending[p.id]
        if p.timer is not None:
            p.timer.cancel()
        if not self.lockstep:
            return  # a reply that still comes finds no request: counted in late
        if self._current is p:
            self._current = None
            self._drop_socket()  # only a fresh REQ may send the next request
            self._next_in_line()
        else:
            self._waiting.remove(p)

    def _call(self, callback: OnError, exc: BaseException, p: Pending) -> None:
        try:
            callback(exc)
        except Exception as error:
            self.loop.report(error, f"on_error callback of {p!r} to {self.endpoint}")

    def _open(self, sock_type: int, on_reply: Callable[[list[bytes]], None]) -> zmq.Socket[Any]:
        watch = self._watch if self.heartbeat is not None else None
        sock = connect_socket(self.context, sock_type, self.endpoint, self.sockopts, watch)
        try:
            if watch is None or self.lockstep:
                self.loop.register(sock, on_reply)
            else:
                self._install(sock, on_reply)
        except BaseException:
            self._stop_monitor()
            sock.close(linger=0)
            raise
        recorder = trace.recorder()  # decided per socket: None (and free) unless tracing is on
        self._traced = None if recorder is None else recorder.channel_for(sock)
        self._socket = sock
        self.sockets += 1
        return sock

    def _drop_socket(self) -> None:
        self._stop_monitor()
        sock, self._socket = self._socket, None
        if sock is not None:
            if not self.loop.closed:
                self.loop.unregister(sock)
            sock.close(linger=0)

    # ------------------------------------------------------------ heartbeat

    def _watch(self, sock: zmq.Socket[Any]) -> None:
        """Before the connect: a monitor, so that not even the first connection goes unseen."""
        self._monitor = Monitor(sock, self.loop, self._on_event, _CONNECTED | _DISCONNECTED)

    def _install(self, sock: zmq.Socket[Any], on_reply: Callable[[list[bytes]], None]) -> None:
        """The plain reader while there is no backlog: replies cost what they cost without a heartbeat."""
        self._on_reply = on_reply
        self._writing = False
        self.loop.register(sock, on_reply)

    def _want_out(self, sock: zmq.Socket[Any]) -> None:
        """A backlog: read replies on POLLIN, and send the backlog on POLLOUT until it is gone."""
        if self._writing:
            return

        def handle(revents: int) -> None:
            if revents & _POLLIN:
                read(revents)
            if revents & _POLLOUT:
                self._send_backlog()

        read = self.loop.reader(sock, self._on_reply, owner=handle)
        self.loop.watch(sock, handle, _POLLIN_OUT)
        self._writing = True

    def _on_event(self, event: SocketEvent) -> None:
        """A connection lost: every pending request goes out again on the next one, at once."""
        if event.event == _DISCONNECTED:
            self.disconnects += 1
            if self.lockstep:
                self._replay_lockstep()
            else:
                self._lost = True
            return
        if event.event != _CONNECTED:
            return
        self.connections += 1
        sock = self._socket
        if not self._lost or sock is None or self.lockstep:
            return
        self._lost = False
        # What the dead connection held (in libzmq's pipe, in the kernel, on the wire) is lost,
        # and so is whatever was sent after it died until the socket dropped its pipe: libzmq
        # reports the loss before it tells the socket. Only now, with the new connection up, is
        # it safe to send again. libzmq queued the old pipe's end and the new pipe for the socket
        # before this event, so reading ZMQ_EVENTS (which runs the socket's commands) makes the
        # next sends go to the new connection. Every pending request, in order, same ids.
        sock.get(zmq.EVENTS)
        self._backlog = dict(self._pending)
        if self._backlog:
            self._want_out(sock)
            self._send_backlog()

    def _replay_lockstep(self) -> None:
        """The request on the wire was lost with the REQ's connection: it goes again on a fresh REQ.

        A REQ never sends again before its reply, and the reply will not
        come; the fresh socket takes the request at once and sends it when
        it connects. Same attempt, same deadline.
        """
        p = self._current
        if p is None:
            return  # an idle REQ reconnects by itself
        self._drop_socket()
        self.replayed += 1
        self._put_on_req(p)

    def _defer(self, p: Pending) -> None:
        """An attempt the socket refused: it goes out on POLLOUT (no connection, or the high-water mark)."""
        self._want_out(self._socket)  # type: ignore[arg-type]
        self._backlog[p.id] = p

    def _send_backlog(self) -> None:
        """Send the backlog until the socket refuses one; then POLLOUT says when to go on."""
        sock = self._socket
        backlog = self._backlog
        if sock is None:
            return
        pending = self._pending
        while backlog:
            rid = next(iter(backlog))
            if rid in pending:
                try:
                    _SEND(sock, rid, _MORE)
                except zmq.Again:
                    if self._touched is not None:
                        self._touched(sock)
                    return  # POLLOUT is still asked for
                frame = backlog[rid].frame
                _SEND(sock, _EMPTY, _MORE)
                _SEND(sock, frame, _NOBLOCK)
                self.replayed += 1
                if self._traced is not None:
                    self._traced.sent((rid, _EMPTY, frame))
            del backlog[rid]
        if self._touched is not None:
            self._touched(sock)
        if self._writing:  # back to the plain reader
            self._writing = False
            self.loop.register(sock, self._on_reply)

    def _stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.close()
        self._backlog.clear()
