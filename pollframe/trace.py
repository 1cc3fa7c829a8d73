"""The tracer: every message a process sends and receives, recorded to a file.

Theory of operation
-------------------
Tracing is off unless ``POLLFRAME_TRACE=DIR`` is set in the environment or
:func:`enable` was called (which sets it, so child processes inherit it).
Whether a socket is traced is decided once, when its reader is built
(``PollLoop.register``, ``Stream.on_recv``) or its Stream is made: a traced
one gets a wrapped callback or send method, an untraced one the plain
path, so tracing off costs nothing per message. Sockets made before
tracing was enabled stay untraced, and so does a Stream's monitor socket
(``on_event``): pollframe's own plumbing, not part of the conversation.

Each process writes its own file, ``DIR/<name>-<pid>.pftrace``, in the
format of :mod:`pollframe.tracefile`: its name, then one record per
traced socket, then one per message -- what was passed to send (IN) and
what was received (OUT), with the monotonic time. Records go to a
buffer in memory; the buffer is written out with one ``write`` when it
holds :attr:`Recorder.max_buffer` bytes, when a record finds the last
write older than :attr:`Recorder.max_delay`, before the loop sleeps in a
poll, when the loop closes, and at exit. A process killed with
``SIGKILL`` keeps everything up to its last write. A forked child starts
its own file (its parent's unwritten records stay the parent's).

The name is ``ZmqProcess``'s class name for its processes (set by
:func:`name_process`), else the multiprocessing process's, else the
script's.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.util
import os
import re
import socket as _socket
import sys
import time
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence

import zmq

from pollframe import tracefile
from pollframe.tracefile import HEADER, LENGTH, PROCESS, RECEIVED, SENT, SOCKET

__all__ = ["ENV", "Channel", "Recorder", "directory", "disable", "enable", "flush", "follow", "name_process",
           "recorder"]

log = logging.getLogger("pollframe")

#: The environment variable that turns tracing on, for this process and its children.
ENV = "POLLFRAME_TRACE"

#: ``record(frames, t)``: append one message taken at monotonic time ``t``.
RecordFn = Callable[[Sequence[Any], float], None]


class Channel:
    """One traced socket: records what it sent (IN) and received (OUT).

    Code that uses a raw socket can record its messages itself::

        ch = trace.recorder().channel(sock)
        sock.send_multipart(frames); ch.sent(frames)
    """

    __slots__ = ("id", "_sent", "_received", "_clock")

    def __init__(
        self, channel_id: int, sent: RecordFn, received: RecordFn, clock: Callable[[], float]
    ) -> None:
        self.id = channel_id
        self._sent = sent
        self._received = received
        self._clock = clock

    def sent(self, frames: Sequence[Any]) -> None:
        """Record ``frames`` as passed to send (IN)."""
        self._sent(frames, self._clock())

    def received(self, frames: Sequence[Any]) -> None:
        """Record ``frames`` as received (OUT)."""
        self._received(frames, self._clock())

    def receiving(self, callback: Callable[[Any], Any], *, multipart: bool = True) -> Callable[[Any], Any]:
        """``callback`` wrapped to record each message before it runs.

        ``multipart=False``: the callback takes one frame, not a list. Extra
        arguments (a reader's message properties) are passed on.
        """
        record, clock = self._received, self._clock
        if multipart:
            def traced(frames: List[bytes], *props: Any) -> Any:
                record(frames, clock())
                return callback(frames, *props)
        else:
            def traced(frame: bytes, *props: Any) -> Any:  # type: ignore[misc]
                record((frame,), clock())
                return callback(frame, *props)
        traced.__wrapped__ = callback  # type: ignore[attr-defined]
        return traced

    def sending(self, send_multipart: Callable[[Sequence[Any]], Any]) -> Callable[[Sequence[Any]], Any]:
        """``send_multipart`` wrapped to record each message it takes, timed before the send.

        A send that raises is not recorded: the message was not taken.
        """
        record, clock = self._sent, self._clock

        def traced(frames: Sequence[Any]) -> Any:
            t = clock()
            result = send_multipart(frames)
            record(frames, t)
            return result

        return traced


class Recorder:
    """The trace writer of one process: a buffer, a file in ``directory``, its channels."""

    #: Bytes buffered before they are written out.
    max_buffer: int = 64 * 1024
    #: Seconds a record may wait in the buffer while more keep coming.
    max_delay: float = 0.1

    def __init__(self, directory: str, *, name: Optional[str] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = str(directory)
        self.path: Optional[str] = None
        #: Records that could not be written (e.g. a frame without the buffer interface).
        self.failures = 0
        self._name = name
        self._clock = clock
        self._buf = bytearray()
        self._fd: Optional[int] = None
        self._pid = os.getpid()
        self._next_channel = 1
        self._sockets: Dict[int, bytes] = {}  # channel id -> its SOCKET record, in order
        self._by_socket: "weakref.WeakKeyDictionary[zmq.Socket, Channel]" = weakref.WeakKeyDictionary()
        self._last_write = [clock()]  # shared with the record functions
        self._exit_hook_pid: Optional[int] = None
        _all_recorders.add(self)

    # ------------------------------------------------------------------ API

    @property
    def name(self) -> str:
        """The process's name in its trace: the one given, or else the default (see the module doc)."""
        return self._name or _default_name()

    def channel(self, sock: Optional[zmq.Socket] = None, *, sock_type: Optional[str] = None,
                endpoint: Optional[str] = None) -> Channel:
        """A new channel for ``sock`` (or for a socket described by ``sock_type`` and ``endpoint``)."""
        if sock is not None:
            sock_type = sock_type or socket_type(sock)
            endpoint = endpoint if endpoint is not None else last_endpoint(sock)
        channel_id = self._next_channel
        self._next_channel += 1
        meta = tracefile.encode_meta(SOCKET, channel_id, self._clock(),
                                     {"type": sock_type or "?", "endpoint": endpoint or ""})
        self._sockets[channel_id] = meta
        self._buf.extend(meta)
        self._arm_exit_flush()
        sent, received = self._writer(SENT, channel_id), self._writer(RECEIVED, channel_id)
        return Channel(channel_id, sent, received, self._clock)

    def channel_for(self, sock: zmq.Socket) -> Channel:
        """The channel of ``sock``, made on first use: its reader and its Stream record into one."""
        found = self._by_socket.get(sock)
        if found is None:
            found = self._by_socket[sock] = self.channel(sock)
        return found

    def rename(self, name: str) -> None:
        """Call the process ``name`` from now on (in the file too, if it is open)."""
        self._name = name
        if self._fd is not None:
            self._buf.extend(self._process_record())

    def flush(self) -> None:
        """Write the buffer out now (one ``write``; the file is made on the first)."""
        if os.getpid() != self._pid:
            self._forked()  # os.fork without the at-fork hook (it is registered at import)
        buf = self._buf
        if not buf:
            return
        try:
            if self._fd is None:
                self._open()
            data = bytes(buf)
            del buf[:]
            _write_all(self._fd, data)  # type: ignore[arg-type]
        except OSError as exc:
            self.failures += 1
            del buf[:]
            if self.failures == 1:
                log.warning("pollframe: cannot write the trace to %s: %s", self.directory, exc)
        self._last_write[0] = self._clock()

    def close(self) -> None:
        """Flush and close the file; later records open a new one."""
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------ internals

    def _writer(self, kind: int, channel_id: int) -> RecordFn:
        buf = self._buf
        extend = buf.extend
        pack, pack_length = HEADER.pack, LENGTH.pack
        last_write = self._last_write
        limit, delay = self.max_buffer, self.max_delay
        flush = self.flush

        def record(frames: Sequence[Any], t: float) -> None:
            mark = len(buf)
            try:
                extend(pack(kind, channel_id, t, len(frames)))
                for frame in frames:
                    if type(frame) is not bytes:
                        frame = bytes(frame)  # a Frame, memoryview, bytearray: its bytes, as sent
                    extend(pack_length(len(frame)))
                    extend(frame)
            except Exception:  # a tracer must never break the program it watches
                del buf[mark:]
                self._failed(frames)
                return
            if len(buf) > limit or t - last_write[0] > delay:
                flush()

        return record

    def _failed(self, frames: Any) -> None:
        self.failures += 1
        if self.failures == 1:
            log.warning("pollframe: trace: cannot record a message of %r", type(frames))

    def _open(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", self.name) or "process"
        base = os.path.join(self.directory, f"{stem}-{self._pid}")
        path, n = base + ".pftrace", 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        while True:
            try:
                fd = os.open(path, flags, 0o644)
                break
            except FileExistsError:  # a pid reused in the same directory
                n += 1
                path = f"{base}.{n}.pftrace"
        self._fd, self.path = fd, path
        _write_all(fd, tracefile.MAGIC + self._process_record())

    def _process_record(self) -> bytes:
        return tracefile.encode_meta(PROCESS, 0, self._clock(), {
            "name": self.name, "pid": self._pid, "host": _socket.gethostname(),
            "wall_offset": time.time() - time.monotonic(),
        })

    def _forked(self) -> None:
        """In a forked child: a file of its own, the channels described again, nothing of the parent's."""
        if self._fd is not None:
            try:
                os.close(self._fd)  # the child's copy only
            except OSError:
                pass
        self._fd, self.path = None, None
        self._pid = os.getpid()
        self._name = None
        self._exit_hook_pid = None
        del self._buf[:]
        for meta in self._sockets.values():
            self._buf.extend(meta)

    def _arm_exit_flush(self) -> None:
        """Flush at exit, in this process: atexit, and multiprocessing's finalizers for its children."""
        pid = os.getpid()
        if self._exit_hook_pid == pid:
            return
        self._exit_hook_pid = pid
        atexit.register(self.flush)
        multiprocessing.util.Finalize(None, self.flush, exitpriority=100)


# ----------------------------------------------------------- the process's recorder

_recorder: Optional[Recorder] = None
_env_read = False
_all_recorders: "weakref.WeakSet[Recorder]" = weakref.WeakSet()  # each starts afresh in a forked child


def recorder() -> Optional[Recorder]:
    """This process's recorder, or None when tracing is off.

    Looks at ``POLLFRAME_TRACE`` on the first call. Loops and Streams ask
    once, when a socket's reader or a Stream is made.
    """
    global _recorder, _env_read
    if not _env_read:
        _env_read = True
        directory = os.environ.get(ENV)
        if directory:
            _recorder = Recorder(directory)
    return _recorder


def enable(directory: "str | os.PathLike[str]") -> Recorder:
    """Trace this process and its future children to ``directory`` (made if missing).

    Sets ``POLLFRAME_TRACE`` so that child processes trace too. Sockets made
    from now on are traced. Returns the recorder.
    """
    global _recorder, _env_read
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    os.environ[ENV] = directory
    current = recorder()
    if current is not None and os.path.abspath(current.directory) == os.path.abspath(directory):
        return current
    if current is not None:
        current.close()
    _recorder, _env_read = Recorder(directory), True
    return _recorder


def disable() -> None:
    """Stop tracing new sockets here and in future children; write out what was recorded.

    Sockets traced already keep recording into the buffer of the closed
    recorder, which is written when it fills or at exit.
    """
    global _recorder, _env_read
    os.environ.pop(ENV, None)
    current, _recorder, _env_read = _recorder, None, True
    if current is not None:
        current.close()


def name_process(name: str) -> None:
    """Call this process ``name`` in its trace (``ZmqProcess`` passes its class name)."""
    current = recorder()
    if current is not None:
        current.rename(name)


def directory() -> Optional[str]:
    """Where this process traces to, or None: what the children it starts should do."""
    current = recorder()
    return current.directory if current is not None else None


def follow(directory: Optional[str], name: str) -> None:
    """In a child process: trace to ``directory`` as the parent did when it started it (None: not).

    ``ZmqProcess`` calls it first thing in the child, because the child's
    environment is not always the parent's of that moment: a forkserver
    child inherits the server's, as it was when the server started.
    """
    if directory is None:
        disable()
    else:
        enable(directory).rename(name)


def flush() -> None:
    """Write out this process's buffered records, if it traces."""
    if _recorder is not None:
        _recorder.flush()


def _after_fork_in_child() -> None:
    for each in list(_all_recorders):
        each._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -------------------------------------------------------------------- helpers


def _default_name() -> str:
    process = multiprocessing.current_process()
    kind = type(process)
    if kind.__module__.startswith("multiprocessing"):
        if multiprocessing.parent_process() is not None:
            return process.name
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        stem = os.path.splitext(script)[0]
        return stem if stem and stem not in ("-c", "-m", "__main__") else "python"
    return kind.__name__  # a Process subclass such as a ZmqProcess, in its child


def socket_type(sock: zmq.Socket) -> str:
    """``REQ``: the name of a socket's type."""
    try:
        return zmq.SocketType(int(sock.type)).name
    except (ValueError, zmq.ZMQError):
        return str(getattr(sock, "type", "?"))


def last_endpoint(sock: zmq.Socket) -> str:
    """The socket's last bound or connected endpoint, ``""`` for none."""
    try:
        value = sock.getsockopt(zmq.LAST_ENDPOINT)
    except zmq.ZMQError:
        return ""
    return value.decode("utf-8", "replace").rstrip("\0") if isinstance(value, bytes) else str(value)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]

