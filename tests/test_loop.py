"""PollLoop over real sockets: delivery, draining, fairness, timers, errors, wake-ups."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
import zmq

from pollframe.handles import Handle
from pollframe.stream import Stream
from pollframe.testing import FakeClock, run_until

pytestmark = pytest.mark.timeout(20)


def test_ten_thousand_messages_all_reach_the_callback_in_order(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    for i in range(10_000):
        push.send_multipart([b"n", str(i).encode()])
    run_until(loop, lambda: len(got) == 10_000)
    assert got == [[b"n", str(i).encode()] for i in range(10_000)]


def test_the_single_frame_path_hands_the_callback_bytes(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append, multipart=False)
    for i in range(100):
        push.send(str(i).encode())
    run_until(loop, lambda: len(got) == 100)
    assert got == [str(i).encode() for i in range(100)]


def test_two_busy_sockets_both_progress_within_any_thousand_dispatches(ctx, loop):
    order = []
    for name in ("a", "b"):
        pull = ctx.socket(zmq.PULL)
        pull.rcvhwm = 0
        pull.bind(f"inproc://busy-{name}")
        push = ctx.socket(zmq.PUSH)
        push.sndhwm = 0
        push.connect(f"inproc://busy-{name}")
        for _ in range(5_000):
            push.send(b"x")
        loop.register(pull, lambda frames, name=name: order.append(name))
    run_until(loop, lambda: len(order) == 10_000)
    for start in range(0, len(order) - 1_000, 250):
        window = order[start:start + 1_000]
        assert "a" in window and "b" in window, f"a socket starved in dispatches {start}..{start + 1000}"


def test_one_wake_up_drains_up_to_the_per_wake_cap_and_no_more(loop_class, ctx, push_pull):
    push, pull = push_pull
    loop = loop_class(max_drain=10)
    try:
        got = []
        loop.register(pull, got.append)
        for _ in range(50):
            push.send(b"x")
        loop.run_once(1.0)
        assert len(got) == 10
        loop.run_once(1.0)
        assert len(got) == 20
    finally:
        loop.close()


def test_one_wake_up_drains_everything_queued_below_the_cap(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    for _ in range(50):
        push.send(b"x")
    loop.run_once(1.0)
    assert len(got) == 50


def test_a_plain_file_descriptor_gets_fd_and_events(loop):
    read_fd, write_fd = os.pipe()
    try:
        seen = []
        loop.register(read_fd, lambda fd, events: seen.append((fd, events, os.read(fd, 10))))
        os.write(write_fd, b"hi")
        run_until(loop, lambda: seen)
        assert seen == [(read_fd, zmq.POLLIN, b"hi")]
    finally:
        loop.unregister(read_fd)
        os.close(read_fd)
        os.close(write_fd)


def test_timers_fire_in_deadline_order(loop):
    fired = []
    loop.call_later(0.03, fired.append, "third")
    loop.call_later(0.01, fired.append, "first")
    loop.call_at(loop.time() + 0.02, fired.append, "second")
    loop.call_later(0.04, loop.stop)
    loop.run()
    assert fired == ["first", "second", "third"]


def test_a_timer_never_fires_before_its_deadline(loop):
    start = loop.time()
    fired_at = []
    loop.call_later(0.05, lambda: (fired_at.append(loop.time()), loop.stop()))
    loop.run()
    assert fired_at[0] - start >= 0.05


def test_a_cancelled_timer_never_fires(loop):
    fired = []
    loop.call_later(0.01, fired.append, "cancelled").cancel()
    loop.call_soon(fired.append, "soon-cancelled").cancel()
    loop.call_later(0.03, loop.stop)
    loop.run()
    assert fired == []


def test_a_periodic_timer_whose_callback_raises_keeps_its_schedule(loop_class, caplog):
    loop = loop_class()
    try:
        calls = []

        def tick():
            calls.append(loop.time())
            if len(calls) == 3:
                loop.stop()
            raise RuntimeError("tick failed")

        with caplog.at_level(logging.ERROR, logger="pollframe"):
            loop.call_every(0.01, tick)
            loop.run()
        assert len(calls) == 3
        assert loop.errors == 3
    finally:
        loop.close()


def test_missed_periods_are_skipped_not_bunched(loop_class):
    clock = FakeClock(start=0.0)
    loop = loop_class(clock=clock)
    try:
        calls = []
        loop.call_every(1.0, lambda: calls.append(clock()))
        clock.advance(3.5)  # the loop was busy for three and a half periods
        loop.run_once(0)
        loop.run_once(0)
        assert calls == [3.5], "one catch-up call, not three"
        clock.advance_to(3.99)
        loop.run_once(0)
        assert calls == [3.5]
        clock.advance_to(4.0)  # the original phase is kept
        loop.run_once(0)
        assert calls == [3.5, 4.0]
    finally:
        loop.close()


def counting_clock(loop_class, **options):
    """A loop whose time() hook counts its calls: every pass asks the clock at least once."""
    class CountingLoop(loop_class):
        calls = 0

        def time(self):
            self.calls += 1
            return super().time()

    return CountingLoop(**options)


def test_an_idle_loop_with_a_timer_does_not_busy_wait(loop_class):
    loop = counting_clock(loop_class)
    try:
        loop.call_later(0.3, loop.stop)
        loop.run()
    finally:
        loop.close()
    assert loop.calls <= 10, f"{loop.calls} clock readings to wait for one timer"


def test_a_callback_that_raises_is_logged_and_later_messages_still_arrive(loop, push_pull, caplog):
    push, pull = push_pull
    got = []

    def callback(frames):
        got.append(frames)
        if frames == [b"bad"]:
            raise ValueError("boom")

    loop.register(pull, callback)
    with caplog.at_level(logging.ERROR, logger="pollframe"):
        for data in (b"one", b"bad", b"two", b"three"):
            push.send(data)
        run_until(loop, lambda: len(got) == 4)
    assert got == [[b"one"], [b"bad"], [b"two"], [b"three"]]
    assert loop.errors == 1
    (record,) = [r for r in caplog.records if r.name == "pollframe"]
    assert record.exc_info and "boom" in str(record.exc_info[1])


def test_on_error_replaces_the_logging_policy(loop_class, push_pull):
    push, pull = push_pull
    seen = []
    loop = loop_class(on_error=lambda exc, where: seen.append(exc))
    try:
        loop.register(pull, lambda frames: 1 / 0)
        push.send(b"x")
        run_until(loop, lambda: seen)
        assert isinstance(seen[0], ZeroDivisionError)
    finally:
        loop.close()


def reraise(exc, where):
    raise exc


def test_an_on_error_that_raises_makes_errors_fatal_for_tests(loop_class, push_pull):
    push, pull = push_pull
    loop = loop_class(on_error=reraise)
    try:
        loop.register(pull, lambda frames: 1 / 0)
        push.send(b"x")
        with pytest.raises(ZeroDivisionError):
            loop.run_once(1.0)
    finally:
        loop.close()


@pytest.mark.parametrize("how", ["unregister", "close"])
def test_a_socket_removed_by_another_callback_in_the_same_pass_is_not_called(ctx, loop, how):
    first, second = ctx.socket(zmq.PULL), ctx.socket(zmq.PULL)
    first.bind("inproc://first")
    second.bind("inproc://second")
    for endpoint in ("inproc://first", "inproc://second"):
        push = ctx.socket(zmq.PUSH)
        push.connect(endpoint)
        push.send(b"x")
    calls = []

    def remove_second(frames):
        calls.append("first")
        loop.unregister(second)
        if how == "close":
            second.close(linger=0)

    loop.register(first, remove_second)
    loop.register(second, lambda frames: calls.append("second"))
    loop.run_once(1.0)
    loop.run_once(0)
    assert calls == ["first"]


@pytest.mark.parametrize("multipart", [True, False])
def test_a_callback_that_unregisters_its_own_socket_ends_the_drain(loop, push_pull, multipart):
    push, pull = push_pull
    got = []

    def once(frames):
        got.append(frames)
        loop.unregister(pull)

    loop.register(pull, once, multipart=multipart)
    for _ in range(5):
        push.send(b"x")
    loop.run_once(1.0)
    loop.run_once(0)
    assert got == [[b"x"] if multipart else b"x"]


def test_unregistering_descriptors_the_loop_never_registered_leaves_its_own_wake_up_alone(loop_class):
    loop = counting_clock(loop_class)
    try:
        for fd in range(64):  # whatever number the loop's own wake-up pipe has, it is among these
            loop.unregister(fd)
        loop.call_later(10, loop.stop)
        threading.Timer(0.05, loop.call_soon_threadsafe, (loop.stop,)).start()
        started = time.monotonic()
        loop.run()
    finally:
        loop.close()
    assert time.monotonic() - started < 5, "a call from another thread still wakes the poll"
    assert loop.calls <= 10, f"{loop.calls} clock readings: the loop spun instead of sleeping"


@pytest.mark.parametrize("how", ["directly", "through a shadow"])
def test_a_socket_closed_behind_the_loops_back_is_dropped_with_a_warning_not_spun_on(
        loop_class, ctx, push_pull, caplog, how):
    push, pull = push_pull
    loop = counting_clock(loop_class)
    try:
        got = []
        loop.register(pull, got.append)
        loop.call_later(0.2, loop.stop)
        push.send(b"x")
        (zmq.Socket.shadow(pull.underlying) if how == "through a shadow" else pull).close(linger=0)
        with caplog.at_level(logging.WARNING, logger="pollframe"):
            loop.run()
        assert got == [] and not loop.is_registered(pull)
        assert "closed while registered" in caplog.text
        assert loop.calls <= 20, f"{loop.calls} clock readings in 0.2 s: the loop spun"
    finally:
        loop.close()


def test_call_soon_threadsafe_wakes_a_loop_blocked_in_a_long_poll(loop):
    woke = threading.Event()
    sent_at = []
    loop.call_later(10, loop.stop)

    def from_thread():
        sent_at.append(time.monotonic())
        loop.call_soon_threadsafe(lambda: (woke.set(), loop.stop()))

    threading.Timer(0.1, from_thread).start()
    loop.run()
    assert woke.is_set()
    assert time.monotonic() - sent_at[0] < 0.05 + 0.5  # far below the 10 s poll


def test_stop_from_another_thread_ends_a_long_poll(loop):
    loop.call_later(10, lambda: None)
    stopper = threading.Timer(0.05, loop.stop)
    stopper.start()
    started = time.monotonic()
    loop.run()
    assert time.monotonic() - started < 5


def test_stop_from_a_signal_handler_ends_a_long_poll(loop):
    loop.call_later(10, lambda: None)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: loop.stop())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        started = time.monotonic()
        loop.run()
        assert time.monotonic() - started < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_timer_keeps_its_deadline_while_signals_keep_arriving(loop):
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        started = loop.time()
        fired_at = []
        loop.call_later(0.1, lambda: (fired_at.append(loop.time()), loop.stop()))
        loop.run()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 0.1 <= fired_at[0] - started <= 0.15


def test_run_once_with_zero_timeout_returns_when_nothing_is_ready(loop, push_pull):
    push, pull = push_pull
    loop.register(pull, lambda frames: None)
    loop.call_later(10, lambda: None)
    started = time.monotonic()
    loop.run_once(0)
    assert time.monotonic() - started < 1


def test_stop_from_a_callback_ends_run_after_the_current_pass(loop):
    ran = []
    loop.call_soon(lambda: (ran.append("stopper"), loop.stop()))
    loop.call_soon(ran.append, "same pass")
    loop.run()
    assert ran == ["stopper", "same pass"]
    loop.call_soon(ran.append, "next run")
    loop.call_soon(loop.stop)
    loop.run()
    assert ran[-1] == "next run"


def test_callbacks_scheduled_during_a_pass_run_in_the_next_pass(loop):
    ran = []

    def reschedule():
        ran.append("once")
        loop.call_soon(reschedule)

    loop.call_soon(reschedule)
    loop.run_once(0)
    assert ran == ["once"]


def test_close_closes_the_sockets_the_loop_was_asked_to_own(loop_class, ctx):
    loop = loop_class()
    owned, borrowed = ctx.socket(zmq.PULL), ctx.socket(zmq.PULL)
    loop.register(owned, print, own=True)
    loop.register(borrowed, print)
    loop.close()
    assert owned.closed and not borrowed.closed
    with pytest.raises(RuntimeError):
        loop.register(borrowed, print)


def test_next_deadline_names_the_earliest_live_timer(loop):
    assert loop.next_deadline() is None
    early = loop.call_at(loop.time() + 5, print)
    loop.call_at(loop.time() + 10, print)
    assert loop.next_deadline() == early.when
    early.cancel()
    assert loop.next_deadline() > early.when


def test_after_single_message_wake_ups_a_burst_is_drained_whole_within_four_passes(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append, multipart=False)
    for _ in range(3):  # one message per wake-up: the reader learns to expect one
        push.send(b"single")
        loop.run_once(1.0)
    assert len(got) == 3
    for _ in range(50):
        push.send(b"burst")
    passes = 0
    while len(got) < 53 and passes < 10:
        loop.run_once(0)
        passes += 1
    assert len(got) == 53 and passes <= 4, f"the burst took {passes} passes"


@pytest.mark.parametrize("multipart", [True, False])
def test_a_socket_with_one_message_per_wake_up_is_probed_after_one_drain_in_four(
    loop, push_pull, monkeypatch, multipart
):
    from pollframe import readers

    probes = []
    real_poll = readers.zmq_poll

    def counted_poll(items, timeout):
        probes.append(items)
        return real_poll(items, timeout)

    monkeypatch.setattr(readers, "zmq_poll", counted_poll)
    push, pull = push_pull
    got = []
    loop.register(pull, got.append, multipart=multipart)
    for _ in range(41):  # the first drain ends in EAGAIN; the next 40 each read their one message
        push.send(b"single")
        loop.run_once(1.0)
    assert len(got) == 41
    assert len(probes) == 10, "the other lone drains leave the question to the loop's next poll"


@pytest.mark.parametrize("scheduled", ["a timer due meanwhile", "a callback queued before the pass"])
def test_a_message_waiting_after_its_callback_is_read_before_the_rest_of_the_pass(loop, push_pull, scheduled):
    push, pull = push_pull
    seen = []

    def on_message(frame):
        seen.append(frame)
        if frame == b"first":
            if scheduled == "a timer due meanwhile":
                loop.call_later(0, seen.append, "scheduled")  # due in this very pass
            push.send(b"second")  # waiting in the socket when the callback returns

    loop.register(pull, on_message, multipart=False)
    push.send(b"warm-up")
    loop.run_once(1.0)  # a lone message: the reader expects one per wake-up from now on
    for _ in range(4):  # each phase of the one-in-four probe
        seen.clear()
        if scheduled == "a callback queued before the pass":
            loop.call_soon(seen.append, "scheduled")
        push.send(b"first")
        while "scheduled" not in seen:
            loop.run_once(1.0)
        assert seen[:2] == [b"first", b"second"], seen


def test_multipart_messages_are_drained_whole_after_single_message_wake_ups(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    push.send_multipart([b"a", b"1"])
    loop.run_once(1.0)
    for i in range(10):
        push.send_multipart([b"b", str(i).encode()])
    for _ in range(4):  # a lone-message drain may leave the rest to the next passes
        loop.run_once(0)
    assert got == [[b"a", b"1"]] + [[b"b", str(i).encode()] for i in range(10)]


def test_a_timer_cancelled_by_an_earlier_timer_due_at_the_same_time_does_not_run(loop_class, fake_clock):
    loop = loop_class(clock=fake_clock, on_error=reraise)
    try:
        ran = []
        later = loop.call_later(1.0, ran.append, "cancelled")
        loop.call_at(0.5, later.cancel)
        fake_clock.advance(2.0)
        loop.run_once(0)
        assert ran == [] and loop.errors == 0
    finally:
        loop.close()


def test_close_from_a_callback_stops_run_and_closes_the_loop_afterwards(loop_class):
    loop = loop_class()
    loop.call_soon(loop.close)
    loop.call_later(5, loop.stop)  # a deadline should close() fail to end run()
    started = time.monotonic()
    loop.run()
    assert loop.closed and time.monotonic() - started < 4
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_once(0)


def test_a_stop_seen_by_run_once_is_not_kept_for_a_later_run(loop):
    loop.stop()
    loop.run_once(0)
    ran = []
    loop.call_later(0.01, lambda: (ran.append("timer"), loop.stop()))
    loop.run()
    assert ran == ["timer"]


def test_a_callback_queued_by_an_io_callback_runs_in_the_next_pass(loop, push_pull):
    push, pull = push_pull
    ran = []
    loop.register(pull, lambda frames: loop.call_soon(ran.append, "queued"))
    push.send(b"x")
    loop.run_once(1.0)
    assert ran == []
    loop.run_once(0)
    assert ran == ["queued"]


def test_close_closes_an_owned_plain_file_descriptor(loop_class):
    loop = loop_class()
    read_fd, write_fd = os.pipe()
    try:
        loop.register(read_fd, lambda fd, events: None, own=True)
        loop.close()
        with pytest.raises(OSError):
            os.fstat(read_fd)
    finally:
        os.close(write_fd)


def test_a_descriptor_closed_while_registered_is_dropped_not_spun_on(loop, caplog):
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    calls = []
    loop.register(read_fd, lambda fd, events: calls.append(events))
    os.close(read_fd)
    for _ in range(5):
        loop.run_once(0)
    assert calls == [], "the callback is not called, pass after pass, with POLLERR"


def test_a_signal_handler_runs_as_a_loop_callback_and_can_be_removed(loop):
    seen = []
    previous = loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        run_until(loop, lambda: seen)
        assert seen == ["usr1"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1, previous)
    assert signal.getsignal(signal.SIGUSR1) is previous


# ------------------------------------------------------------ the subclass contract


class NameClashes:
    """Mixed into a loop class: picks the names the loop's own state and pass once used."""

    def __init__(self, sock):
        super().__init__()
        self._timers, self._events, self._ready, self._owned = "mine", "mine", "mine", "mine"
        self._clock, self._handlers, self._items, self._wake_r = "mine", "mine", "mine", "mine"
        self.got = []
        self.register(sock, self._dispatch)

    def _dispatch(self, frames):
        self.got.append(frames)
        self.call_soon(self._poll)

    def _poll(self):
        self.got.append("polled")

    def _run_once(self, timeout):
        raise AssertionError("the loop's pass is not a method of the subclass")

    def _changed(self, key):
        raise AssertionError("nor is its registration bookkeeping")


