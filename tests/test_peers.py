"""PeerTable: idle peers least recently used first, silent peers expired; a fake clock, no sockets."""
from __future__ import annotations

import pytest

from pollframe.peers import PeerTable


def test_idle_peers_are_listed_and_taken_in_the_order_they_became_ready():
    table = PeerTable(expiry=3.0)
    for n, peer in enumerate([b"a", b"b", b"c"]):
        table.ready(peer, now=float(n))
    assert table.idle() == [b"a", b"b", b"c"]
    assert table.take() == b"a"
    assert table.take() == b"b"
    assert table.idle() == [b"c"]


def test_a_peer_that_is_ready_again_goes_to_the_back_of_the_line():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.ready(b"b", 0.0)
    assert table.take() == b"a"
    table.ready(b"a", 1.0)
    assert table.idle() == [b"b", b"a"]


def test_a_heartbeat_refreshes_a_peer_without_moving_it_in_line():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.ready(b"b", 0.0)
    assert table.seen(b"a", 2.0)
    assert table.idle() == [b"a", b"b"]
    assert table.last_seen(b"a") == 2.0


def test_ready_for_a_peer_already_idle_keeps_its_place():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.ready(b"b", 0.0)
    table.ready(b"a", 1.0)
    assert table.idle() == [b"a", b"b"]


def test_taking_from_a_table_with_no_idle_peer_gives_none():
    table = PeerTable(expiry=3.0)
    assert table.take() is None
    table.ready(b"a", 0.0)
    table.take()
    assert table.take() is None


def test_a_taken_peer_is_busy_still_known_and_not_idle():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.take()
    assert b"a" in table
    assert not table.is_idle(b"a")
    assert len(table) == 1


def test_seen_refuses_a_stranger_and_records_nothing():
    table = PeerTable(expiry=3.0)
    assert not table.seen(b"stranger", 1.0)
    assert b"stranger" not in table
    assert table.idle() == []


def test_peers_silent_for_longer_than_expiry_are_removed_and_returned_oldest_first():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.ready(b"b", 1.0)
    table.ready(b"c", 2.0)
    assert table.expire(now=3.0) == []  # a peer exactly at its expiry is still there
    assert table.expire(now=4.5) == [b"a", b"b"]
    assert table.idle() == [b"c"]
    assert b"a" not in table


def test_busy_peers_expire_too_when_silent():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.take()
    assert table.expire(10.0) == [b"a"]
    assert len(table) == 0


def test_a_heartbeat_keeps_a_busy_peer_from_expiring():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    table.take()
    table.seen(b"a", 2.0)
    assert table.expire(4.0) == []
    assert table.expire(5.5) == [b"a"]


def test_expire_takes_only_the_silent_peers_from_many():
    table = PeerTable(expiry=1.0)
    for n in range(1000):
        table.ready(b"%d" % n, float(n))
    assert table.expire(3.5) == [b"0", b"1", b"2"]
    assert len(table) == 997


def test_next_expiry_is_when_the_quietest_peer_expires():
    table = PeerTable(expiry=3.0)
    assert table.next_expiry() is None
    table.ready(b"a", 1.0)
    table.ready(b"b", 2.0)
    assert table.next_expiry() == 4.0
    table.seen(b"a", 5.0)
    assert table.next_expiry() == 5.0


def test_a_removed_peer_is_neither_known_nor_idle():
    table = PeerTable(expiry=3.0)
    table.ready(b"a", 0.0)
    assert table.remove(b"a")
    assert not table.remove(b"a")
    assert table.take() is None
    assert table.expire(100.0) == []


@pytest.mark.parametrize("expiry", [0, -1.0, float("nan")])
def test_expiry_must_be_a_positive_number_of_seconds(expiry):
    with pytest.raises(ValueError, match="expiry"):
        PeerTable(expiry)
