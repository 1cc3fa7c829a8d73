"""Stream: one zmq socket on a PollLoop, with a receive callback and sends that never block.

A send is tried at once with ``NOBLOCK``. If the socket cannot take it
(``EAGAIN``: high-water mark reached, or no peer yet) the message goes to
the back of a bounded queue and the socket is polled for ``POLLOUT``; each
``POLLOUT`` sends from the queue until it is empty or the socket is full
again. While the queue holds anything, new messages queue behind it, so
order is kept. Past ``max_queue`` messages, ``send*`` raises ``QueueFull``
and the message is not taken: the caller decides what to drop.

A ROUTER is the exception. Its messages go to many peers, and ``EAGAIN``
(under ``ROUTER_MANDATORY``) means that one peer's pipe is full — a peer
that does not read its replies. Queueing that message would hold every
later reply, to every other peer, behind it. So a ROUTER message refused
with ``EAGAIN`` is dropped, counted in ``dropped`` and logged, as is one
for a peer that is gone (``unroutable``): the slow peer loses its replies,
nobody else waits.

REQ and REP keep their lockstep here, not in the caller. A REQ socket
refuses a second request until the reply to the first has been read
(``EFSM``); the stream queues it instead, and a REQ socket reports
``POLLOUT`` exactly when it may send again, so the queue goes out as the
replies come in. A REP socket that never answers a request can never
receive again; a receive callback that raises before replying therefore
gets ``error_reply`` sent for it (see :attr:`Stream.error_reply`).

A Stream, like its socket, belongs to one thread: the one that made it.
Every send checks the calling thread's id (one C call and a compare) and
raises ``RuntimeError`` from any other; a thread that is not the loop's
hands work to it with ``loop.call_soon_threadsafe``.
"""
from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import Any, Callable, Deque, Optional, Sequence, Tuple

import zmq

from pollframe import trace
from pollframe.errors import worth_logging as _worth_logging
from pollframe.loop import EventHandler, PollLoop, check_blocking_socket
from pollframe.monitor import Monitor, SocketEvent
from pollframe.units import to_ms

__all__ = ["Stream", "QueueFull"]

log = logging.getLogger("pollframe")

# Plain ints, not pyzmq's IntFlag members: `&` and `|` on those run enum code.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_EVENTS = int(zmq.EVENTS)
_EFSM = zmq.EFSM
_get_ident = threading.get_ident
#: pyzmq's Cython ``send``: ``zmq.Socket.send`` wraps it in Python (draft-API arguments) for
#: 0.45 µs a frame against 0.22. A socket class that overrides ``send`` keeps its override.
_BASE_SEND: Optional[Callable[..., Any]] = getattr(zmq.Socket.__mro__[1], "send", None)


class QueueFull(RuntimeError):
    """The stream's send queue is at ``max_queue``; this message was not queued."""


