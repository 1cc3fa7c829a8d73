"""The hosts kit itself: namespaces made and always removed, cuts that cut only what they say.

Needs root or CAP_NET_ADMIN (CI has it); elsewhere every test here is
skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Callable

import pytest
import zmq

from pollframe.testing.hosts import (
    NETNS_DIR,
    HostsUnavailable,
    _process_state,
    Network,
    hosts,
    our_namespaces,
    sweep_stale_namespaces,
)

pytestmark = [pytest.mark.system, pytest.mark.multihost, pytest.mark.timeout(30)]

Hosts = Callable[..., Network]


def namespaces_listed() -> set[str]:
    """What ``ip netns list`` shows: the proof a user would look at."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def reaches(net: Network, src: int, dst: int, timeout: float = 0.5) -> bool:
    """Whether host *src* can open a TCP connection to a listener on host *dst*."""
    listener = net[dst].call(lambda: __import__("socket").create_server((net[dst].address, 0)))
    port = listener.getsockname()[1]
    try:
        def connect() -> bool:
            import socket

            try:
                socket.create_connection((net[dst].address, port), timeout=timeout).close()
            except OSError:
                return False
            return True

        return net[src].call(connect)
    finally:
        listener.close()


def test_hosts_reach_each_other_by_address_and_are_gone_after_the_block() -> None:
    with hosts(3) as net:
        made = set(net.namespaces)
        assert made <= namespaces_listed()
        assert reaches(net, 0, 1) and reaches(net, 2, 0)
    assert not made & namespaces_listed()
    assert our_namespaces() == {}


def test_everything_is_removed_even_when_the_block_raises_with_processes_running() -> None:
    with pytest.raises(RuntimeError, match="the test failed"):
        with hosts(2) as net:
            made = set(net.namespaces)
            # sleep-ok: the child only has to live until it is killed
            sleeper = net[0].run([sys.executable, "-c", "import time; time.sleep(60)"])  # sleep-ok
            raise RuntimeError("the test failed")
    assert sleeper.poll() == -signal.SIGKILL
    assert not made & namespaces_listed()


def test_a_partition_cuts_only_the_two_hosts_until_healed(hosts: Hosts) -> None:
    net = hosts(3)
    net.partition(net[0], net[1])
    assert not reaches(net, 0, 1, timeout=0.3) and not reaches(net, 1, 0, timeout=0.3)
    assert reaches(net, 0, 2) and reaches(net, 1, 2)
    net.heal()
    assert reaches(net, 0, 1) and net.cuts == set()


def test_isolate_cuts_one_host_from_all_the_others(hosts: Hosts) -> None:
    net = hosts(3)
    net.isolate(net[2])
    assert not reaches(net, 0, 2, timeout=0.3) and not reaches(net, 2, 1, timeout=0.3)
    assert reaches(net, 0, 1)


def test_a_context_made_for_a_host_connects_from_that_host(hosts: Hosts) -> None:
    net = hosts(2)
    a, b = net
    server_ctx, client_ctx = b.context(), a.context()
    rep = server_ctx.socket(zmq.ROUTER)
    b.call(rep.bind, f"tcp://{b.address}:0")
    endpoint = rep.getsockopt_string(zmq.LAST_ENDPOINT)
    req = client_ctx.socket(zmq.DEALER)
    req.connect(endpoint)
    req.send(b"hello")
    assert rep.poll(5000)
    frame = rep.recv_multipart(copy=False)[1]
    assert frame.get("Peer-Address") == a.address
    for sock in (rep, req):
        sock.close(linger=0)


def test_a_bind_outside_the_host_cannot_use_its_address(hosts: Hosts) -> None:
    net = hosts(1)
    with zmq.Context() as ctx, ctx.socket(zmq.REP) as sock:
        with pytest.raises(zmq.ZMQError):
            sock.bind(f"tcp://{net[0].address}:0")  # the test's own thread is not on the host
        with net[0].inside():
            sock.bind(f"tcp://{net[0].address}:0")
        sock.close(linger=0)


def test_freeze_and_thaw_stop_and_continue_a_command(hosts: Hosts) -> None:
    net = hosts(1)
    proc = net[0].run([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    net.freeze(proc)
    assert _process_state(proc.pid) == "T"  # stopped when freeze() returns
    net.thaw(proc)
    assert _process_state(proc.pid) != "T"
    proc.stdin.close()
    assert proc.wait(10) == 0


def test_kill_ends_a_command_with_sigkill(hosts: Hosts) -> None:
    net = hosts(1)
    proc = net[0].run([sys.executable, "-c", "import time; time.sleep(60)"])  # sleep-ok: lives until killed
    assert net.kill(proc) == -signal.SIGKILL


def test_namespaces_left_by_a_killed_run_are_swept_by_the_next(tmp_path: Any) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = f"pf{dead.pid}x1h1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        assert stale in sweep_stale_namespaces()
        assert not os.path.exists(os.path.join(NETNS_DIR, stale))
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)


def test_without_net_admin_hosts_skip_and_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import pollframe.testing.hosts as kit

    monkeypatch.setattr(kit, "_has_net_admin", lambda: False)
    with pytest.raises(HostsUnavailable, match="root or CAP_NET_ADMIN"):
        with hosts(2):
            pass
    assert issubclass(HostsUnavailable, __import__("unittest").SkipTest)
