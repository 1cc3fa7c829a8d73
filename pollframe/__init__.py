"""pollframe: multi-process ZeroMQ applications on a plain ``zmq.Poller`` loop.

This package only re-exports the public names. They are loaded on first
use (module ``__getattr__``), so that importing one part loads only what
that part needs: ``import pollframe.handler`` (the message tier) or
``pollframe.tasks`` imports no zmq. ``from pollframe import X`` works as
usual. To add a public name, add it in three places, the imports for type
checkers, ``_PUBLIC`` and ``__all__`` (tests/test_imports.py checks that
they agree).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and readers
    from pollframe.client import RequestClient
    from pollframe.codec import Codec, JsonCodec
    from pollframe.embed import AsyncioGuest, TkGuest
    from pollframe.epoll import EpollLoop
    from pollframe.errors import (
        BadArguments,
        BadShape,
        DecodeError,
        EncodeError,
        HandlerFailed,
        MessageError,
        RemoteError,
        RequestTimeout,
        RequesterClosed,
        TooLarge,
        TooManyRequests,
        UnknownType,
    )
    from pollframe.handler import MessageHandler, ReplyToken, message
    from pollframe.handles import Handle
    from pollframe.liveness import Liveness
    from pollframe.loop import PollLoop
    from pollframe.monitor import SocketEvent
    from pollframe.offload import Offload
    from pollframe.peers import PeerTable
    from pollframe.process import ProcessNotReady, ReadyTimeout, ZmqProcess
    from pollframe.reconnect import ReconnectingStream
    from pollframe.replycache import ReplyCache
    from pollframe.requester import Requester
    from pollframe.stream import QueueFull, Stream
    from pollframe.supervise import GaveUp, RestartPolicy, Supervisor
    from pollframe.tasks import Task
    from pollframe.tickets import Ticket
    from pollframe.timers import Timer

#: Each public name and the module that defines it.
_PUBLIC = {
    "AsyncioGuest": "pollframe.embed",
    "BadArguments": "pollframe.errors",
    "BadShape": "pollframe.errors",
    "Codec": "pollframe.codec",
    "DecodeError": "pollframe.errors",
    "EncodeError": "pollframe.errors",
    "EpollLoop": "pollframe.epoll",
    "GaveUp": "pollframe.supervise",
    "Handle": "pollframe.handles",
    "HandlerFailed": "pollframe.errors",
    "JsonCodec": "pollframe.codec",
    "Liveness": "pollframe.liveness",
    "MessageError": "pollframe.errors",
    "MessageHandler": "pollframe.handler",
    "Offload": "pollframe.offload",
    "PeerTable": "pollframe.peers",
    "PollLoop": "pollframe.loop",
    "ProcessNotReady": "pollframe.process",
    "QueueFull": "pollframe.stream",
    "ReadyTimeout": "pollframe.process",
    "ReconnectingStream": "pollframe.reconnect",
    "RemoteError": "pollframe.errors",
    "ReplyCache": "pollframe.replycache",
    "ReplyToken": "pollframe.handler",
    "RequestClient": "pollframe.client",
    "RequestTimeout": "pollframe.errors",
    "Requester": "pollframe.requester",
    "RequesterClosed": "pollframe.errors",
    "RestartPolicy": "pollframe.supervise",
    "SocketEvent": "pollframe.monitor",
    "Stream": "pollframe.stream",
    "Supervisor": "pollframe.supervise",
    "Task": "pollframe.tasks",
    "Ticket": "pollframe.tickets",
    "Timer": "pollframe.timers",
    "TkGuest": "pollframe.embed",
    "TooLarge": "pollframe.errors",
    "TooManyRequests": "pollframe.errors",
    "UnknownType": "pollframe.errors",
    "ZmqProcess": "pollframe.process",
    "message": "pollframe.handler",
}

__all__ = [
    "AsyncioGuest",
    "BadArguments",
    "BadShape",
    "Codec",
    "DecodeError",
    "EncodeError",
    "EpollLoop",
    "GaveUp",
    "Handle",
    "HandlerFailed",
    "JsonCodec",
    "Liveness",
    "MessageError",
    "MessageHandler",
    "Offload",
    "PeerTable",
    "PollLoop",
    "ProcessNotReady",
    "QueueFull",
    "ReadyTimeout",
    "ReconnectingStream",
    "RemoteError",
    "ReplyCache",
    "ReplyToken",
    "RequestClient",
    "RequestTimeout",
    "Requester",
    "RequesterClosed",
    "RestartPolicy",
    "SocketEvent",
    "Stream",
    "Supervisor",
    "Task",
    "Ticket",
    "Timer",
    "TkGuest",
    "TooLarge",
    "TooManyRequests",
    "UnknownType",
    "ZmqProcess",
    "message",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'pollframe' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
