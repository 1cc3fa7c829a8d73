"""The logic tier of the Majordomo example: no zmq, no pollframe.

The echo service answers each request with its own body; the client side
makes numbered requests and checks that each reply answers the request it
was sent for.
"""
from __future__ import annotations

from typing import List, Sequence


class EchoService:
    """Answers a request with the same frames, and counts what it served."""

    def __init__(self) -> None:
        self.served = 0

    def handle(self, body: Sequence[bytes]) -> List[bytes]:
        self.served += 1
        return list(body)


class EchoCheck:
    """Numbered requests, and a check that each reply is the echo of the request just sent."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.sent = 0
        self.ok = 0

    def next_request(self) -> List[bytes]:
        self.sent += 1
        return [f"{self.prefix}{self.sent}".encode()]

    def check(self, request: Sequence[bytes], reply: Sequence[bytes]) -> None:
        if list(reply) != list(request):
            raise ValueError(f"reply {list(reply)!r} does not echo request {list(request)!r}")
        self.ok += 1
