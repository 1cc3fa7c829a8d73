"""pollframe: multi-process ZeroMQ applications on a plain ``zmq.Poller`` loop.

This package only re-exports the public names.
"""
