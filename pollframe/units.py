"""Units and the shared size default: pollframe speaks seconds and bytes.

Every time in pollframe's API is a float number of seconds, as in
``time.monotonic`` and asyncio. libzmq's options (``LINGER``,
``HEARTBEAT_*``) and ``zmq_poll`` take whole milliseconds; :func:`to_ms`
converts at that one boundary, so no public call ever takes milliseconds.
Sizes are bytes; :data:`MAX_MSG_SIZE` is the one default limit that the
process tier (libzmq's ``MAXMSGSIZE``) and the message tier share.
"""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["FOREVER", "MAX_FRAMES", "MAX_MSG_SIZE", "MAX_POLL_MS", "poll_ms", "to_ms"]

#: The largest message (ZmqProcess streams) and JSON frame (MessageHandler) accepted by default: 1 MiB.
MAX_MSG_SIZE = 1 << 20

#: The most frames a ZmqProcess stream accepts in one message by default: far more than any
#: envelope and payload need, far fewer than the 100,000 empty frames of a memory attack.
MAX_FRAMES = 1024

#: libzmq's "no limit" for a linger or a poll timeout.
FOREVER = -1

#: The longest single poll, one day (as asyncio and trio): zmq_poll takes a C int of
#: milliseconds (24.8 days at most) and epoll refuses longer waits too.
MAX_POLL_MS = 86_400_000


def to_ms(seconds: Optional[float]) -> int:
    """Seconds to libzmq's milliseconds, rounded up: a wait lasts at least as long as asked.

    ``None``, a negative number or infinity means forever (:data:`FOREVER`),
    as a negative value does for libzmq. A caller whose deadline may have
    passed clamps first: ``to_ms(max(remaining, 0.0))``.
    """
    if seconds is None or seconds < 0 or seconds == math.inf:
        return FOREVER
    # round() first: 1.1 s is 1100.0000000000002 ms in floating point, not 1101.
    return math.ceil(round(seconds * 1000, 6))


def poll_ms(seconds: Optional[float]) -> int:
    """``to_ms`` for one poll, at most :data:`MAX_POLL_MS`: a longer wait re-checks its deadline daily.

    ``None``, a negative number or infinity still mean forever, which a poll takes as it is.
    """
    ms = to_ms(seconds)
    return MAX_POLL_MS if ms > MAX_POLL_MS else ms
