"""How long a ZmqProcess takes to start under each start method: start() until wait_ready() returns.

    python benchmarks/startup.py [COUNT]        # default 20 starts per method, after one warm-up

The child binds one REP stream on a random port, so "ready" includes making
its context, loop and socket. The first start of a method is shown apart:
for ``forkserver`` it includes starting the server (which then preloads
pollframe), for ``spawn`` nothing is ever reused. Each method runs in a
fresh interpreter so that one's server or imports do not help another.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(method: str, count: int) -> str:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from helper_procs import EchoProc

    times = []
    for _ in range(count + 1):
        proc = EchoProc("127.0.0.1", mp_context=method)
        started = time.perf_counter()
        proc.start()
        proc.wait_ready()
        times.append(time.perf_counter() - started)
        proc.shutdown()
    first, rest = times[0] * 1000, [t * 1000 for t in times[1:]]
    return (f"{method:<11} first {first:6.1f} ms, then median {statistics.median(rest):6.1f} ms "
            f"(min {min(rest):.1f}, max {max(rest):.1f}, n={count})")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(measure(sys.argv[2], int(sys.argv[3])))
    else:
        count = sys.argv[1] if len(sys.argv) > 1 else "20"
        for method in ("fork", "spawn", "forkserver"):
            subprocess.run([sys.executable, __file__, "--one", method, count], check=True)
