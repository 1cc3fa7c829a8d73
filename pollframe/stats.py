"""Loop metrics: what ``loop.stats()`` returns, the slow-callback warning, stats on request.

Theory of operation
-------------------
The counters are always on, so they are kept where the work is already
done and counted in bulk: a socket's reader adds the messages and bytes
of a whole drain at its end, a Stream counts what it sends, the loop
reads its clock once per dispatch (one I/O handler -- a whole drain -- or
one timer or ``call_soon`` callback), not twice per message. The numbers
live in plain attributes of :class:`SocketStats` and :class:`LoopStats`;
:meth:`LoopStats.snapshot` turns them into a JSON-able dict, which
``loop.stats()`` returns and :func:`serve_stats` sends to whoever asks
(``pollframe stats ENDPOINT``).

Slow callbacks. A dispatch that keeps the loop from polling for longer than
:data:`SLOW_CALLBACK` seconds (100 ms) is logged as a warning on the
``pollframe`` logger with what ran and for how long -- once per callback,
so that a handler that is always slow does not flood the log; every slow
dispatch is still counted in ``slow``. A drain is one dispatch: a drain of
many messages whose callbacks are each fast but together block the loop
for 100 ms is reported as such, with the number of messages.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Dict, List, Optional

__all__ = ["SLOW_CALLBACK", "LoopStats", "SocketStats", "format_stats", "serve_stats"]

log = logging.getLogger("pollframe")

#: Seconds a single dispatch may block the loop before it is logged as slow.
SLOW_CALLBACK = 0.1


class SocketStats:
    """The counters of one registered socket (a Stream adds its send side)."""

    __slots__ = ("type", "endpoint", "where", "msgs_in", "bytes_in", "msgs_out", "bytes_out",
                 "queue_hwm", "dropped", "unroutable", "queued", "oversized")

    def __init__(self, sock_type: str = "?", endpoint: str = "", where: str = "") -> None:
        self.type = sock_type
        self.endpoint = endpoint
        self.where = where  # file:line of the registration
        self.msgs_in = self.bytes_in = 0
        self.msgs_out = self.bytes_out = 0
        self.queue_hwm = 0
        self.dropped = self.unroutable = self.oversized = 0
        #: ``queued()``: the send queue's depth now; set by the Stream that owns the queue.
        self.queued: Optional[Callable[[], int]] = None

    def snapshot(self) -> Dict[str, Any]:
        """The counters as a JSON-able dict (the send queue's depth read now)."""
        return {
            "type": self.type, "endpoint": self.endpoint, "registered_at": self.where,
            "msgs_in": self.msgs_in, "bytes_in": self.bytes_in,
            "msgs_out": self.msgs_out, "bytes_out": self.bytes_out,
            "queued": self.queued() if self.queued is not None else 0, "queue_hwm": self.queue_hwm,
            "dropped": self.dropped, "unroutable": self.unroutable, "oversized": self.oversized,
        }


class LoopStats:
    """The counters of one loop: passes, dispatch times, timer lateness, errors."""

    __slots__ = ("passes", "calls", "call_time", "slowest", "slowest_what", "slow", "late",
                 "lateness", "max_lateness", "_warned", "threshold")

    def __init__(self, threshold: float = SLOW_CALLBACK) -> None:
        self.threshold = threshold
        self.passes = 0
        self.calls = 0  # callbacks run: one per message received, one per timer or call_soon
        self.call_time = 0.0  # seconds spent in dispatches
        self.slowest = 0.0
        self.slowest_what = ""
        self.slow = 0  # dispatches over the threshold
        self.late = 0  # timer batches that ran after their deadline
        self.lateness = 0.0  # summed over batches: how late the earliest timer of each ran
        self.max_lateness = 0.0
        self._warned: set = set()

    def took(self, seconds: float, what: Callable[[], str], key: Any, calls: int = 1) -> None:
        """A dispatch over the threshold took ``seconds``: count it, warn once per ``key``.

        ``what()`` names it (only called for a slow one).
        """
        self.slow += 1
        name = what()
        if seconds > self.slowest:
            self.slowest, self.slowest_what = seconds, name
        if key in self._warned:
            return
        self._warned.add(key)
        several = f" ({calls} messages in one drain)" if calls > 1 else ""
        log.warning("pollframe: %s blocked the loop for %.0f ms%s (the threshold is %.0f ms; "
                    "logged once per callback)", name, seconds * 1000, several, self.threshold * 1000)

    def snapshot(self, errors: int, sockets: List[SocketStats]) -> Dict[str, Any]:
        """What ``loop.stats()`` returns: this process, the loop's counters and each socket's."""
        return {
            "process": {"pid": os.getpid(), "argv0": os.path.basename(sys.argv[0]) if sys.argv else ""},
            "loop": {
                "passes": self.passes, "errors": errors,
                "callbacks": self.calls, "callback_seconds": self.call_time,
                "slowest": {"seconds": self.slowest, "what": self.slowest_what},
                "slow": self.slow, "slow_threshold": self.threshold,
                "timers_late": self.late, "timer_lateness_seconds": self.lateness,
                "max_timer_lateness": self.max_lateness,
            },
            "sockets": [s.snapshot() for s in sockets],
        }


def format_stats(snapshot: Dict[str, Any]) -> str:
    """A stats snapshot as a few lines of text, for ``pollframe stats``."""
    loop = snapshot.get("loop", {})
    slowest = loop.get("slowest", {})
    lines = [
        f"process {snapshot.get('process', {}).get('pid', '?')}: {loop.get('passes', 0)} passes, "
        f"{loop.get('callbacks', 0)} callbacks in {loop.get('callback_seconds', 0.0):.3f} s, "
        f"{loop.get('errors', 0)} errors",
        f"  slowest dispatch {slowest.get('seconds', 0.0) * 1000:.1f} ms: {slowest.get('what') or '-'}; "
        f"{loop.get('slow', 0)} over {loop.get('slow_threshold', SLOW_CALLBACK) * 1000:.0f} ms",
        f"  timers late: {loop.get('timers_late', 0)}, "
        f"at most {loop.get('max_timer_lateness', 0.0) * 1000:.1f} ms",
    ]
    header = f"  {'socket':<8} {'endpoint':<28} {'in':>9} {'bytes in':>11} {'out':>9} {'bytes out':>11} " \
             f"{'queued':>6} {'hwm':>6} {'dropped':>7} {'unroutable':>10}"
    lines.append(header)
    for s in snapshot.get("sockets", []):
        lines.append(f"  {s.get('type', '?'):<8} {s.get('endpoint') or '-':<28} {s.get('msgs_in', 0):>9} "
                     f"{s.get('bytes_in', 0):>11} {s.get('msgs_out', 0):>9} {s.get('bytes_out', 0):>11} "
                     f"{s.get('queued', 0):>6} {s.get('queue_hwm', 0):>6} {s.get('dropped', 0):>7} "
                     f"{s.get('unroutable', 0):>10}")
    return "\n".join(lines) + "\n"


def serve_stats(loop: Any, context: Any, endpoint: str = "tcp://127.0.0.1:*") -> Any:
    """Answer ``["stats", [], {}]`` on a REP socket bound to ``endpoint`` with ``loop.stats()``.

    Opt-in: call it in ``setup()``. Returns the Stream; the bound endpoint
    is ``stream.socket.LAST_ENDPOINT``. Any other request gets an error
    reply. The reply is ``["stats", [snapshot], {}]``.
    """
    import json

    import zmq

    from pollframe.stream import Stream

    sock = context.socket(zmq.REP)
    sock.linger = 0
    try:
        sock.bind(endpoint)
    except BaseException:
        sock.close(linger=0)
        raise
    stream = Stream(sock, loop)

    def answer(frames: List[bytes]) -> None:
        try:
            request = json.loads(frames[-1])
            wanted = isinstance(request, list) and request[:1] == ["stats"]
        except ValueError:
            wanted = False
        refusal = ["error", ["this socket only answers 'stats'"], {}]
        reply = ["stats", [loop.stats()], {}] if wanted else refusal
        stream.send(json.dumps(reply).encode())

    stream.on_recv(answer)
    return stream
