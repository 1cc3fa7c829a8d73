"""Seconds, the API's one time unit, to libzmq's milliseconds at the boundary."""

from __future__ import annotations

import math

import pytest

from pollframe.units import FOREVER, MAX_POLL_MS, poll_ms, to_ms


@pytest.mark.parametrize("seconds, ms", [(0, 0), (0.25, 250), (1.1, 1100), (2.0, 2000), (0.0001, 1)])
def test_seconds_become_milliseconds_rounded_up_so_a_wait_is_never_shorter(seconds, ms):
    assert to_ms(seconds) == ms


@pytest.mark.parametrize("seconds", [None, -1, -0.5, math.inf])
def test_none_a_negative_time_and_infinity_mean_forever(seconds):
    assert to_ms(seconds) == FOREVER == -1


@pytest.mark.parametrize("seconds, ms", [
    (30 * 86_400, MAX_POLL_MS), (86_400, MAX_POLL_MS), (1.5, 1500), (None, FOREVER),
])
def test_one_poll_waits_at_most_a_day_so_a_month_long_timeout_never_overflows_zmq_poll(seconds, ms):
    assert poll_ms(seconds) == ms
