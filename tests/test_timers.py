"""The timer queue on its own: time is passed in, nothing sleeps."""
from __future__ import annotations

import pytest

from pollframe.timers import TimerQueue, next_periodic_deadline


def fired(queue: TimerQueue, now: float) -> list:
    return [timer.args[0] for timer in queue.pop_due(now)]


def test_timers_fire_in_deadline_order_whatever_their_delay():
    queue = TimerQueue()
    queue.call_later(0.0, 3.0, print, ("c",))
    queue.call_later(0.0, 1.0, print, ("a",))
    queue.call_at(2.0, print, ("b",))
    queue.call_later(0.5, 1.0, print, ("a2",))
    assert fired(queue, 10.0) == ["a", "a2", "b", "c"]


def test_timers_with_equal_deadlines_fire_in_creation_order():
    queue = TimerQueue()
    for name in "xyz":
        queue.call_later(1.0, 0.0, print, (name,))
    queue.call_at(1.0, print, ("w",))
    assert fired(queue, 1.0) == ["x", "y", "z", "w"]


def test_a_timer_is_not_due_before_its_deadline():
    queue = TimerQueue()
    queue.call_later(0.0, 1.0, print, ("late",))
    assert fired(queue, 0.999) == []
    assert queue.next_deadline() == 1.0
    assert fired(queue, 1.0) == ["late"]
    assert queue.next_deadline() is None


def test_a_cancelled_timer_never_fires_and_does_not_set_the_poll_timeout():
    queue = TimerQueue()
    early = queue.call_later(0.0, 1.0, print, ("early",))
    queue.call_later(0.0, 2.0, print, ("kept",))
    early.cancel()
    early.cancel()
    assert queue.next_deadline() == 2.0
    assert fired(queue, 5.0) == ["kept"]
    assert len(queue) == 0


def test_scheduling_and_cancelling_many_timers_leaves_nothing_behind():
    queue = TimerQueue()
    for i in range(10_000):
        queue.call_later(0.0, float(i % 7), print, (i,)).cancel()
    assert len(queue) == 0
    assert len(queue._heap) < 1_000, "cancelled timers are compacted away"
    assert fired(queue, 100.0) == []


def test_compaction_keeps_the_live_timers_in_order():
    queue = TimerQueue()
    timers = [queue.call_later(0.0, float(i % 3), print, (i,)) for i in range(3_000)]
    for timer in timers:
        if timer.args[0] % 10:
            timer.cancel()
    expected = sorted((i for i in range(3_000) if i % 10 == 0), key=lambda i: (i % 3, i))
    assert fired(queue, 10.0) == expected


@pytest.mark.parametrize(
    "previous, interval, now, expected",
    [
        (10.0, 1.0, 10.2, 11.0),  # on time: the next period
        (10.0, 1.0, 13.5, 14.0),  # three periods missed: skipped, phase kept
        (10.0, 1.0, 12.0, 13.0),  # exactly on a period boundary: the next one
        (10.0, 0.5, 10.0, 10.5),
    ],
)
def test_a_periodic_timer_skips_missed_periods_and_keeps_its_phase(previous, interval, now, expected):
    assert next_periodic_deadline(previous, interval, now) == pytest.approx(expected)


def test_a_periodic_timer_is_rescheduled_after_it_runs_until_cancelled():
    queue = TimerQueue()
    tick = queue.call_at(1.0, print, ("tick",), interval=1.0)
    (due,) = queue.pop_due(1.0)
    queue.reschedule(due, 1.0)
    assert queue.next_deadline() == 2.0
    tick.cancel()
    assert queue.pop_due(2.0) == []


@pytest.mark.parametrize("delay", [float("inf"), float("nan")])
def test_a_timer_that_could_never_fire_is_refused(delay):
    queue = TimerQueue()
    with pytest.raises(ValueError, match="finite"):
        queue.call_later(0.0, delay, print, ())
    with pytest.raises(ValueError, match="finite"):
        queue.call_at(delay, print, ())
    assert len(queue) == 0


def test_a_negative_delay_is_due_at_once():
    queue = TimerQueue()
    queue.call_later(5.0, -1.0, print, ("now",))
    assert fired(queue, 5.0) == ["now"]
