"""Running example scripts as a user would, for the system tests: start, read lines with deadlines, stop.

Lines are read from the raw pipe with a deadline on each ``os.read``, so
nothing blocks past the deadline and no line already read into a buffer is
missed by a ``select`` (which a text-mode pipe's own buffer would hide).
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


class Script:
    """One example script running in its own process, its output read line by line."""

    def __init__(self, path: Path, *args: str, env: Optional[Dict[str, str]] = None) -> None:
        """Start ``path`` with ``args``; ``env`` adds to (or overrides) this process's environment."""
        env = dict(os.environ, **(env or {}))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.name = f"{path.name} {' '.join(args)}"
        self.proc = subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, cwd=ROOT)
        self._buffers = {"stdout": b"", "stderr": b""}
        self.lines: dict = {"stdout": [], "stderr": []}

    def read_line(self, which: str = "stdout", timeout: float = 10.0) -> str:
        """The next line on ``which``; AssertionError after ``timeout`` seconds or at end of file."""
        pipe = getattr(self.proc, which)
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            while b"\n" not in self._buffers[which]:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise AssertionError(f"{self.name}: no line on {which} within {timeout} s")
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"{self.name}: {which} ended (exit code {self.proc.poll()}); "
                                         f"read so far: {self.lines[which]}")
                self._buffers[which] += chunk
        line, _, rest = self._buffers[which].partition(b"\n")
        self._buffers[which] = rest
        text = line.decode(errors="replace")
        self.lines[which].append(text)
        return text

    def wait_for_line(self, prefix: str, which: str = "stdout", timeout: float = 10.0) -> str:
        """Read lines until one starts with ``prefix``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(which, max(deadline - time.monotonic(), 0.001))
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float = 30.0) -> "tuple[int, str, str]":
        """Wait for the exit (killing it past ``timeout``); exit code, all stdout, all stderr."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"{self.name} did not exit within {timeout} s") from None
        stdout = "\n".join(self.lines["stdout"] + [(self._buffers["stdout"] + out).decode(errors="replace")])
        stderr = "\n".join(self.lines["stderr"] + [(self._buffers["stderr"] + err).decode(errors="replace")])
        return self.proc.returncode, stdout.strip(), stderr.strip()

    def stop(self, timeout: float = 10.0) -> "tuple[int, str, str]":
        """SIGTERM, then :meth:`finish`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def stop_all(scripts: List[Optional[Script]]) -> None:
    """Safety net for a test's ``finally``: kill whatever still runs."""
    for script in scripts:
        if script is not None and script.proc.poll() is None:
            script.kill()
