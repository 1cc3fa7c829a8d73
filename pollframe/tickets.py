"""Tickets: one-shot timeouts whose ``reset()`` pushes the deadline back by their delay in O(1).

A ticket is CZMQ's ``zloop_ticket``: the timeout a server keeps per peer
("no word from it for 10 s: drop it") and pushes back on each message. With
plain timers that is a cancel and a new timer per message; with a ticket it
is ``reset()``, which only writes the new deadline into the ticket, however
many tickets are live.

Theory of operation (sans-io: time is always passed in). As for the timers
of ``timers.py``, tickets of one delay queue in a FIFO (a *line*): queued at
``now`` for ``now + delay``, so on a monotonic clock each line is sorted,
and only each line's head sits in a heap that merges the lines. A reset is
lazy: the ticket keeps its place in the line and only its deadline moves.
When its (now early) entry comes to the top of the heap (to set a poll
timeout, or to fire), the ticket is queued again at the back of its line
for its true deadline, or, when a ticket queued meanwhile makes the back of
the line later than that, into the heap on its own. So a ticket is queued
again at most once per delay however often it is reset, each ticket has
exactly one entry, and memory stays proportional to the live tickets. The
price: the poll timeout may come from a reset ticket's old deadline, so the
loop wakes there once for nothing (at most once per delay per ticket).
Cancelling marks the ticket; its entry is dropped when it comes up.

A ticket that fired is done; ``reset()`` queues it again for ``now + delay``.
"""
from __future__ import annotations

from collections import deque
from heapq import heappop, heappush, heapreplace
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from pollframe.timers import Timer

if TYPE_CHECKING:
    from pollframe.timers import TimerQueue

__all__ = ["Ticket", "TicketLines"]


# (deadline the entry was queued for, sequence, ticket, its line or None when on its own)
_Entry = Tuple[float, int, "Ticket", Optional[Deque["Ticket"]]]