def test_a_subclass_may_use_any_private_name_for_its_own_state_and_methods(loop_class, push_pull):
    push, pull = push_pull
    loop = type("NameClashLoop", (NameClashes, loop_class), {})(pull)
    try:
        push.send(b"x")
        run_until(loop, lambda: loop.got == [[b"x"], "polled"])
        assert loop._timers == "mine"
    finally:
        loop.close()


def test_an_on_error_method_of_a_subclass_is_the_error_policy(loop_class):
    seen = []

    class Strict(loop_class):
        def on_error(self, exc, where):
            seen.append((type(exc), where))

    loop = Strict()
    try:
        loop.call_soon(lambda: 1 / 0)
        loop.run_once(0)
        assert [kind for kind, _ in seen] == [ZeroDivisionError] and loop.errors == 1
    finally:
        loop.close()


def test_a_subclass_that_forgot_super_init_gets_an_error_that_says_so(loop_class):
    class Forgetful(loop_class):
        def __init__(self):
            self.mine = 1

    loop = Forgetful()
    with pytest.raises(RuntimeError, match=r"Forgetful did not call super\(\).__init__\(\)"):
        loop.call_soon(print)
    assert not hasattr(loop, "no_such_name"), "other missing names are plain AttributeErrors"


def test_a_subclass_clock_set_through_time_drives_the_timers(loop_class):
    class ManualTimeLoop(loop_class):
        now = 100.0

        def time(self):
            return self.now

    loop = ManualTimeLoop()
    try:
        fired = []
        loop.call_later(1.0, fired.append, "due")
        every = loop.call_every(2.0, fired.append, "every")
        ticket = loop.ticket(1.5, fired.append, "ticket")
        loop.run_once(0)
        assert fired == []
        loop.now = 101.0
        ticket.reset()  # on the subclass's clock: due at 102.5 now
        loop.run_once(0)
        assert fired == ["due"]
        loop.now = 102.0
        loop.run_once(0)
        assert fired == ["due", "every"] and every.when == 104.0
        loop.now = 102.5
        loop.run_once(0)
        assert fired == ["due", "every", "ticket"]
    finally:
        loop.close()


