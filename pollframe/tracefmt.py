"""Render recorded traces the way the seed article documents message chains.

Sans-io: :func:`merge` takes parsed trace files (one per process) and
returns the steps of the run -- each message with who sent it (IN, the
frames as passed to send) and who received it (OUT, the frames as
received) -- and the ``render_*`` functions turn steps into text. Only
:func:`load` reads files.

Pairing. A received message is paired with the earliest unpaired sent
message, from another socket of a type that can talk to the receiver's
(REQ to REP or ROUTER, PUSH to PULL, ...), whose frames end the same way
(a ROUTER prepends a peer identity, REQ and REP strip an envelope: one
message's frames are a suffix of the other's), that was sent before it was
received, and preferably over the same endpoint. A PUB message pairs with
one message per subscriber. What was sent to or received from a socket
that was not traced stays a half step, shown against a ``?`` peer.

Display. Frames holding JSON are decoded: a list whose first item is a
string shows as the seed writes it, ``'ping, [0], {}'``; other JSON as
``'{"a": 1}'``. The empty delimiter is ``''``. A ROUTER's peer identity is
``peer-N`` and a binary envelope frame (a DEALER's correlation id) is
``id-N``, numbered by first appearance over the whole trace, so the same
peer has the same name in every step. Other binary frames show as
``0x`` and their first bytes, printable text as ``b'...'``.

Conversations are the groups of sockets that exchanged messages; each is
drawn as a sequence diagram of its sockets followed by the numbered
``IN``/``OUT`` lines, with consecutive repeats of the same exchange
folded (``x5``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pollframe import tracefile
from pollframe.tracefile import SENT, TraceFile

__all__ = ["Namer", "Peer", "Step", "conversations", "fold", "load", "merge", "render", "render_frames",
           "render_mermaid", "render_steps", "show_frame"]

#: Longest decoded JSON text shown for one frame, in characters.
MAX_SHOWN = 300
_BINARY_BYTES = 8  # bytes of a binary frame shown in hex
_MAX_BLOCK = 8  # longest exchange, in steps, that folding looks for

# Which socket types a sender's messages can arrive at.
_RECEIVERS = {
    "REQ": {"REP", "ROUTER"}, "REP": {"REQ", "DEALER"},
    "DEALER": {"REP", "ROUTER", "DEALER"}, "ROUTER": {"REQ", "DEALER", "ROUTER"},
    "PUSH": {"PULL"}, "PUB": {"SUB", "XSUB"}, "XPUB": {"SUB", "XSUB"},
    "SUB": {"PUB", "XPUB"}, "XSUB": {"PUB", "XPUB"}, "PAIR": {"PAIR"},
    "CLIENT": {"SERVER"}, "SERVER": {"CLIENT"}, "RADIO": {"DISH"}, "SCATTER": {"GATHER"},
}
_MULTICAST = {"PUB", "XPUB", "RADIO"}


@dataclass(frozen=True)
class Peer:
    """One traced socket: its process's display name, socket type and endpoint."""

    process: str
    type: str
    endpoint: str = ""
    key: Tuple[int, int] = (0, 0)  # (file number, channel id): tells apart equal-looking sockets

    @property
    def label(self) -> str:
        """``[REQ]``: the socket as the diagram shows it."""
        return f"[{self.type}]"


UNKNOWN = Peer("?", "?", "", (-1, -1))


@dataclass
class Step:
    """One message: IN as ``sender`` passed it to send, OUT as ``receiver`` got it."""

    time: float
    sender: Optional[Peer]
    receiver: Optional[Peer]
    sent: Optional[List[bytes]]
    received: Optional[List[bytes]]


@dataclass
class _Message:
    peer: Peer
    time: float
    frames: List[bytes]


# ------------------------------------------------------------------ merging


