"""The timer queue on its own: time is passed in, nothing sleeps."""
from __future__ import annotations

import pytest

from pollframe.testing import FakeClock
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


def test_a_timer_made_by_call_later_has_every_slot_a_timer_made_by_call_at_has():
    from pollframe.timers import Timer

    queue = TimerQueue()
    later, at = queue.call_later(0.0, 1.0, print, ("x",)), queue.call_at(1.0, print, ("x",))
    slots = [name for cls in Timer.__mro__ for name in getattr(cls, "__slots__", ()) if name != "__weakref__"]
    for name in slots:
        assert type(getattr(later, name)) is type(getattr(at, name)), name
    assert (later.when, later.interval, later.cancelled, later.pending) == (1.0, None, False, True)


def test_a_burst_of_zero_delay_timers_fires_in_order_without_the_cancelled_ones_and_keeps_the_rest():
    queue = TimerQueue()
    burst = [queue.call_later(float(i), 0.0, print, (i,)) for i in range(10)]
    burst[3].cancel()
    burst[7].cancel()
    assert fired(queue, 5.0) == [0, 1, 2, 4, 5]
    assert len(queue) == 3 and queue.next_deadline() == 6.0, "the not-yet-due rest waits in its FIFO"
    assert fired(queue, 9.0) == [6, 8, 9]
    assert len(queue) == 0 and queue.next_deadline() is None and queue._fifos == {}


def test_a_run_from_one_delay_stops_at_a_timer_of_another_delay_or_of_call_at_due_in_between():
    queue = TimerQueue()
    for now in (0.0, 1.0, 2.0, 3.0):
        queue.call_later(now, 0.0, print, (f"zero@{now:g}",))
    queue.call_at(1.5, print, ("at@1.5",))
    queue.call_later(0.0, 2.0, print, ("two@2",))  # the same deadline as zero@2, made later
    assert fired(queue, 3.0) == ["zero@0", "zero@1", "at@1.5", "zero@2", "two@2", "zero@3"]


@pytest.mark.parametrize("seed", range(6))
def test_random_timers_and_cancels_fire_in_deadline_then_creation_order(seed):
    import random

    rng = random.Random(seed)
    queue, now = TimerQueue(), 0.0
    model = {}  # name -> (deadline, sequence) of what will still fire
    handles = {}
    got, expected = [], []
    for step in range(800):
        action = rng.random()
        name = f"n{step}"
        if action < 0.5:  # few delays on a whole-second clock: many ties between FIFOs and call_at
            handles[name] = queue.call_later(now, rng.choice([0.0, 0.0, 1.0, 2.0]), print, (name,))
        elif action < 0.6:
            handles[name] = queue.call_at(now + rng.choice([0.0, 1.0, 3.0]), print, (name,))
        elif action < 0.75 and model:
            victim = rng.choice(sorted(model))
            handles[victim].cancel()
            del model[victim]
            continue
        else:
            now += rng.choice([0.0, 1.0, 2.0])
            got.extend(fired(queue, now))
            due = sorted((key, n) for n, key in model.items() if key[0] <= now)
            expected.extend(n for _, n in due)
            for _, n in due:
                del model[n]
            continue
        model[name] = (handles[name].when, handles[name].seq)
    got.extend(fired(queue, now + 10.0))
    expected.extend(n for _, n in sorted((key, n) for n, key in model.items()))
    assert got == expected and len(queue) == 0


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


# ------------------------------------------------------------ tickets: resettable timeouts


def ticket(queue: TimerQueue, now: float, delay: float, name: str, clock=None):
    return queue.ticket(now, delay, print, (name,), clock or (lambda: now))


def test_a_reset_pushes_a_tickets_deadline_back_by_its_delay():
    queue, clock = TimerQueue(), FakeClock(start=0.0)
    t = queue.ticket(0.0, 10.0, print, ("t",), clock)
    clock.advance_to(5.0)
    t.reset()
    assert queue.next_deadline() == 10.0, "lazy: the old deadline stands until it comes"
    assert fired(queue, 10.0) == []
    assert queue.next_deadline() == 15.0
    assert fired(queue, 15.0) == ["t"]


def test_resetting_the_first_ticket_keeps_the_others_in_deadline_order():
    queue, clock = TimerQueue(), FakeClock(start=0.0)
    tickets = {}
    for name in "abc":
        tickets[name] = queue.ticket(clock(), 10.0, print, (name,), clock)
        clock.advance(1.0)
    tickets["a"].reset()  # at 3: due at 13, behind b (11) and c (12)
    assert fired(queue, 10.0) == []
    assert queue.next_deadline() == 11.0
    assert fired(queue, 12.0) == ["b", "c"]
    assert fired(queue, 13.0) == ["a"]


