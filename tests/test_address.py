"""Address parsing: every accepted form and every refused one, without sockets."""

from __future__ import annotations

import pytest

from pollframe.address import Endpoint, parse_address, port_of


@pytest.mark.parametrize(
    ("addr", "bind", "expected"),
    [
        ("127.0.0.1:5678", True, Endpoint("tcp://127.0.0.1:5678", 5678)),
        ("127.0.0.1:5678", False, Endpoint("tcp://127.0.0.1:5678", 5678)),
        ("localhost:1", False, Endpoint("tcp://localhost:1", 1)),
        ("*:65535", True, Endpoint("tcp://*:65535", 65535)),
        ("eth0:5678", True, Endpoint("tcp://eth0:5678", 5678)),
        (("127.0.0.1", 5678), False, Endpoint("tcp://127.0.0.1:5678", 5678)),
        (("127.0.0.1", "5678"), True, Endpoint("tcp://127.0.0.1:5678", 5678)),
        (["127.0.0.1", 5678], True, Endpoint("tcp://127.0.0.1:5678", 5678)),
        ("[::1]:5678", False, Endpoint("tcp://[::1]:5678", 5678, ipv6=True)),
        (("::1", 5678), True, Endpoint("tcp://[::1]:5678", 5678, ipv6=True)),
        ("tcp://127.0.0.1:5678", False, Endpoint("tcp://127.0.0.1:5678", 5678)),
        ("tcp://[::1]:5678", True, Endpoint("tcp://[::1]:5678", 5678, ipv6=True)),
        ("ipc:///tmp/pong.sock", True, Endpoint("ipc:///tmp/pong.sock", None)),
        ("ipc://@abstract", False, Endpoint("ipc://@abstract", None)),
        ("inproc://pong", True, Endpoint("inproc://pong", None)),
    ],
)
def test_an_accepted_address_becomes_its_endpoint(addr, bind, expected):
    assert parse_address(addr, bind) == expected


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "*",
        "[::1]",
        ("127.0.0.1", None),
        ("127.0.0.1", 0),
        ("127.0.0.1", "*"),
        "127.0.0.1:0",
        "127.0.0.1:*",
        "tcp://127.0.0.1:*",
    ],
)
def test_a_host_without_a_port_binds_a_random_port(addr):
    endpoint = parse_address(addr, bind=True)
    assert endpoint.port is None
    assert endpoint.url.startswith("tcp://") and endpoint.url.endswith(":*")


def test_a_fixed_port_is_kept():
    assert parse_address("127.0.0.1:5678", bind=True).url == "tcp://127.0.0.1:5678"


@pytest.mark.parametrize(
    "addr",
    ["127.0.0.1", ("127.0.0.1", None), "127.0.0.1:0", "tcp://127.0.0.1:*", "[::1]"],
)
def test_connecting_without_a_port_is_refused(addr):
    with pytest.raises(ValueError, match="connecting needs a port"):
        parse_address(addr, bind=False)


def test_connecting_to_the_wild_card_host_is_refused():
    with pytest.raises(ValueError, match="wild-card"):
        parse_address("*:5678", bind=False)


@pytest.mark.parametrize(
    ("addr", "reason"),
    [
        ("", "empty host"),
        (":5678", "empty host"),
        ("127.0.0.1:", "not a number"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:-1", "not a number"),
        ("127.0.0.1:5678 ", "not a number"),
        ("127.0.0.1:٥٦٧٨", "not a number"),
        ("127.0.0.1:65536", "out of range"),
        (("127.0.0.1", 70000), "out of range"),
        (("127.0.0.1", -5), "out of range"),
        (("127.0.0.1", True), "must be an integer"),
        (("127.0.0.1", 56.78), "must be an integer"),
        (("127.0.0.1",), "pair"),
        (("127.0.0.1", 1, 2), "pair"),
        ((5678, "127.0.0.1"), "host must be a string"),
        ("local host:5678", "invalid host"),
        ("host/x:5678", "invalid host"),
        ("::1:5678", "brackets"),
        ("[::1:5678", "unclosed"),
        ("[::1]5678", "after ']'"),
        ("[zz::1]:5678", "invalid host"),
        ("tcp://127.0.0.1", "needs a port"),
        ("tcp://", "empty"),
        ("ipc://", "empty"),
        ("inproc://", "empty"),
        ("inproc:// pong", "padded"),
        ("udp://127.0.0.1:5678", "unknown transport"),
        ("http://example.org:80", "unknown transport"),
        (5678, "expected"),
        (None, "expected"),
        (b"127.0.0.1:5678", "expected"),
    ],
)
def test_a_bad_address_raises_a_value_error_naming_it(addr, reason):
    with pytest.raises(ValueError, match=reason) as info:
        parse_address(addr, bind=True)
    assert repr(addr) in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        ("tcp://127.0.0.1:43121", 43121),
        ("tcp://[::1]:5678", 5678),
        ("tcp://0.0.0.0:1", 1),
        ("ipc:///tmp/pong.sock", None),
        ("inproc://pong", None),
    ],
)
def test_the_port_is_read_back_from_a_bound_endpoint(endpoint, port):
    assert port_of(endpoint) == port