def load(directory: str) -> List[TraceFile]:
    """Parse every ``*.pftrace`` file in ``directory``; raises FileNotFoundError when there is none."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".pftrace"))
    if not names:
        raise FileNotFoundError(f"no trace files (*.pftrace) in {directory}")
    files = []
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            files.append(tracefile.parse(f.read()))
    return files


def merge(files: Sequence[TraceFile]) -> List[Step]:
    """All messages of all files as steps, in time order, sends paired with receipts."""
    hosts = {f.process.host for f in files if f.process is not None}
    use_wall = len(hosts) > 1  # one host: its monotonic clock is shared and exact
    names = _process_names(files)
    sent: List[_Message] = []
    received: List[_Message] = []
    for number, f in enumerate(files):
        offset = f.process.wall_offset if (use_wall and f.process is not None) else 0.0
        peers = {cid: Peer(names[number], str(meta.get("type", "?")), str(meta.get("endpoint", "")),
                           (number, cid))
                 for cid, meta in f.sockets.items()}
        for rec in f.records:
            peer = peers.get(rec.channel) or Peer(names[number], "?", "", (number, rec.channel))
            (sent if rec.kind == SENT else received).append(_Message(peer, rec.time + offset, rec.frames))
    # A sender may record its message just after sending it (a raw socket's code does), and be
    # preempted in between: a receipt may then come first by a little.
    return _pair(sent, received, tolerance=0.05)


def _process_names(files: Sequence[TraceFile]) -> List[str]:
    """One display name per file: the process's name, with ``#2``, ``#3`` for repeats."""
    order = sorted(range(len(files)), key=lambda i: files[i].records[0].time if files[i].records else 0.0)
    seen: Dict[str, int] = {}
    names = [""] * len(files)
    for i in order:
        header = files[i].process
        base = header.name if header is not None else "?"
        seen[base] = seen.get(base, 0) + 1
        names[i] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return names


def _pair(sent: List[_Message], received: List[_Message], tolerance: float) -> List[Step]:
    sent.sort(key=lambda m: m.time)
    received.sort(key=lambda m: m.time)
    by_last: Dict[bytes, List[_Message]] = {}
    for msg in sent:
        by_last.setdefault(msg.frames[-1] if msg.frames else b"", []).append(msg)
    used: Dict[int, set] = {}  # id(sent message) -> receiving peers
    steps: List[Step] = []
    for out in received:
        candidates = by_last.get(out.frames[-1] if out.frames else b"", [])
        match = _best(candidates, out, used, tolerance)
        if match is None:
            steps.append(Step(out.time, None, out.peer, None, out.frames))
            continue
        used.setdefault(id(match), set()).add(out.peer)
        # Nothing is received before it is sent: a receipt recorded first bounds when it was.
        steps.append(Step(min(match.time, out.time), match.peer, out.peer, match.frames, out.frames))
        if match.peer.type not in _MULTICAST:
            candidates.remove(match)
    for msgs in by_last.values():
        for msg in msgs:
            if id(msg) not in used:
                steps.append(Step(msg.time, msg.peer, None, msg.frames, None))
    steps.sort(key=lambda s: s.time)
    return steps


def _best(
    candidates: List[_Message], out: _Message, used: Dict[int, set], tolerance: float
) -> Optional[_Message]:
    fallback = None
    for msg in candidates:
        if msg.time > out.time + tolerance:
            break
        if msg.peer.key == out.peer.key or out.peer in used.get(id(msg), ()):
            continue
        if not _can_reach(msg.peer.type, out.peer.type) or not _carries(msg.frames, out.frames):
            continue
        if _same_endpoint(msg.peer.endpoint, out.peer.endpoint):
            return msg
        if fallback is None:
            fallback = msg
    return fallback


def _can_reach(sender: str, receiver: str) -> bool:
    allowed = _RECEIVERS.get(sender)
    return allowed is None or receiver == "?" or receiver in allowed


