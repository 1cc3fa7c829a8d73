"""Hosts for tests: Linux network namespaces joined by one private network, and faults on it.

Theory of operation
-------------------
``with hosts(2) as net:`` makes two network namespaces ("hosts") and a
third, the *switch*, that joins them: each host has one interface
``eth0``, a veth pair to the switch, with the address ``10.213.K.2/24``
(K = 1, 2, ...) and its default route through the switch, which forwards
between them. Every host reaches every other one by its :attr:`Host.address`;
nothing reaches the machine's own network, and the machine does not
reach them. Names carry the creating process's id (``pf<pid>x<n>h<K>``),
so concurrent test runs never meet, and a run that was SIGKILLed is swept
by the next one.

On the way out, however the block is left (a failed assertion,
pytest-timeout, Ctrl-C), every process placed on a host is stopped (a
:class:`~pollframe.testing.harness.RunningProcess` with its escalation,
a command with ``SIGKILL``), every process still inside a namespace is
killed, and the namespaces are deleted, which deletes their interfaces:
``ip netns list`` shows none of them afterwards.

Faults:

* :meth:`Network.partition` ``(a, b)`` drops, silently and in both
  directions, every packet between two hosts (``ip rule ... blackhole``
  in the switch: what a cut cable looks like to TCP, not a refused
  connection); :meth:`Network.isolate` cuts one host from all others;
  :meth:`Network.heal` removes every cut.
* :meth:`Network.freeze` / :meth:`Network.thaw` send ``SIGSTOP`` /
  ``SIGCONT``; :meth:`Network.kill` sends ``SIGKILL`` and reaps.
* :meth:`Network.proxy` starts a :class:`~pollframe.testing.faultproxy.FaultProxy`
  on a host (delay, jitter, loss as retransmission delay, bandwidth):
  ``tc netem`` is missing from many kernels, this one included.

Placing work on a host: :meth:`Host.start` starts a ``ZmqProcess`` inside
the host's namespace with the harness's guarantees (ready handshake over
the control pipe, which works across namespaces; stopped however the test
ends); :meth:`Host.run` starts a command with ``ip netns exec``;
:meth:`Host.context` makes a ``zmq.Context`` whose sockets live on the
host (libzmq's I/O threads are started inside the namespace, and every
connection of the context is made by them); :meth:`Host.call` runs a
function there, on the host's own long-lived thread.

Needs Linux, the ``ip`` command (iproute2) and root or ``CAP_NET_ADMIN``;
otherwise :func:`hosts` raises :class:`HostsUnavailable`, a
``unittest.SkipTest``, so a pytest test that uses it is skipped with the
reason.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
from multiprocessing import resource_tracker
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest
from contextlib import contextmanager
from itertools import count
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple, TypeVar, Union

import zmq

from pollframe.testing.faultproxy import FaultProxy
from pollframe.testing.harness import RunningProcess, start_process

__all__ = [
    "Host",
    "HostsError",
    "HostsUnavailable",
    "NamespaceThread",
    "Network",
    "enter_namespace",
    "hosts",
    "hosts_unavailable",
    "inside_namespace",
]

T = TypeVar("T")

SUBNET = "10.213"
"""The first two octets of every host address: host K is ``10.213.K.2``."""

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_CAP_NET_ADMIN = 12
_NAME = re.compile(r"^pf(\d+)x(\d+)(?:h\d+|sw)$")
_serial = count(1)

Target = Union[RunningProcess, "multiprocessing.Process", subprocess.Popen, int]


class HostsUnavailable(unittest.SkipTest):
    """This machine cannot make network namespaces; the message says why."""


class HostsError(RuntimeError):
    """An ``ip`` command failed; the message holds the command and its error output."""


# --------------------------------------------------------------------------
# Namespaces and the ip command


def hosts_unavailable() -> Optional[str]:
    """Why :func:`hosts` cannot run here, or None if it can (without making anything)."""
    if not os.path.isdir("/proc/self/ns") or not os.path.exists("/proc/self/ns/net"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if not _has_net_admin():
        return "network namespaces need root or CAP_NET_ADMIN"
    if _libc() is None:
        return "libc's setns() is not reachable through ctypes"
    return None


def _has_net_admin() -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


_LIBC: List[Any] = []


def _libc() -> Any:
    if not _LIBC:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
            libc.setns  # noqa: B018  # present?
        except (OSError, AttributeError):
            libc = None
        _LIBC.append(libc)
    return _LIBC[0]


def enter_namespace(name: str) -> None:
    """Move the calling *thread* into network namespace *name* (``/run/netns/NAME``).

    Sockets it makes from then on, and threads and processes it starts,
    belong to that namespace. Other threads are not affected.
    """
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd, name)
    finally:
        os.close(fd)


def _setns(fd: int, what: str) -> None:
    if _libc().setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns into {what}: {os.strerror(errno)}")


@contextmanager
def inside_namespace(name: str) -> Iterator[None]:
    """Run the body with the calling thread in namespace *name*; it returns where it was after."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter_namespace(name)
        try:
            yield
        finally:
            _setns(original, "the original network namespace")
    finally:
        os.close(original)


