"""Hold documented message chains against a recorded trace.

The seed documents each chain of messages as a sequence diagram and
numbered ``IN``/``OUT`` lines. :func:`assert_chain` checks that such a
block matches what really went over the wire: run the program with
``POLLFRAME_TRACE=DIR`` (or :func:`pollframe.trace.enable`), then::

    assert_chain(DIR, '''
        PingProc      PongProc
         [REQ] ---1--> [ROUTER]
               <--2---

        1 IN : ['ping, [count], {}']
        1 OUT: [ping_id, '', 'ping, [count], {}']

        2 IN : [ping_id, '', 'pong, [count], {}']
        2 OUT: ['pong, [count], {}']
    ''')

The chain must appear as consecutive steps of one recorded conversation.
In the frame lists, bare words are variables: ``ping_id`` matches any one
frame shown bare (``peer-1``), ``count`` any one JSON value that is not a
list or an object, and the same word must match the same text in every
line of the block; ``...`` matches anything. The first word of a quoted
JSON frame (the message type), JSON strings and ``true``/``false``/``null``
are literal. Spaces do not matter, nor how the diagram is aligned: its
lines are compared word by word. Messages on their own clock (heartbeats) may
come between a chain's steps: ``skip=`` leaves such recorded steps out. A mismatch fails with a diff between
the documented block and the closest recorded steps.

:func:`chains_in` reads the blocks out of a Markdown file (the code blocks
that hold ``IN``/``OUT`` lines, keyed by the heading above them).
"""
from __future__ import annotations

import difflib
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from pollframe import tracefmt
from pollframe.tracefmt import Namer, Step

__all__ = ["assert_chain", "chains_in", "recorded_steps"]

_STEP_LINE = re.compile(r"^\s*(\d+)\s+(IN|OUT)\s*:\s*(.*?)\s*$")
_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^,\[\]{}\'"\s]+)'
_LITERAL_WORDS = {"true", "false", "null"}

Trace = Union[str, "os.PathLike[str]", Sequence[Step]]


def recorded_steps(trace: Trace) -> List[Step]:
    """The steps of a trace directory (or the steps themselves)."""
    if isinstance(trace, (str, os.PathLike)):
        return tracefmt.merge(tracefmt.load(os.fspath(trace)))
    return list(trace)


def assert_chain(trace: Trace, documented: Union[str, "os.PathLike[str]"], *,
                 skip: Optional[Callable[[Step], bool]] = None) -> None:
    """Fail with a diff unless the documented chain appears in the trace.

    ``documented`` is the block's text, or a file holding one block.
    ``skip(step)`` true leaves a recorded step out before matching: messages
    on their own clock (heartbeats) that may come between a chain's steps.
    """
    __tracebackhide__ = True
    text = _read_block(documented)
    diagram, steps = _parse_block(text)
    if not steps:
        raise ValueError(f"no numbered IN/OUT lines in the documented chain:\n{text}")
    recorded = recorded_steps(trace)
    namer = Namer()
    whole = _compile(steps)
    best: Tuple[int, Optional[str]] = (-1, None)
    k = len(steps) // 2
    for conv in tracefmt.conversations(recorded):
        if skip is not None:
            conv = [step for step in conv if not skip(step)]
        for start in range(len(conv) - k + 1):
            window = conv[start:start + k]
            shown = tracefmt.render_steps(window, namer, folded=False)
            got_diagram, got_steps = _parse_block(shown)
            if whole.fullmatch(_join(got_steps)) and (not diagram or diagram == got_diagram):
                return
            score = _score(steps, got_steps) + (1 if diagram == got_diagram else 0)
            if score > best[0]:
                best = (score, shown)
    closest = best[1] if best[1] is not None else tracefmt.render(recorded)
    diff = "\n".join(difflib.unified_diff(_dedent(text).splitlines(), closest.rstrip().splitlines(),
                                          "documented", "recorded (closest)", lineterm=""))
    raise AssertionError(
        f"the documented chain is not in the trace ({len(recorded)} messages recorded):\n{diff}")


