"""Timer bookkeeping for the loop, without any I/O: time is always passed in.

Theory of operation
-------------------
Timers fire in order of ``(deadline, creation)``. A single heap gives that,
but every insert and every pop then costs ``O(log n)`` tuple comparisons.
Most programs use a handful of distinct delays (``call_later(0, …)``,
``call_later(0.5, …)``), and timers made with the same delay on a monotonic
clock are already sorted by deadline in the order they were made. So, as in
Node.js, each delay gets a FIFO list and only the head of each list sits in
the heap; the heap merges the lists. Absolute deadlines (``call_at``) and
periodic timers have no such order and go into the heap directly.

A cancelled timer stays where it is and is skipped when it comes due; when
more than half of the stored timers are cancelled, everything is rebuilt,
so cancelling costs ``O(1)`` and memory stays proportional to live timers.
"""
from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush, heapreplace, merge
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple

from pollframe.handles import Handle

if TYPE_CHECKING:
    from pollframe.tickets import Ticket, TicketLines

#: Rebuild only when at least this many timers are cancelled (and more than half).
_COMPACT_MIN = 256
_INF = float("inf")
_new_timer = object.__new__


def _checked_delay(delay: float) -> float:
    """The slow path of call_later: a past deadline is due now; no deadline at all is an error."""
    if delay < 0:
        return 0.0
    raise ValueError(f"a timer needs a finite delay in seconds, not {delay!r}")


class Timer(Handle):
    """A scheduled call (asyncio's ``TimerHandle``): a Handle with a deadline, and an interval if periodic."""

    __slots__ = ("when", "seq", "interval", "_queue")

    def __init__(
        self,
        when: float,
        seq: int,
        callback: Callable[..., Any],
        args: tuple,
        interval: Optional[float],
        queue: Optional[TimerQueue],
    ) -> None:
        # TimerQueue.call_later sets these same slots itself: keep the two in step.
        self.callback: Optional[Callable[..., Any]] = callback
        self.args: Optional[tuple] = args
        self.cancelled = False
        self.when = when
        self.seq = seq
        self.interval = interval
        self._queue = queue

    def cancel(self) -> None:
        """Stop the call from running; cancelling twice, or after it ran, is harmless.

        A periodic timer stops for good. The queue counts it, so that it can
        drop cancelled timers once they are the majority.
        """
        if self.cancelled:
            return
        self.cancelled = True
        self.callback = self.args = None
        queue, self._queue = self._queue, None
        if queue is not None:
            queue._cancelled_one()

    def __repr__(self) -> str:
        every = "" if self.interval is None else f" every {self.interval:g} s"
        return f"<Timer {self._state()} when={self.when:.6f}{every}>"


def _order(timer: Timer) -> Tuple[float, int]:
    return timer.when, timer.seq


def _ticket_class() -> type:
    from pollframe.tickets import Ticket

    return Ticket


def next_periodic_deadline(previous: float, interval: float, now: float) -> float:
    """The first deadline ``previous + k * interval`` (k >= 1) that lies after ``now``.

    Missed periods are skipped rather than bunched: a callback that was late
    by three periods runs once, then keeps the original phase.
    """
    deadline = previous + interval
    if deadline > now:
        return deadline
    missed = (now - previous) // interval
    deadline = previous + (missed + 1) * interval
    return deadline if deadline > now else deadline + interval


# A heap entry: (deadline, creation sequence, timer, the delay whose FIFO holds
# the later timers made with the same delay, or None). Sequence numbers are
# unique, so comparison never reaches the timer; tuples compare in C.
_Entry = Tuple[float, int, Timer, Optional[float]]


