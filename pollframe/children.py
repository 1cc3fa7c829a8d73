"""Child processes: how they are started, how they learn that their parent died, how they are ended.

Theory of operation
-------------------
A process tree must end however its top ends. Three things make that so:

- **The start method.** Under ``fork`` a child inherits every descriptor
  of its parent, the parent's zmq sockets included: a port the parent has
  closed stays in ``LISTEN`` inside the child, and the parent cannot bind it
  again. :func:`default_start_method` is ``forkserver`` on Linux (where
  CPython 3.14 makes it the default too) and ``spawn`` elsewhere; both give
  the child only what it needs. A ``forkserver`` child starts quickly once
  the server is up because the server has imported pollframe already
  (:func:`preload_pollframe`).
- **The parent's death.** A child reads its end of the control pipe on its
  loop and stops when the pipe closes (see ``pollframe.process``). On Linux
  it also asks the kernel for a signal when its parent dies
  (:func:`die_with_parent`, ``PR_SET_PDEATHSIG``): under ``fork`` a sibling
  started later may inherit the parent's end of the pipe and keep it open.
- **The end of a parent.** multiprocessing's exit handler joins every
  child that is still running, without a deadline: a process whose children
  do not stop never exits. So a stopping ``ZmqProcess`` ends its own
  children first with :func:`stop_all`, all of them at once and escalating:
  ask, ``SIGTERM``, ``SIGKILL``.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import sys
import time
from collections.abc import Iterable
from multiprocessing.process import BaseProcess
from typing import Any, Callable

__all__ = ["ask_to_stop", "default_start_method", "die_with_parent", "preload_pollframe", "stop_all"]

log = logging.getLogger("pollframe")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_preloaded = False
_PRELOAD = "pollframe.process"  # and with it zmq, the loop, streams, the factory


def default_start_method() -> str:
    """The start method a ``ZmqProcess`` uses when neither it nor its class names one.

    ``forkserver`` where it exists, else ``spawn``: never ``fork``, under
    which a child inherits its parent's zmq descriptors. multiprocessing's
    own default is not asked: starting any process fixes it to ``fork`` on
    Linux (``spawn.get_preparation_data`` reads it), so it cannot say
    whether the program chose it.
    """
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def preload_pollframe() -> None:
    """Have the forkserver import pollframe before it forks its first child; once per process.

    A child forked from a server that has pollframe (and zmq) imported
    already starts in about 20 ms instead of 100 (see docs/reliability.md).
    The modules the program asked to preload are kept. It has no effect
    once the server runs. The server imports only modules: no context, no
    socket exists in it to be inherited.
    """
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    from multiprocessing import forkserver

    wanted = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
    if _PRELOAD not in wanted:  # the package itself loads its names lazily: name the module
        forkserver.set_forkserver_preload([*wanted, _PRELOAD])


def die_with_parent(signum: int | None) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux only).

    Elsewhere, or with ``None``, nothing: the closing control pipe is the
    only notice. The kernel means the *thread* that started this process:
    a child started from a thread that then ends gets the signal too.
    """
    if signum is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        log.warning("pollframe: prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def stop_all(
    processes: Iterable[BaseProcess], timeout: float = 1.0, *, asked: bool = False
) -> dict[BaseProcess, list[str]]:
    """Stop ``processes`` together, escalating; return the steps each one took.

    All are asked at once (:func:`ask_to_stop`; ``asked=True``: the caller
    has done that already, and a second request would cut a ``ZmqProcess``'s
    drain short), then those still running after ``timeout`` seconds get
    ``SIGTERM``, then after another ``timeout`` ``SIGKILL``. So stopping ten
    children costs the slowest one's time, not the sum. Each is joined (and
    its control pipe closed) at the end. Processes never started or already
    gone take no step.
    """
    steps: dict[BaseProcess, list[str]] = {}
    alive = [p for p in processes if _started(p) and p.is_alive()]
    escalation: list[tuple[str, Callable[[Any], None]]] = [
        ("stop", (lambda p: None) if asked else ask_to_stop),
        ("SIGTERM", lambda p: p.terminate()),
        ("SIGKILL", lambda p: p.kill()),
    ]
    try:
        for step, act in escalation:
            if not alive:
                break
            for process in alive:
                steps.setdefault(process, []).append(step)
                act(process)
            _wait_for_exit(alive, timeout)
            alive = [p for p in alive if p.is_alive()]
    finally:
        for process in steps:
            process.join(0 if process.exitcode is not None else timeout)
    return steps


def _started(process: BaseProcess) -> bool:
    return getattr(process, "_popen", None) is not None


def ask_to_stop(process: BaseProcess) -> None:
    """The polite first step: ``ZmqProcess`` over its control pipe, another process with SIGTERM."""
    ask = getattr(process, "_ask_to_stop", None)  # a ZmqProcess: over its control pipe
    if ask is not None:
        ask(None)
    else:
        process.terminate()


def _wait_for_exit(processes: list[BaseProcess], timeout: float) -> None:
    """Wait until every one of ``processes`` has exited, or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    waiting = {p.sentinel: p for p in processes}
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for sentinel in multiprocessing.connection.wait(list(waiting), remaining):
            waiting.pop(sentinel)  # type: ignore[arg-type]  # sentinels are ints

