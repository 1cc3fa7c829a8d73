"""Connection files: written whole by the binder, read by the connector, refused with the file's name."""

from __future__ import annotations

import json
import os
import stat
from typing import Any

import pytest
import zmq

from pollframe.connfile import (
    FORMAT,
    ConnectionFileError,
    advertise,
    read_connection_file,
    write_connection_file,
)


@pytest.fixture
def key() -> bytes:
    return zmq.curve_keypair()[0]


def test_a_connection_file_reads_back_what_was_written(tmp_path: Any, key: bytes) -> None:
    path = tmp_path / "app.json"
    write_connection_file(path, {"pong": "tcp://10.0.0.2:5678", "events": "ipc:///tmp/ev"}, {"pong": key})
    conn = read_connection_file(path)
    assert conn.endpoint("pong") == "tcp://10.0.0.2:5678"
    assert conn.endpoints["events"] == "ipc:///tmp/ev"
    assert conn.server_key("pong") == key
    assert json.loads(path.read_text())["format"] == FORMAT


def test_a_connection_file_is_world_readable_and_replaced_whole_leaving_no_temporary(
    tmp_path: Any, key: bytes
) -> None:
    path = tmp_path / "app.json"
    write_connection_file(path, {"pong": "tcp://10.0.0.2:1"})
    write_connection_file(path, {"pong": "tcp://10.0.0.2:2"}, {"pong": key})
    assert read_connection_file(path).endpoint("pong") == "tcp://10.0.0.2:2"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == ["app.json"]


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5678", "tcp://[::]:5678", "tcp://*:5678"])
def test_a_wildcard_endpoint_is_refused_because_no_peer_can_connect_to_it(
    tmp_path: Any, endpoint: str
) -> None:
    path = tmp_path / "app.json"
    with pytest.raises(ConnectionFileError, match="app.json"):
        write_connection_file(path, {"pong": endpoint})
    assert not path.exists()


@pytest.mark.parametrize(
    "bound, host, expected",
    [("tcp://0.0.0.0:5678", "10.0.0.2", "tcp://10.0.0.2:5678"),
     ("tcp://[::]:5678", "fd00::2", "tcp://[fd00::2]:5678")],
)
def test_advertise_puts_the_address_peers_reach_into_a_bound_endpoint(
    bound: str, host: str, expected: str
) -> None:
    assert advertise(bound, host) == expected


@pytest.mark.parametrize(
    "content, why",
    [("{", "not JSON"),
     ('{"format": "other/1", "endpoints": {}}', "not a pollframe-connection/1"),
     (json.dumps({"format": FORMAT, "endpoints": {"a": "tcp://10.0.0.1:1"}, "server_keys": {"a": "short"}}),
      "not a 40-character Z85"),
     (json.dumps({"format": FORMAT, "endpoints": {"a": "nonsense"}}), "bad address"),
     (json.dumps({"format": FORMAT, "endpoints": []}), "must be objects")],
    ids=["not-json", "other-format", "bad-key", "bad-endpoint", "endpoints-not-an-object"],
)
def test_a_bad_connection_file_is_refused_naming_it_and_why(tmp_path: Any, content: str, why: str) -> None:
    path = tmp_path / "app.json"
    path.write_text(content)
    with pytest.raises(ConnectionFileError, match=why) as caught:
        read_connection_file(path)
    assert str(path) in str(caught.value)


def test_a_missing_connection_file_is_refused_naming_it(tmp_path: Any) -> None:
    with pytest.raises(ConnectionFileError, match="absent.json: cannot be read"):
        read_connection_file(tmp_path / "absent.json")


def test_an_unknown_name_lists_the_names_the_file_has(tmp_path: Any) -> None:
    path = tmp_path / "app.json"
    write_connection_file(path, {"pong": "tcp://10.0.0.2:1"})
    with pytest.raises(KeyError, match=r"'ping'.*\['pong'\]"):
        read_connection_file(path).endpoint("ping")
