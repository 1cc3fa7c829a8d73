"""Ping-pong with blocking recv calls: easy, but one socket per process.

Run: python examples/blocking_recv.py
"""

import multiprocessing

import zmq


def ping(sock):
    """Sends ping requests and waits for replies."""
    for i in range(5):
        sock.send_string(f"ping {i}")
        rep = sock.recv_string()  # This blocks until we get something
        print("Ping got reply:", rep, flush=True)


def pong(addr):
    """Waits for ping requests and replies with a pong."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.connect(addr)

    for i in range(5):
        req = sock.recv_string()  # This also blocks
        print("Pong got request:", req, flush=True)
        sock.send_string(f"pong {i}")

    sock.close()
    context.term()


if __name__ == "__main__":
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    # A random free port, so that several copies can run side by side.
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    pong_proc = multiprocessing.Process(target=pong, args=(f"tcp://127.0.0.1:{port}",))
    pong_proc.start()

    ping(sock)

    pong_proc.join()
    sock.close()
    context.term()
