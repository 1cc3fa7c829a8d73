"""A userspace TCP proxy that makes a link slow, jittery, lossy or narrow.

Theory of operation
-------------------
``tc netem`` is the usual way to delay packets, but it needs a kernel
module that many CI kernels (and these machines) lack. A proxy between
the two ends of a TCP connection needs nothing: :class:`FaultProxy`
listens on one address and, for each connection it accepts, opens one to
``target`` and pumps bytes both ways. Each chunk read is stamped with the
time it may be delivered:

* ``delay`` seconds later, plus up to ``jitter`` more (uniform);
* ``loss`` is the probability that a chunk is "lost" once: TCP never loses
  bytes, it resends them, so a lost chunk arrives ``retransmit_delay``
  (Linux's minimum RTO, 0.2 s) later than it would have;
* ``bandwidth`` (bytes per second) spaces chunks by their size.

Delivery times never go backwards within one direction, so the byte
stream stays in order, as TCP keeps it. The settings are plain attributes
and may be changed while the proxy runs; they apply to chunks read from
then on. :meth:`cut` closes every connection (both ends see a reset or
end of file), as a crashed middlebox would.

Threads: one accepts, two per connection read and two write. The delay
is waited for with :meth:`threading.Event.wait`, so :meth:`close` ends
every thread at once. ``thread_init`` is called first on the accepting
thread, before any socket is made: :mod:`pollframe.testing.hosts` uses it
to put the proxy's sockets into a network namespace.
"""
from __future__ import annotations

import queue
import random
import socket
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

__all__ = ["FaultProxy"]

_EOF = b""
_CHUNK = 65536


class FaultProxy:
    """Listen on ``listen`` (host, port; port 0 picks one) and forward to ``target`` with faults.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    :attr:`address` is where clients connect once started. ``seed`` makes
    jitter and loss repeatable.
    """

    def __init__(
        self,
        target: Tuple[str, int],
        *,
        listen: Tuple[str, int] = ("127.0.0.1", 0),
        delay: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        retransmit_delay: float = 0.2,
        bandwidth: Optional[float] = None,
        seed: Optional[int] = None,
        thread_init: Optional[Callable[[], Any]] = None,
    ) -> None:
        if delay < 0 or jitter < 0 or retransmit_delay < 0:
            raise ValueError("delay, jitter and retransmit_delay are seconds >= 0")
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss is a probability in [0, 1], not {loss!r}")
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"bandwidth is bytes per second > 0, not {bandwidth!r}")
        self.target = target
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
        self.retransmit_delay = retransmit_delay
        self.bandwidth = bandwidth
        self.connections = 0
        """Connections accepted so far."""
        self._listen = listen
        self._random = random.Random(seed)
        self._thread_init = thread_init
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._threads: List[threading.Thread] = []
        self._listener: Optional[socket.socket] = None
        self._started = threading.Event()
        self._start_error: Optional[BaseException] = None

    # ------------------------------------------------------------------ control

    @property
    def address(self) -> Tuple[str, int]:
        """``(host, port)`` the proxy listens on; known once :meth:`start` returned."""
        if self._listener is None:
            raise RuntimeError("the proxy is not started")
        host, port = self._listener.getsockname()[:2]
        return host, port

    @property
    def endpoint(self) -> str:
        """The ``tcp://host:port`` endpoint a zmq socket connects to."""
        host, port = self.address
        return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"

    def start(self) -> FaultProxy:
        """Start listening; returns when :attr:`address` is known (or raises why not)."""
        thread = threading.Thread(target=self._accept_loop, name="FaultProxy-accept", daemon=True)
        self._threads.append(thread)
        thread.start()
        if not self._started.wait(10.0):
            self.close()
            raise RuntimeError("the proxy did not start listening within 10 s")
        if self._start_error is not None:
            self.close()
            raise self._start_error
        return self

    def cut(self) -> None:
        """Close every open connection at once; new ones are still accepted."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        """Stop accepting, close every connection, and wait for the threads to end."""
        self._closed.set()
        if self._listener is not None:
            _close(self._listener)
        self.cut()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(5.0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"{self.address}" if self._listener is not None else "not started"
        return (f"<FaultProxy {where} -> {self.target} delay={self.delay} jitter={self.jitter} "
                f"loss={self.loss} bandwidth={self.bandwidth}>")

    # --------------------------------------------------------------- internals

    def _accept_loop(self) -> None:
        try:
            if self._thread_init is not None:
                self._thread_init()
            family = socket.AF_INET6 if ":" in self._listen[0] else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(self._listen)
            listener.listen(64)
            self._listener = listener
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: shutdown() wakes a blocked accept()
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        """Open the upstream connection (on this thread: the proxy's namespace) and start pumping."""
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.target, timeout=5.0)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self._closed.is_set():
                _close(client)
                _close(upstream)
                return
            self._sockets += [client, upstream]
            self.connections += 1
        for source, sink, name in ((client, upstream, "up"), (upstream, client, "down")):
            chunks: queue.Queue[Tuple[float, bytes]] = queue.Queue()
            self._spawn(self._read, source, chunks, name=f"FaultProxy-read-{name}")
            self._spawn(self._write, sink, chunks, source, name=f"FaultProxy-write-{name}")

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _read(self, source: socket.socket, chunks: queue.Queue[Tuple[float, bytes]]) -> None:
        last = 0.0
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = _EOF
            now = time.monotonic()
            if not data:
                chunks.put((max(last, now), _EOF))
                return
            last = self._delivery_time(now, last, len(data))
            chunks.put((last, data))

    def _delivery_time(self, now: float, last: float, size: int) -> float:
        """When a chunk of *size* bytes read *now* may be delivered; never before the previous one."""
        due = now + self.delay
        if self.jitter:
            due += self._random.uniform(0.0, self.jitter)
        if self.loss and self._random.random() < self.loss:
            due += self.retransmit_delay
        if self.bandwidth:
            due = max(due, last) + size / self.bandwidth
        return max(due, last)

    def _write(
        self, sink: socket.socket, chunks: queue.Queue[Tuple[float, bytes]], source: socket.socket
    ) -> None:
        try:
            while True:
                due, data = chunks.get()
                wait = due - time.monotonic()
                if wait > 0 and self._closed.wait(wait):
                    return
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except OSError:
            _close(sink)
            _close(source)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