class TimerQueue:
    """Timers ordered by deadline, then by creation; no clock of its own."""

    def __init__(self) -> None:
        self._heap: List[_Entry] = []
        self._fifos: Dict[float, Deque[Timer]] = {}
        self._seq = 0
        self._stored = 0
        self._cancelled = 0
        self._tickets: Optional[TicketLines] = None  # made with the first ticket

    def __bool__(self) -> bool:
        """Whether anything is stored, cancelled timers included (cheap: no count)."""
        return bool(self._heap) or bool(self._tickets)

    def __len__(self) -> int:
        """Live (not cancelled) timers and tickets that have not run yet."""
        return self._stored - self._cancelled + (len(self._tickets) if self._tickets is not None else 0)

    def close(self) -> None:
        """Drop everything; tickets refuse to be armed again (their loop is closed)."""
        self._heap.clear()
        self._fifos.clear()
        self._stored = self._cancelled = 0
        if self._tickets is not None:
            self._tickets.close()

    def next_seq(self) -> int:
        """A new creation sequence number: ties between deadlines break by it."""
        self._seq += 1
        return self._seq

    def ticket(
        self, now: float, delay: float, callback: Callable[..., Any], args: tuple, clock: Callable[[], float]
    ) -> Ticket:
        """A one-shot timeout due at ``now + delay`` whose ``reset()`` (on ``clock``) is O(1): tickets.py."""
        if self._tickets is None:
            from pollframe.tickets import TicketLines

            self._tickets = TicketLines(self)
        return self._tickets.add(now, delay, callback, args, clock)

    def call_later(self, now: float, delay: float, callback: Callable[..., Any], args: tuple) -> Timer:
        """Schedule ``callback(*args)`` at ``now + delay`` on the FIFO for that delay.

        A negative delay means "due now"; an infinite or NaN one is refused,
        since it could never fire and would break the poll timeout.
        """
        if not 0.0 <= delay < _INF:
            delay = _checked_delay(delay)
        self._seq = seq = self._seq + 1
        when = now + delay
        timer = _new_timer(Timer)  # Timer.__init__'s work without its call, the costlier half here
        timer.callback = callback
        timer.args = args
        timer.cancelled = False
        timer.when = when
        timer.seq = seq
        timer.interval = None
        timer._queue = self
        self._stored += 1
        fifo = self._fifos.get(delay)
        if fifo is None:
            self._fifos[delay] = deque()
            heappush(self._heap, (when, seq, timer, delay))
        else:
            fifo.append(timer)
        return timer

    def call_at(
        self, when: float, callback: Callable[..., Any], args: tuple, interval: Optional[float] = None
    ) -> Timer:
        """Schedule ``callback(*args)`` at ``when``; with ``interval``, again every interval."""
        if not -_INF < when < _INF:
            raise ValueError(f"a timer needs a finite deadline, not {when!r}")
        self._seq += 1
        timer = Timer(when, self._seq, callback, args, interval, self)
        self._stored += 1
        heappush(self._heap, (when, timer.seq, timer, None))
        return timer

    def reschedule(self, timer: Timer, now: float) -> None:
        """Put a periodic timer that just ran back in, keeping its phase."""
        if timer.cancelled or timer.interval is None:
            return
        timer.when = next_periodic_deadline(timer.when, timer.interval, now)
        timer._queue = self
        self._stored += 1
        heappush(self._heap, (timer.when, timer.seq, timer, None))

    def restore(self, timers: List[Timer]) -> None:
        """Put back timers that ``pop_due`` returned but that never ran (the pass was left early)."""
        for timer in reversed(timers):  # tickets go back to the front of their lines: last one first
            if timer.cancelled:
                continue
            if self._tickets is not None and isinstance(timer, _ticket_class()):
                self._tickets.restore(timer)  # type: ignore[arg-type]
                continue
            timer._queue = self
            self._stored += 1
            heappush(self._heap, (timer.when, timer.seq, timer, None))

    def next_deadline(self) -> Optional[float]:
        """The deadline of the earliest live timer, or None when there is none."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            self._pop_entry()
            self._cancelled -= 1
        deadline = heap[0][0] if heap else None
        if self._tickets:
            ticket_deadline = self._tickets.next_deadline()
            if ticket_deadline is not None and (deadline is None or ticket_deadline < deadline):
                return ticket_deadline
        return deadline

    def pop_due(self, now: float) -> List[Timer]:
        """Remove and return the live timers due at ``now``, in firing order.

        The list is taken whole before any of them runs, so a timer scheduled
        by one of these callbacks waits for the next pass.
        """
        heap = self._heap
        due: List[Timer] = []
        append = due.append
        while heap and heap[0][0] <= now:
            _, _, timer, delay = heap[0]
            if delay is not None:
                self._drain_fifo(timer, delay, now, due)
                continue
            heappop(heap)
            self._stored -= 1
            timer._queue = None
            if timer.cancelled:
                self._cancelled -= 1
            else:
                append(timer)
        tickets = self._tickets
        if tickets:
            fired = tickets.pop_due(now)
            if fired:
                due = list(merge(due, fired, key=_order)) if due else list(fired)
        return due

    def _drain_fifo(self, head: Timer, delay: float, now: float, due: List[Timer]) -> None:
        """The heap's head came from ``delay``'s FIFO: take its due timers, up to the next heap entry.

        A FIFO is already in firing order, so its timers that are due and
        earlier than every other heap entry come out with one ``popleft``
        each; only the FIFO's new head goes back into the heap (one sift per
        run, not per timer: ``call_later(0)`` in a burst is one run).
        """
        heap = self._heap
        fifo = self._fifos[delay]
        # The earliest deadline among the other entries: the smaller child of the root.
        size = len(heap)
        other = min(heap[1][0], heap[2][0]) if size > 2 else heap[1][0] if size == 2 else _INF
        popleft, append = fifo.popleft, due.append
        timer = head
        taken = cancelled = 0
        while True:
            taken += 1
            timer._queue = None
            if timer.cancelled:
                cancelled += 1
            else:
                append(timer)
            if not fifo:
                break
            when = fifo[0].when
            if when > now or when >= other:  # not due, or a tie the heap must break by creation
                break
            timer = popleft()
        self._stored -= taken
        self._cancelled -= cancelled
        if fifo:
            successor = popleft()
            heapreplace(heap, (successor.when, successor.seq, successor, delay))
        else:
            del self._fifos[delay]
            heappop(heap)

    def _pop_entry(self) -> Timer:
        """Pop the heap's head; if it came from a FIFO, that FIFO's next timer takes its place.

        ``heapreplace`` sifts once where a pop and a push would sift twice.
        """
        heap = self._heap
        _, _, timer, delay = heap[0]
        self._stored -= 1
        if delay is not None:
            fifo = self._fifos[delay]
            if fifo:
                successor = fifo.popleft()
                heapreplace(heap, (successor.when, successor.seq, successor, delay))
                return timer
            del self._fifos[delay]
        heappop(heap)
        return timer

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        if self._cancelled >= _COMPACT_MIN and self._cancelled * 2 > self._stored:
            self._compact()

    def _compact(self) -> None:
        """Drop cancelled timers, keeping every FIFO sorted and every head in the heap."""
        heap: List[_Entry] = []
        for _, _, head, delay in self._heap:
            fifo = self._fifos.pop(delay) if delay is not None else deque()
            live = [t for t in (head, *fifo) if not t.cancelled]
            if not live:
                continue
            if delay is not None:
                self._fifos[delay] = deque(live[1:])
            heap.append((live[0].when, live[0].seq, live[0], delay))
        heapify(heap)
        self._heap = heap
        self._stored -= self._cancelled
        self._cancelled = 0
