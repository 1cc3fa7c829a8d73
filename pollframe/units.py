"""Time units: pollframe speaks seconds, libzmq speaks milliseconds.

Every time in pollframe's API is a float number of seconds, as in
``time.monotonic`` and asyncio. libzmq's options (``LINGER``,
``HEARTBEAT_*``) and ``zmq_poll`` take whole milliseconds; :func:`to_ms`
converts at that one boundary, so no public call ever takes milliseconds.
"""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["FOREVER", "to_ms"]

#: libzmq's "no limit" for a linger or a poll timeout.
FOREVER = -1


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
