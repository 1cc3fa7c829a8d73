"""Liveness: is the peer at the other end still there? (sans-io)

Theory of operation
-------------------
ZeroMQ reconnects by itself and never says that a peer died: a request to
a crashed server just waits. The answer the zguide gives is heartbeating:
expect traffic (any message, or a heartbeat when there is nothing else to
say) every ``interval`` seconds, and call the peer gone after ``liveness``
intervals went by without any. :class:`Liveness` is that rule as an object
with no clock and no sockets: :meth:`heard` records traffic, :meth:`check`
decides, both take ``now``. A peer last heard at ``t`` is gone from
``t + liveness * interval`` on.

Recording traffic costs one assignment, so it can be called for every
message; deciding is left to a periodic :meth:`check` (once an interval is
enough: a dead peer is then noticed within one more interval), or to
:meth:`lost` when something more direct says the connection dropped (a
socket monitor's ``disconnected`` event).

A peer that is known to be busy and silent for a reason (a worker computing
a long reply) is :meth:`pause`-d: missing traffic then does not count, and
:meth:`resume` starts counting afresh.

``on_gone()`` and ``on_back()`` are called on the two changes of state
(gone, and heard again after being gone); each method also returns whether
it changed the state, for callers that prefer values to callbacks.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

__all__ = ["Liveness"]

Callback = Optional[Callable[[], Any]]


class Liveness:
    """Expects traffic from one peer every ``interval`` seconds; gone after ``liveness`` missed.

    ``now`` is the time the watch starts (the peer counts as heard then).
    """

    def __init__(
        self,
        interval: float,
        liveness: int = 3,
        *,
        now: float,
        on_gone: Callback = None,
        on_back: Callback = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        if isinstance(liveness, bool) or not isinstance(liveness, int) or liveness < 1:
            raise ValueError(f"liveness must be an integer of at least 1, not {liveness!r}")
        self.interval = interval
        self.liveness = liveness
        self.on_gone = on_gone
        self.on_back = on_back
        self.last_heard = now
        self._gone = False
        self._paused = False

    # ------------------------------------------------------------ feeding

    def heard(self, now: float) -> bool:
        """Traffic from the peer at ``now``; True (and ``on_back()``) if it had been gone."""
        self.last_heard = now
        if not self._gone:
            return False
        self._gone = False
        if self.on_back is not None:
            self.on_back()
        return True

    def check(self, now: float) -> bool:
        """Declare the peer gone if ``liveness`` intervals passed without traffic.

        Returns True (and calls ``on_gone()``) only on the check that
        declares it; never while paused or already gone.
        """
        if self._gone or self._paused or now - self.last_heard < self.liveness * self.interval:
            return False
        return self._declare_gone()

    def lost(self, now: float) -> bool:
        """The connection is known to be down (e.g. a ``disconnected`` socket event): gone now.

        Even while paused: a busy peer whose connection dropped is gone.
        """
        if self._gone:
            return False
        return self._declare_gone()

    def reset(self, now: float) -> None:
        """Start over at ``now``, as for a new connection: heard now, not gone, not paused."""
        self.last_heard = now
        self._gone = False
        self._paused = False

    def pause(self) -> None:
        """The peer is known to be busy: missing traffic does not count until :meth:`resume`."""
        self._paused = True

    def resume(self, now: float) -> None:
        """Count missed intervals again, from ``now``."""
        if self._paused:
            self._paused = False
            self.last_heard = max(self.last_heard, now)

    # -------------------------------------------------------------- asking

    @property
    def gone(self) -> bool:
        """True once :meth:`check` or :meth:`lost` declared the peer gone, until it is heard from again."""
        return self._gone

    @property
    def paused(self) -> bool:
        """True while the peer is paused: missed intervals are not counted."""
        return self._paused

    def missed(self, now: float) -> int:
        """Whole intervals gone by without traffic at ``now`` (0 while paused)."""
        if self._paused:
            return 0
        return max(int((now - self.last_heard) // self.interval), 0)

    def deadline(self) -> Optional[float]:
        """When the peer will be declared gone if it stays silent; None while paused or gone."""
        if self._paused or self._gone:
            return None
        return self.last_heard + self.liveness * self.interval

    def __repr__(self) -> str:
        state = "gone" if self._gone else ("paused" if self._paused else "alive")
        return f"<Liveness {state} interval={self.interval:g} liveness={self.liveness}>"

    # ------------------------------------------------------------ internals

    def _declare_gone(self) -> bool:
        self._gone = True
        if self.on_gone is not None:
            self.on_gone()
        return True
