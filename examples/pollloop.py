"""Ping-pong on a PollLoop: the seed's event-loop version, without Tornado.

The loop does the polling; the pong side only registers a callback for its
stream. Run: python examples/pollloop.py
"""

import multiprocessing

import zmq

from pollframe.loop import PollLoop
from pollframe.stream import Stream


def ping(sock):
    """Sends ping requests and waits for replies."""
    for i in range(5):
        sock.send_string(f"ping {i}")
        rep = sock.recv_string()
        print("Ping got reply:", rep, flush=True)


class Pong(multiprocessing.Process):
    """Waits for ping requests and replies with a pong."""

    def __init__(self, addr):
        super().__init__()
        self.addr = addr
        self.loop = None
        self.stream = None
        self.i = 0

    def run(self):
        """
        Initializes the event loop, creates the sockets/streams and
        starts the (blocking) loop.
        """
        context = zmq.Context()
        self.loop = PollLoop()  # This is the event loop

        sock = context.socket(zmq.REP)
        sock.connect(self.addr)
        # We need to create a stream from our socket and
        # register a callback for recv events.
        self.stream = Stream(sock, self.loop)
        self.stream.on_recv(self.handle_ping)

        # Start the loop. It runs until we stop it.
        self.loop.run()

        self.stream.close(linger=1.0)
        self.loop.close()
        context.term()

    def handle_ping(self, msg):
        """Handles ping requests and sends back a pong."""
        # msg is a list of byte objects
        req = msg[0].decode()
        print("Pong got request:", req, flush=True)
        self.stream.send_string(f"pong {self.i}")

        # We'll stop the loop after 5 pings
        self.i += 1
        if self.i == 5:
            self.stream.flush()
            self.loop.stop()


if __name__ == "__main__":
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    # A random free port, so that several copies can run side by side.
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    pong_proc = Pong(f"tcp://127.0.0.1:{port}")
    pong_proc.start()

    ping(sock)

    pong_proc.join()
    sock.close()
    context.term()
