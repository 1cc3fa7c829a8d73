"""An MDP/0.1 (Majordomo) broker: clients and workers on one ROUTER.

    python examples/majordomo/broker.py [ENDPOINT] [--heartbeat S]   # default tcp://127.0.0.1:5555

Runs until Ctrl-C or SIGTERM, then tells its workers DISCONNECT and exits 0.
Any MDP/0.1 client or worker, in any language, can use it. See README.md
for the message chains.
"""
from __future__ import annotations

import argparse
import logging
import sys

from pollframe.mdp.process import BrokerProcess

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class EchoBroker(BrokerProcess):
    """The process tier of the example: BrokerProcess, saying where it listens once it does."""

    def setup(self) -> None:
        super().setup()
        print(f"MDP broker on {self.endpoints[-1]}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="An MDP/0.1 broker.")
    parser.add_argument("endpoint", nargs="?", default=DEFAULT_ENDPOINT)
    parser.add_argument("--heartbeat", type=float, default=2.5, help="heartbeat interval, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    EchoBroker(args.endpoint, heartbeat=args.heartbeat).run()  # here: Ctrl-C and SIGTERM stop it cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
