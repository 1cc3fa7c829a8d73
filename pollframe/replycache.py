"""ReplyCache: a server executes a retried request once and sends the same reply again.

Theory of operation. A client that retries (the :class:`~pollframe.requester.Requester`,
any Lazy Pirate) sends the *same* request again when a reply is late: its
first copy may have been executed already, and only the reply was lost or
slow. A server that keeps a :class:`ReplyCache` tells it of each request as
it arrives, under the request's key, and learns one of three things:

- ``None``: new. Execute it; the key is now *in progress*.
- :data:`IN_PROGRESS` (an empty tuple): a copy is being executed (an
  ``async`` handler, a reply token). Drop this copy: the reply will come.
- the stored reply frames: executed already. Send these again.

When the reply is sent the server stores its frames with :meth:`ReplyCache.replied`.
So while an entry lives, a retried request is executed at most once and
every copy that arrives after the reply gets the same bytes.

The key is what the client put in the request to name it: the envelope
frames before the message, *without* the routing-id frame(s) a ROUTER
prepends (that id changes when the client reconnects), plus a hash of the
message frame, so that an id reused for another request is a new request and
never gets someone else's reply. :func:`request_key` makes it. A request
with no id of its own (a REQ client through a ROUTER: only the empty
delimiter; anything on REP, which strips the envelope) has no key and is
never cached.

Bounds. At most ``max_entries`` entries (the oldest is evicted first), each
kept ``ttl`` seconds from the arrival of the request's first copy. Entries
are kept in arrival order, which is also expiry order (two deques beside
the dict of replies), so eviction and expiry each cost O(1). Memory is
about ``max_entries`` times (the id frames plus the reply): on a
:class:`~pollframe.handler.MessageHandler` the id frames are bounded by its
``max_envelope_bytes`` (8 KiB), so 10,000 entries of peers that fill their
envelopes hold at most about 80 MiB plus the replies. One peer's flood of
new requests evicts the oldest entries, other peers' too (counted in
``evicted``): size ``max_entries`` for the busiest ``ttl`` expected.

Who gets a stored reply: any peer that sends a request with the same id
frames and body. A Requester's ids start with 8 random bytes, so only a
peer that saw the request (on the wire, unencrypted) can name it; use
CURVE across machines.

Sans-io: no zmq, no clock of its own. The caller passes keys, frames and the
time (monotonic seconds, e.g. ``loop.time()``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Deque, Dict, Hashable, Optional, Sequence, Tuple

__all__ = ["IN_PROGRESS", "ReplyCache", "request_key"]

Key = Tuple[Hashable, ...]
Frames = Tuple[bytes, ...]

IN_PROGRESS: Tuple[()] = ()
"""What :meth:`ReplyCache.arrived` answers for a request still being executed: drop this copy."""

_UNKNOWN = object()


def request_key(frames: Sequence[bytes], json_load: int = -1, routing: int = 0) -> Optional[Key]:
    """The cache key of the request *frames*, or None when it has no id of its own.

    The key is the frames before ``frames[json_load]`` after the first
    ``routing`` ones (the routing id a ROUTER prepends: 1 on a ROUTER, 0
    otherwise), plus the hash of the message frame. A request whose id
    frames are missing or all empty (only delimiters) has no key.
    """
    try:
        body = frames[json_load]
    except IndexError:
        return None
    ids = frames[routing:json_load]
    if not any(ids):
        return None
    return (*ids, hash(body))


class ReplyCache:
    """What a server answered, by request key: retries are not executed again.

    ``max_entries`` bounds the entries (the oldest is evicted first);
    ``ttl`` is how long, in seconds from the arrival of a request's first
    copy, its entry is kept. **The ttl must outlast the client's whole retry
    span** (``timeout * retries`` for a Requester, plus the time a copy can
    spend in the network): a copy that arrives after its entry expired is
    executed again. The defaults (10,000 entries, 60 s) cover a server
    taking up to ~160 requests a second from clients that retry for up to
    a minute; a busier server needs more entries, or it evicts entries
    younger than their ttl (counted in ``evicted``).

    Counters: ``resent`` (copies answered with the stored reply),
    ``dropped`` (copies that arrived while in progress), ``evicted`` (entries
    pushed out by ``max_entries`` before their ttl), ``expired``.
    """

    def __init__(self, max_entries: int = 10_000, ttl: float = 60.0) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValueError(f"max_entries must be an int >= 1, not {max_entries!r}")
        if not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a finite number of seconds > 0, not {ttl!r}")
        self.max_entries = max_entries
        self.ttl = float(ttl)
        # key -> reply frames (None while in progress); the keys and their expiry times, oldest first.
        self._replies: Dict[Key, Optional[Frames]] = {}
        self._keys: Deque[Key] = deque()
        self._expiries: Deque[float] = deque()
        self.resent = 0
        self.dropped = 0
        self.evicted = 0
        self.expired = 0

    def arrived(self, key: Key, now: float) -> Optional[Sequence[bytes]]:
        """A request with *key* arrived at *now*: None (new, execute it), IN_PROGRESS (drop it) or its reply.

        A new key is entered as in progress. A copy of a known key does not
        make its entry live longer: the ttl runs from the first copy.
        """
        expiries = self._expiries
        if expiries and expiries[0] <= now:
            self._expire(now)
        reply = self._replies.get(key, _UNKNOWN)
        if reply is _UNKNOWN:
            self._add(key, now, None)
            return None
        if reply is None:
            self.dropped += 1
            return IN_PROGRESS
        self.resent += 1
        return reply  # type: ignore[return-value]

    def replied(self, key: Key, frames: Sequence[bytes], now: float) -> None:
        """The reply to *key* is *frames* (at least one): kept for the copies still to come.

        A key that is no longer known (evicted or expired while in progress)
        is entered again as done, from *now*.
        """
        if not frames:
            raise ValueError("a reply has at least one frame")
        reply = frames if type(frames) is tuple else tuple(frames)
        expiries = self._expiries
        if expiries and expiries[0] <= now:
            self._expire(now)
        if key in self._replies:
            self._replies[key] = reply  # the entry keeps its place and its expiry
        else:
            self._add(key, now, reply)

    def __len__(self) -> int:
        return len(self._replies)

    def __contains__(self, key: object) -> bool:
        return key in self._replies

    def __repr__(self) -> str:
        return (f"<ReplyCache {len(self._replies)}/{self.max_entries} ttl={self.ttl:g}s resent={self.resent} "
                f"dropped={self.dropped} evicted={self.evicted} expired={self.expired}>")

    # ------------------------------------------------------------ internals

    def _add(self, key: Key, now: float, reply: Optional[Frames]) -> None:
        replies = self._replies
        if len(replies) >= self.max_entries:
            del replies[self._keys.popleft()]
            self._expiries.popleft()
            self.evicted += 1
        replies[key] = reply
        self._keys.append(key)
        self._expiries.append(now + self.ttl)

    def _expire(self, now: float) -> None:
        replies, keys, expiries = self._replies, self._keys, self._expiries
        while expiries and expiries[0] <= now:
            expiries.popleft()
            del replies[keys.popleft()]
            self.expired += 1
