"""Small ZmqProcess subclasses for the process tests.

They live in their own module, importable by name, so that the ``spawn``
and ``forkserver`` start methods can unpickle them in the child.
"""

from __future__ import annotations

import zmq

from pollframe.process import ZmqProcess


class EchoProc(ZmqProcess):
    """Binds one REP stream per address and echoes each request; ``stop`` stops it."""

    def __init__(self, *addrs: str, mp_context: object = None) -> None:
        super().__init__(mp_context=mp_context)
        self.addrs = addrs

    def setup(self) -> None:
        super().setup()
        for addr in self.addrs:
            stream, _ = self.stream(zmq.REP, addr, bind=True)
            stream.on_recv(self._echo(stream))

    def _echo(self, stream):
        def echo(frames: list[bytes]) -> None:
            stream.send_multipart(frames)
            if frames == [b"stop"]:
                self.stop()

        return echo


class BadAddressProc(ZmqProcess):
    """Fails in setup(): the parent's wait_ready() must say why."""

    def setup(self) -> None:
        super().setup()
        self.stream(zmq.REP, "no-such-transport://x", bind=True)


class ForgetfulProc(ZmqProcess):
    """Overrides setup() without calling super().setup()."""

    def setup(self) -> None:
        pass
