"""The control pipe between a ZmqProcess and its parent: small JSON words, never pickles.

Theory of operation
-------------------
``ZmqProcess.start()`` makes a pipe with :meth:`ControlPipe.pair`; the
child's end travels to the child with the process object, the parent closes
its copy of it. Each word is one JSON array ``[kind, payload]``:

- child to parent, once: ``["ready", [endpoint, ...]]`` after ``setup()``,
  or ``["failed", "ValueError: bad address ..."]`` if ``setup()`` raised;
- parent to child: ``["stop", null]``.

The end of file is a word too: the child reads it when its parent has died
(or closed its end), the parent when the child has exited. JSON keeps the
pipe safe from a child that is not trusted with pickles, and the words are
readable in a debugger.
"""

from __future__ import annotations

import json
import multiprocessing.connection
from typing import Any

__all__ = ["FAILED", "READY", "STOP", "ControlPipe"]

STOP = "stop"
READY = "ready"
FAILED = "failed"


class ControlPipe:
    """One end of the control pipe; picklable into a child before it starts, like a ``Connection``."""

    def __init__(self, connection: multiprocessing.connection.Connection) -> None:
        self.connection = connection

    @classmethod
    def pair(cls, ctx: Any) -> tuple[ControlPipe, ControlPipe]:
        """(parent's end, child's end), made with the multiprocessing context ``ctx``."""
        parent, child = ctx.Pipe(duplex=True)
        return cls(parent), cls(child)

    def send(self, kind: str, payload: Any = None) -> None:
        """Send one word; ``OSError`` when the other end is gone."""
        self.connection.send_bytes(json.dumps([kind, payload]).encode())

    def read(self) -> tuple[str, Any]:
        """Read one word, waiting for it; ``EOFError`` (or ``OSError``) when the other end is gone."""
        kind, payload = json.loads(self.connection.recv_bytes())
        return str(kind), payload

    def read_if_any(self) -> tuple[str, Any] | None:
        """The next word if one can be read now, else ``None`` (the other end gone included)."""
        try:
            return self.read() if self.connection.poll() else None
        except (EOFError, OSError):
            return None

    def poll(self, timeout: float = 0.0) -> bool:
        """True when a word (or the end of file) can be read within ``timeout`` seconds."""
        return self.connection.poll(timeout)

    def fileno(self) -> int:
        """The descriptor to watch (``loop.register``): readable when a word or the end of file is there."""
        return self.connection.fileno()

    def close(self) -> None:
        """Close this end: the other end reads the end of file."""
        self.connection.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self.connection.closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd {self.fileno()}"
        return f"<ControlPipe {state}>"
