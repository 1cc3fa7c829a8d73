"""PeerTable: who is behind a ROUTER, who is idle, who went silent (sans-io).

Theory of operation
-------------------
A queue or broker on a ROUTER socket keeps the same three facts about its
workers: when each was last heard from, which of them are idle (and which
has been idle longest, so work is spread least-recently-used first), and
which have been silent too long to be trusted. Written by hand, that is a
list scanned on every message and a timer per peer; the bug that follows is
a stale timer. Here it is one object with no clock and no sockets: every
call that depends on time takes ``now``.

Two orders are kept, each in an insertion-ordered dict, so no call sorts or
scans:

- *last heard*: every peer, oldest first. :meth:`seen` moves a peer to the
  end, so :meth:`expire` only looks at the front and stops at the first
  peer still within ``expiry`` (``O(expired)``).
- *idle*: the peers ready for work, in the order they became ready.
  :meth:`take` hands out the front one. A heartbeat refreshes a peer's
  expiry but does not move it in this order: being heard from is not
  being used.

A peer that :meth:`take` handed out is *busy*: still known and still
expiring when silent, but not idle until :meth:`ready` says so again.
Times must not go backwards (a monotonic clock).
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional

__all__ = ["PeerTable"]


class PeerTable:
    """The peers of one ROUTER: idle ones in least-recently-used order, silent ones expired.

    ``expiry`` is the most seconds a peer may stay silent; a peer last
    heard at ``t`` expires at any ``now > t + expiry``.
    """

    def __init__(self, expiry: float) -> None:
        if not expiry > 0:
            raise ValueError(f"expiry must be a positive number of seconds, not {expiry!r}")
        self.expiry = expiry
        self._heard: Dict[bytes, float] = {}  # every known peer -> last heard; oldest first
        self._idle: Dict[bytes, None] = {}  # idle peers; longest idle first

    # ------------------------------------------------------------ recording

    def ready(self, peer: bytes, now: float) -> None:
        """``peer`` is alive and ready for work: idle, at the back of the line.

        A peer that is idle already keeps its place.
        """
        heard = self._heard
        if peer in heard:
            del heard[peer]  # as _touch does, inline: a broker calls this once per reply
        heard[peer] = now
        idle = self._idle
        if peer not in idle:
            idle[peer] = None

    def seen(self, peer: bytes, now: float) -> bool:
        """``peer`` was heard from (a heartbeat, any message): it is alive at ``now``.

        Only a known peer is refreshed, idle or busy, without changing its
        place in line; returns False (and records nothing) for a peer the
        table does not know, which the caller may then treat as a stranger.
        """
        if peer not in self._heard:
            return False
        self._touch(peer, now)
        return True

    def take(self) -> Optional[bytes]:
        """The peer idle longest, now busy; None when no peer is idle."""
        idle = self._idle
        if not idle:
            return None
        peer = next(iter(idle))
        del idle[peer]
        return peer

    def remove(self, peer: bytes) -> bool:
        """Forget ``peer`` (it said goodbye, or broke the protocol); False if it was not known."""
        self._idle.pop(peer, None)
        return self._heard.pop(peer, None) is not None

    def expire(self, now: float) -> List[bytes]:
        """Remove and return the peers silent for longer than ``expiry`` at ``now``, oldest first."""
        heard, idle = self._heard, self._idle
        limit = now - self.expiry
        gone: List[bytes] = []
        for peer, last in heard.items():
            if last >= limit:
                break
            gone.append(peer)
        for peer in gone:
            del heard[peer]
            idle.pop(peer, None)
        return gone

    # -------------------------------------------------------------- asking

    def next_expiry(self) -> Optional[float]:
        """When the quietest peer expires if it stays silent; None when no peer is known."""
        for last in self._heard.values():
            return last + self.expiry
        return None

    def idle(self) -> List[bytes]:
        """The idle peers, the one :meth:`take` would hand out first at the front."""
        return list(self._idle)

    def is_idle(self, peer: bytes) -> bool:
        """True if ``peer`` is waiting for work."""
        return peer in self._idle

    def last_seen(self, peer: bytes) -> Optional[float]:
        """When ``peer`` was last heard from; None if it is not known."""
        return self._heard.get(peer)

    def __contains__(self, peer: object) -> bool:
        return peer in self._heard

    def __len__(self) -> int:
        """Known peers, idle and busy."""
        return len(self._heard)

    def __iter__(self) -> Iterator[bytes]:
        """Known peers, least recently heard from first."""
        return iter(list(self._heard))

    def __repr__(self) -> str:
        return f"<PeerTable known={len(self._heard)} idle={len(self._idle)} expiry={self.expiry:g}>"

    # ------------------------------------------------------------ internals

    def _touch(self, peer: bytes, now: float) -> None:
        heard = self._heard
        if peer in heard:
            del heard[peer]  # re-insert at the end: the last-heard order stays sorted
        heard[peer] = now
