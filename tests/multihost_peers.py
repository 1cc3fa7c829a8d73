"""Processes for the multi-host tests, importable by name so that a spawned child can unpickle them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Sequence

MAJORDOMO = Path(__file__).resolve().parents[1] / "examples" / "majordomo"
if str(MAJORDOMO) not in sys.path:
    sys.path.insert(0, str(MAJORDOMO))

from worker import EchoWorkerProc  # noqa: E402  (needs the path above)

from pollframe.mdp.worker import Worker  # noqa: E402
from pollframe.process import ZmqProcess  # noqa: E402


class TaggedEchoWorker(EchoWorkerProc):
    """The example's echo worker, whose replies start with a frame naming it: who served what."""

    def __init__(self, endpoint: Any, tag: str, **options: Any) -> None:
        super().__init__(endpoint, **options)
        self.tag = tag.encode()

    def setup(self) -> None:
        ZmqProcess.setup(self)
        assert self.loop is not None
        self.worker = Worker(self.loop, self.service, self._echo, self._connect,
                             heartbeat=self.heartbeat, backoff=self.backoff, max_backoff=self.backoff)

    def _echo(self, body: Sequence[bytes]) -> List[bytes]:
        return [self.tag, *body]
