"""AsyncClient: MDP/0.1 requests from inside a loop, never blocking it (over a lockstep Requester).

MDP/Client is strictly one request, then its reply, per connection, and a
reply names no request. So the client is the zguide's Lazy Pirate on REQ,
which is what a lockstep :class:`~pollframe.requester.Requester` runs:
one request on the wire at a time (the others wait their turn, in order),
each attempt with its own deadline, a retry on a fresh socket (so a late
reply to an abandoned attempt is thrown away with its socket, never taken
for the answer to the next request), and exactly one outcome per request.
The frames are MDP's own (:meth:`Requester.send_frames`), not JSON.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Union

import zmq

from pollframe.loop import PollLoop
from pollframe.mdp.protocol import ProtocolError, as_service, client_body, client_request
from pollframe.requester import OnError, Pending, Requester
from pollframe.tasks import Waiter

__all__ = ["AsyncClient"]


class AsyncClient:
    """Requests to the services behind an MDP/0.1 broker at ``endpoint``, from ``loop``.

    ``timeout`` (seconds per attempt), ``retries`` (attempts) and
    ``max_in_flight`` are the lockstep Requester's; ``ctx`` makes its
    sockets and stays the caller's.
    """

    def __init__(
        self,
        loop: PollLoop,
        ctx: zmq.Context[Any],
        endpoint: Any,
        *,
        timeout: float = 2.5,
        retries: int = 3,
        max_in_flight: Optional[int] = None,
    ) -> None:
        self.requester = Requester(loop, ctx, endpoint, timeout, retries, lockstep=True,
                                   max_in_flight=max_in_flight)

    def request(
        self,
        service: Union[str, bytes],
        *body: bytes,
        on_reply: Callable[[List[bytes]], Any],
        on_error: OnError,
    ) -> Pending:
        """Send ``body`` to ``service``; later ``on_reply(reply_body)`` or ``on_error(exc)``.

        ``exc`` is :class:`~pollframe.errors.RequestTimeout` after the last
        attempt, :class:`~pollframe.mdp.protocol.ProtocolError` for a reply
        that is not MDP/0.1 or comes from another service, or
        :class:`~pollframe.errors.RequesterClosed` from :meth:`close`.
        """
        name = as_service(service)

        def replied(frames: List[bytes]) -> None:
            try:
                reply = client_body(frames, name)
            except ProtocolError as exc:
                on_error(exc)
                return
            on_reply(reply)

        return self.requester.send_frames(client_request(name, body), replied, on_error)

    def call(self, service: Union[str, bytes], *body: bytes) -> Waiter:
        """In a task, ``reply = await client.call("echo", b"hi")``: the reply body, or the error raised."""
        waiter = Waiter()
        waiter.on_cancel = self.request(service, *body, on_reply=waiter.set_result,
                                        on_error=waiter.set_exception).cancel
        return waiter

    def close(self) -> None:
        """Close the socket; pending requests get ``on_error(RequesterClosed)``."""
        self.requester.close()

    def __repr__(self) -> str:
        return f"<mdp.AsyncClient {self.requester.endpoint}>"
