"""Ping-pong with the pong side as a PollLoop subclass: the seed's polling.py without its if-chains.

In polling.py the pong side asks a ``zmq.Poller`` what is ready and tests
each socket and each event in turn. Here the pong side *is* the loop: its
``__init__`` registers each socket with the method that handles it, and a
timer with the method it calls, and the loop's dispatcher does the rest.
Two sockets (REP for the pings, PULL for a stop from the parent) and a
timer (give up when nobody pings for a while), and not one ``if`` on
events.

Run: python examples/pollloop_subclass.py
"""

import multiprocessing
import sys

import zmq

from pollframe import PollLoop

#: Seconds without a ping before the pong side gives up.
IDLE_TIMEOUT = 10.0


def ping(sock):
    """Sends ping requests and waits for replies."""
    for i in range(5):
        sock.send_string(f"ping {i}")
        rep = sock.recv_string()
        print("Ping got reply:", rep, flush=True)


class PongLoop(PollLoop):
    """The pong side: sockets, callbacks and a timer are wired once, in ``__init__``."""

    def __init__(self, context, ping_addr, control_addr):
        super().__init__()  # the loop's own state; after it, any name of ours is safe
        self.pongs = 0
        self.rep = context.socket(zmq.REP)
        self.rep.connect(ping_addr)
        self.control = context.socket(zmq.PULL)
        self.control.connect(control_addr)
        # own=True: close() closes the sockets too.
        self.register(self.rep, self.handle_ping, own=True)
        self.register(self.control, self.handle_control, own=True)
        self.idle = self.ticket(IDLE_TIMEOUT, self.give_up)  # reset by every ping

    def handle_ping(self, msg):
        """Handles ping requests and sends back a pong."""
        # msg is a list of byte objects
        print("Pong got request:", msg[0].decode(), flush=True)
        self.rep.send_string(f"pong {self.pongs}")
        self.pongs += 1
        self.idle.cancel()
        self.idle = self.ticket(IDLE_TIMEOUT, self.give_up)  # reset by every ping

    def handle_control(self, msg):
        """The parent says when the pings are over."""
        if msg == [b"stop"]:
            self.stop()

    def give_up(self):
        print(f"Pong: no ping for {IDLE_TIMEOUT:g} s, stopping", file=sys.stderr, flush=True)
        self.stop()


def pong(ping_addr, control_addr):
    context = zmq.Context()
    loop = PongLoop(context, ping_addr, control_addr)
    try:
        loop.run()
    finally:
        loop.close()
        context.term()


if __name__ == "__main__":
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    control = context.socket(zmq.PUSH)
    # Random free ports, so that several copies can run side by side.
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    control_port = control.bind_to_random_port("tcp://127.0.0.1")

    pong_proc = multiprocessing.Process(
        target=pong, args=(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{control_port}")
    )
    pong_proc.start()

    ping(sock)
    control.send(b"stop")

    pong_proc.join()
    sock.close()
    control.close()
    context.term()
