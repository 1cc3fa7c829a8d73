"""A Lazy Pirate client: numbered requests through the queue, each answered or timed out.

    python examples/paranoid_pirate/client.py [FRONTEND] [COUNT] [--timeout S] [--retries N]
    # default tcp://127.0.0.1:5555, 10 requests

Each request waits ``--timeout`` seconds for its echo and is sent again on a
fresh REQ socket, up to ``--retries`` attempts; then it is recorded as timed
out and the next one goes. At the end it prints one JSON line:
``{"answered": N, "timed_out": M, "wrong": 0, "twice": 0}``, and exits 0 when
no reply was wrong and no request had two outcomes.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List

from pirate import Tally

from pollframe.client import RequestClient, RequestTimeout


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description="Lazy Pirate requests.")
    parser.add_argument("frontend", nargs="?", default="tcp://127.0.0.1:5555")
    parser.add_argument("count", nargs="?", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=2.5, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=3, help="attempts per request")
    parser.add_argument("--progress", type=int, default=0, help="say on stderr every so many requests")
    args = parser.parse_args(argv)
    tally = Tally()
    with RequestClient(args.frontend, timeout=args.timeout, retries=args.retries) as client:
        for seq in range(1, args.count + 1):
            try:
                tally.reply(seq, client.send_recv([str(seq).encode()]))
            except RequestTimeout:
                tally.timeout(seq)
            if args.progress and seq % args.progress == 0:
                print(f"{seq} requests", file=sys.stderr, flush=True)
    summary = tally.summary()
    print(json.dumps(summary), flush=True)
    return 0 if summary["wrong"] == summary["twice"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