def test_a_cancelled_ticket_never_fires_and_cannot_be_reset():
    queue = TimerQueue()
    early = ticket(queue, 0.0, 1.0, "early")
    ticket(queue, 0.0, 2.0, "kept")
    early.cancel()
    early.cancel()
    assert len(queue) == 1 and queue.next_deadline() == 2.0
    with pytest.raises(RuntimeError, match="cancelled ticket"):
        early.reset()
    assert fired(queue, 5.0) == ["kept"] and len(queue) == 0


def test_a_ticket_that_fired_is_armed_again_by_reset():
    queue, clock = TimerQueue(), FakeClock(start=0.0)
    t = queue.ticket(0.0, 1.0, print, ("t",), clock)
    (due,) = queue.pop_due(1.0)
    due.callback = due.args = None  # what the loop does when it runs a one-shot
    clock.advance_to(4.0)
    t.reset()
    assert t.pending and queue.next_deadline() == 5.0
    assert fired(queue, 5.0) == ["t"]


def test_tickets_and_timers_fire_together_in_deadline_order():
    queue = TimerQueue()
    ticket(queue, 0.0, 4.0, "ticket at 4")
    queue.call_later(0.0, 5.0, print, ("timer at 5",))
    ticket(queue, 0.0, 6.0, "ticket at 6")
    queue.call_at(3.0, print, ("timer at 3",))
    assert queue.next_deadline() == 3.0
    assert fired(queue, 10.0) == ["timer at 3", "ticket at 4", "timer at 5", "ticket at 6"]


def test_a_ticket_taken_as_due_but_not_run_goes_back_first_in_line():
    queue = TimerQueue()
    first, second = ticket(queue, 0.0, 1.0, "first"), ticket(queue, 0.5, 1.0, "second")
    due = queue.pop_due(2.0)
    assert due == [first, second]
    queue.restore(due)  # the pass was left before they ran
    assert fired(queue, 2.0) == ["first", "second"]


def test_a_hundred_thousand_resets_keep_one_heap_entry_per_delay():
    queue, clock = TimerQueue(), FakeClock(start=0.0)
    tickets = [queue.ticket(0.0, 30.0 + i % 3, print, (i,), clock) for i in range(10_000)]
    for n in range(100_000):
        clock.advance(0.0001)
        tickets[(n * 7919) % len(tickets)].reset()
        if n % 1000 == 0:
            queue.next_deadline()  # the poll timeout, asked now and then
    assert len(queue._tickets._heap) <= 3 + 3, "resets leave no trail in the heap"
    assert len(queue) == 10_000


@pytest.mark.parametrize("seed", range(8))
def test_random_tickets_timers_resets_and_cancels_fire_as_a_sorted_model_says(seed):
    import random

    rng = random.Random(seed)
    queue, clock = TimerQueue(), FakeClock(start=0.0)
    model = {}  # name -> (deadline, sequence) of everything that will still fire
    handles = {}
    got, expected = [], []

    def take_due():
        now = clock()
        got.extend(fired(queue, now))
        due = sorted((key, name) for name, key in model.items() if key[0] <= now)
        expected.extend(name for _, name in due)
        for _, name in due:
            del model[name]

    for step in range(600):
        action = rng.random()
        name = f"n{step}"
        if action < 0.3:
            delay = rng.choice([1.0, 2.5, 4.0])
            handles[name] = queue.ticket(clock(), delay, print, (name,), clock)
            model[name] = (clock() + delay, handles[name].seq)
        elif action < 0.4:
            handles[name] = queue.call_later(clock(), rng.choice([1.0, 3.0]), print, (name,))
            model[name] = (handles[name].when, handles[name].seq)
        elif action < 0.7 and model:
            victim = rng.choice(sorted(n for n in model if hasattr(handles[n], "reset")) or [None])
            if victim is not None:  # (a reset in the same instant keeps its place among equal deadlines)
                handles[victim].reset()
                model[victim] = (handles[victim].when, handles[victim].seq)
        elif action < 0.8 and model:
            victim = rng.choice(sorted(model))
            handles[victim].cancel()
            del model[victim]
        else:
            clock.advance(rng.choice([0.1, 0.5, 1.5]))
            if rng.random() < 0.5:  # never later than the earliest deadline (early for a reset ticket)
                deadline = queue.next_deadline()
                assert (deadline is None) == (not model)
                assert deadline is None or deadline <= min(model.values())[0]
            take_due()
    clock.advance(100.0)
    take_due()
    assert got == expected and len(queue) == 0