def test_the_errors_count_is_read_only_so_a_subclass_cannot_reset_it_by_accident(loop):
    with pytest.raises(AttributeError):
        loop.errors = []


# ------------------------------------------------------------ reader options


@pytest.fixture
def tcp_push_pull(ctx):
    pull = ctx.socket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:*")
    push = ctx.socket(zmq.PUSH)
    push.connect(pull.last_endpoint)
    return push, pull


@pytest.mark.parametrize("multipart", [True, False])
def test_asked_for_properties_the_callback_gets_each_messages_libzmq_properties(
        loop, tcp_push_pull, multipart):
    push, pull = tcp_push_pull
    got = []
    loop.register(pull, lambda msg, props: got.append((msg, props)), multipart=multipart,
                  properties=("Peer-Address", "User-Id"))
    push.send(b"hello")
    run_until(loop, lambda: got)
    message = [b"hello"] if multipart else b"hello"
    assert got == [(message, {"Peer-Address": "127.0.0.1", "User-Id": None})]


@pytest.mark.parametrize("limit, message", [
    ({"max_msg_size": 10}, [b"x" * 6, b"y" * 6]),  # each frame fits; the whole does not
    ({"max_frames": 3}, [b""] * 4),
])
def test_a_message_over_a_reader_limit_is_refused_counted_and_the_next_one_delivered(
        loop, push_pull, caplog, limit, message):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append, **limit)
    with caplog.at_level(logging.WARNING, logger="pollframe"):
        push.send_multipart(message)
        push.send_multipart([b"ok"])
        run_until(loop, lambda: got)
    assert got == [[b"ok"]]
    assert loop.refused == 1 and loop.errors == 0
    assert "refused a message" in caplog.text


