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

import json
import logging
import os
import sys
from typing import Any, Callable, Dict, List

__all__ = ["SLOW_CALLBACK", "LoopStats", "SocketStats", "defined_at", "format_stats", "registered_at",
           "serve_stats"]

log = logging.getLogger("pollframe")

#: Seconds a single dispatch may block the loop before it is logged as slow.
SLOW_CALLBACK = 0.1


class SocketStats:
    """The counters of one registered socket; its Stream, if it has one, adds the send side.

    ``msgs_in``/``bytes_in`` are counted by the socket's reader at the end
    of each drain (``last_drain`` is how many that drain read);
    ``msgs_out``/``bytes_out`` by the Stream for each message the socket
    took (from its queue too). Sends on a raw socket are not seen.
    """

    __slots__ = ("type", "endpoint", "where", "callback", "msgs_in", "bytes_in", "msgs_out", "bytes_out",
                 "queue_hwm", "last_drain", "refused", "stream")

    def __init__(self, sock_type: str = "?", endpoint: str = "", where: str = "") -> None:
        self.type = sock_type
        self.endpoint = endpoint
        self.where = where  # file:line of the registration
        self.callback = ""  # the receive callback, as repr() showed it at registration
        self.msgs_in = self.bytes_in = 0
        self.msgs_out = self.bytes_out = 0
        self.queue_hwm = 0
        self.last_drain = 0
        self.refused = 0  # messages over the reader's max_msg_size / max_frames
        #: The Stream that owns the socket: its queue, drops and unroutable counts are read from it.
        self.stream: Any = None

    def describe(self) -> str:
        """What ran for this socket, for a slow-callback warning."""
        where = f" (registered at {self.where})" if self.where else ""
        return f"receive callback {self.callback or '?'} for {self.type} {self.endpoint or '-'}{where}"

    def snapshot(self) -> Dict[str, Any]:
        """The counters as a JSON-able dict (the send queue's depth read now)."""
        stream = self.stream
        return {
            "type": self.type, "endpoint": self.endpoint, "registered_at": self.where,
            "msgs_in": self.msgs_in, "bytes_in": self.bytes_in,
            "msgs_out": self.msgs_out, "bytes_out": self.bytes_out,
            "queued": stream.queued() if stream is not None else 0, "queue_hwm": self.queue_hwm,
            "dropped": getattr(stream, "dropped", 0), "unroutable": getattr(stream, "unroutable", 0),
            "refused": self.refused,
        }


class LoopStats:
    """The counters of one loop: passes, callback times, timer lateness; errors are the loop's own."""

    __slots__ = ("threshold", "passes", "calls", "call_time", "slowest", "slowest_what", "slow",
                 "timer_batches", "lateness", "max_lateness", "_warned")

    def __init__(self, threshold: float = SLOW_CALLBACK) -> None:
        self.threshold = threshold
        self.passes = 0
        self.calls = 0  # dispatches: one per I/O handler call (a whole drain), one per timer or call_soon
        self.call_time = 0.0  # seconds spent in them
        self.slowest = 0.0  # the slowest one over the threshold, and what it was
        self.slowest_what = ""
        self.slow = 0  # dispatches over the threshold
        self.timer_batches = 0  # passes that ran due timers
        self.lateness = 0.0  # summed over those passes: how late the earliest timer of each ran
        self.max_lateness = 0.0
        self._warned: set = set()

    def timers_ran(self, lateness: float) -> None:
        """A pass ran due timers, the earliest of them ``lateness`` seconds after its deadline."""
        self.timer_batches += 1
        self.lateness += lateness
        if lateness > self.max_lateness:
            self.max_lateness = lateness

    def took(self, seconds: float, what: Callable[[], str], key: Any, calls: int = 1) -> None:
        """A dispatch over the threshold took ``seconds``: count it, warn once per ``key``.

        ``what()`` names it (only called for a slow one); ``calls`` is the
        number of messages of a drain.
        """
        self.slow += 1
        name = what()
        if seconds > self.slowest:
            self.slowest, self.slowest_what = seconds, name
        try:
            if key in self._warned:
                return
            self._warned.add(key)
        except TypeError:  # an unhashable callable: warn every time
            pass
        several = f" ({calls} messages in one drain)" if calls > 1 else ""
        log.warning("pollframe: %s blocked the loop for %.0f ms%s (threshold %.0f ms; "
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
                "timer_batches": self.timer_batches, "timer_lateness_seconds": self.lateness,
                "max_timer_lateness": self.max_lateness,
            },
            "sockets": [s.snapshot() for s in sockets],
        }


def defined_at(callback: Any) -> str:
    """``file.py:12``: where a callback's function is defined (``?`` for a builtin or a callable object)."""
    func = getattr(callback, "__func__", callback)
    func = getattr(func, "func", func)  # functools.partial
    code = getattr(func, "__code__", None)
    if code is None:
        return "?"
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"


def registered_at() -> str:
    """``file.py:12``: the first caller outside pollframe's own modules (a registration's site)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("pollframe."):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


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
        f"  timers: {loop.get('timer_batches', 0)} passes ran some, the earliest at most "
        f"{loop.get('max_timer_lateness', 0.0) * 1000:.1f} ms late",
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


def serve_stats(loop: Any, stream: Any) -> None:
    """Answer ``["stats", [], {}]`` on ``stream`` (a REP or ROUTER Stream) with ``loop.stats()``.

    Opt-in, for a tool to read a process's stats from outside
    (``pollframe stats ENDPOINT``). In a ``ZmqProcess.setup()``::

        stats, _ = self.stream(zmq.REP, "127.0.0.1", bind=True)   # a random port, in self.endpoints
        serve_stats(self.loop, stats)

    The reply is ``["stats", [snapshot], {}]``, sent back through the
    request's envelope; any other request gets an ``error`` reply.
    """

    def answer(frames: List[bytes]) -> None:
        try:
            request = json.loads(frames[-1])
            wanted = isinstance(request, list) and request[:1] == ["stats"]
        except ValueError:
            wanted = False
        refusal = ["error", ["this socket only answers 'stats'"], {}]
        reply = ["stats", [loop.stats()], {}] if wanted else refusal
        stream.send_multipart(list(frames[:-1]) + [json.dumps(reply).encode()])

    stream.on_recv(answer)
