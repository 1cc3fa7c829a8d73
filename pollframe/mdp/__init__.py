"""pollframe.mdp: the Majordomo Protocol, MDP/0.1 (ZeroMQ RFC 7), in the three-tier shape.

Logic, no sockets: :class:`Broker` (frames and the time in, frames out) and
:class:`WorkerSession`; the frames themselves in :mod:`pollframe.mdp.protocol`.
On a loop: :class:`Worker`, :class:`BrokerServer`; in a process:
:class:`BrokerProcess`. Clients: :class:`Client` (blocking),
:class:`AsyncClient` (on a loop).

This package only re-exports the public names.
"""
from pollframe.mdp.aclient import AsyncClient
from pollframe.mdp.broker import Broker
from pollframe.mdp.client import Client
from pollframe.mdp.process import BrokerProcess, BrokerServer
from pollframe.mdp.protocol import CLIENT, WORKER, MdpError, ProtocolError
from pollframe.mdp.session import Disconnect, Request, WorkerSession
from pollframe.mdp.worker import Worker

__all__ = [
    "AsyncClient",
    "Broker",
    "BrokerProcess",
    "BrokerServer",
    "CLIENT",
    "Client",
    "Disconnect",
    "MdpError",
    "ProtocolError",
    "Request",
    "WORKER",
    "Worker",
    "WorkerSession",
]