_Call = Tuple[Callable[[], Any], List[Any], threading.Event]


class NamespaceThread:
    """A thread that lives inside one namespace and runs what it is given, one call at a time.

    Processes a host starts are forked from it, and it lives as long as
    the network: the kernel's parent-death signal (``PR_SET_PDEATHSIG``,
    which ``ZmqProcess`` children ask for) follows the *thread* that forked
    a child, so a child forked from a short-lived thread would be signalled
    as soon as that thread ended.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._calls: queue.Queue[Optional[_Call]] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name=f"in-{namespace}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            enter_namespace(self.namespace)
            entered: Optional[BaseException] = None
        except BaseException as exc:  # every call is answered with it
            entered = exc
        while True:
            item = self._calls.get()
            if item is None:
                return
            func, outcome, done = item
            try:
                if entered is not None:
                    raise entered
                outcome.append((True, func()))
            except BaseException as exc:  # handed to the caller
                outcome.append((False, exc))
            done.set()

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` on this thread; return or raise what it did."""
        if not self._thread.is_alive():
            raise RuntimeError(f"the thread of {self.namespace} has ended")
        outcome: List[Any] = []
        done = threading.Event()
        self._calls.put((lambda: func(*args), outcome, done))
        done.wait()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        """End the thread once the calls already given have run (its forked children are stopped by then)."""
        self._calls.put(None)
        self._thread.join(5.0)


def _ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS``; raise :class:`HostsError` with its stderr if it fails and *check*."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise HostsError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit code {done.returncode}'}")
    return done.stdout


def _namespace_pids(name: str) -> List[int]:
    out = _ip("netns", "pids", name, check=False)
    return [int(pid) for pid in out.split() if pid.isdigit()]


