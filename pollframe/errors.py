"""Named errors of the message tier.

Every way a message can fail to be served is one subclass of
:class:`MessageError`. Each carries a one-line ``reason`` that is safe to send
back to the peer: it never holds a traceback and quotes at most a few dozen
characters of the input (see :func:`shorten`). ``kind`` names the counter a
:class:`~pollframe.handler.MessageHandler` bumps, and ``peer_fault`` says who
is to blame: the peer (logged as a one-line warning) or the local handler
(logged with its traceback).

The errors of *calling* another process (:class:`RequestTimeout`,
:class:`RemoteError`, :class:`TooManyRequests`, :class:`RequesterClosed`)
live here too, so that message-tier code can catch them without importing
zmq.
"""

from __future__ import annotations

QUOTE_LIMIT = 40
"""How many characters of a peer's input a reason may quote."""

REASON_LIMIT = 200
"""The longest reason kept; a longer one is cut (a safety net for quoting)."""


def shorten(value: object, limit: int = QUOTE_LIMIT) -> str:
    """Return ``repr(value)`` cut to *limit* characters, for quoting input.

    Large values are cut before ``repr`` so that quoting a 1 MiB string
    costs as little as quoting a short one.
    """
    if isinstance(value, (str, bytes)) and len(value) > limit:
        value = value[: limit + 1]
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MessageError(ValueError):
    """A message that cannot be served, with a one-line ``reason``."""

    kind = "message_error"
    peer_fault = True

    def __init__(self, reason: str) -> None:
        reason = " ".join(reason.split())  # one line, whatever was quoted
        if len(reason) > REASON_LIMIT:
            reason = reason[: REASON_LIMIT - 3] + "..."
        super().__init__(reason)
        self.reason = reason


class DecodeError(MessageError):
    """The frame is not valid UTF-8 JSON under the codec's limits."""

    kind = "not_json"


class BadShape(MessageError):
    """The decoded value is not ``[type, args, kwargs]`` or ``[type, data]``,
    or the message lacks the frame that should hold it."""

    kind = "bad_shape"


class UnknownType(MessageError):
    """No message handler is declared for this message type."""

    kind = "unknown_type"


class BadArguments(MessageError):
    """The arguments do not fit the handler's signature."""

    kind = "bad_arguments"


class TooLarge(MessageError):
    """The frame is over the size limit; it was not decoded."""

    kind = "too_large"


class BadEnvelope(MessageError):
    """The frames before the JSON frame are over the handler's bounds; never answered."""

    kind = "bad_envelope"


class HandlerFailed(MessageError):
    """The handler raised; the original exception is ``__cause__``."""

    kind = "handler_failed"
    peer_fault = False


class EncodeError(MessageError):
    """A reply cannot be encoded (e.g. it holds a set or NaN): a local bug."""

    kind = "encode_failed"
    peer_fault = False


def worth_logging(count: int) -> bool:
    """Log the 1st, 10th, 100th, ... occurrence: a flood from one peer stays a handful of lines."""
    while count % 10 == 0:
        count //= 10
    return count == 1


# ---------------------------------------------------------------- calling others


class RequestTimeout(TimeoutError):
    """No reply came within the timeout of any attempt.

    ``endpoint``, ``attempts`` and ``timeout`` (seconds per attempt) say
    what was tried.
    """

    def __init__(self, endpoint: str, attempts: int, timeout: float) -> None:
        super().__init__(
            f"no reply from {endpoint} after {attempts} attempt(s) of {timeout:g} s each"
        )
        self.endpoint = endpoint
        self.attempts = attempts
        self.timeout = timeout


class RemoteError(RuntimeError):
    """The server answered ``["error", [reason], {}]``; ``reason`` is its text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyRequests(RuntimeError):
    """A Requester already has ``max_in_flight`` requests pending; this one was not sent."""


class RequesterClosed(RuntimeError):
    """The Requester was closed while this request was pending (or before it was made)."""
