"""The main job: start PongProc, ping it five times, stop it.

Run: python examples/example_app/main.py
"""

from __future__ import annotations

import sys

from pingproc import PingProc
from pongproc import PongProc


def main() -> int:
    # "127.0.0.1" alone binds a random free port; wait_ready() tells which.
    pong = PongProc("127.0.0.1")
    pong.start()
    try:
        (endpoint,) = pong.wait_ready(timeout=10)
        # The ping side runs right here; its last request stops PongProc.
        PingProc(endpoint, count=5, stop_pong=True).run()
    finally:
        pong.shutdown(timeout=2)  # join; stop, terminate, kill if need be
    return 0 if pong.exitcode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
