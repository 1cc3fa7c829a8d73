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
so the orphans of a killed top are re-parented to it: it reads their exit
codes, and anything left behind is found below it. It waits on events only:
each process below it is watched through a pidfd, readable when that process
exits, and the tree is looked at again after each exit, until nothing is
left. A deadline (``hang_guard``, 10 s) only bounds a tree that does not end;
how long the tree took is reported, not judged here.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import select
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
        # Kept: a forked holder then holds every kid's pipe, not only the newest one's (a kid object
        # nobody references is collected in the fork, which closes its pipe's copy).
        self.kids: list[TreeProc] = []
        if self.depth > 1:
            for i in range(self.fanout):
                name, method = f"{self.name}.{i}", self._start_method
                kid = TreeProc(name, self.depth - 1, 1, self.pid_dir, mp_context=method)
                kid.start()
                kid.wait_ready(20)
                self.kids.append(kid)
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


def _ppid(pid: int) -> int:
    try:
        return int(Path("/proc", str(pid), "stat").read_text().rpartition(")")[2].split()[1])
    except OSError:
        return 0  # gone already


def _wait_until_gone(
    root: int, ours: set[int], pidfds: dict[int, int], deadline: float
) -> tuple[dict[int, int], float]:
    """Wait until no process but ``ours`` lives below ``root``; (what is left at ``deadline``, last exit).

    ``pidfds`` holds a pidfd (readable once that process has exited) for
    each process known to be in the tree, opened while they all lived: each
    of them is waited for whatever a walk of /proc sees. A process found
    below ``root`` that nobody knew of gets one too, and the tree is walked
    again after each exit. No polling: the only wait is ``poll()`` on the
    pidfds, until an exit or the deadline. Closes the pidfds.
    """
    exited: set[int] = set()
    poller = select.poll()
    for fd in pidfds.values():
        poller.register(fd, select.POLLIN)
    last_exit = time.monotonic()
    try:
        while True:
            found = _descendants(root).keys() | pidfds.keys()
            left = {pid: _ppid(pid) for pid in found if pid not in ours | exited}
            for pid in left.keys() - pidfds.keys():
                try:
                    pidfds[pid] = os.pidfd_open(pid)
                except ProcessLookupError:  # gone since the walk
                    exited.add(pid)
                    continue
                poller.register(pidfds[pid], select.POLLIN)
            left = {pid: ppid for pid, ppid in left.items() if pid not in exited}
            remaining = deadline - time.monotonic()
            if not left or remaining <= 0:
                return left, last_exit
            for fd, _ in poller.poll(remaining * 1000):
                poller.unregister(fd)
                exited.update(pid for pid, known in pidfds.items() if known == fd)
                last_exit = time.monotonic()
    finally:
        for fd in pidfds.values():
            os.close(fd)


def _reap() -> dict[int, int]:
    """Reap every child of ours that has exited (the top, adopted orphans); pid -> exit code."""
    codes: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return codes
        if pid == 0:
            return codes
        codes[pid] = os.waitstatus_to_exitcode(status)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(
    mode: str, method: str, depth: int, fanout: int, pid_dir: str, hang_guard: float = 10.0
) -> dict[str, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    hold = method == "fork-held"
    method = "fork" if hold else method
    chosen = None if method == "default" else method
    top = TreeProc("top", depth, fanout, pid_dir, hold=hold, mp_context=chosen)
    top.start()
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
    names = {pid: name for name, pid in pids.items()}
    pidfds = {pid: os.pidfd_open(pid) for pid in names}  # all alive: nothing is ended yet
    started = time.monotonic()
    if mode == "SIGTERM":
        os.kill(top.pid, signal.SIGTERM)
    elif mode == "SIGKILL":
        os.kill(top.pid, signal.SIGKILL)
    else:
        top.stop()
    left, last_exit = _wait_until_gone(os.getpid(), ours, pidfds, started + hang_guard)
    elapsed = last_exit - started
    shown = {pid: _cmdline(pid) for pid in left}
    codes: dict[str, int | None] = {names[pid]: code for pid, code in _reap().items() if pid in names}
    if holder.exists():
        _kill(int(holder.read_text()))
    for pid in left:  # a failed run must not leave them behind either
        _kill(pid)
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
