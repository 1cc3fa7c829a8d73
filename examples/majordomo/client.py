"""An MDP/0.1 client: COUNT echo requests through the broker, each reply checked.

    python examples/majordomo/client.py ENDPOINT [COUNT] [--service NAME] [--timeout S] [--retries N]

It first asks the broker whether the service has a worker (``mmi.service``)
and says on stderr when it has none yet. Prints OK and exits 0 when every
reply echoed its request; exits 1 with the reason otherwise (a request
that got no reply after every retry, a reply that does not match).
"""
from __future__ import annotations

import argparse
import sys

from echo import EchoCheck

from pollframe.client import RequestTimeout
from pollframe.mdp.client import Client
from pollframe.mdp.protocol import ProtocolError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="MDP/0.1 echo requests.")
    parser.add_argument("endpoint")
    parser.add_argument("count", nargs="?", type=int, default=10)
    parser.add_argument("--service", default="echo")
    parser.add_argument("--timeout", type=float, default=2.5, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=3, help="attempts per request")
    parser.add_argument("--prefix", default="", help="put in front of each request's number")
    parser.add_argument("--progress", type=int, default=0, help="say on stderr every so many replies")
    args = parser.parse_args(argv)
    check = EchoCheck(args.prefix)
    with Client(args.endpoint, timeout=args.timeout, retries=args.retries) as client:
        try:
            if not client.service_available(args.service):  # RFC 8: the broker answers it itself
                print(f"no worker offers {args.service!r} yet; the broker keeps the requests until one "
                      "does", file=sys.stderr)
            for _ in range(args.count):
                request = check.next_request()
                check.check(request, client.request(args.service, *request))
                if args.progress and check.ok % args.progress == 0:
                    print(f"{check.ok} replies", file=sys.stderr, flush=True)
        except (RequestTimeout, ProtocolError, ValueError) as exc:
            print(f"request {check.sent} failed: {exc}", file=sys.stderr)
            return 1
    print(f"{check.ok} replies, {client.timeouts} attempt(s) timed out", file=sys.stderr)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