@pytest.mark.parametrize("multipart", [True, False])
def test_a_message_exactly_at_a_reader_limit_is_delivered_and_one_byte_or_frame_more_refused(
        loop, push_pull, multipart):
    push, pull = push_pull
    got = []
    if multipart:
        loop.register(pull, got.append, max_msg_size=10, max_frames=3)
        sent = [[b"x" * 4, b"y" * 3, b"z" * 3], [b"x" * 4, b"y" * 3, b"z" * 4], [b"", b"", b"", b""], [b"ok"]]
    else:
        loop.register(pull, got.append, multipart=False, max_msg_size=10)
        sent = [[b"x" * 10], [b"x" * 11], [b"ok"]]
    for message in sent:
        push.send_multipart(message)
    run_until(loop, lambda: len(got) == 2)
    assert got == ([sent[0], [b"ok"]] if multipart else [b"x" * 10, b"ok"])
    assert loop.refused == len(sent) - 2


def test_refused_messages_are_logged_on_the_first_tenth_and_hundredth_only(loop, push_pull, caplog):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append, max_frames=1)
    with caplog.at_level(logging.WARNING, logger="pollframe"):
        for _ in range(100):
            push.send_multipart([b"a", b"b"])
        push.send(b"ok")
        run_until(loop, lambda: got)
    assert loop.refused == 100
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 3


