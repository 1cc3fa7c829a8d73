"""Processes the robustness tests run against, importable by name.

Each writes its stdout and stderr to ``log_path`` (set before ``start()``)
so that a test can read what the child logged (a warning, a traceback) and
a flood of requests does not flood the test's output.

- :class:`QuietPongProc` is the example's PongProc as it is.
- :class:`CountingPongProc` is PongProc whose handler also answers
  ``stats`` (what reached the handler, what failed, what was unroutable),
  ``remember`` (keep the sender's envelope) and ``notify`` (send a notice
  to every remembered sender), so a test can look inside the process.
- :class:`SmallBufferPongProc` is CountingPongProc with a small send
  high-water mark and kernel buffer, so a peer that does not read fills them fast.
- :class:`TickerProc` reports a periodic timer's ticks while it counts the
  ``SIGUSR1`` it receives.
- :class:`WatcherProc` connects a DEALER with ZMTP heartbeats and reports
  the socket monitor's events.
- :class:`FlooderProc` queues more than a gone peer will ever take.

Reports go to the test over PUSH as JSON ``[event, loop time, detail]``;
``loop.time()`` is ``time.monotonic()``, one clock for all processes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from pollframe.handler import message
from pollframe.process import ZmqProcess
from pollframe.stream import Stream

EXAMPLE_APP = Path(__file__).resolve().parents[1] / "examples" / "example_app"
if str(EXAMPLE_APP) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_APP))

from pongproc import PongProc, RepStreamHandler  # noqa: E402  (needs the path above)


class LogToFile(ZmqProcess):
    """Mixin: the child's stdout and stderr (fds and Python objects) go to ``log_path``."""

    log_path: str | None = None

    def run(self) -> None:
        if self.log_path is not None:
            out = open(self.log_path, "w", buffering=1)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            sys.stdout = sys.stderr = out
            # A forked child inherits the test runner's log handlers: log to the file instead.
            root = logging.getLogger()
            for handler in root.handlers[:]:
                root.removeHandler(handler)
            root.addHandler(logging.StreamHandler(out))
            root.setLevel(logging.WARNING)
        super().run()


class QuietPongProc(LogToFile, PongProc):
    """The example's PongProc, unchanged but for where its output goes."""


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter


class FixedMmapPongProc(QuietPongProc):
    """QuietPongProc with glibc's mmap threshold fixed at its default (128 KiB), for memory tests.

    glibc raises the threshold each time a large mmapped block is freed, so after a 1 MiB frame later
    ones come from the heap, and freed heap memory stays in the process (VmRSS) for reuse. Whether that
    happens depends on the allocation history (it did on Python 3.9 and 3.13: 52-65 MiB "retained",
    6-7 MiB with the threshold fixed). Fixed, freed large blocks go back to the system, so VmRSS counts
    what the process really keeps.
    """

    def setup(self) -> None:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt"):
            libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)
        super().setup()


class CountingHandler(RepStreamHandler):
    """PongProc's handler plus messages that let a test look inside."""

    def __init__(self, stream: Stream, stop: Any, ping_handler: Any) -> None:
        super().__init__(stream, stop, ping_handler)
        self.stream = stream
        self.seen = 0
        self.remembered: list[list[bytes]] = []

    def __call__(self, msg: Any) -> None:
        self.seen += 1
        super().__call__(msg)

    @message
    def stats(self) -> list:
        """What reached this handler so far (this request included)."""
        stats = {
            "seen": self.seen,
            "errors": dict(self.errors),
            "unroutable": self.stream.unroutable,
            "dropped": self.stream.dropped,
            "queued": self.stream.queued(),
        }
        return ["stats", [stats], {}]

    @message
    def remember(self) -> list:
        """Keep the sender's envelope for later notices."""
        self.remembered.append(self.envelope)
        return ["remembered", [len(self.remembered)], {}]

    @message
    def notify(self) -> list:
        """Send a notice to every remembered sender; answer with the unroutable count."""
        for envelope in self.remembered:
            self.stream.send_multipart(envelope + [self.codec.encode("notice", [], {})])
        return ["notified", [self.stream.unroutable], {}]


