"""Profile one competitor's receiving side in a benchmark scenario.

    python benchmarks/hotpath.py                              # pf-register, prefilled, cProfile
    python benchmarks/hotpath.py --scenario latency --competitor pf-stream
    python benchmarks/hotpath.py --tool pyinstrument          # sampling (pip install pyinstrument)

The sender runs in its own process exactly as in run.py; only the
receiver's timed ``run()`` is profiled. cProfile counts every call and
inflates the cost of small functions (read it for call counts and the
shape); pyinstrument samples and keeps proportions. For a profile with
the C frames of pyzmq, run py-spy on the whole thing:
``py-spy record --native --subprocesses -o out.svg -- python benchmarks/hotpath.py --tool none``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)

import pushpull  # noqa: E402
import reqrep  # noqa: E402
from competitors import SINKS  # noqa: E402
from harness import run_pair  # noqa: E402


def _wrapper(tool: str, top: int) -> Callable[[Callable[[], None]], str]:
    def wrap(run: Callable[[], None]) -> str:
        start = time.perf_counter()
        if tool == "cprofile":
            prof = cProfile.Profile()
            prof.runcall(run)
            elapsed = time.perf_counter() - start
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
            text = out.getvalue()
        elif tool == "pyinstrument":
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001)
            profiler.start()
            run()
            profiler.stop()
            elapsed = time.perf_counter() - start
            text = profiler.output_text(unicode=False, color=False, show_all=False)
        else:
            run()
            elapsed = time.perf_counter() - start
            text = ""
        return f"run() took {elapsed:.3f} s under {tool}\n{text}"

    return wrap


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=["prefilled", "streaming", "latency"], default="prefilled")
    parser.add_argument("--competitor", default="pf-register", choices=list(SINKS))
    parser.add_argument("--n", type=int, default=0, help="messages / round trips (default 200,000 / 20,000)")
    parser.add_argument("--tool", choices=["cprofile", "pyinstrument", "none"], default="cprofile")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    wrap = _wrapper(args.tool, args.top)
    params: Any
    if args.scenario == "latency":
        params = {"competitor": args.competitor, "n": args.n or 20_000, "warmup": 200, "idle": 0,
                  "wrap": wrap}
        text, _ = run_pair(reqrep.server, reqrep.client, params, 600.0)
    else:
        params = {"competitor": args.competitor, "n": args.n or 200_000, "k": 1,
                  "prefilled": args.scenario == "prefilled", "wrap": wrap}
        text, _ = run_pair(pushpull.receiver, pushpull.sender, params, 600.0)
    print(f"{args.competitor}, {args.scenario}:\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
