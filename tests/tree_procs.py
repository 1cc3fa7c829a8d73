"""A tree of ZmqProcesses, and a script that ends its top and counts what is left.

    python tests/tree_procs.py MODE METHOD DEPTH FANOUT DIR

starts a :class:`TreeProc` of ``DEPTH`` levels (the top has ``FANOUT``
children, every other process one) under the start method ``METHOD``
(``default``: ZmqProcess's own choice; ``fork-held``: fork, and the top
then forks a plain process that holds a copy of each control pipe's
parent end, so that only the kernel's parent-death signal can tell the
children that the top died), waits until the whole tree is
ready, ends the top with ``MODE`` (``SIGTERM``, ``stop`` or ``SIGKILL``)
and prints one JSON line: the names of the tree's processes, those whose
``run()`` returned, the exit codes this script could see (the top's, and
those of orphans it reaped), the processes below this script still alive
when the time ran out, and the seconds it took.

The script makes itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``),
so the orphans of a killed top are re-parented to it: it can wait for them
(on ``SIGCHLD``, no polling) and read their exit codes, and anything left
behind is found below it.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from pollframe.process import ZmqProcess

_PR_SET_CHILD_SUBREAPER = 36


class TreeProc(ZmqProcess):
    """Starts its children in ``setup()`` and is ready once they are.

    Writes its pid to ``DIR/NAME.pid`` in ``setup()`` and ``DIR/NAME.done``
    when ``run()`` has returned (its shutdown was clean).
    """

    def __init__(
        self, name: str, depth: int, fanout: int, pid_dir: str, *, hold: bool = False, mp_context: Any = None
    ) -> None:
        super().__init__(name=name, mp_context=mp_context)
        self.depth, self.fanout, self.pid_dir, self.hold = depth, fanout, pid_dir, hold

    def setup(self) -> None:
        super().setup()
        self.stream(zmq.PULL, "127.0.0.1", bind=True)
        Path(self.pid_dir, f"{self.name}.pid").write_text(str(os.getpid()))
        if self.depth > 1:
            for i in range(self.fanout):
                name, method = f"{self.name}.{i}", self._start_method
                kid = TreeProc(name, self.depth - 1, 1, self.pid_dir, mp_context=method)
                kid.start()
                kid.wait_ready(20)
        if self.hold:  # a plain forked sibling: holds a copy of our end of each kid's control pipe
            fork = multiprocessing.get_context("fork")
            holder = fork.Process(target=signal.pause, daemon=True)  # until the script kills it
            holder.start()
            Path(self.pid_dir, "holder").write_text(str(holder.pid))

    def run(self) -> None:
        super().run()
        Path(self.pid_dir, f"{self.name}.done").touch()


def _cmdline(pid: int) -> str:
    try:
        return Path("/proc", str(pid), "cmdline").read_bytes().replace(b"\0", b" ")[:150].decode()
    except OSError:
        return "(gone)"


def _descendants(root: int) -> dict[int, int]:
    """pid -> ppid of every live (not zombie) process below ``root``.

    The walk goes through zombies: a dead parent's children are re-parented
    a moment after it dies, and must not be missed meanwhile.
    """
    parents: dict[int, int] = {}
    zombies = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        parents[int(entry)] = int(ppid)
        if state == "Z":
            zombies.add(int(entry))
    below: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in below:
                below[pid] = ppid
                frontier.append(pid)
    return {pid: ppid for pid, ppid in below.items() if pid not in zombies}


def main(
    mode: str, method: str, depth: int, fanout: int, pid_dir: str, budget: float = 2.0
) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    hold = method == "fork-held"
    method = "fork" if hold else method
    chosen = None if method == "default" else method
    top = TreeProc("top", depth, fanout, pid_dir, hold=hold, mp_context=chosen)
    top.start()
    # Only now (a blocked SIGCHLD is inherited, and a forkserver must see its children end):
    # our SIGCHLD is what wakes the wait below.
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    top.wait_ready(30)
    # Our own forkserver (if any) is the top's parent; it and its resource tracker stay while we
    # live and are not the tree's.
    ours = {os.getpid()}
    top_parent = int(Path("/proc", str(top.pid), "stat").read_text().rpartition(")")[2].split()[1])
    if top_parent != os.getpid():
        ours.add(top_parent)
    from multiprocessing import resource_tracker  # the forkserver starts one, for as long as we live

    ours.add(getattr(resource_tracker._resource_tracker, "_pid", None) or 0)
    holder = Path(pid_dir, "holder")
    if holder.exists():
        ours.add(int(holder.read_text()))
    pids = {path.stem: int(path.read_text()) for path in Path(pid_dir).glob("*.pid")}
    codes: dict[str, int | None] = {}
    started = time.monotonic()
    if mode == "SIGTERM":
        os.kill(top.pid, signal.SIGTERM)
    elif mode == "SIGKILL":
        os.kill(top.pid, signal.SIGKILL)
    else:
        top.stop()
    deadline = started + budget
    left: dict[int, int] = {}
    while True:
        while True:  # reap the orphans re-parented to us
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for name, known in pids.items():
                if known == pid:
                    codes[name] = os.waitstatus_to_exitcode(status)
        top.is_alive()  # reaps the top when it is our own child
        left = {pid: ppid for pid, ppid in _descendants(os.getpid()).items() if pid not in ours}
        if not left or time.monotonic() >= deadline:
            break
        signal.sigtimedwait([signal.SIGCHLD], max(0.0, min(0.05, deadline - time.monotonic())))
    elapsed = time.monotonic() - started
    shown = {pid: _cmdline(pid) for pid in left}
    if holder.exists():
        os.kill(int(holder.read_text()), signal.SIGKILL)
    for pid in left:  # a failed run must not leave them behind either
        os.kill(pid, signal.SIGKILL)
    if top.is_alive():
        top.kill()
    top.join(5)
    if top.exitcode is not None:
        codes["top"] = top.exitcode
    done = sorted(path.stem for path in Path(pid_dir).glob("*.done"))
    return {"codes": codes, "names": sorted(pids), "done": done, "left": shown, "elapsed": elapsed}


if __name__ == "__main__":
    mode, method, depth, fanout, pid_dir = sys.argv[1:6]
    print(json.dumps(main(mode, method, int(depth), int(fanout), pid_dir)), flush=True)