class Ticket(Timer):
    """A one-shot timeout with an O(1) ``reset()``; made by ``loop.ticket(delay, callback, *args)``."""

    __slots__ = ("delay", "_queued", "_at", "_at_seq", "_lines", "_clock", "_target")

    def __init__(
        self,
        when: float,
        seq: int,
        delay: float,
        callback: Callable[..., Any],
        args: tuple,
        lines: TicketLines,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(when, seq, callback, args, None, None)
        self.delay = delay
        self._queued = False  # whether it has its one entry in a line or the heap
        # The deadline and sequence its entry was queued with (``when`` and ``seq`` move on
        # with resets); lines and the heap are ordered by these.
        self._at = when
        self._at_seq = seq
        self._lines = lines
        self._clock = clock
        #: Kept so that reset() can queue a ticket that fired again (None once cancelled).
        self._target: Optional[Tuple[Callable[..., Any], tuple]] = (callback, args)

    def reset(self) -> None:
        """Make the deadline ``now + delay``: pushed back if pending, queued again if it fired. O(1)."""
        if self.cancelled:
            raise RuntimeError("a cancelled ticket cannot be reset; make a new one")
        when = self._clock() + self.delay
        if when != self.when or not self._queued:  # a reset within the same instant keeps its place
            self.when = when
            self.seq = self._lines.next_seq()
        if not self._queued:
            self._lines.requeue(self)

    def cancel(self) -> None:
        """Stop the ticket for good; cancelling twice, or after it fired, is harmless."""
        if not self.cancelled:
            self.cancelled = True
            self.callback = self.args = None
            self._target = None

    def __repr__(self) -> str:
        return f"<Ticket {self._state()} when={self.when:.6f} delay={self.delay:g} s>"


class TicketLines:
    """The tickets, one FIFO line per delay, merged by a heap of the lines' heads."""

    def __init__(self, queue: TimerQueue) -> None:
        self.next_seq = queue.next_seq  # shared: ties between tickets and timers break by creation
        self._heap: List[_Entry] = []
        self._lines: Dict[float, Deque[Ticket]] = {}
        self.closed = False

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __len__(self) -> int:
        """Tickets that will still fire."""
        return sum(1 for ticket in self._queued() if not ticket.cancelled)

    def add(self, now: float, delay: float, callback: Callable[..., Any], args: tuple,
            clock: Callable[[], float]) -> Ticket:
        """A new ticket due at ``now + delay``."""
        if not 0.0 <= delay < float("inf"):
            raise ValueError(f"a ticket needs a finite, non-negative delay in seconds, not {delay!r}")
        ticket = Ticket(now + delay, self.next_seq(), delay, callback, args, self, clock)
        self._queue(ticket)
        return ticket

    def close(self) -> None:
        """The loop closed: forget every ticket; arming one again is refused."""
        self.closed = True
        self._heap.clear()
        self._lines.clear()

    def requeue(self, ticket: Ticket) -> None:
        """Queue a ticket that has no entry (it fired, or was taken as due) for its deadline."""
        if self.closed:
            raise RuntimeError("this PollLoop is closed")
        if ticket.callback is None:  # it fired: arm it again
            ticket.callback, ticket.args = ticket._target  # type: ignore[misc]
        self._queue(ticket)

    def next_deadline(self) -> Optional[float]:
        """When the earliest ticket may be due, or None: never later than that, possibly earlier.

        Cancelled tickets at the top are dropped. A reset ticket at the top
        is left where it is and its old deadline returned: the loop wakes
        there once, and ``pop_due`` queues it again for its true deadline.
        Fixing it here instead would cost every poll a re-queue per ticket
        reset since (one per reset when polls are frequent); this way a
        ticket is re-queued at most once per delay however often it is reset.
        """
        heap = self._heap
        while heap and heap[0][2].cancelled:
            self._pop_top()
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> List[Ticket]:
        """Remove and return the tickets due at ``now``, in deadline order."""
        heap = self._heap
        due: List[Ticket] = []
        while heap and heap[0][0] <= now:
            when = heap[0][0]
            ticket = self._pop_top()
            if not ticket.cancelled and ticket.when == when:
                due.append(ticket)
            else:
                self._settle(ticket)
        return due

    def restore(self, ticket: Ticket) -> None:
        """Put back a ticket that ``pop_due`` returned but that never fired."""
        if not ticket.cancelled and not ticket._queued:
            self._queue(ticket)

    # ------------------------------------------------------------ internals

    def _queued(self) -> Iterator[Ticket]:
        for _, _, ticket, line in self._heap:
            yield from (ticket,) if line is None else line

    def _queue(self, ticket: Ticket) -> None:
        """Give ``ticket`` its one entry: at the back of its line if that keeps the line sorted.

        A line holds its head too (``line[0]``, the one in the heap), so
        ``line[-1]`` is always the latest entry of the line.
        """
        ticket._queued = True
        ticket._at = at = ticket.when
        ticket._at_seq = seq = ticket.seq
        line = self._lines.get(ticket.delay)
        if line is None:
            self._lines[ticket.delay] = line = deque((ticket,))
            heappush(self._heap, (at, seq, ticket, line))
        elif (line[-1]._at, line[-1]._at_seq) < (at, seq):
            line.append(ticket)
        else:  # a ticket queued after this one's reset is due earlier: the back would be out of order
            heappush(self._heap, (at, seq, ticket, None))

    def _pop_top(self) -> Ticket:
        """Take the top entry off the heap; the next ticket of its line takes its place."""
        heap = self._heap
        _, _, ticket, line = heap[0]
        ticket._queued = False
        if line is not None:
            line.popleft()  # the head: this ticket
            if line:
                successor = line[0]
                heapreplace(heap, (successor._at, successor._at_seq, successor, line))
                return ticket
            del self._lines[ticket.delay]
        heappop(heap)
        return ticket

    def _settle(self, ticket: Ticket) -> None:
        """A stale entry came off the heap: a cancelled ticket is gone, a reset one is queued again."""
        if not ticket.cancelled:
            self._queue(ticket)
