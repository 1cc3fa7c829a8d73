"""A blocking MDP/0.1 client: Lazy Pirate over a REQ socket (RequestClient).

Each request goes out as ``[MDPC01, service, body...]`` on a REQ socket
(REQ adds the empty frame 0) and waits for the matching REPLY until its
deadline; a request that times out is sent again on a fresh socket, up to
``retries`` attempts, then :class:`~pollframe.client.RequestTimeout` is
raised. This is the RFC's recommended recovery: poll, reopen, resend, give
up. A retried request may be served twice, which MDP allows: its workers
are idempotent by definition.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple, Union

import zmq

from pollframe.client import RequestClient
from pollframe.mdp.protocol import Frames, as_service, client_body, client_request

__all__ = ["Client"]


class Client:
    """Blocking requests to the services behind an MDP/0.1 broker at ``endpoint``.

    ``timeout`` (seconds per attempt), ``retries``, ``context`` and
    ``sockopts`` are those of :class:`~pollframe.client.RequestClient`.
    """

    def __init__(
        self,
        endpoint: Union[str, Tuple[str, Union[int, str]]],
        *,
        timeout: float = 2.5,
        retries: int = 3,
        context: Optional[zmq.Context[Any]] = None,
        sockopts: Optional[Mapping[int, Any]] = None,
    ) -> None:
        self._requests = RequestClient(endpoint, timeout=timeout, retries=retries, context=context,
                                       sockopts=sockopts)

    def request(self, service: Union[str, bytes], *body: bytes) -> Frames:
        """Send ``body`` (one frame or more) to ``service``; return the reply's body frames.

        Raises :class:`~pollframe.client.RequestTimeout` when no attempt
        got a reply and :class:`~pollframe.mdp.protocol.ProtocolError` for
        a reply that is not MDP/0.1 or comes from another service.
        """
        name = as_service(service)
        return client_body(self._requests.send_recv(client_request(name, body)), name)

    def service_available(self, service: Union[str, bytes]) -> bool:
        """Ask the broker (``mmi.service``, RFC 8) whether ``service`` has any worker."""
        return self.request(b"mmi.service", as_service(service)) == [b"200"]

    @property
    def endpoint(self) -> str:
        """The broker endpoint the client sends its requests to."""
        return self._requests.endpoint

    @property
    def timeouts(self) -> int:
        """Attempts that timed out so far."""
        return self._requests.timeouts

    def close(self) -> None:
        """Close the client's socket (and its context, if it made one)."""
        self._requests.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mdp.Client {self.endpoint}>"

