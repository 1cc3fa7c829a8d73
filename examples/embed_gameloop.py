"""Ping-pong inside a plain game loop: the simulation calls ``run_once(0)`` once per frame.

A game or a simulation owns its ``while`` loop: update the world, draw it,
wait for the next frame. pollframe fits in as one more step per frame:
``loop.run_once(0)`` handles whatever messages and timers are due, without
waiting. Here a ball bounces in a one-dimensional box at 100 frames per
second while a REQ stream pings a REP stream on the same loop, one ping per
reply. A message waits at most one frame (10 ms); ``pollframe.embed.
serve_until(loop, next_frame)`` in place of the sleep would serve it at
once. Run: python examples/embed_gameloop.py
"""

import time

import zmq

from pollframe.loop import PollLoop
from pollframe.stream import Stream

FRAME = 0.01  # seconds: 100 frames per second


class Ball:
    """The simulation: a ball bouncing between 0 and 10 (plain Python, no zmq)."""

    def __init__(self):
        self.x, self.speed = 0.0, 25.0

    def update(self, dt):
        self.x += self.speed * dt
        if not 0.0 <= self.x <= 10.0:
            self.speed = -self.speed
            self.x = min(max(self.x, 0.0), 10.0)


def main():
    ctx = zmq.Context()
    loop = PollLoop()
    pong = Stream(ctx.socket(zmq.REP), loop)
    port = pong.socket.bind_to_random_port("tcp://127.0.0.1")
    ping = Stream(ctx.socket(zmq.REQ), loop)
    ping.socket.connect(f"tcp://127.0.0.1:{port}")
    replies = []

    def handle_ping(msg):
        print("Pong got request:", msg[0].decode(), flush=True)
        pong.send_string(f"pong {len(replies)}")

    def handle_pong(msg):
        print("Ping got reply:", msg[0].decode(), flush=True)
        replies.append(msg)
        if len(replies) < 5:
            ping.send_string(f"ping {len(replies)}")

    pong.on_recv(handle_ping)
    ping.on_recv(handle_pong)
    ping.send_string("ping 0")

    ball, frames = Ball(), 0
    next_frame = time.monotonic()
    deadline = next_frame + 10.0
    while len(replies) < 5 and time.monotonic() < deadline:
        ball.update(FRAME)  # the game's own work ...
        loop.run_once(0)  # ... and pollframe's: what is due now, no waiting
        frames += 1
        next_frame += FRAME
        time.sleep(max(0.0, next_frame - time.monotonic()))

    ping.close(linger=0)
    pong.close(linger=0)
    loop.close()
    ctx.term()
    if len(replies) < 5:
        raise SystemExit(f"only {len(replies)} of 5 replies within 10 s")


if __name__ == "__main__":
    main()