class Stream:
    """Wraps ``sock`` for use on ``loop``: ``on_recv`` callbacks and non-blocking, queued sends.

    The thread that makes a Stream owns it: ``send*``, ``flush``,
    ``on_recv``, ``pause``, ``resume`` and ``on_event`` from any other
    thread raise ``RuntimeError``. Make the
    stream in the thread that runs its loop, and reach it from other
    threads with ``loop.call_soon_threadsafe(stream.send, data)``.
    """

    #: Default bound of the send queue, in messages.
    max_queue: int = 10_000

    #: What a REP stream sends for a request whose receive callback raised
    #: before replying, or that its limits refused: one empty frame, the
    #: least a REP socket can send, which any protocol can tell from a real
    #: answer. Set it (per class or per stream) to your protocol's error
    #: message, e.g. pollframe's wire error ``[b'["error",["request failed"],{}]']``.
    error_reply: Sequence[bytes] = (b"",)

    def __init__(
        self,
        sock: zmq.Socket,
        loop: PollLoop,
        *,
        max_queue: Optional[int] = None,
        max_msg_size: Optional[int] = None,
        max_frames: Optional[int] = None,
    ) -> None:
        """``max_msg_size`` (bytes, a whole message) and ``max_frames`` bound what is read.

        A bigger message is discarded at the reader before any copy,
        counted in ``loop.refused`` and never reaches the callback; a REP
        stream answers it with :attr:`error_reply`.
        """
        if max_queue is not None:
            if max_queue < 1:
                raise ValueError(f"max_queue must be at least 1, not {max_queue}")
            self.max_queue = max_queue
        for name, value in (("max_msg_size", max_msg_size), ("max_frames", max_frames)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None: no limit), not {value!r}")
        self.max_msg_size = max_msg_size
        self.max_frames = max_frames
        check_blocking_socket(sock)
        self.socket = sock
        self.loop = loop
        self.unroutable = 0
        self.dropped = 0
        #: Requests a REP stream answered with ``error_reply``: their callback raised, or the
        #: reader refused them (``max_msg_size``, ``max_frames``).
        self.error_replies = 0
        # The owning thread's id; None once closed, so that one compare per
        # send checks both (a thread id is never None).
        self._owner: Optional[int] = _get_ident()
        self._sock_send = _fast_send(sock)
        # Only an edge-triggered loop needs to hear of sends; decide once, not per message.
        self._touched = loop.touched if loop.edge_triggered else None
        self._routes = sock.type == zmq.ROUTER
        self._lockstep = sock.type == zmq.REQ  # a second request waits for the first reply
        self._serves = sock.type == zmq.REP  # owes one reply per request
        self._queue: Deque[Sequence[Any]] = deque()
        self._recv_callback: Optional[Callable[..., Any]] = None
        self._properties: Tuple[str, ...] = ()
        # Handlers are built once per receive callback, and pause/resume only
        # swap which one is registered: the drain of a reader stops as soon
        # as its handler is no longer the registered one.
        self._reading: Optional[EventHandler] = None  # reads with _recv_callback, sends the queue
        self._writing: Optional[EventHandler] = None  # only sends the queue
        self._installed: Optional[EventHandler] = None
        self._paused = False
        self._monitor: Optional[Monitor] = None
        self._closed = False
        self._counts = loop.socket_stats(sock)  # what loop.stats() shows for this socket
        self._counts.stream = self
        recorder = trace.recorder()
        if recorder is not None:  # decided once: an untraced Stream sends on the plain path
            self.send_multipart = recorder.channel_for(sock).sending(self.send_multipart)  # type: ignore

    # ------------------------------------------------------------- receiving

    def on_recv(self, callback: Optional[Callable[..., Any]], *, properties: Sequence[str] = ()) -> None:
        """Call ``callback(frames)`` for each message; ``None`` stops receiving.

        With ``properties`` (e.g. ``("User-Id", "Peer-Address")``) the call
        is ``callback(frames, props)``, ``props`` mapping each name to the
        message's libzmq property (None where it has none).

        On a REP stream the callback owes each request one reply. If it
        raises before replying, :attr:`error_reply` is sent in its place
        and counted in ``error_replies``, and the next request is served
        (the exception still goes to the loop's error policy). If it
        returns without replying, it may reply later (from a timer, or
        another stream's callback): until it does, the REP socket receives
        nothing.
        """
        self._check_owner()
        if isinstance(properties, str):
            raise TypeError(f"properties is a sequence of names, not the string {properties!r}")
        names = tuple(properties)
        if callback is None:
            self._reading = None
        elif self._reading is None or callback != self._recv_callback or names != self._properties:
            # `!=`, not `is not`: `on_recv(self.method)` makes a new bound
            # method each time, equal to the last one; it keeps its handler.
            self._reading = self._make_handler(callback, names)
        self._recv_callback = callback
        self._properties = names
        self._install()

    def pause(self) -> None:
        """Stop reading until :meth:`resume`: messages wait in libzmq, whose HWM then pushes back.

        Called from the receive callback, it also ends the drain in
        progress: no further message is delivered in this pass. Sends go
        on. Pausing a paused stream does nothing.
        """
        self._check_owner()
        if not self._paused:
            self._paused = True
            self._install()

    def resume(self) -> None:
        """Read again with the receive callback the stream had; its handler is reused, not rebuilt."""
        self._check_owner()
        if self._paused:
            self._paused = False
            self._install()

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (``on_recv`` does not change it)."""
        return self._paused

    # ---------------------------------------------------------------- events

    def on_event(
        self, callback: Optional[Callable[[SocketEvent], Any]], events: Optional[int] = None
    ) -> None:
        """Call ``callback(event)`` on this loop for each libzmq monitor event of the socket.

        ``event`` is a :class:`~pollframe.monitor.SocketEvent`: ``.name``
        ("connected", "disconnected", "accepted", "handshake_failed_auth",
        "closed", ...), ``.event`` (the ``zmq.EVENT_*`` int), ``.value``,
        ``.endpoint`` and ``.reason`` (why a ``*_failed`` event failed).
        ``events`` masks which ``zmq.EVENT_*`` to report (default all). libzmq
        fixes it when monitoring starts, so a new callback for a running
        monitor takes no mask: a different one raises ``ValueError`` rather
        than be ignored (``on_event(None)`` first). ``None`` stops monitoring
        and closes the monitor socket; so does :meth:`close`. Call it before
        ``connect``/``bind`` to see their first events.
        """
        self._check_owner()
        if callback is None:
            self._stop_monitor()
        elif self._monitor is None:
            self._monitor = Monitor(self.socket, self.loop, callback, events)
        elif events is not None and events != self._monitor.events:
            raise ValueError(
                f"{self.socket!r} is monitored for events {self._monitor.events!r}; "
                "libzmq cannot change the mask of a running monitor: on_event(None) first"
            )
        else:
            self._monitor.callback = callback

    # --------------------------------------------------------------- sending

    def send_multipart(self, frames: Sequence[Any]) -> None:
        """Send ``frames`` as one message now, or queue it if the socket cannot take it.

        On a REQ stream a request sent while the previous one awaits its
        reply is queued and goes out when that reply has been received.
        """
        if _get_ident() != self._owner:
            self._refuse()
        if self._queue:
            self._enqueue(frames)
            return
        try:
            size = _send_now(self._sock_send, frames)
        except zmq.Again:
            if self._routes:
                self._drop_for_slow_peer(frames)
                return
            self._enqueue(frames)
            self._install()
        except zmq.ZMQError as exc:
            if exc.errno == _EFSM and self._lockstep:
                self._enqueue(frames)  # REQ awaits a reply; its POLLOUT says when it may send
                self._install()
            elif not self._peer_gone(exc, frames):
                raise
        else:
            counts = self._counts
            counts.msgs_out += 1
            counts.bytes_out += size
        if self._touched is not None:
            self._touched(self.socket)

    def send(self, data: Any) -> None:
        """Send one frame (bytes, or anything with the buffer interface)."""
        self.send_multipart((data,))

    def send_string(self, text: str, encoding: str = "utf-8") -> None:
        """Send ``text`` as one frame, encoded with ``encoding``."""
        self.send_multipart((text.encode(encoding),))

    def send_json(self, obj: Any) -> None:
        """Send ``obj`` as one frame of compact JSON."""
        self.send_multipart((json.dumps(obj, separators=(",", ":")).encode(),))

    def queued(self) -> int:
        """Messages waiting for the socket to accept them."""
        return len(self._queue)

    def flush(self) -> int:
        """Hand queued messages to the socket now, as far as it takes them without blocking.

        Returns how many remain queued; they keep going out on ``POLLOUT``.
        """
        if not self._closed:
            self._check_owner()
        if self._queue and not self._closed:
            self._send_queued()
            self._install()
            self._touch()
        return len(self._queue)

    def close(self, linger: Optional[float] = None) -> None:
        """Unregister and close the socket; ``linger`` (seconds) bounds how long libzmq keeps sending.

        ``None`` keeps the socket's own ``LINGER`` option.

        Messages still in this stream's own queue are offered to the socket
        once more; any it cannot take are counted in a warning, not dropped
        silently.
        """
        if self._closed:
            return
        self._closed = True
        self._owner = None
        try:
            self._stop_monitor()
            self._send_queued()
            if self._queue:
                log.warning("pollframe: %r closed with %d unsent message(s)", self.socket, len(self._queue))
                self._queue.clear()
        finally:
            self.loop.unregister(self.socket)
            self.socket.close(linger=None if linger is None else to_ms(linger))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run or the socket was closed elsewhere."""
        return self._closed or self.socket.closed

    # ------------------------------------------------------------ internals

    def _touch(self) -> None:
        if self._touched is not None:
            self._touched(self.socket)

    def _install(self) -> None:
        """Poll for what this stream needs now: POLLIN while receiving, POLLOUT while queued.

        Registering another handler (a new receive callback, a pause) also
        ends a drain that is running for the old one.
        """
        handler = self._reading if not self._paused else None
        events = _POLLOUT if self._queue else 0
        if handler is not None:
            events |= _POLLIN
        else:
            handler = self._writing
            if handler is None:
                handler = self._writing = self._make_handler(None)
        if self._installed is handler and self.loop.is_registered(self.socket):
            self.loop.set_events(self.socket, events)
        else:
            self._installed = handler
            self.loop.watch(self.socket, handler, events)

    def _stop_monitor(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.close()

    def _make_handler(
        self, callback: Optional[Callable[..., Any]], properties: Tuple[str, ...] = ()
    ) -> EventHandler:
        # A REP request the reader's limits refused still owes its reply.
        answer_refused = self._serves and (self.max_msg_size is not None or self.max_frames is not None)
        loop = self.loop

        def handle(revents: int) -> None:
            if revents & _POLLOUT:
                self._send_queued()
                if not self._queue:
                    self._install()
            if revents & _POLLIN and read is not None:
                if answer_refused:
                    refused = loop.refused
                    read(revents)
                    if loop.refused != refused:
                        self._answer_failed_request()
                else:
                    read(revents)

        if callback is None:
            read = None
            return handle
        if self._serves:
            callback = self._answering(callback)
        read = loop.reader(self.socket, callback, owner=handle, properties=properties,
                           max_msg_size=self.max_msg_size, max_frames=self.max_frames)
        return handle

    def _answering(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """``callback`` for a REP stream: a request whose callback raised unanswered gets ``error_reply``."""

        def serve(*message: Any) -> Any:
            try:
                return callback(*message)
            except Exception:
                self._answer_failed_request()
                raise  # the loop's error policy logs and counts it

        return serve

    def _answer_failed_request(self) -> None:
        # A REP socket reports POLLOUT exactly while it owes a reply, so this
        # knows whether the callback replied (through the stream or the raw
        # socket) without any bookkeeping on the hot path.
        if self.closed or self._queue or not int(self.socket.get(_EVENTS)) & _POLLOUT:
            return
        self.error_replies += 1
        try:
            _send_now(self._sock_send, self.error_reply)
        except zmq.ZMQError as exc:
            log.warning("pollframe: %r: error reply could not be sent: %s", self.socket, exc)
            return
        self._touch()

    def _send_queued(self) -> None:
        queue, send, counts = self._queue, self._sock_send, self._counts
        while queue:
            try:
                counts.bytes_out += _send_now(send, queue[0])
                counts.msgs_out += 1
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                if exc.errno == _EFSM and self._lockstep:
                    return  # the REQ socket awaits the reply to the request it just sent
                if not self._peer_gone(exc, queue[0]):
                    self.loop.report(exc, f"queued send on {self.socket!r}; message dropped")
            queue.popleft()

    def _enqueue(self, frames: Sequence[Any]) -> None:
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{self.socket!r}: send queue holds {len(self._queue)} messages (max_queue)")
        self._queue.append(frames)
        if len(self._queue) > self._counts.queue_hwm:
            self._counts.queue_hwm = len(self._queue)

    def _drop_for_slow_peer(self, frames: Sequence[Any]) -> None:
        self.dropped += 1
        if _worth_logging(self.dropped):
            log.warning(
                "pollframe: %r: peer %r does not read (its pipe is full); %d message(s) dropped so far",
                self.socket, _peer_id(frames), self.dropped,
            )

    def _peer_gone(self, exc: zmq.ZMQError, frames: Sequence[Any]) -> bool:
        """Count and log a message for a peer that is gone (ROUTER_MANDATORY); False for other errors."""
        if exc.errno != zmq.EHOSTUNREACH:
            return False
        self.unroutable += 1
        if _worth_logging(self.unroutable):
            log.warning("pollframe: %r: peer %r is gone; %d message(s) for gone peers dropped so far",
                        self.socket, _peer_id(frames), self.unroutable)
        return True

    def _check_owner(self) -> None:
        if _get_ident() != self._owner:
            self._refuse()

    def _refuse(self) -> None:
        """Raise for a closed stream, or for a call from a thread that does not own it."""
        if self._closed:
            raise RuntimeError(f"{self.socket!r}: stream is closed")
        raise RuntimeError(
            f"{self.socket!r}: this Stream belongs to thread {self._owner} and was used from thread "
            f"{_get_ident()} ({threading.current_thread().name}); zmq sockets are not thread-safe. "
            "From another thread, hand the call to the loop: loop.call_soon_threadsafe(stream.send, data)"
        )

    def __repr__(self) -> str:
        return f"<Stream {self.socket!r} queued={len(self._queue)}>"


def _fast_send(sock: zmq.Socket) -> Callable[..., Any]:
    """``sock.send``, bound to pyzmq's Cython method when ``sock`` does not override ``send``."""
    if _BASE_SEND is not None and type(sock).send is zmq.Socket.send:
        return _BASE_SEND.__get__(sock, type(sock))
    return sock.send


def _send_now(send: Callable[..., Any], frames: Sequence[Any]) -> int:
    """Send one message without blocking, frame by frame with int flags; returns its size.

    pyzmq's ``send_multipart`` combines IntFlag members per frame, which
    costs more than the send itself. libzmq takes a message whole or not at
    all: ``EAGAIN`` can only come from the first frame.
    """
    last = len(frames) - 1
    for i in range(last):
        send(frames[i], _MORE)
    send(frames[last], _NOBLOCK)
    return sum(map(len, frames))


def _peer_id(frames: Sequence[Any]) -> bytes:
    """The routing id a ROUTER message starts with, cut short for a log line."""
    return bytes(frames[0])[:32] if frames else b""