class CountingPongProc(QuietPongProc):
    """PongProc with :class:`CountingHandler` on its ROUTER stream."""

    def setup(self) -> None:
        super().setup()
        assert self.rep_stream is not None
        self.rep_stream.on_recv(CountingHandler(self.rep_stream, self.stop, self.ping_handler))


class SmallBufferPongProc(CountingPongProc):
    """CountingPongProc whose replies to one peer back up after ~100 messages.

    The same happens with the default buffers, only later: measured with
    libzmq 4.3.5 on loopback, after about 110,000 unread pongs.
    """

    def stream(self, *args: Any, sockopts: Any = None, **kwargs: Any) -> Any:
        small = {zmq.SNDHWM: 100, zmq.SNDBUF: 4096}  # before bind: the listener copies them
        return super().stream(*args, sockopts={**(sockopts or {}), **small}, **kwargs)


class Reporter(LogToFile):
    """Mixin: ``report(event, detail)`` pushes ``[event, loop time, detail]`` to ``report_to``."""

    def __init__(self, report_to: str) -> None:
        super().__init__()
        self.report_to = report_to
        self.reports: Stream | None = None

    def setup(self) -> None:
        super().setup()
        self.reports, _ = self.stream(zmq.PUSH, self.report_to, bind=False)

    def report(self, event: str, detail: Any = None) -> None:
        assert self.reports is not None and self.loop is not None
        self.reports.send(json.dumps([event, self.loop.time(), detail]).encode())


class TickerProc(Reporter):
    """Reports each tick of a ``call_every(interval)`` timer: its deadline and the SIGUSR1 count so far."""

    def __init__(self, report_to: str, interval: float) -> None:
        super().__init__(report_to)
        self.interval = interval
        self.signals = 0

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        # A plain handler that never touches the loop, as another library might install.
        signal.signal(signal.SIGUSR1, self._count)
        timer = self.loop.call_every(self.interval, lambda: self.report("tick", [timer.when, self.signals]))
        self.report("armed")

    def _count(self, signum: int, frame: Any) -> None:
        self.signals += 1


class WatcherProc(Reporter):
    """A DEALER to ``target`` with heartbeats every ``heartbeat`` s; reports its monitor events.

    It pings ``target`` once and reports ``answered`` when the pong comes,
    so the test knows the connection is up and the monitor is listening
    (the monitor is attached after the socket connected and may miss the
    handshake, but no event after the pong).
    """

    def __init__(self, report_to: str, target: str, heartbeat: float) -> None:
        super().__init__(report_to)
        self.target = target
        self.heartbeat = heartbeat

    def setup(self) -> None:
        super().setup()
        assert self.loop is not None
        dealer, _ = self.stream(zmq.DEALER, self.target, bind=False, heartbeat=self.heartbeat)
        monitor = dealer.socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.loop.register(monitor, self._on_event, own=True)
        dealer.on_recv(lambda frames: self.report("answered", json.loads(frames[-1])))
        dealer.send_multipart([b"", b'["ping", [0], {}]'])

    def _on_event(self, frames: list[bytes]) -> None:
        event = parse_monitor_message(frames)
        self.report(zmq.Event(event["event"]).name)


class FlooderProc(LogToFile):
    """Pushes ``count`` messages of ``size`` bytes to ``target`` from setup().

    The socket keeps at most ``hwm`` messages and small kernel buffers, so
    most of them wait in the stream's own queue until a peer reads them.
    """

    def __init__(self, target: str, count: int, size: int, hwm: int = 10) -> None:
        super().__init__()
        self.target = target
        self.count = count
        self.size = size
        self.hwm = hwm

    def setup(self) -> None:
        super().setup()
        opts = {zmq.SNDHWM: self.hwm, zmq.SNDBUF: 4096}
        push, _ = self.stream(zmq.PUSH, self.target, bind=False, sockopts=opts, max_queue=self.count)
        payload = b"x" * self.size
        for _ in range(self.count):
            push.send(payload)
