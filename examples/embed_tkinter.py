"""Ping-pong in a tkinter window: Tk's main loop serves pollframe through its descriptor (Unix).

``TkGuest`` registers ``loop.fileno()`` with ``createfilehandler`` and keeps
one ``after`` timer at ``loop.next_deadline()``: Tk runs a pollframe pass
when a message arrives or a pollframe timer is due, and the window stays
responsive throughout. Each pong shows in the window; after the fifth the
window closes. Needs a display ($DISPLAY; e.g. ``xvfb-run``). Run:
python examples/embed_tkinter.py
"""

import tkinter

import zmq

from pollframe.embed import TkGuest
from pollframe.loop import PollLoop
from pollframe.stream import Stream


def main():
    ctx = zmq.Context()
    loop = PollLoop()
    pong = Stream(ctx.socket(zmq.REP), loop)
    port = pong.socket.bind_to_random_port("tcp://127.0.0.1")
    ping = Stream(ctx.socket(zmq.REQ), loop)
    ping.socket.connect(f"tcp://127.0.0.1:{port}")

    root = tkinter.Tk()
    root.title("pollframe in tkinter")
    label = tkinter.Label(root, text="waiting for pong ...", width=30)
    label.pack(padx=20, pady=20)
    replies = []

    def handle_ping(msg):
        print("Pong got request:", msg[0].decode(), flush=True)
        pong.send_string(f"pong {len(replies)}")

    def handle_pong(msg):
        text = msg[0].decode()
        print("Ping got reply:", text, flush=True)
        label.config(text=text)
        replies.append(text)
        if len(replies) < 5:
            loop.call_later(0.05, ping.send_string, f"ping {len(replies)}")  # a pollframe timer, served by Tk
        else:
            root.quit()

    pong.on_recv(handle_ping)
    ping.on_recv(handle_pong)
    guest = TkGuest(loop, root)
    ping.send_string("ping 0")
    guest.wake()  # a send from outside pollframe's callbacks: let the guest look again
    root.after(10_000, root.quit)  # a deadline, in case nobody answers
    root.mainloop()

    guest.close()
    root.destroy()
    ping.close(linger=0)
    pong.close(linger=0)
    loop.close()
    ctx.term()
    if len(replies) < 5:
        raise SystemExit(f"only {len(replies)} of 5 replies within 10 s")


if __name__ == "__main__":
    main()