def test_a_limit_below_one_is_refused_at_registration(loop, push_pull):
    with pytest.raises(ValueError, match="max_frames"):
        loop.register(push_pull[1], print, max_frames=0)
    assert not loop.is_registered(push_pull[1])


# ------------------------------------------------------------ embedding: fileno and next_deadline


def readable(fd, timeout=0.0):
    import select
    return bool(select.select([fd], [], [], timeout)[0])


def test_the_loops_descriptor_becomes_readable_when_a_message_arrives(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    fd = loop.fileno()
    loop.run_once(0)
    assert not readable(fd)
    push.send(b"x")
    assert readable(fd, 5.0)
    loop.run_once(0)
    assert got == [[b"x"]]


def test_the_loops_descriptor_becomes_readable_when_another_thread_queues_a_callback(loop):
    fd = loop.fileno()
    assert not readable(fd)
    threading.Thread(target=loop.call_soon_threadsafe, args=(print,)).start()
    assert readable(fd, 5.0)


def test_next_deadline_is_now_while_callbacks_wait_and_the_timer_after(fake_clock, loop_on_clock):
    loop = loop_on_clock
    timer = loop.call_later(5.0, print)
    handle = loop.call_soon(print)
    assert loop.next_deadline() == fake_clock()
    handle.cancel()
    loop.run_once(0)
    assert loop.next_deadline() == timer.when


def test_next_deadline_is_now_while_a_socket_holds_messages_a_pass_left_behind(ctx, push_pull, loop_on_clock):
    push, pull = push_pull
    loop = loop_on_clock
    got = []
    loop.register(pull, got.append)
    for _ in range(loop.max_drain + 5):
        push.send(b"x")
    loop.run_once(1.0)
    assert loop.next_deadline() == loop.time(), "messages are left: a pass is due"
    loop.run_once(0)
    loop.run_once(0)
    assert len(got) == loop.max_drain + 5
    assert loop.next_deadline() is None


# ------------------------------------------------------------ the loop never dies of an edge case

A_MONTH = 30 * 86_400.0


def test_a_timer_a_month_away_does_not_break_the_poll(loop):
    loop.call_later(A_MONTH, print)
    stopper = threading.Thread(target=loop.stop)
    stopper.start()
    loop.run()  # zmq_poll takes a C int of milliseconds: a month would overflow it
    stopper.join()
    loop.run_once(0)  # reads the stop's wake-up byte
    assert loop.next_deadline() == pytest.approx(loop.time() + A_MONTH, abs=60)


def test_run_once_with_a_timeout_of_a_month_returns_on_the_first_event(loop, push_pull):
    push, pull = push_pull
    got = []
    loop.register(pull, got.append)
    push.send(b"x")
    loop.run_once(A_MONTH)
    assert got == [[b"x"]]


def test_run_once_from_a_callback_is_refused_and_the_outer_pass_goes_on(loop):
    seen = []
    loop.call_soon(lambda: loop.run_once(0))
    loop.call_soon(seen.append, "after")
    loop.call_later(0.01, loop.stop)
    with pytest.raises(RuntimeError, match="passes do not nest"):
        with_reraise(loop).run_once(0)
    assert seen == []
    loop.run()  # the state is whole: the rest of the queue runs, the timer stops run()
    assert seen == ["after"]


def with_reraise(loop):
    """Make ``loop``'s error policy re-raise, for a test that wants the error itself."""
    loop.on_error = reraise
    return loop


class Unprintable:
    """A callback whose repr raises too."""

    def __call__(self, *args):
        raise ValueError("callback failed")

    def __repr__(self):
        raise RuntimeError("repr failed")


def test_a_raising_callback_whose_repr_raises_too_is_reported_and_the_loop_goes_on(loop, push_pull, caplog):
    push, pull = push_pull
    got = []
    loop.register(pull, Unprintable())
    loop.call_soon(Unprintable())
    loop.call_later(0.01, lambda: (got.append("later"), loop.stop()))
    push.send(b"x")
    with caplog.at_level(logging.ERROR, logger="pollframe"):
        loop.run()
    assert got == ["later"] and loop.errors == 2
    assert "Unprintable object at" in caplog.text


def test_a_keyboard_interrupt_in_a_timer_leaves_the_other_due_timers_for_the_next_run(
        loop_on_clock, fake_clock):
    loop = loop_on_clock
    ran = []

    def interrupt():
        raise KeyboardInterrupt

    loop.call_later(1.0, interrupt)
    loop.call_later(1.0, ran.append, "one-shot")
    loop.call_every(1.0, ran.append, "periodic")
    fake_clock.advance(1.0)
    with pytest.raises(KeyboardInterrupt):
        loop.run_once(0)
    assert ran == []
    loop.run_once(0)
    assert ran == ["one-shot", "periodic"]
    fake_clock.advance(1.0)
    loop.run_once(0)
    assert ran == ["one-shot", "periodic", "periodic"], "the periodic timer keeps its schedule"


def test_every_timer_callback_is_counted_in_the_stats_and_a_slow_one_is_named(loop_class):
    class Touchy(loop_class):
        slow_callback = 0.02  # so that the test needs no 100 ms callback

    def dawdle():
        deadline = time.perf_counter() + 0.03
        while time.perf_counter() < deadline:
            pass

    def dawdle_periodically():
        dawdle()

    loop = Touchy()
    try:
        before = loop.stats()["loop"]["callbacks"]
        ran = []
        for i in range(3):
            loop.call_later(0, ran.append, i)
        loop.call_later(0, dawdle)
        loop.call_every(1e-9, dawdle_periodically)
        loop.call_later(0, ran.append, 3)
        loop.run_once(0)
        snapshot = loop.stats()["loop"]
    finally:
        loop.close()
    assert ran == [0, 1, 2, 3]
    assert snapshot["callbacks"] - before == 6
    assert snapshot["slow"] == 2 and snapshot["slowest"]["seconds"] >= 0.03
    assert "dawdle" in snapshot["slowest"]["what"]
    assert snapshot["callback_seconds"] >= 0.06


def test_an_on_error_that_re_raises_is_called_once_and_the_socket_keeps_being_served(loop, push_pull):
    push, pull = push_pull
    calls, got = [], []

    def on_error(exc, where):
        calls.append(exc)
        raise exc

    def callback(frames):
        got.append(frames)
        if frames == [b"bad"]:
            raise ValueError("boom")

    loop.on_error = on_error
    loop.register(pull, callback)
    for data in (b"bad", b"one", b"two"):
        push.send(data)
    with pytest.raises(ValueError):
        loop.run_once(1.0)
    assert len(calls) == 1 and loop.errors == 1
    run_until(loop, lambda: len(got) == 3)
    assert got == [[b"bad"], [b"one"], [b"two"]]


def test_a_keyboard_interrupt_in_a_receive_callback_leaves_the_rest_for_the_next_pass(loop, push_pull):
    push, pull = push_pull
    got = []

    def callback(frames):
        got.append(frames)
        if frames == [b"interrupt"]:
            raise KeyboardInterrupt

    loop.register(pull, callback)
    for data in (b"interrupt", b"one", b"two"):
        push.send(data)
    with pytest.raises(KeyboardInterrupt):
        loop.run_once(1.0)
    run_until(loop, lambda: len(got) == 3)  # on EpollLoop the socket is re-checked though no edge comes
    assert got == [[b"interrupt"], [b"one"], [b"two"]]


def test_a_descriptor_that_reports_an_error_twice_in_a_row_is_unregistered_with_a_warning(loop, caplog):
    read_fd, write_fd = os.pipe()
    os.close(write_fd)  # the read end now reports a hang-up (POLLERR) on every pass
    calls = []
    try:
        loop.register(read_fd, lambda fd, events: calls.append(events))
        with caplog.at_level(logging.WARNING, logger="pollframe"):
            for _ in range(5):
                loop.run_once(0)
        assert calls == [zmq.POLLERR] and not loop.is_registered(read_fd)
        assert "twice in a row" in caplog.text
    finally:
        os.close(read_fd)


@pytest.mark.parametrize("call", [
    lambda loop: loop.call_soon(print),
    lambda loop: loop.call_soon_threadsafe(print),
    lambda loop: loop.call_later(1, print),
    lambda loop: loop.call_at(1, print),
    lambda loop: loop.call_every(1, print),
], ids=["call_soon", "call_soon_threadsafe", "call_later", "call_at", "call_every"])
def test_a_closed_loop_refuses_new_callbacks(loop, call):
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        call(loop)


@pytest.mark.parametrize("call", [
    lambda loop, sock: loop.register(sock, "not callable"),
    lambda loop, sock: loop.register(0, None),
    lambda loop, sock: loop.watch(sock, 42, zmq.POLLIN),
    lambda loop, sock: loop.call_soon(None),
    lambda loop, sock: loop.call_later(1, "x"),
    lambda loop, sock: loop.call_every(1, "x"),
    lambda loop, sock: loop.add_signal_handler(signal.SIGUSR2, None),
], ids=["register", "register-fd", "watch", "call_soon", "call_later", "call_every", "add_signal_handler"])
def test_a_callback_that_is_not_callable_is_refused_at_once(loop, push_pull, call):
    pull = push_pull[1]
    before = signal.getsignal(signal.SIGUSR2)
    with pytest.raises(TypeError, match="callable"):
        call(loop, pull)
    assert not loop.is_registered(pull) and not loop.is_registered(0)
    assert signal.getsignal(signal.SIGUSR2) is before


def test_a_zmq_asyncio_socket_is_refused_with_a_clear_message(loop):
    import zmq.asyncio
    actx = zmq.asyncio.Context()
    sock = actx.socket(zmq.PULL)
    try:
        with pytest.raises(TypeError, match="zmq.asyncio socket"):
            loop.register(sock, print)
        with pytest.raises(TypeError, match="zmq.asyncio socket"):
            Stream(sock, loop)
        loop.register(zmq.Socket(sock), print)  # the plain socket over it is fine
    finally:
        loop.close()
        sock.close(linger=0)
        actx.term()


def test_removing_a_signal_handler_restores_the_one_from_before_it_was_added(loop):
    def original(signum, frame):
        pass

    previous = signal.signal(signal.SIGUSR1, original)
    try:
        loop.add_signal_handler(signal.SIGUSR1, print)
        loop.add_signal_handler(signal.SIGUSR1, print, "again")
        loop.remove_signal_handler(signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1) is original
    finally:
        signal.signal(signal.SIGUSR1, previous)


# ------------------------------------------------------------ handles


def test_a_one_shot_timer_that_ran_is_done_not_cancelled(loop_on_clock, fake_clock):
    timer = loop_on_clock.call_later(1.0, print)
    assert timer.pending and not timer.cancelled
    fake_clock.advance(1.0)
    loop_on_clock.run_once(0)
    assert not timer.pending and not timer.cancelled
    assert "done" in repr(timer)


def test_call_soon_returns_a_plain_handle_without_a_deadline(loop):
    handle = loop.call_soon(print)
    assert type(handle) is Handle and not hasattr(handle, "when")
    loop.run_once(0)
    assert not handle.pending and not handle.cancelled


def test_cancelled_means_only_that_cancel_was_called(loop_on_clock, fake_clock):
    loop = loop_on_clock
    every = loop.call_every(1.0, print)
    for _ in range(3):
        fake_clock.advance(1.0)
        loop.run_once(0)
        assert every.pending and not every.cancelled, "a periodic timer stays pending while it runs"
    every.cancel()
    assert every.cancelled and not every.pending


def test_handles_can_be_weakly_referenced_and_do_not_keep_a_finished_callback_alive(loop):
    import weakref

    class Callback:
        def __call__(self):
            pass

    callback = Callback()
    alive = weakref.ref(callback)
    handles = weakref.WeakSet([loop.call_soon(callback), loop.call_later(0, callback)])
    del callback
    loop.run_once(0)
    assert alive() is None, "a handle lets go of its callback once it ran"
    assert len(handles) == 0


# ------------------------------------------------------------ tickets


def test_a_ticket_reset_by_each_message_fires_one_delay_after_the_last(loop_on_clock, fake_clock, push_pull):
    loop = loop_on_clock
    push, pull = push_pull
    expired = []
    start = fake_clock()
    silence = loop.ticket(5.0, lambda: expired.append(fake_clock() - start))
    loop.register(pull, lambda frames: silence.reset())
    for _ in range(4):  # a message every 3 s: the peer is alive
        fake_clock.advance(3.0)
        push.send(b"alive")
        run_until(loop, lambda: loop.next_deadline() != fake_clock())
    assert expired == []
    fake_clock.advance(4.999)
    loop.run_once(0)
    assert expired == []
    fake_clock.advance(0.001)
    loop.run_once(0)
    assert expired == [pytest.approx(17.0)] and not silence.pending and not silence.cancelled


def test_a_ticket_reset_by_an_earlier_callback_in_the_same_pass_does_not_fire(loop_on_clock, fake_clock):
    loop = loop_on_clock
    fired = []
    ticket = loop.ticket(1.0, fired.append, "ticket")
    loop.call_later(0.5, ticket.reset)  # due in the same pass as the ticket, and first
    fake_clock.advance(1.0)
    loop.run_once(0)
    assert fired == [] and ticket.pending, "reset at 1.0: due at 2.0"
    fake_clock.advance(1.0)
    loop.run_once(0)
    assert fired == ["ticket"]


def test_a_ticket_that_fired_is_armed_again_by_reset_and_a_cancelled_one_never_fires(
        loop_on_clock, fake_clock):
    loop = loop_on_clock
    fired = []
    again = loop.ticket(1.0, fired.append, "again")
    never = loop.ticket(1.0, fired.append, "never")
    never.cancel()
    fake_clock.advance(1.0)
    loop.run_once(0)
    again.reset()
    fake_clock.advance(1.0)
    loop.run_once(0)
    assert fired == ["again", "again"] and never.cancelled


def test_a_closed_loop_refuses_a_ticket_and_one_that_fired_cannot_be_armed_again(loop_on_clock, fake_clock):
    loop = loop_on_clock
    fired = loop.ticket(1.0, print)
    fake_clock.advance(1.0)
    loop.run_once(0)
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.ticket(1.0, print)
    with pytest.raises(RuntimeError, match="closed"):
        fired.reset()


def test_a_routers_size_limit_counts_what_the_peer_sent_not_the_routing_id(loop, ctx):
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.bind("inproc://limit-router")
    dealer.connect("inproc://limit-router")
    got = []
    loop.register(router, got.append, max_msg_size=10)
    dealer.send_multipart([b"", b"x" * 10])  # 10 bytes sent; libzmq adds a 5-byte routing id
    dealer.send_multipart([b"", b"x" * 11])
    dealer.send(b"end")
    run_until(loop, lambda: len(got) == 2)
    assert [frames[1:] for frames in got] == [[b"", b"x" * 10], [b"end"]] and loop.refused == 1
