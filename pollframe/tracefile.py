"""The trace file format: records in, records out, no I/O.

A trace file holds the messages one process sent and received, so that
``pollframe trace`` can show what really went over the wire. It is binary
because it is written on the hot path: a record costs a ``struct.pack``
and a few ``bytearray.extend`` calls, no JSON and no base64.

Layout: the magic line ``PFTRACE1\\n``, then records one after another.
A record is a header ``<BIdH`` -- kind, channel id, monotonic time in
seconds, number of frames -- then, per frame, its length ``<I`` and its
bytes. Kinds:

- ``PROCESS`` (channel 0): one JSON frame ``{"name", "pid", "host", "wall_offset"}``;
  ``wall_offset`` turns the file's monotonic times into wall-clock times
  (``time.time() - time.monotonic()`` when the file was opened), which is
  what merges files of several processes or hosts. A later ``PROCESS``
  record renames the process.
- ``SOCKET``: one JSON frame ``{"type", "endpoint"}`` describing the
  channel id it carries (one traced socket); it precedes that channel's
  messages.
- ``SENT`` (shown as IN: the frames as passed to send) and ``RECEIVED``
  (shown as OUT: the frames as received), the message's own frames.

A writer only ever appends whole records, so a file cut short (the
process was killed during a write) loses at most its last record, which
:func:`parse` drops.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["MAGIC", "PROCESS", "SOCKET", "SENT", "RECEIVED", "Header", "Record", "TraceFile",
           "encode_meta", "parse"]

MAGIC = b"PFTRACE1\n"
PROCESS, SOCKET, SENT, RECEIVED = 0, 1, 2, 3

HEADER = struct.Struct("<BIdH")
LENGTH = struct.Struct("<I")


def encode_meta(kind: int, channel: int, time: float, meta: Dict[str, Any]) -> bytes:
    """A PROCESS or SOCKET record carrying ``meta`` as its one JSON frame."""
    body = json.dumps(meta, separators=(",", ":")).encode()
    return HEADER.pack(kind, channel, time, 1) + LENGTH.pack(len(body)) + body


@dataclass
class Header:
    """What a PROCESS record says: who wrote the file."""

    name: str
    pid: int
    wall_offset: float
    host: str = ""


@dataclass
class Record:
    """One message: ``kind`` is SENT or RECEIVED, ``time`` monotonic seconds."""

    kind: int
    channel: int
    time: float
    frames: List[bytes]


@dataclass
class TraceFile:
    """A parsed file: the process, its sockets by channel id, its messages in order."""

    process: Optional[Header] = None
    sockets: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    records: List[Record] = field(default_factory=list)
    truncated: bool = False


def parse(data: bytes) -> TraceFile:
    """Read a trace file's bytes; raises ValueError if it is not a trace file.

    A last record cut short is dropped and ``truncated`` set; so is a file
    read before its writer finished the magic (an empty file: nothing yet).
    """
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        return TraceFile(truncated=True)
    if not data.startswith(MAGIC):
        raise ValueError("not a pollframe trace file (bad magic)")
    out = TraceFile()
    view = memoryview(data)
    pos, end = len(MAGIC), len(data)
    unpack_header, unpack_length = HEADER.unpack_from, LENGTH.unpack_from
    hsize, lsize = HEADER.size, LENGTH.size
    while pos < end:
        if pos + hsize > end:
            out.truncated = True
            break
        kind, channel, t, count = unpack_header(view, pos)
        p = pos + hsize
        frames: List[bytes] = []
        for _ in range(count):
            if p + lsize > end:
                break
            (size,) = unpack_length(view, p)
            p += lsize
            if p + size > end:
                break
            frames.append(bytes(view[p:p + size]))
            p += size
        if len(frames) < count:
            out.truncated = True
            break
        pos = p
        if kind == PROCESS:
            meta = _meta(frames)
            out.process = Header(str(meta.get("name", "?")), int(meta.get("pid", 0)),
                                 float(meta.get("wall_offset", 0.0)), str(meta.get("host", "")))
        elif kind == SOCKET:
            out.sockets[channel] = _meta(frames)
        elif kind in (SENT, RECEIVED):
            out.records.append(Record(kind, channel, t, frames))
        else:
            raise ValueError(f"unknown record kind {kind} at byte {pos}")
    return out


def _meta(frames: Sequence[bytes]) -> Dict[str, Any]:
    try:
        value = json.loads(frames[0]) if frames else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
