"""CURVE and ZAP on the loop: who gets in, who does not, and the key files.

Every scenario runs real sockets on 127.0.0.1 with the loop driven in the
test (conftest.py's ``ctx`` and ``loop`` fixtures, the kit's ``run_until``).
A refusal is first observed as a handshake-failure event on the server's
monitor; only then does an allowed client send, and its message arriving
alone proves that nothing from the refused client reached the server
callback.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
from typing import Any, Callable, Iterator, List, Optional

import pytest
import zmq
from zmq.auth import load_certificate
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from pollframe.auth import (
    apply_curve,
    CURVE_ALLOW_ANY,
    AuthError,
    KeyFileError,
    LoopAuthenticator,
    create_keypair,
    curve_client,
    curve_server,
    is_loopback,
    load_keypair,
    normalise_address,
    public_key,
    require_zap,
    running_authenticator,
    SessionGuard,
    start_auth,
)
from pollframe.codec import JsonCodec
from pollframe.handler import MessageHandler, message
from pollframe.loop import PollLoop
from pollframe.stream import Stream
from pollframe.testing import run_until

pytestmark = pytest.mark.timeout(20)

Configure = Callable[[zmq.Socket[Any]], Any]
Refused = Callable[..., dict[str, Any]]

HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


@pytest.fixture
def server_keys() -> tuple[bytes, bytes]:
    return zmq.curve_keypair()


@pytest.fixture
def friend_keys() -> tuple[bytes, bytes]:
    return zmq.curve_keypair()


@pytest.fixture
def auth(
    ctx: zmq.Context[Any], loop: PollLoop, friend_keys: tuple[bytes, bytes]
) -> Iterator[LoopAuthenticator]:
    authenticator = start_auth(ctx, loop, allow_keys=[friend_keys[0]])
    yield authenticator
    authenticator.stop()


class Server:
    """A PULL socket on the loop that records messages and handshake events."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        loop: PollLoop,
        configure: Callable[[zmq.Socket[Any]], Any],
        interface: str = "127.0.0.1",
    ) -> None:
        self.sock = ctx.socket(zmq.PULL)
        self.sock.linger = 0
        configure(self.sock)
        if ":" in interface:
            self.sock.ipv6 = True
        self.port = self.sock.bind_to_random_port(f"tcp://{interface}")
        self.monitor = self.sock.get_monitor_socket(HANDSHAKE_FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.received: List[List[bytes]] = []
        self.failures: List[dict[str, Any]] = []
        loop.register(self.sock, self.received.append)
        loop.register(self.monitor, self._on_event)

    def _on_event(self, frames: List[bytes]) -> None:
        event = parse_monitor_message(frames)
        if event["event"] & HANDSHAKE_FAILED:
            self.failures.append(dict(event))

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


@pytest.fixture
def make_server(ctx: zmq.Context[Any], loop: PollLoop) -> Iterator[Callable[..., Server]]:
    servers: List[Server] = []

    def make(configure: Callable[[zmq.Socket[Any]], Any], interface: str = "127.0.0.1") -> Server:
        server = Server(ctx, loop, configure, interface)
        servers.append(server)
        return server

    yield make
    for server in servers:
        loop.unregister(server.monitor)
        loop.unregister(server.sock)
        server.sock.disable_monitor()
        server.monitor.close(linger=0)
        server.sock.close(linger=0)


@pytest.fixture
def curve_srv(
    make_server: Callable[..., Server], auth: LoopAuthenticator, server_keys: tuple[bytes, bytes]
) -> Server:
    return make_server(lambda sock: curve_server(sock, server_keys[1]))


class Clients:
    """PUSH clients kept alive until the test ends (pyzmq closes a collected socket)."""

    def __init__(self, ctx: zmq.Context[Any]) -> None:
        self.ctx = ctx
        self.socks: List[zmq.Socket[Any]] = []

    def send(
        self,
        endpoint: str,
        payload: bytes,
        configure: Optional[Callable[[zmq.Socket[Any]], Any]] = None,
        source: Optional[str] = None,
    ) -> zmq.Socket[Any]:
        """Connect a client (optionally from *source* IP) and queue *payload*."""
        sock = self.ctx.socket(zmq.PUSH)
        self.socks.append(sock)
        sock.linger = 0
        if configure is not None:
            configure(sock)
        sock.connect(endpoint.replace("tcp://", f"tcp://{source}:0;") if source else endpoint)
        sock.send(payload, zmq.NOBLOCK)
        return sock


@pytest.fixture
def clients(ctx: zmq.Context[Any]) -> Iterator[Clients]:
    made = Clients(ctx)
    yield made
    for sock in made.socks:
        sock.close(linger=0)


def assert_refused_then_friend_served(
    clients: Clients,
    loop: PollLoop,
    server: Server,
    intruder: Optional[Configure],
    friend: Optional[Configure],
    intruder_source: Optional[str] = None,
    friend_source: Optional[str] = None,
) -> dict[str, Any]:
    """The intruder's handshake fails, then the friend's message arrives alone."""
    clients.send(server.endpoint, b"intruder", intruder, intruder_source)
    run_until(loop, lambda: bool(server.failures))
    clients.send(server.endpoint, b"friend", friend, friend_source)
    run_until(loop, lambda: bool(server.received))
    assert server.received == [[b"friend"]]
    return server.failures[0]


def assert_served(clients: Clients, loop: PollLoop, server: Server, client: Configure) -> None:
    """A client configured by ``client`` gets its message to the server."""
    clients.send(server.endpoint, b"hello", client)
    run_until(loop, lambda: bool(server.received))
    assert server.received == [[b"hello"]]


def curve_client_of(secret: bytes, server_public: bytes) -> Configure:
    """Configures a socket as a CURVE client with ``secret``, trusting ``server_public``."""
    return lambda sock: curve_client(sock, secret, server_public)


@pytest.fixture
def friend(server_keys: tuple[bytes, bytes], friend_keys: tuple[bytes, bytes]) -> Configure:
    """A CURVE client with the allowed key pair."""
    return curve_client_of(friend_keys[1], server_keys[0])


@pytest.fixture
def stranger(server_keys: tuple[bytes, bytes]) -> Configure:
    """A CURVE client with a key pair no one allowed."""
    return curve_client_of(zmq.curve_keypair()[1], server_keys[0])


@pytest.fixture
def refused(clients: Clients, loop: PollLoop, curve_srv: Server, friend: Configure) -> Refused:
    """``refused(intruder, ...)``: the intruder is refused by ``curve_srv``, then the friend served alone.

    Returns the intruder's handshake-failure event.
    """

    def check(
        intruder: Optional[Configure],
        *,
        intruder_source: Optional[str] = None,
        friend_source: Optional[str] = None,
    ) -> dict[str, Any]:
        return assert_refused_then_friend_served(
            clients, loop, curve_srv, intruder, friend, intruder_source, friend_source
        )

    return check


# ---------------------------------------------------------------------------
# Who gets in


def test_a_client_with_an_allowed_key_is_served(
    clients: Clients, loop: PollLoop, curve_srv: Server, friend: Configure
) -> None:
    assert_served(clients, loop, curve_srv, friend)
    assert curve_srv.failures == []


def test_a_client_with_an_unknown_key_is_refused_by_zap(refused: Refused, stranger: Configure) -> None:
    failure = refused(stranger)
    assert failure["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert failure["value"] == 400


def test_a_curve_client_without_a_key_pair_of_its_own_is_refused(
    refused: Refused, server_keys: tuple[bytes, bytes]
) -> None:
    def server_key_only(sock: zmq.Socket[Any]) -> None:
        sock.curve_serverkey = server_keys[0]

    assert refused(server_key_only)["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


def test_a_plain_null_client_is_refused(refused: Refused) -> None:
    assert refused(None)["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


def test_a_client_that_trusts_another_server_key_is_refused_even_with_an_allowed_key(
    refused: Refused, friend_keys: tuple[bytes, bytes]
) -> None:
    other_server_public = zmq.curve_keypair()[0]
    failure = refused(curve_client_of(friend_keys[1], other_server_public))
    assert failure["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


# ---------------------------------------------------------------------------
# IP allow and deny lists (127.0.0.2 is a second loopback source on Linux)


def _has_second_loopback() -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


needs_second_loopback = pytest.mark.skipif(
    not _has_second_loopback(), reason="127.0.0.2 is not a usable source address here"
)


@needs_second_loopback
@pytest.mark.parametrize(
    "listing, address",
    [(LoopAuthenticator.deny, "127.0.0.2"), (LoopAuthenticator.allow, "127.0.0.1")],
    ids=["deny-the-intruders-ip", "allow-only-the-friends-ip"],
)
def test_an_ip_list_refuses_the_intruders_address_while_the_friends_is_served(
    refused: Refused,
    auth: LoopAuthenticator,
    friend: Configure,
    listing: Callable[[LoopAuthenticator, str], Any],
    address: str,
) -> None:
    listing(auth, address)
    failure = refused(friend, intruder_source="127.0.0.2", friend_source="127.0.0.1")  # same keys
    assert failure["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH


def test_an_allowed_ip_still_needs_an_allowed_key(
    refused: Refused, auth: LoopAuthenticator, stranger: Configure
) -> None:
    auth.allow("127.0.0.1")
    refused(stranger)


@needs_second_loopback
def test_require_zap_applies_the_ip_lists_to_a_null_server(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
) -> None:
    auth.deny("127.0.0.2")
    server = make_server(require_zap)
    assert_refused_then_friend_served(clients, loop, server, None, None, "127.0.0.2", "127.0.0.1")


# ---------------------------------------------------------------------------
# Never a CURVE server without a ZAP handler


@pytest.fixture
def sock(ctx: zmq.Context[Any]) -> Iterator[zmq.Socket[Any]]:
    """A PULL socket, neither bound nor connected, closed at teardown."""
    made = ctx.socket(zmq.PULL)
    yield made
    made.close(linger=0)


def test_curve_server_refuses_without_a_running_authenticator(
    sock: zmq.Socket[Any], server_keys: tuple[bytes, bytes]
) -> None:
    with pytest.raises(AuthError, match="no LoopAuthenticator"):
        curve_server(sock, server_keys[1])
    assert sock.mechanism == zmq.NULL
    assert sock.curve_server == 0


def test_curve_server_refuses_again_once_the_authenticator_stopped(
    ctx: zmq.Context[Any], sock: zmq.Socket[Any], auth: LoopAuthenticator, server_keys: tuple[bytes, bytes]
) -> None:
    auth.stop()
    assert running_authenticator(ctx) is None
    with pytest.raises(AuthError):
        curve_server(sock, server_keys[1])
    assert sock.mechanism == zmq.NULL


def test_a_curve_server_refuses_even_allowed_clients_after_the_authenticator_stops(
    clients: Clients, loop: PollLoop, curve_srv: Server, auth: LoopAuthenticator, friend: Configure
) -> None:
    auth.stop()
    clients.send(curve_srv.endpoint, b"friend", friend)
    run_until(loop, lambda: bool(curve_srv.failures))
    assert curve_srv.received == []


def test_security_set_after_bind_is_refused(
    sock: zmq.Socket[Any], auth: LoopAuthenticator, server_keys: tuple[bytes, bytes]
) -> None:
    sock.bind_to_random_port("tcp://127.0.0.1")
    with pytest.raises(AuthError, match="before bind"):
        curve_server(sock, server_keys[1])
    assert sock.mechanism == zmq.NULL


def test_apply_curve_makes_a_server_and_a_client_that_talk(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    friend_keys: tuple[bytes, bytes],
) -> None:
    server = make_server(lambda s: apply_curve(s, server_secret=server_keys[1]))
    assert_served(clients, loop, server,
                  lambda s: apply_curve(s, client_secret=friend_keys[1], server_public=server_keys[0]))
    assert server.sock.mechanism == zmq.CURVE


def test_apply_curve_without_keys_leaves_the_socket_alone(sock: zmq.Socket[Any]) -> None:
    apply_curve(sock)
    assert sock.mechanism == zmq.NULL


@pytest.mark.parametrize(
    "given",
    [
        ("server_secret", "client_secret"),
        ("server_secret", "server_public"),
        ("client_secret",),
        ("server_public",),
    ],
    ids="+".join,
)
def test_apply_curve_refuses_a_mix_of_roles(sock: zmq.Socket[Any], given: tuple[str, ...]) -> None:
    public, secret = zmq.curve_keypair()
    keys: dict[str, Any] = {name: secret if name.endswith("secret") else public for name in given}
    with pytest.raises(ValueError):
        apply_curve(sock, **keys)
    assert sock.mechanism == zmq.NULL


# ---------------------------------------------------------------------------
# The authenticator itself


def test_stop_is_idempotent_and_safe_after_the_loop_and_context_are_gone(
    ctx: zmq.Context[Any], loop: PollLoop
) -> None:
    auth = start_auth(ctx, loop)
    loop.close()
    ctx.destroy(linger=0)
    auth.stop()
    auth.stop()
    assert not auth.running


def test_the_authenticator_starts_no_thread(ctx: zmq.Context[Any], loop: PollLoop) -> None:
    before = set(threading.enumerate())
    with LoopAuthenticator(ctx, loop) as auth:
        assert running_authenticator(ctx) is auth
        assert set(threading.enumerate()) == before


def test_a_second_authenticator_on_the_same_context_is_refused(
    ctx: zmq.Context[Any], loop: PollLoop, auth: LoopAuthenticator
) -> None:
    with pytest.raises(AuthError, match="already bound"):
        LoopAuthenticator(ctx, loop).start()
    assert running_authenticator(ctx) is auth


def test_an_authenticator_can_be_restarted_at_once_on_the_same_context(
    ctx: zmq.Context[Any], loop: PollLoop
) -> None:
    for _ in range(50):
        auth = LoopAuthenticator(ctx, loop)
        auth.start()
        auth.stop()
    assert running_authenticator(ctx) is None


class Provider:
    """A credentials callback: admits *good*, raises or suspends on *bad*."""

    def __init__(self, good: bytes, bad: bytes, suspend: bool = False) -> None:
        self.good, self.bad, self.suspend = good, bad, suspend

    async def callback(self, domain: str, key: bytes) -> bool:
        if key == self.bad:
            if self.suspend:
                await asyncio.sleep(0)  # suspends: no event loop will resume it
            else:
                raise RuntimeError("credentials store unavailable")
        return key == self.good


@pytest.mark.parametrize("suspend", [False, True], ids=["raises", "suspends"])
def test_a_failing_credentials_callback_refuses_with_500_and_zap_keeps_serving(
    refused: Refused,
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    friend_keys: tuple[bytes, bytes],
    suspend: bool,
) -> None:
    bad_public, bad_secret = zmq.curve_keypair()
    auth.configure_curve_callback("*", Provider(friend_keys[0], bad_public, suspend))
    failure = refused(curve_client_of(bad_secret, server_keys[0]))
    assert failure["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert failure["value"] == 500
    assert auth.failures >= 1


def test_curve_allow_any_must_be_asked_for_explicitly(ctx: zmq.Context[Any], loop: PollLoop) -> None:
    auth = LoopAuthenticator(ctx, loop)
    with pytest.raises(TypeError):
        auth.configure_curve("*")
    auth.configure_curve("*", CURVE_ALLOW_ANY)
    assert auth.allows_any("*")


def test_curve_allow_any_admits_an_unknown_key(
    clients: Clients, loop: PollLoop, curve_srv: Server, auth: LoopAuthenticator, stranger: Configure
) -> None:
    auth.configure_curve("*", CURVE_ALLOW_ANY)
    assert_served(clients, loop, curve_srv, stranger)


def test_a_missing_key_directory_is_an_error_naming_it_not_a_log_line(
    ctx: zmq.Context[Any], loop: PollLoop, tmp_path: Any
) -> None:
    with pytest.raises(KeyFileError, match="absent: cannot be listed") as caught:
        LoopAuthenticator(ctx, loop).configure_curve("*", tmp_path / "absent")
    assert caught.value.path == str(tmp_path / "absent")


def test_a_server_on_its_own_domain_checks_only_that_domains_keys(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    friend: Configure,
) -> None:
    db_public, db_secret = zmq.curve_keypair()
    auth.allow_keys(db_public, domain="db")
    server = make_server(lambda s: curve_server(s, server_keys[1], domain="db"))
    db_client = curve_client_of(db_secret, server_keys[0])
    assert_refused_then_friend_served(clients, loop, server, friend, db_client)  # friend: allowed on "*" only


# ---------------------------------------------------------------------------
# Key files


def test_create_keypair_writes_the_secret_file_with_mode_0600_whatever_the_umask(
    tmp_path: Any,
) -> None:
    old = os.umask(0)
    try:
        public_file, secret_file = create_keypair(tmp_path, "server")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(public_file).st_mode) == 0o644


def test_create_keypair_makes_a_missing_directory_private(tmp_path: Any) -> None:
    create_keypair(tmp_path / "keys", "server")
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700


def test_a_key_pair_file_loads_back_as_a_matching_pair(tmp_path: Any) -> None:
    public_file, secret_file = create_keypair(tmp_path, "server")
    public, secret = load_keypair(secret_file)
    assert public_key(secret) == public
    assert load_certificate(public_file) == (public, None)
    with pytest.raises(KeyFileError, match="no secret key"):
        load_keypair(public_file)


def test_create_keypair_never_overwrites_a_key(tmp_path: Any) -> None:
    _, secret_file = create_keypair(tmp_path, "server")
    before = open(secret_file).read()
    with pytest.raises(FileExistsError):
        create_keypair(tmp_path, "server")
    assert open(secret_file).read() == before


def test_clients_whose_public_key_file_is_in_the_directory_are_served(
    clients: Clients,
    ctx: zmq.Context[Any],
    loop: PollLoop,
    tmp_path: Any,
    server_keys: tuple[bytes, bytes],
    stranger: Configure,
) -> None:
    _, client_secret_file = create_keypair(tmp_path / "clients", "alice")
    with LoopAuthenticator(ctx, loop) as auth:
        auth.configure_curve("*", tmp_path / "clients")
        server = Server(ctx, loop, lambda s: curve_server(s, server_keys[1]))
        try:
            _, alice_secret = load_keypair(client_secret_file)
            assert_refused_then_friend_served(
                clients, loop, server, stranger, curve_client_of(alice_secret, server_keys[0])
            )
        finally:
            loop.unregister(server.monitor)
            loop.unregister(server.sock)


def test_raw_32_byte_keys_work_like_z85_keys(
    clients: Clients,
    loop: PollLoop,
    curve_srv: Server,
    server_keys: tuple[bytes, bytes],
    friend_keys: tuple[bytes, bytes],
) -> None:
    raw_secret = z85.decode(friend_keys[1])
    raw_server = z85.decode(server_keys[0])
    assert len(raw_secret) == 32
    assert_served(clients, loop, curve_srv, curve_client_of(raw_secret, raw_server))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666, 0o620])
def test_a_secret_key_file_open_to_group_or_others_is_refused_naming_the_file_and_its_mode(
    tmp_path: Any, mode: int
) -> None:
    _, secret_file = create_keypair(tmp_path, "server")
    os.chmod(secret_file, mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}") as caught:
        load_keypair(secret_file)
    assert caught.value.path == secret_file
    assert secret_file in str(caught.value)


def test_a_secret_key_file_open_to_others_loads_when_the_caller_says_so(tmp_path: Any) -> None:
    public_file, secret_file = create_keypair(tmp_path, "server")
    os.chmod(secret_file, 0o644)
    public, secret = load_keypair(secret_file, allow_open_permissions=True)
    assert public_key(secret) == public == load_certificate(public_file)[0]


def test_a_secret_key_file_whose_keys_do_not_belong_together_is_refused(tmp_path: Any) -> None:
    _, secret_file = create_keypair(tmp_path, "server")
    other_public = zmq.curve_keypair()[0].decode()
    text = open(secret_file).read()
    original_public = load_keypair(secret_file)[0].decode()
    with open(secret_file, "w") as f:
        f.write(text.replace(original_public, other_public))
    with pytest.raises(KeyFileError, match="does not belong"):
        load_keypair(secret_file)


# ---------------------------------------------------------------------------
# Reloading a key directory fails closed


def _break_empty(path: Any) -> None:
    path.write_bytes(b"")


def _break_directory(path: Any) -> None:
    path.mkdir()


def _break_dangling_link(path: Any) -> None:
    path.symlink_to(path.parent / "nowhere")


def _break_not_a_certificate(path: Any) -> None:
    path.write_text('metadata\ncurve\n    public-key = "not a key"\n')


BROKEN_KEY_FILES = [_break_empty, _break_directory, _break_dangling_link, _break_not_a_certificate]


@pytest.fixture
def key_dir(tmp_path: Any) -> Any:
    """A directory holding alice.key and bob.key; their secrets are kept elsewhere."""
    directory = tmp_path / "clients"
    directory.mkdir()
    for name in ("alice", "bob"):
        public_file, secret_file = create_keypair(tmp_path / "secrets", name)
        os.rename(public_file, directory / f"{name}.key")
    return directory


def secret_of(key_dir: Any, name: str) -> bytes:
    return load_keypair(key_dir.parent / "secrets" / f"{name}.key_secret")[1]


@pytest.mark.parametrize("breakage", BROKEN_KEY_FILES, ids=lambda f: f.__name__[len("_break_"):])
def test_a_reload_with_a_broken_key_file_raises_naming_it_and_never_admits_a_removed_key(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    key_dir: Any,
    breakage: Callable[[Any], None],
) -> None:
    auth.configure_curve("*", key_dir)
    server = make_server(lambda s: curve_server(s, server_keys[1]))
    alice = curve_client_of(secret_of(key_dir, "alice"), server_keys[0])
    bob = curve_client_of(secret_of(key_dir, "bob"), server_keys[0])
    assert_served(clients, loop, server, alice)

    (key_dir / "alice.key").unlink()  # alice is revoked ...
    breakage(key_dir / "carol.key")  # ... in the same reload that meets a broken file
    with pytest.raises(KeyFileError) as caught:
        auth.configure_curve("*", key_dir)
    assert caught.value.path == str(key_dir / "carol.key")
    assert "carol.key" in str(caught.value)

    server.received.clear()
    clients.send(server.endpoint, b"alice again", alice)
    run_until(loop, lambda: len(server.failures) == 1)
    clients.send(server.endpoint, b"bob", bob)  # the domain admits nobody until a good reload
    run_until(loop, lambda: len(server.failures) == 2)

    carol = key_dir / "carol.key"
    carol.rmdir() if carol.is_dir() and not carol.is_symlink() else carol.unlink()
    auth.configure_curve("*", key_dir)
    assert_served(clients, loop, server, bob)
    assert [f["event"] for f in server.failures] == [zmq.EVENT_HANDSHAKE_FAILED_AUTH] * 2


def test_a_failed_reload_of_one_domain_leaves_the_other_domains_as_they_were(
    auth: LoopAuthenticator, key_dir: Any, friend_keys: tuple[bytes, bytes]
) -> None:
    auth.configure_curve("db", key_dir)
    _break_empty(key_dir / "broken.key")
    with pytest.raises(KeyFileError):
        auth.configure_curve("db", key_dir)
    assert auth.curve_verdict("db", load_keypair(key_dir.parent / "secrets" / "bob.key_secret")[0]) == (
        False, b"Unknown key")
    assert auth.curve_verdict("*", friend_keys[0]) == (True, b"OK")


# ---------------------------------------------------------------------------
# CURVE_ALLOW_ANY belongs to one domain


def test_allow_any_on_one_domain_still_checks_keys_on_the_others(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    friend: Configure,
    stranger: Configure,
) -> None:
    auth.configure_curve("public", CURVE_ALLOW_ANY)
    public = make_server(lambda s: curve_server(s, server_keys[1], domain="public"))
    private = make_server(lambda s: curve_server(s, server_keys[1]))
    assert_refused_then_friend_served(clients, loop, private, stranger, friend)
    assert_served(clients, loop, public, stranger)


def test_allow_keys_on_another_domain_leaves_allow_any_open(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    stranger: Configure,
) -> None:
    auth.configure_curve("public", CURVE_ALLOW_ANY)
    auth.allow_keys(zmq.curve_keypair()[0], domain="db")
    public = make_server(lambda s: curve_server(s, server_keys[1], domain="public"))
    assert_served(clients, loop, public, stranger)
    assert auth.allows_any("public") and not auth.allows_any("db") and not auth.allows_any("*")


def test_allow_keys_on_the_allow_any_domain_itself_admits_those_keys_only(
    auth: LoopAuthenticator, friend_keys: tuple[bytes, bytes]
) -> None:
    auth.configure_curve("public", CURVE_ALLOW_ANY)
    auth.allow_keys(friend_keys[0], domain="public")
    assert auth.curve_verdict("public", friend_keys[0]) == (True, b"OK")
    assert auth.curve_verdict("public", zmq.curve_keypair()[0]) == (False, b"Unknown key")


# ---------------------------------------------------------------------------
# Dual-stack sockets: IPv4 peers seen as ::ffff:a.b.c.d


def _has_ipv6() -> bool:
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::", 0))
        except OSError:
            return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this machine: no dual-stack socket")


@pytest.mark.parametrize(
    "address, expected",
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::FFFF:10.1.2.3", "10.1.2.3"),
        ("127.0.0.1", "127.0.0.1"),
        ("::1", "::1"),
        ("fe80::1", "fe80::1"),
        ("::ffff:not-an-ip", "::ffff:not-an-ip"),
    ],
)
def test_ipv4_mapped_ipv6_addresses_are_read_as_ipv4(address: str, expected: str) -> None:
    assert normalise_address(address) == expected


@needs_second_loopback
@needs_ipv6
@pytest.mark.parametrize(
    "listing, address",
    [
        (LoopAuthenticator.deny, "127.0.0.2"),
        (LoopAuthenticator.allow, "127.0.0.1"),
        (LoopAuthenticator.deny, "::ffff:127.0.0.2"),
    ],
    ids=["deny-ipv4", "allow-ipv4", "deny-mapped"],
)
def test_ip_lists_hold_on_a_dual_stack_socket_bound_to_all_ipv6_addresses(
    clients: Clients,
    loop: PollLoop,
    make_server: Callable[..., Server],
    auth: LoopAuthenticator,
    server_keys: tuple[bytes, bytes],
    friend: Configure,
    listing: Callable[[LoopAuthenticator, str], Any],
    address: str,
) -> None:
    listing(auth, address)
    server = make_server(lambda s: curve_server(s, server_keys[1]), interface="[::]")
    failure = assert_refused_then_friend_served(
        clients, loop, server, friend, friend, intruder_source="127.0.0.2", friend_source="127.0.0.1"
    )
    assert failure["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH


@pytest.mark.parametrize(
    "address, loopback",
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("localhost:0:0:12097", False),
     ("", False), (None, False)],
)
def test_only_loopback_ip_addresses_count_as_loopback(address: Optional[str], loopback: bool) -> None:
    assert is_loopback(address) is loopback


# ---------------------------------------------------------------------------
# Revocation reaches connections that are already open


class Echo(MessageHandler):
    @message
    def echo(self, text: str) -> list:
        return ["echo", [text], {}]


class GuardedServer:
    """A CURVE ROUTER answering ``echo`` through a SessionGuard, and DEALER clients that record replies."""

    def __init__(self, ctx: zmq.Context[Any], loop: PollLoop, auth: LoopAuthenticator, secret: bytes) -> None:
        self.ctx, self.loop = ctx, loop
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        curve_server(router, secret)
        self.endpoint = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
        self.stream = Stream(router, loop)
        self.handler = Echo(reply_stream=self.stream)
        self.guard = auth.guard(self.handler)
        self.stream.on_recv(self.guard, properties=self.guard.properties)
        self.dealers: List[zmq.Socket[Any]] = []
        self.replies: dict[int, List[Any]] = {}

    def client(self, configure: Configure) -> int:
        dealer = self.ctx.socket(zmq.DEALER)
        dealer.linger = 0
        configure(dealer)
        dealer.connect(self.endpoint)
        n = len(self.dealers)
        self.dealers.append(dealer)
        self.replies[n] = []
        self.loop.register(dealer, lambda frames: self.replies[n].append(JsonCodec().decode(frames[-1])))
        return n

    def ask(self, n: int, text: str) -> Any:
        """Send ``echo(text)`` from client *n*, run the loop until its reply, return it."""
        before = len(self.replies[n])
        self.dealers[n].send_multipart([b"", JsonCodec().encode("echo", [text], {})])
        run_until(self.loop, lambda: len(self.replies[n]) > before, what=f"a reply to client {n}")
        return self.replies[n][-1]

    def close(self) -> None:
        for dealer in self.dealers:
            self.loop.unregister(dealer)
            dealer.close(linger=0)
        self.stream.close(linger=0)


@pytest.fixture
def guarded(
    ctx: zmq.Context[Any], loop: PollLoop, auth: LoopAuthenticator, server_keys: tuple[bytes, bytes]
) -> Iterator[GuardedServer]:
    server = GuardedServer(ctx, loop, auth, server_keys[1])
    yield server
    server.close()


REVOKED = ("error", ["not admitted: key revoked or unknown"], {})


def test_a_key_revoked_while_connected_gets_an_error_reply_to_its_next_message(
    guarded: GuardedServer, auth: LoopAuthenticator, friend: Configure, friend_keys: tuple[bytes, bytes],
    server_keys: tuple[bytes, bytes],
) -> None:
    other_public, other_secret = zmq.curve_keypair()
    auth.allow_keys(other_public)
    alice = guarded.client(friend)
    other = guarded.client(curve_client_of(other_secret, server_keys[0]))
    assert guarded.ask(alice, "one") == ("echo", ["one"], {})

    auth.revoke_keys(friend_keys[0])
    assert guarded.ask(alice, "two") == REVOKED  # same connection: ZAP is not asked again
    assert guarded.ask(other, "three") == ("echo", ["three"], {})
    assert guarded.ask(alice, "four") == REVOKED
    assert guarded.guard.refused == 2
    assert guarded.handler.errors == {}  # the handler never saw the refused messages


def test_a_key_removed_from_the_directory_is_refused_on_its_open_connection_after_the_reload(
    guarded: GuardedServer, auth: LoopAuthenticator, server_keys: tuple[bytes, bytes], key_dir: Any
) -> None:
    auth.configure_curve("*", key_dir)
    alice = guarded.client(curve_client_of(secret_of(key_dir, "alice"), server_keys[0]))
    assert guarded.ask(alice, "one") == ("echo", ["one"], {})
    (key_dir / "alice.key").unlink()
    auth.configure_curve("*", key_dir)
    assert guarded.ask(alice, "two") == REVOKED


def test_a_failed_reload_refuses_open_connections_too(
    guarded: GuardedServer, auth: LoopAuthenticator, server_keys: tuple[bytes, bytes], key_dir: Any
) -> None:
    auth.configure_curve("*", key_dir)
    bob = guarded.client(curve_client_of(secret_of(key_dir, "bob"), server_keys[0]))
    assert guarded.ask(bob, "one") == ("echo", ["one"], {})
    _break_empty(key_dir / "carol.key")
    with pytest.raises(KeyFileError):
        auth.configure_curve("*", key_dir)
    assert guarded.ask(bob, "two") == REVOKED


def test_an_address_denied_while_connected_is_refused_on_its_open_connection(
    guarded: GuardedServer, auth: LoopAuthenticator, friend: Configure
) -> None:
    alice = guarded.client(friend)
    assert guarded.ask(alice, "one") == ("echo", ["one"], {})
    auth.deny("127.0.0.1")
    assert guarded.ask(alice, "two") == ("error", ["not admitted: address not allowed"], {})


def test_open_connections_are_refused_once_the_authenticator_stopped(
    guarded: GuardedServer, auth: LoopAuthenticator, friend: Configure
) -> None:
    alice = guarded.client(friend)
    assert guarded.ask(alice, "one") == ("echo", ["one"], {})
    auth.stop()
    assert guarded.ask(alice, "two") == ("error", ["not admitted: the authenticator has stopped"], {})


class Recorder:
    def __init__(self) -> None:
        self.calls: List[List[bytes]] = []

    def __call__(self, frames: List[bytes]) -> None:
        self.calls.append(frames)


@pytest.mark.parametrize(
    "props, why",
    [
        ({"User-Id": None, "Peer-Address": "127.0.0.1"}, "the message carries no authenticated identity"),
        ({"User-Id": "anonymous", "Peer-Address": "127.0.0.1"}, "no CURVE key"),
        ({"User-Id": "x" * 40, "Peer-Address": "127.0.0.1"}, "key revoked or unknown"),
    ],
    ids=["no-user-id", "not-a-key", "unknown-key"],
)
def test_a_curve_guard_fails_closed_on_a_message_without_an_admitted_key(
    auth: LoopAuthenticator, props: dict[str, Any], why: str
) -> None:
    recorder, replies = Recorder(), FakeReplies()
    guard = SessionGuard(auth, recorder, reply_stream=replies)
    guard([b"peer", b"", b"frame"], props)
    assert recorder.calls == []
    assert replies.sent == [[b"peer", b"", JsonCodec().encode("error", [f"not admitted: {why}"], {})]]


def test_a_guard_with_ip_lists_refuses_a_message_whose_address_is_unknown(auth: LoopAuthenticator) -> None:
    auth.allow("127.0.0.1")
    recorder = Recorder()
    guard = SessionGuard(auth, recorder, mechanism="NULL")
    guard([b"x"], {"User-Id": "anonymous", "Peer-Address": None})
    guard([b"y"], {"User-Id": "anonymous", "Peer-Address": "::ffff:127.0.0.1"})
    assert recorder.calls == [[b"y"]] and guard.refused == 1


def test_a_guard_whose_credentials_callback_raises_refuses(
    auth: LoopAuthenticator, friend_keys: tuple[bytes, bytes]
) -> None:
    auth.configure_curve_callback("*", Provider(b"", friend_keys[0]))  # raises for the friend's key
    recorder = Recorder()
    guard = SessionGuard(auth, recorder)
    guard([b"x"], {"User-Id": friend_keys[0].decode(), "Peer-Address": "127.0.0.1"})
    assert recorder.calls == [] and guard.refused == 1


def test_a_guard_asks_the_policy_once_per_peer_until_the_policy_changes(
    auth: LoopAuthenticator, friend_keys: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: List[bytes] = []
    verdict = auth.curve_verdict
    monkeypatch.setattr(auth, "curve_verdict", lambda domain, key: asked.append(key) or verdict(domain, key))
    recorder = Recorder()
    guard = SessionGuard(auth, recorder)
    props = {"User-Id": friend_keys[0].decode(), "Peer-Address": "127.0.0.1"}
    for _ in range(100):
        guard([b"x"], props)
    assert len(asked) == 1 and len(recorder.calls) == 100
    auth.revoke_keys(friend_keys[0])
    guard([b"x"], props)
    assert len(asked) == 2 and len(recorder.calls) == 100 and guard.refused == 1


class FakeReplies:
    def __init__(self) -> None:
        self.sent: List[List[bytes]] = []

    def send_multipart(self, frames: List[bytes]) -> None:
        self.sent.append(list(frames))
