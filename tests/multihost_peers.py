"""Processes for the multi-host tests, importable by name so that a spawned child can unpickle them."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import zmq

MAJORDOMO = Path(__file__).resolve().parents[1] / "examples" / "majordomo"
if str(MAJORDOMO) not in sys.path:
    sys.path.insert(0, str(MAJORDOMO))

from worker import EchoWorkerProc  # noqa: E402  (needs the path above)

from pollframe.handler import MessageHandler, ReplyToken, message  # noqa: E402
from pollframe.mdp.worker import Worker  # noqa: E402
from pollframe.process import ZmqProcess  # noqa: E402
from pollframe.replycache import ReplyCache  # noqa: E402


class TaggedEchoWorker(EchoWorkerProc):
    """The example's echo worker, whose replies start with a frame naming it: who served what."""

    def __init__(self, endpoint: Any, tag: str, **options: Any) -> None:
        super().__init__(endpoint, **options)
        self.tag = tag.encode()

    def setup(self) -> None:
        ZmqProcess.setup(self)
        assert self.loop is not None
        self.worker = Worker(self.loop, self.service, self._echo, self._connect,
                             heartbeat=self.heartbeat, backoff=self.backoff, max_backoff=self.backoff)

    def _echo(self, body: Sequence[bytes]) -> List[bytes]:
        return [self.tag, *body]


class CountingServer(ZmqProcess):
    """A ROUTER server with a reply cache that counts how often it executed each request.

    ``["ping", [n], {}]`` counts one execution of ``n`` and answers
    ``["pong", [n], {}]``; ``["executions", [], {}]`` answers
    ``["executions", [{"n": times, ...}], {"resent": r, "dropped": d}]``
    (the keys are the ``n`` as strings; ``resent`` and ``dropped`` are the
    cache's counts of copies answered from it and dropped while in
    progress), so a test can assert that no request ran twice, and see
    whether copies came at all. The handler
    keeps a :class:`~pollframe.replycache.ReplyCache` of ``ttl`` seconds:
    a retried ping (same request id, any connection) is answered from it.

    ``hold=True`` makes the server slow for each first attempt: the reply to
    a ping waits until a copy of some request has arrived while it was in
    progress (and been dropped), so a client's retry is sure to have reached
    the server before the reply goes out, however loaded the machine is.
    """

    def __init__(self, address: Any, *, hold: bool = False, ttl: float = 60.0) -> None:
        super().__init__()
        self.address, self.hold, self.ttl = address, hold, ttl

    def setup(self) -> None:
        super().setup()
        stream, _ = self.stream(zmq.ROUTER, self.address, bind=True, sockopts={zmq.ROUTER_MANDATORY: 1})
        handler = Counting(reply_stream=stream, replies=ReplyCache(ttl=self.ttl), hold=self.hold)
        stream.on_recv(handler)


class Counting(MessageHandler):
    """CountingServer's message tier."""

    def __init__(self, *, hold: bool, **options: Any) -> None:
        super().__init__(always_reply=True, **options)
        self.counts: Counter[int] = Counter()
        self.hold = hold
        self.held: List[Tuple[ReplyToken, int]] = []
        self.dropped_seen = 0

    def __call__(self, msg: Any) -> None:
        super().__call__(msg)
        assert self.replies is not None
        if self.held and self.replies.dropped > self.dropped_seen:  # a retry came while they were held
            self.dropped_seen = self.replies.dropped
            held, self.held = self.held, []
            for token, n in held:
                token.reply("pong", n)

    @message
    def ping(self, n: int) -> Any:
        self.counts[n] += 1
        if self.hold:
            self.held.append((self.reply_later(), n))
            return None
        return ["pong", [n], {}]

    @message
    def executions(self) -> Any:
        counts: Dict[str, int] = {str(n): times for n, times in self.counts.items()}
        assert self.replies is not None
        return ["executions", [counts], {"resent": self.replies.resent, "dropped": self.replies.dropped}]
