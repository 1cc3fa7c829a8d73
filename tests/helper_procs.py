"""Small ZmqProcess subclasses for the process tests.

They live in their own module, importable by name, so that the ``spawn``
and ``forkserver`` start methods can unpickle them in the child. Each can
send the child's stderr to a file, so a test can check that a shutdown left
no traceback whatever the start method (a forkserver child would otherwise
write to the forkserver's stderr, not the test's).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sys
import threading
from pathlib import Path
from typing import Any

import zmq

from pollframe.process import ZmqProcess

EXAMPLE_APP = Path(__file__).resolve().parents[1] / "examples" / "example_app"
if str(EXAMPLE_APP) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_APP))

from pongproc import PongProc  # noqa: E402  (needs the path above)

START_METHODS = ["fork", "spawn", "forkserver"]


def redirect_stderr(path: str | None) -> None:
    """Send this process's stderr (the fd and ``sys.stderr``) to *path*."""
    if path is None:
        return
    stream = open(path, "w", buffering=1)
    os.dup2(stream.fileno(), 2)
    sys.stderr = stream


class StderrToFile(ZmqProcess):
    """Mixin: ``stderr_path`` (set before start) receives the child's stderr."""

    stderr_path: str | None = None

    def run(self) -> None:
        redirect_stderr(self.stderr_path)
        super().run()


class CapturedPongProc(StderrToFile, PongProc):
    """The example's PongProc, with its stderr in a file."""

    def __init__(self, bind_addr: Any, stderr_path: str, *, mp_context: Any = None) -> None:
        super().__init__(bind_addr, mp_context=mp_context)
        self.stderr_path = stderr_path


class EchoProc(StderrToFile):
    """Binds one REP stream per address and echoes each request; ``stop`` stops it."""

    def __init__(self, *addrs: Any, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.addrs = addrs

    def setup(self) -> None:
        super().setup()
        for addr in self.addrs:
            stream, _ = self.stream(zmq.REP, addr, bind=True)
            stream.on_recv(self._echo(stream))

    def _echo(self, stream: Any) -> Any:
        def echo(frames: list[bytes]) -> None:
            stream.send_multipart(frames)
            if frames == [b"stop"]:
                self.stop()

        return echo


class StopsItself(StderrToFile):
    """Binds a PULL stream (default: a random tcp port) and stops as soon as its loop runs."""

    def __init__(self, addr: Any = "127.0.0.1", *, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.addr = addr

    def setup(self) -> None:
        super().setup()
        self.stream(zmq.PULL, self.addr, bind=True)
        assert self.loop is not None
        self.loop.call_soon(self.stop)


class StartMethodProc(StderrToFile):
    """Answers any request on its REP stream with the start method it runs under."""

    def setup(self) -> None:
        super().setup()
        stream, _ = self.stream(zmq.REP, "127.0.0.1", bind=True)
        stream.on_recv(lambda frames: stream.send_string(multiprocessing.get_start_method()))


class BadAddressProc(StderrToFile):
    """Fails in setup(): the parent's wait_ready() must say why."""

    def setup(self) -> None:
        super().setup()
        self.stream(zmq.REP, "no-such-transport://x", bind=True)


class HangsInSetup(StderrToFile):
    """Never gets through ``setup()`` (it waits for an event nobody sets): never ready, deaf to SIGTERM."""

    def setup(self) -> None:
        super().setup()
        threading.Event().wait()


class ForgetfulProc(StderrToFile):
    """Overrides setup() without calling super().setup()."""

    def setup(self) -> None:
        pass


class DiesInSetupProc(StderrToFile):
    """Exits with code 3 in setup(), without a word to the parent."""

    def setup(self) -> None:
        os._exit(3)


class GatedSetupProc(StderrToFile):
    """Its setup() waits until the parent sets ``gate`` (a multiprocessing Event)."""

    def __init__(self, gate: Any, *, mp_context: Any = None) -> None:
        super().__init__(mp_context=mp_context)
        self.gate = gate

    def setup(self) -> None:
        self.gate.wait()
        super().setup()


def numbered(n: int, size: int = 4096) -> bytes:
    """Message ``n`` of a test stream: its number, padded to ``size`` bytes."""
    return str(n).encode().ljust(size, b".")


class DrainProc(StderrToFile):
    """Connects a PUSH stream to ``endpoint`` and queues ``count`` :func:`numbered` messages in ``setup()``.

    4 KiB each: 5,000 of them (20 MB) are far more than the kernel's socket
    buffers take, so a slow peer keeps most of them in libzmq's pipe and
    the stream's queue.
    Nothing is sent before the loop runs: a test that stops it at once sees
    what the shutdown drain delivers.
    """

    def __init__(self, endpoint: str, count: int, drain_timeout: float, stderr_path: str) -> None:
        super().__init__()
        self.endpoint, self.count, self.stderr_path = endpoint, count, stderr_path
        self.drain_timeout = drain_timeout

    def setup(self) -> None:
        super().setup()
        stream, _ = self.stream(zmq.PUSH, self.endpoint, bind=False)
        for n in range(self.count):
            stream.send(numbered(n))


class PidProc(StderrToFile):
    """A REP server on ``endpoint`` that answers every request with ``["pid", [its pid], {}]``."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint

    def setup(self) -> None:
        super().setup()
        stream, _ = self.stream(zmq.REP, self.endpoint, bind=True)
        reply = json.dumps(["pid", [os.getpid()], {}]).encode()
        stream.on_recv(lambda frames: stream.send(reply))


class SupervisorProc(StderrToFile):
    """Supervises one :class:`PidProc` on ``endpoint``, restarting it always, with a short backoff."""

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint

    def setup(self) -> None:
        super().setup()
        from pollframe.supervise import RestartPolicy

        self.stream(zmq.PULL, "127.0.0.1", bind=True)  # an endpoint, so that the harness sees it ready
        policy = RestartPolicy(restart="always", backoff=0.05, backoff_max=0.2, max_restarts=10)
        self.supervise(functools.partial(PidProc, self.endpoint), policy, name="worker")
