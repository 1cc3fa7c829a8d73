"""The ``pollframe`` command: ask a process, listen to a socket, show a trace, read stats.

::

    pollframe ask ENDPOINT MSG_TYPE [ARG ...] [--timeout S] [--retries N] [--dealer]
    pollframe listen ENDPOINT [--sub PREFIX ...] [--pull] [--bind] [--count N]
    pollframe trace DIR [--mermaid] [--no-fold]
    pollframe stats ENDPOINT [--json] [--timeout S]

Exit status: 0 on success; 1 when the peer answered with an error (or a
trace directory holds no trace); 2 for bad usage, such as an endpoint that
is not one; 3 when no reply came in time; 130 after Ctrl-C, which never
prints a traceback. Everything but the replies and messages themselves
goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, List, Optional, Sequence

__all__ = ["main"]

OK, FAILED, USAGE, TIMEOUT, INTERRUPTED = 0, 1, 2, 3, 130


class _Failure(Exception):
    """Ends the command with a one-line message on stderr and an exit status."""

    def __init__(self, message: str, status: int = FAILED) -> None:
        super().__init__(message)
        self.status = status


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except _Failure as exc:
        print(f"pollframe {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"pollframe {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `pollframe listen ... | head`
        sys.stderr.close()
        return OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pollframe", description="Ask a process, listen to a socket, show a trace, read stats.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = sub.add_parser("ask", help="send one JSON request and print the reply")
    ask.add_argument("endpoint", help="host:port or a tcp://, ipc:// endpoint")
    ask.add_argument("msg_type")
    ask.add_argument("args", nargs="*", metavar="ARG",
                     help="JSON values (a word that is not JSON is a string)")
    ask.add_argument("--timeout", type=_positive, default=2.5, help="seconds per attempt (default 2.5)")
    ask.add_argument("--retries", type=_at_least_one, default=1, help="attempts (default 1)")
    ask.add_argument("--dealer", action="store_true",
                     help="send from a DEALER as [id, '', request] instead of from a REQ")
    ask.set_defaults(run=_ask)

    listen = sub.add_parser("listen", help="print each message a PUB or PUSH peer sends")
    listen.add_argument("endpoint")
    listen.add_argument("--sub", action="append", metavar="PREFIX",
                        help="subscribe to PREFIX (repeatable; default: everything)")
    listen.add_argument("--pull", action="store_true", help="use a PULL socket instead of SUB")
    listen.add_argument("--bind", action="store_true", help="bind ENDPOINT instead of connecting to it")
    listen.add_argument("--count", type=_at_least_one, help="stop after N messages")
    listen.set_defaults(run=_listen)

    show = sub.add_parser("trace", help="print a recorded trace as message chains")
    show.add_argument("directory", help="the POLLFRAME_TRACE directory of a run")
    show.add_argument("--mermaid", action="store_true", help="Mermaid sequence diagrams instead of text")
    show.add_argument("--no-fold", action="store_true", help="do not fold repeated exchanges")
    show.set_defaults(run=_trace)

    stats = sub.add_parser("stats", help="read and print the stats a process serves")
    stats.add_argument("endpoint", help="the endpoint of the process's serve_stats() socket")
    stats.add_argument("--json", action="store_true", help="print the raw JSON snapshot")
    stats.add_argument("--timeout", type=_positive, default=2.5)
    stats.set_defaults(run=_stats)
    return parser


# ------------------------------------------------------------------ commands


def _ask(args: argparse.Namespace) -> int:
    request = [args.msg_type, [_json_or_text(a) for a in args.args], {}]
    reply = _request(args.endpoint, request, args.timeout, args.retries, dealer=args.dealer)
    try:
        message = json.loads(reply[-1])
    except ValueError:
        from pollframe.tracefmt import Namer, render_frames

        print(render_frames(reply, "REQ", Namer()), flush=True)  # not JSON: shown as frames
        return OK
    print(json.dumps(message), flush=True)
    if isinstance(message, list) and message[:1] == ["error"]:
        details = message[1] if len(message) > 1 else []
        reason = details[0] if isinstance(details, list) and details else details
        print(f"pollframe ask: error reply: {reason}", file=sys.stderr)
        return FAILED
    return OK


def _listen(args: argparse.Namespace) -> int:
    import zmq

    from pollframe.tracefmt import Namer, render_frames

    url = _endpoint(args.endpoint, bind=args.bind)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PULL if args.pull else zmq.SUB)
        sock.linger = 0
        if not args.pull:
            for prefix in args.sub or [""]:
                sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        _attach(sock, url, args.bind)
        channel = _channel(sock)
        kind = "PULL" if args.pull else "SUB"
        print(f"pollframe listen: {kind} {'bound to' if args.bind else 'connected to'} {url}",
              file=sys.stderr, flush=True)
        namer, seen = Namer(), 0
        while args.count is None or seen < args.count:
            frames = sock.recv_multipart()
            if channel is not None:
                channel.received(frames)
            seen += 1
            print(render_frames(frames, kind, namer), flush=True)
        return OK
    finally:
        ctx.destroy(linger=0)


def _trace(args: argparse.Namespace) -> int:
    from pollframe import tracefmt

    if not os.path.isdir(args.directory):
        raise _Failure(f"no such directory: {args.directory}", USAGE)
    try:
        files = tracefmt.load(args.directory)
    except FileNotFoundError as exc:
        raise _Failure(str(exc)) from None
    except ValueError as exc:
        raise _Failure(f"{args.directory}: {exc}") from None
    steps = tracefmt.merge(files)
    if args.no_fold:
        namer = tracefmt.Namer()
        out = "\n".join(tracefmt.render_steps(c, namer, folded=False) for c in tracefmt.conversations(steps))
        print(out, end="")
    else:
        print(tracefmt.render(steps, mermaid=args.mermaid), end="")
    return OK


def _stats(args: argparse.Namespace) -> int:
    from pollframe.stats import format_stats

    reply = _request(args.endpoint, ["stats", [], {}], args.timeout, 1, dealer=False)
    try:
        msg_type, (snapshot,), _ = json.loads(reply[-1])
        if msg_type != "stats" or not isinstance(snapshot, dict):
            raise ValueError(msg_type)
    except (ValueError, TypeError):
        raise _Failure(f"{args.endpoint} did not answer with stats: {reply[-1][:200]!r}") from None
    print(json.dumps(snapshot, indent=2) if args.json else format_stats(snapshot).rstrip("\n"))
    return OK


# ------------------------------------------------------------------ helpers


def _request(endpoint: str, request: List[Any], timeout: float, retries: int, *, dealer: bool) -> List[bytes]:
    """Send one request, Lazy Pirate style: a fresh socket per attempt; the reply's frames."""
    import zmq

    url = _endpoint(endpoint, bind=False)
    body = json.dumps(request).encode()
    ctx = zmq.Context()
    try:
        for attempt in range(retries):
            sock = ctx.socket(zmq.DEALER if dealer else zmq.REQ)
            sock.linger = 0
            _attach(sock, url, bind=False)
            channel = _channel(sock)
            ident = b"%d-%d" % (os.getpid(), attempt) if dealer else b""
            frames = [ident, b"", body] if dealer else [body]
            deadline = time.monotonic() + timeout
            if _wait(sock, zmq.POLLOUT, deadline):
                sock.send_multipart(frames)
                if channel is not None:
                    channel.sent(frames)
                while _wait(sock, zmq.POLLIN, deadline):
                    reply = sock.recv_multipart()
                    if channel is not None:
                        channel.received(reply)
                    if not dealer or reply[:1] == [ident]:  # a DEALER may get a late reply to an earlier try
                        sock.close()
                        return reply
            sock.close()
        raise _Failure(f"no reply from {url} after {retries} attempt(s) of {timeout:g} s each", TIMEOUT)
    finally:
        from pollframe import trace

        trace.flush()
        ctx.destroy(linger=0)


