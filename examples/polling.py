"""Ping-pong with a zmq.Poller: several sockets, but an if-chain per event.

Run: python examples/polling.py
"""

import multiprocessing

import zmq


def ping(sock):
    """Sends ping requests and waits for replies."""
    for i in range(5):
        sock.send_string(f"ping {i}")
        rep = sock.recv_string()
        print("Ping got reply:", rep, flush=True)


def pong(addr):
    """Waits for ping requests and replies with a pong."""
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    sock.connect(addr)

    # Create a poller and register the events we want to poll
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN | zmq.POLLOUT)

    for i in range(10):
        # Get all sockets that can do something
        socks = dict(poller.poll())

        # Check if we can receive something
        if sock in socks and socks[sock] == zmq.POLLIN:
            req = sock.recv_string()
            print("Pong got request:", req, flush=True)

        # Check if we can send something
        if sock in socks and socks[sock] == zmq.POLLOUT:
            sock.send_string(f"pong {i // 2}")

    poller.unregister(sock)
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