def _carries(sent: List[bytes], received: List[bytes]) -> bool:
    """One list of frames ends with the other: envelopes are added or stripped at the front only."""
    shorter, longer = (sent, received) if len(sent) <= len(received) else (received, sent)
    return bool(shorter) and longer[len(longer) - len(shorter):] == shorter


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two endpoints may be the two ends of one connection (unknown: yes)."""
    if not a or not b:
        return True
    return _endpoint_key(a) == _endpoint_key(b)


def _endpoint_key(endpoint: str) -> str:
    transport, _, rest = endpoint.partition("://")
    if transport == "tcp":
        return "tcp:" + rest.rpartition(":")[2]  # hosts differ between the bind and the connect side
    return endpoint


def conversations(steps: Sequence[Step]) -> List[List[Step]]:
    """Split steps into groups of processes that talk to each other, each in time order.

    A process's sockets are one group: a broker's frontend and backend
    traffic is one conversation, as its chains are.
    """
    parent: Dict[str, str] = {}

    def find(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for step in steps:
        if step.sender is not None and step.receiver is not None:
            parent[find(step.sender.process)] = find(step.receiver.process)
    groups: Dict[str, List[Step]] = {}
    for step in steps:
        known = step.sender if step.sender is not None else step.receiver
        groups.setdefault(find(known.process), []).append(step)  # type: ignore[union-attr]
    return list(groups.values())


# ------------------------------------------------------------------- frames


class Namer:
    """Stable short names for peer identities (``peer-1``) and envelope ids (``id-1``)."""

    def __init__(self) -> None:
        self._names: Dict[Tuple[str, bytes], str] = {}
        self._known: Dict[bytes, str] = {}
        self._counts: Dict[str, int] = {}

    def name(self, kind: str, frame: bytes) -> str:
        """The name of ``frame`` as a ``kind`` ("peer" or "id"), given on first sight."""
        key = (kind, frame)
        found = self._names.get(key)
        if found is None:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            found = self._names[key] = f"{kind}-{self._counts[kind]}"
            self._known.setdefault(frame, found)
        return found

    def known(self, frame: bytes) -> Optional[str]:
        """The name already given to these bytes, if any (frames of 4 bytes or more only)."""
        return self._known.get(frame) if len(frame) >= 4 else None


def render_frames(frames: Optional[Sequence[bytes]], sock_type: str, namer: Namer) -> str:
    """``[peer-1, '', 'ping, [0], {}']``: one message's frames as the seed writes them.

    A ROUTER's first frame is a peer identity; the frames before the first
    empty one (a DEALER's correlation id) are envelope ids; a later frame
    equal to a named one (a broker or a queue passing on a client's
    identity, in its envelope or after it) gets the same name.
    """
    if frames is None:
        return "(not traced)"
    first_empty = next((i for i, f in enumerate(frames[:-1]) if not f), -1)
    shown = []
    for i, frame in enumerate(frames):
        if i == 0 and sock_type == "ROUTER" and frame:
            shown.append(namer.name("peer", frame))
        elif i < first_empty and frame:  # a known peer passed on in an envelope keeps its name
            shown.append(namer.known(frame) or namer.name("id", frame))
        else:
            shown.append(namer.known(frame) or show_frame(frame))
    return "[" + ", ".join(shown) + "]"


def show_frame(frame: bytes) -> str:
    """One frame for display: decoded JSON, ``''``, ``b'text'`` or shortened hex."""
    if not frame:
        return "''"
    if frame[:1] in (b"[", b"{", b'"'):
        try:
            value = json.loads(frame.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass
        else:
            return _show_json(value)
    if _printable(frame):
        return repr(frame) if len(frame) <= 40 else repr(frame[:40])[:-1] + "...'"
    head = frame[:_BINARY_BYTES].hex()
    return f"0x{head}" if len(frame) <= _BINARY_BYTES else f"0x{head}...({len(frame)} bytes)"


def _show_json(value: object) -> str:
    if isinstance(value, list) and value and isinstance(value[0], str):
        text = ", ".join([value[0]] + [json.dumps(item, ensure_ascii=False) for item in value[1:]])
    else:
        text = json.dumps(value, ensure_ascii=False)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "..."
    return "'" + text.replace("'", "\\'") + "'"


def _printable(frame: bytes) -> bool:
    return frame.isascii() and all(32 <= b < 127 for b in frame)


# ------------------------------------------------------------------ folding


def fold(steps: Sequence[Step], namer: Namer) -> List[Tuple[List[Step], int]]:
    """Consecutive repeats of one exchange (up to 8 steps long) as ``(block, times)``."""
    keys = [_step_key(step, namer) for step in steps]
    out: List[Tuple[List[Step], int]] = []
    i = 0
    while i < len(steps):
        best_len, best_times = 1, 1
        for length in range(1, min(_MAX_BLOCK, (len(steps) - i) // 2) + 1):
            times = 1
            while keys[i + times * length:i + (times + 1) * length] == keys[i:i + length]:
                times += 1
            if times > 1 and times * length > best_times * best_len:
                best_len, best_times = length, times
        out.append((list(steps[i:i + best_len]), best_times))
        i += best_len * best_times
    return out


def _step_key(step: Step, namer: Namer) -> Tuple[object, ...]:
    return (step.sender, step.receiver,
            render_frames(step.sent, _type(step.sender), namer),
            render_frames(step.received, _type(step.receiver), namer))


def _type(peer: Optional[Peer]) -> str:
    return peer.type if peer is not None else "?"


# ---------------------------------------------------------------- rendering


def render(steps: Sequence[Step], *, namer: Optional[Namer] = None, mermaid: bool = False) -> str:
    """Every conversation of a run: a heading, the diagram and the IN/OUT lines (or Mermaid)."""
    namer = namer or Namer()
    parts = []
    for number, conv in enumerate(conversations(steps), 1):
        processes = ", ".join(dict.fromkeys(p.process for s in conv for p in (s.sender, s.receiver) if p))
        body = f"```mermaid\n{render_mermaid(conv, namer)}```" if mermaid else render_steps(conv, namer)
        parts.append(f"Conversation {number}: {processes} ({len(conv)} messages)\n\n{body}")
    return "\n\n".join(parts) + "\n" if parts else "(no messages recorded)\n"


def render_steps(steps: Sequence[Step], namer: Namer, *, folded: bool = True) -> str:
    """One conversation in the seed's format: sequence diagram, then numbered IN/OUT lines."""
    blocks = fold(steps, namer) if folded else [([s], 1) for s in steps]
    columns = _columns(steps)
    arrows: List[Tuple[int, int, int, str]] = []
    lines: List[str] = []
    number = 0
    for block, times in blocks:
        first = number + 1
        for step in block:
            number += 1
            a = columns.index(step.sender or UNKNOWN)
            b = columns.index(step.receiver or UNKNOWN)
            arrows.append((a, b, number, ""))
            lines.append(f"    {number} IN : {render_frames(step.sent, _type(step.sender), namer)}")
            lines.append(f"    {number} OUT: {render_frames(step.received, _type(step.receiver), namer)}")
            lines.append("")
        if times > 1:
            span = f"{first}-{number}" if number > first else f"{first}"
            a, b, n, _ = arrows[-1]
            arrows[-1] = (a, b, n, f"({span} x{times})")
            lines.insert(len(lines) - 1, f"    ({span} repeated x{times})")
    diagram = _diagram(columns, arrows)
    return "\n".join(diagram + ["", ""] + lines).rstrip() + "\n"


def _columns(steps: Iterable[Step]) -> List[Peer]:
    columns: List[Peer] = []
    for step in steps:
        for peer in (step.sender or UNKNOWN, step.receiver or UNKNOWN):
            if peer not in columns:
                columns.append(peer)
    return columns


def _diagram(columns: List[Peer], arrows: List[Tuple[int, int, int, str]]) -> List[str]:
    """The seed's ASCII sequence diagram: process names, socket labels, one arrow per step."""
    widest = max((len(str(n)) for _, _, n, _ in arrows), default=1)
    length = max(7, widest + 6)
    # Place each socket label as far left as the arrow before it and the process names allow.
    label_at: List[int] = []
    groups: List[Tuple[int, int]] = []  # (first column, last column) of each process's run of sockets
    name_end = 0
    for i, column in enumerate(columns):
        half = len(column.label) // 2
        center = 4 + max(half, len(column.process) // 2)
        if i:
            center = max(center, label_at[-1] + len(columns[i - 1].label) + length + 2 + half)
        if i and column.process == columns[i - 1].process:
            groups[-1] = (groups[-1][0], i)
        else:
            if groups:
                name_end = _name_at(groups[-1], columns, label_at) + len(columns[i - 1].process)
                center = max(center, name_end + 2 + len(column.process) // 2)
            groups.append((i, i))
        label_at.append(center - half)
    names, labels = _Line(), _Line()
    for group in groups:
        names.put(_name_at(group, columns, label_at), columns[group[0]].process)
    for at, column in zip(label_at, columns):
        labels.put(at, column.label)
    out = [names, labels]
    for k, (a, b, number, note) in enumerate(arrows):
        lo, hi = min(a, b), max(a, b)
        begin = label_at[lo] + len(columns[lo].label) + 1
        end = label_at[hi] - 1
        line = labels if k == 0 and hi - lo == 1 else _Line()
        line.put(begin, _arrow(end - begin, number, rightward=b > a))
        if note:
            line.put(max(label_at[-1] + len(columns[-1].label), end) + 2, note)
        if line is not labels:
            out.append(line)
    return [str(line) for line in out]


def _arrow(length: int, number: int, *, rightward: bool) -> str:
    """``---1-->`` or ``<--1---``, stretched to ``length``."""
    digits = str(number)
    left = (length - len(digits)) // 2
    text = "-" * left + digits + "-" * (length - left - len(digits) - 1) + ">"
    if rightward:
        return text
    return "<" + text[:-1][::-1].replace(digits[::-1], digits)


def _name_at(group: Tuple[int, int], columns: List[Peer], label_at: List[int]) -> int:
    """Where a process's name starts: centred over the labels of its sockets."""
    first, last = group
    left, right = label_at[first], label_at[last] + len(columns[last].label)
    return max(0, left + (right - left - len(columns[first].process)) // 2)


class _Line:
    """A line of text that strings are placed into at columns."""

    def __init__(self) -> None:
        self._chars: List[str] = []

    def put(self, at: int, text: str) -> None:
        if len(self._chars) < at + len(text):
            self._chars.extend(" " * (at + len(text) - len(self._chars)))
        self._chars[at:at + len(text)] = list(text)

    def __str__(self) -> str:
        return "".join(self._chars).rstrip()


def render_mermaid(steps: Sequence[Step], namer: Namer) -> str:
    """One conversation as a Mermaid ``sequenceDiagram``; folded repeats become ``loop`` blocks."""
    columns = _columns(steps)
    ids = {peer: f"p{i + 1}" for i, peer in enumerate(columns)}
    lines = ["sequenceDiagram"]
    for peer in columns:
        lines.append(f"    participant {ids[peer]} as {_mermaid_text(peer.process + ' ' + peer.label)}")
    number = 0
    for block, times in fold(steps, namer):
        indent = "    "
        if times > 1:
            lines.append(f"    loop x{times}")
            indent = "        "
        for step in block:
            number += 1
            frames = step.sent if step.sent is not None else step.received
            text = show_frame(frames[-1]) if frames else "''"
            a, b = ids[step.sender or UNKNOWN], ids[step.receiver or UNKNOWN]
            lines.append(f"{indent}{a}->>{b}: {number} {_mermaid_text(text)}")
        if times > 1:
            lines.append("    end")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """Mermaid ends a message at ``;`` and reads ``#...;`` as an entity: write both as entities."""
    return "".join({"#": "#35;", ";": "#59;"}.get(c, c) for c in text)