def chains_in(path: Union[str, "os.PathLike[str]"]) -> Dict[str, str]:
    """The chain blocks of a Markdown file, by the heading above each (``"Sending pings"``)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    blocks: Dict[str, str] = {}
    heading = ""
    for match in re.finditer(r"^(#+)\s*(.*?)\s*$|^```[^\n]*\n(.*?)^```", text, re.M | re.S):
        if match.group(1):
            heading = match.group(2)
        elif match.group(3) and any(_STEP_LINE.match(line) for line in match.group(3).splitlines()):
            title, n = heading, 2
            while title in blocks:
                title, n = f"{heading} ({n})", n + 1
            blocks[title] = match.group(3)
    return blocks


# ------------------------------------------------------------ internals


def _read_block(documented: Union[str, "os.PathLike[str]"]) -> str:
    if isinstance(documented, os.PathLike) or (
            isinstance(documented, str) and "\n" not in documented and os.path.isfile(documented)):
        with open(documented, encoding="utf-8") as f:
            return f.read()
    return str(documented)


def _dedent(text: str) -> str:
    lines = [line for line in text.splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines).rstrip()


def _parse_block(text: str) -> Tuple[List[str], List[Tuple[str, str, str]]]:
    """The diagram's lines (words joined by one space) and the ``(number, IN|OUT, frames)`` lines."""
    diagram: List[str] = []
    steps: List[Tuple[str, str, str]] = []
    for line in text.splitlines():
        match = _STEP_LINE.match(line)
        if match:
            steps.append((match.group(1), match.group(2), match.group(3)))
        elif line.strip() and not steps and not line.strip().startswith("("):
            diagram.append(" ".join(line.split()))
    return diagram, steps


def _join(steps: Sequence[Tuple[str, str, str]]) -> str:
    return "\n".join(f"{n} {kind}:{_squeeze(frames)}" for n, kind, frames in steps)


def _compile(steps: Sequence[Tuple[str, str, str]]) -> "re.Pattern[str]":
    bindings: Dict[str, str] = {}
    lines = [re.escape(f"{n} {kind}:") + _line_pattern(frames, bindings) for n, kind, frames in steps]
    return re.compile("\n".join(lines))


def _score(documented: Sequence[Tuple[str, str, str]], got: Sequence[Tuple[str, str, str]]) -> int:
    """How many lines match on their own: picks the closest window for the diff."""
    score = 0
    for (n, kind, frames), (gn, gkind, gframes) in zip(documented, got):
        if (n, kind) == (gn, gkind) and re.fullmatch(_line_pattern(frames, {}), _squeeze(gframes)):
            score += 1
    return score


def _squeeze(text: str) -> str:
    """Drop whitespace outside JSON strings and ``b'...'`` literals."""
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or (c == "b" and text[i + 1:i + 2] == "'" and (i == 0 or not text[i - 1].isalnum())):
            end = _string_end(text, i + (2 if c == "b" else 1), "'" if c == "b" else '"')
            out.append(text[i:end])
            i = end
        elif c.isspace():
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string_end(text: str, i: int, quote: str) -> int:
    """Index just past the closing ``quote`` at or after ``i`` (backslash escapes skipped)."""
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)


def _line_pattern(frames: str, bindings: Dict[str, str]) -> str:
    """A regular expression for one documented frame list; ``bindings`` maps variables to groups."""
    out: List[str] = []
    i, n = 0, len(frames)
    in_frame = False  # inside a quoted JSON frame '...'
    head_pending = False  # the next word is the message type: literal
    while i < n:
        c = frames[i]
        if c.isspace():
            i += 1
        elif c == '"':
            end = _string_end(frames, i + 1, '"')
            out.append(re.escape(frames[i:end]))
            i, head_pending = end, False
        elif c == "b" and frames[i + 1:i + 2] == "'" and not in_frame:
            end = _string_end(frames, i + 2, "'")
            out.append(re.escape(frames[i:end]))
            i = end
        elif c == "'":
            in_frame = not in_frame
            head_pending = in_frame
            out.append("'")
            i += 1
        elif frames.startswith("...", i):
            out.append(".*?")
            i += 3
        elif c.isalpha() or c == "_":
            match = re.compile(r"[A-Za-z_][\w-]*").match(frames, i)
            word = match.group(0)  # type: ignore[union-attr]
            i = match.end()  # type: ignore[union-attr]
            if head_pending or word in _LITERAL_WORDS:
                out.append(re.escape(word))
            elif word in bindings:
                out.append(f"(?P={bindings[word]})")
            else:
                group = bindings[word] = f"v{len(bindings)}"
                out.append(f"(?P<{group}>{_VALUE})")
            head_pending = False
        elif c.isdigit() and not in_frame:
            end = i
            while end < n and frames[end] not in ",]":
                end += 1
            out.append(re.escape(_squeeze(frames[i:end])))
            i = end
        else:
            out.append(re.escape(c))
            i += 1
            if c not in "'":
                head_pending = False
    return "".join(out)