def _wait(sock: Any, event: int, deadline: float) -> bool:
    import zmq

    while True:
        remaining = deadline - time.monotonic()
        if zmq.zmq_poll([(sock, event)], max(0, int(remaining * 1000) + 1) if remaining > 0 else 0):
            return True
        if remaining <= 0:
            return False


def _endpoint(text: str, *, bind: bool) -> str:
    from pollframe.address import parse_address

    try:
        return parse_address(text, bind).url
    except ValueError as exc:
        raise _Failure(str(exc), USAGE) from None


def _attach(sock: Any, url: str, bind: bool) -> None:
    import zmq

    try:
        (sock.bind if bind else sock.connect)(url)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise _Failure(f"cannot {'bind' if bind else 'connect'} {url}: {exc}", USAGE) from None


def _channel(sock: Any) -> Any:
    """A trace channel for ``sock`` when ``POLLFRAME_TRACE`` is set, else None."""
    from pollframe import trace

    recorder = trace.recorder()
    if recorder is None:
        return None
    recorder.rename("pollframe")
    return recorder.channel(sock)


def _json_or_text(arg: str) -> Any:
    """A command-line ARG as JSON (``3``, ``"x"``, ``[1, 2]``), or else the word itself."""
    try:
        return json.loads(arg)
    except ValueError:
        return arg


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
