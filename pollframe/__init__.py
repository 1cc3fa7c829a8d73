"""pollframe: multi-process ZeroMQ applications on a plain ``zmq.Poller`` loop.

This package only re-exports the public names.
"""
from pollframe.epoll import EpollLoop
from pollframe.loop import PollLoop
from pollframe.stream import QueueFull, Stream
from pollframe.timers import Timer

__all__ = ["EpollLoop", "PollLoop", "QueueFull", "Stream", "Timer"]
__version__ = "0.1.0"
