"""pollframe: multi-process ZeroMQ applications on a plain ``zmq.Poller`` loop.

This package only re-exports the public names.
"""
from pollframe.client import RequestClient
from pollframe.codec import Codec, JsonCodec
from pollframe.epoll import EpollLoop
from pollframe.errors import (
    BadArguments,
    BadShape,
    DecodeError,
    EncodeError,
    HandlerFailed,
    MessageError,
    RemoteError,
    RequesterClosed,
    RequestTimeout,
    TooLarge,
    TooManyRequests,
    UnknownType,
)
from pollframe.handler import MessageHandler, message
from pollframe.liveness import Liveness
from pollframe.loop import PollLoop
from pollframe.monitor import SocketEvent
from pollframe.peers import PeerTable
from pollframe.process import ProcessNotReady, ReadyTimeout, ZmqProcess
from pollframe.reconnect import ReconnectingStream
from pollframe.requester import Requester
from pollframe.stream import QueueFull, Stream
from pollframe.timers import Timer

__all__ = [
    "BadArguments",
    "BadShape",
    "Codec",
    "DecodeError",
    "EncodeError",
    "EpollLoop",
    "HandlerFailed",
    "JsonCodec",
    "Liveness",
    "MessageError",
    "MessageHandler",
    "PeerTable",
    "PollLoop",
    "ProcessNotReady",
    "QueueFull",
    "ReadyTimeout",
    "ReconnectingStream",
    "RemoteError",
    "RequestClient",
    "RequestTimeout",
    "Requester",
    "RequesterClosed",
    "SocketEvent",
    "Stream",
    "Timer",
    "TooLarge",
    "TooManyRequests",
    "UnknownType",
    "ZmqProcess",
    "message",
]
__version__ = "0.1.0"
