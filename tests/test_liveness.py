"""Liveness: gone after `liveness` missed intervals, back when heard; times passed in, no sockets."""
from __future__ import annotations

import pytest

from pollframe.liveness import Liveness


class Recorder:
    def __init__(self):
        self.calls = []

    def gone(self):
        self.calls.append("gone")

    def back(self):
        self.calls.append("back")


def tracker(**kwargs):
    rec = Recorder()
    watch = Liveness(1.0, 3, now=0.0, on_gone=rec.gone, on_back=rec.back, **kwargs)
    return watch, rec


def test_a_peer_is_gone_after_liveness_intervals_without_traffic():
    watch, rec = tracker()
    assert not watch.check(2.999)
    assert watch.check(3.0)
    assert watch.gone
    assert rec.calls == ["gone"]


def test_gone_is_declared_once_however_often_it_is_checked():
    watch, rec = tracker()
    watch.check(3.0)
    assert not watch.check(4.0)
    assert not watch.lost(5.0)
    assert rec.calls == ["gone"]


def test_traffic_pushes_the_deadline_back():
    watch, rec = tracker()
    watch.heard(2.0)
    assert watch.deadline() == 5.0
    assert not watch.check(4.9)
    assert rec.calls == []


def test_a_gone_peer_that_is_heard_again_is_back():
    watch, rec = tracker()
    watch.check(3.0)
    assert watch.heard(3.5)
    assert not watch.gone
    assert rec.calls == ["gone", "back"]
    assert not watch.heard(3.6)  # back only once


def test_missed_counts_the_whole_silent_intervals():
    watch, _ = tracker()
    assert watch.missed(0.5) == 0
    assert watch.missed(2.5) == 2


def test_a_paused_peer_is_never_declared_gone_by_silence():
    watch, rec = tracker()
    watch.pause()
    assert not watch.check(100.0)
    assert watch.deadline() is None
    assert watch.missed(100.0) == 0
    assert rec.calls == []


def test_resume_counts_missed_intervals_afresh_from_then():
    watch, rec = tracker()
    watch.pause()
    watch.resume(50.0)
    assert not watch.check(52.9)
    assert watch.check(53.0)
    assert rec.calls == ["gone"]


def test_a_lost_connection_is_gone_at_once_even_while_paused():
    watch, rec = tracker()
    watch.pause()
    assert watch.lost(0.1)
    assert rec.calls == ["gone"]


def test_reset_starts_a_new_connection_alive_and_unpaused():
    watch, rec = tracker()
    watch.pause()
    watch.lost(1.0)
    watch.reset(10.0)
    assert not watch.gone and not watch.paused
    assert watch.deadline() == 13.0
    assert rec.calls == ["gone"]  # a reset is not the peer coming back


def test_the_methods_return_the_changes_without_any_callbacks():
    watch = Liveness(0.5, 2, now=0.0)
    assert watch.check(1.0) and watch.gone
    assert watch.heard(1.1) and not watch.gone


@pytest.mark.parametrize("interval, liveness", [(0, 3), (-1, 3), (1.0, 0), (1.0, 2.5), (1.0, True)])
def test_interval_and_liveness_are_checked(interval, liveness):
    with pytest.raises(ValueError):
        Liveness(interval, liveness, now=0.0)