def _remove_namespace(name: str) -> None:
    """Kill whatever runs inside *name*, then delete it (its interfaces go with it)."""
    for pid in _namespace_pids(name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _ip("netns", "delete", name, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_namespaces() -> List[str]:
    """Delete namespaces left by a test run whose process is gone (it was SIGKILLed); return them."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    stale = []
    for name in names:
        match = _NAME.match(name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            _remove_namespace(name)
            stale.append(name)
    return stale


# --------------------------------------------------------------------------
# Hosts


class Host:
    """One network namespace on the :class:`Network`: an address, and work placed on it."""

    def __init__(self, network: Network, index: int, namespace: str) -> None:
        self.network = network
        self.index = index
        self.name = f"h{index}"
        """Short name for messages: ``h1``, ``h2``, ..."""
        self.namespace = namespace
        """The network namespace's name (``ip netns exec NAME ...``)."""
        self.address = f"{SUBNET}.{index}.2"
        """This host's IPv4 address; every other host reaches it."""
        self.gateway = f"{SUBNET}.{index}.1"
        self._thread: Optional[NamespaceThread] = None

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` inside this host, on the host's own thread, and return its result.

        Threads, processes and sockets it makes belong to the host.
        """
        if self._thread is None:
            self._thread = NamespaceThread(self.namespace)
        return self._thread.call(func, *args)

    def inside(self) -> Any:
        """``with host.inside():`` runs the block with this thread on this host.

        What matters for zmq: ``bind`` makes its listening socket on the
        calling thread, so bind inside the block (or with :meth:`call`);
        ``connect`` is made later by the context's I/O threads, so it
        follows the context (see :meth:`context`).
        """
        return inside_namespace(self.namespace)

    def context(self, io_threads: int = 1) -> zmq.Context[Any]:
        """A new ``zmq.Context`` whose sockets connect from this host.

        libzmq makes outgoing connections on its I/O threads, which start
        with the context's first socket; this starts them inside the
        namespace. A ``bind`` is made by the calling thread: do it inside
        :meth:`inside` or through :meth:`call`. Destroyed by the network at
        exit if the test did not.
        """

        def make() -> zmq.Context[Any]:
            ctx: zmq.Context[Any] = zmq.Context(io_threads)
            ctx.socket(zmq.PAIR).close(linger=0)  # starts the I/O and reaper threads here
            return ctx

        ctx = self.call(make)
        self.network._contexts.append(ctx)
        return ctx

    def start(self, process: Any, *, check_exit: bool = True, **options: Any) -> RunningProcess:
        """Start a ``ZmqProcess`` on this host, wait until it is ready, and return its handle.

        ``options`` are those of :func:`~pollframe.testing.harness.start_process`
        (``ready_timeout``, ``stop``, ``stop_timeout``, ...). The child is
        forked (or spawned) from a thread inside the namespace, so it lives
        there; unless it was given ``fork``, it is spawned (``forkserver``,
        ZmqProcess's default, forks from a server outside the namespace). The network shuts it
        down at exit if the test did not; with ``check_exit`` (the default)
        :meth:`Network.check_clean_exits` then fails unless it exited cleanly.
        """
        if getattr(process, "_start_method", None) != "fork":  # None: forkserver, by default
            process._start_method = "spawn"
            # spawn starts multiprocessing's resource tracker on first use: start it here, outside,
            # or it would live in this namespace and die with it.
            resource_tracker.ensure_running()

        handle = start_process(process, launch=lambda proc: self.call(proc.start), **options)
        self.network._running.append(handle)
        if check_exit:
            self.network._checked.append(handle)
        return handle

    def run(self, args: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start the command *args* on this host (``ip netns exec``); it is killed at exit.

        ``popen`` goes to :class:`subprocess.Popen` (``stdout=PIPE``, ``env``, ...).
        ``ip netns exec`` replaces itself with the command, so the Popen's
        pid is the command's.
        """
        proc = subprocess.Popen(["ip", "netns", "exec", self.namespace, *args], **popen)
        self.network._commands.append(proc)
        return proc

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} netns={self.namespace}>"


class Network:
    """Hosts joined through one switch namespace; made by :func:`hosts`."""

    def __init__(self, count_: int) -> None:
        if count_ < 1:
            raise ValueError(f"a network needs at least one host, not {count_}")
        prefix = f"pf{os.getpid()}x{next(_serial)}"
        self.switch = f"{prefix}sw"
        self.hosts = [Host(self, k, f"{prefix}h{k}") for k in range(1, count_ + 1)]
        self._cuts: Set[Tuple[str, str]] = set()
        self._running: List[RunningProcess] = []
        self._checked: List[RunningProcess] = []  # placed with check_exit: see check_clean_exits()
        self._commands: List[subprocess.Popen[Any]] = []
        self._contexts: List[zmq.Context[Any]] = []
        self._proxies: List[FaultProxy] = []
        self._made: List[str] = []

    def __getitem__(self, index: int) -> Host:
        return self.hosts[index]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def namespaces(self) -> List[str]:
        """Every namespace this network made: the switch and the hosts."""
        return [self.switch] + [host.namespace for host in self.hosts]

    # ----------------------------------------------------------------- build

    def build(self) -> None:
        """Make the namespaces and links; on any failure, remove what was made and raise."""
        try:
            _ip("netns", "add", self.switch)
        except HostsError as exc:
            raise HostsUnavailable(f"pollframe.testing.hosts: cannot make a namespace: {exc}") from exc
        self._made.append(self.switch)
        try:
            _ip("-n", self.switch, "link", "set", "lo", "up")
            with open(os.devnull, "w") as quiet:
                subprocess.run(["ip", "netns", "exec", self.switch, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                               check=True, stdout=quiet, timeout=30)
            for host in self.hosts:
                self._add_namespace(host.namespace)
                port = f"p{host.index}"
                _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", host.namespace)
                _ip("-n", self.switch, "addr", "add", f"{host.gateway}/24", "dev", port)
                _ip("-n", self.switch, "link", "set", port, "up")
                _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
                _ip("-n", host.namespace, "link", "set", "eth0", "up")
                _ip("-n", host.namespace, "link", "set", "lo", "up")
                _ip("-n", host.namespace, "route", "add", "default", "via", host.gateway)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)

    # ---------------------------------------------------------------- faults

    def partition(self, a: Host, b: Host) -> None:
        """Drop every packet between *a* and *b*, both ways, silently, until :meth:`heal`."""
        if a is b:
            raise ValueError(f"{a.name} cannot be cut from itself")
        for src, dst in ((a, b), (b, a)):
            if (src.address, dst.address) not in self._cuts:
                _ip("-n", self.switch, "rule", "add", "from", src.address, "to", dst.address, "blackhole")
                self._cuts.add((src.address, dst.address))

    def isolate(self, host: Host) -> None:
        """Cut *host* from every other host (see :meth:`partition`)."""
        for other in self.hosts:
            if other is not host:
                self.partition(host, other)

    def heal(self) -> None:
        """Remove every cut made by :meth:`partition` or :meth:`isolate`."""
        for src, dst in sorted(self._cuts):
            _ip("-n", self.switch, "rule", "del", "from", src, "to", dst, "blackhole", check=False)
        self._cuts.clear()

    @property
    def cuts(self) -> Set[Tuple[str, str]]:
        """The (from, to) address pairs dropped now."""
        return set(self._cuts)

    def freeze(self, target: Target, timeout: float = 5.0) -> None:
        """``SIGSTOP`` a process (its handle, a ``Popen``, a ``Process`` or a pid); return once it is stopped.

        A stop signal takes effect when the target next runs; this waits
        (polling ``/proc/PID/stat`` up to *timeout* s) until the kernel
        shows it stopped, so the test's next step meets a frozen process.
        """
        pid = _pid_of(target)
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while _process_state(pid) not in ("T", "t", None):
            if time.monotonic() > deadline:
                raise HostsError(f"pid {pid} was not stopped {timeout} s after SIGSTOP")
            _pause.wait(0.001)

    def thaw(self, target: Target) -> None:
        """``SIGCONT`` a process frozen by :meth:`freeze` (it runs again when this returns)."""
        os.kill(_pid_of(target), signal.SIGCONT)

    def kill(self, target: Target, timeout: float = 5.0) -> Optional[int]:
        """``SIGKILL`` a process and wait up to *timeout* s for it; return its exit code if known."""
        pid = _pid_of(target)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if isinstance(target, RunningProcess):
            target.process.join(timeout)
            return target.exitcode
        if isinstance(target, multiprocessing.Process):
            target.join(timeout)
            return target.exitcode
        if isinstance(target, subprocess.Popen):
            return target.wait(timeout)
        return None

    def proxy(self, host: Host, target: Tuple[str, int], *, port: int = 0, **faults: Any) -> FaultProxy:
        """Start a :class:`FaultProxy` listening on *host*'s address, forwarding to *target*.

        Its connections to *target* are made from *host* too, so a
        partition of *host* cuts them. ``faults``: ``delay``, ``jitter``,
        ``loss``, ``retransmit_delay``, ``bandwidth``, ``seed``. Closed at exit.
        """
        proxy = FaultProxy(target, listen=(host.address, port),
                           thread_init=lambda: enter_namespace(host.namespace), **faults)
        proxy.start()
        self._proxies.append(proxy)
        return proxy

    # --------------------------------------------------------------- cleanup

    def check_clean_exits(self) -> None:
        """Fail unless every process placed with :meth:`Host.start` ended on its stop request with code 0.

        Call after :meth:`close` (the ``hosts`` fixture does, when the test passed).
        """
        __tracebackhide__ = True
        for handle in self._checked:
            handle.check_clean_exit()

    def close(self) -> None:
        """Stop everything placed on the hosts and delete the namespaces. Safe to call twice."""
        errors: List[BaseException] = []
        for proxy in self._proxies:
            _collect(errors, proxy.close)
        for handle in reversed(self._running):
            _collect(errors, handle.shutdown)
        for proc in self._commands:
            if proc.poll() is None:
                _collect(errors, _kill_popen, proc)
        for ctx in self._contexts:
            _collect(errors, ctx.destroy, 0)
        for host in self.hosts:
            if host._thread is not None:
                _collect(errors, host._thread.close)
                host._thread = None
        for name in reversed(self._made):
            _collect(errors, _remove_namespace, name)
        self._proxies, self._running, self._commands, self._contexts, self._made = [], [], [], [], []
        self._cuts.clear()
        if errors:
            raise errors[0]


def _collect(errors: List[BaseException], func: Callable[..., Any], *args: Any) -> None:
    try:
        func(*args)
    except Exception as exc:  # every step of the cleanup runs; the first error is raised after
        errors.append(exc)


def _kill_popen(proc: subprocess.Popen[Any]) -> None:
    proc.kill()
    proc.wait(5.0)


_pause = threading.Event()  # never set: its wait() is a sleep that a poll loop can use


def _process_state(pid: int) -> Optional[str]:
    """The state letter of /proc/PID/stat (``R``, ``S``, ``T`` ...); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _pid_of(target: Target) -> int:
    if isinstance(target, int):
        return target
    pid = target.pid
    if pid is None:
        raise ValueError(f"{target!r} has no pid: it was never started")
    return int(pid)


@contextmanager
def hosts(count_: int = 2) -> Iterator[Network]:
    """Make *count_* hosts on one private network; remove everything when the block is left.

    Raises :class:`HostsUnavailable` (a ``unittest.SkipTest``: pytest
    skips the test) without root/CAP_NET_ADMIN or the ``ip`` command.
    """
    reason = hosts_unavailable()
    if reason is not None:
        raise HostsUnavailable(f"pollframe.testing.hosts: {reason}")
    sweep_stale_namespaces()
    network = Network(count_)
    network.build()
    try:
        yield network
    finally:
        network.close()


def our_namespaces() -> Dict[str, List[str]]:
    """Namespaces made by this process that still exist, by network prefix (for leak checks)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return {}
    found: Dict[str, List[str]] = {}
    for name in names:
        match = _NAME.match(name)
        if match and int(match.group(1)) == os.getpid():
            found.setdefault(f"pf{match.group(1)}x{match.group(2)}", []).append(name)
    return found
