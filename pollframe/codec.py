"""The message codec: one frame <-> ``(msg_type, args, kwargs)``.

A codec turns the frame that holds a message into the triple a handler is
called with, and a reply triple back into a frame. :class:`JsonCodec` is the
default and the wire format of pollframe: the JSON text ``[msg_type, args,
kwargs]``, or the pair ``[msg_type, data]`` read as ``[msg_type, [data], {}]``.

Decoding is strict because the frame comes from the network: it is valid
UTF-8 JSON or it is refused, with a :class:`~pollframe.errors.MessageError`
subclass naming why. ``NaN`` and ``Infinity`` (also a float that overflows to
it), integers with more than ``max_int_digits`` digits and nesting deeper than
``max_depth`` are refused too. Depth is measured on the raw bytes *before*
parsing, with C-speed byte operations, so that a frame of 100,000 ``[`` costs
microseconds and never reaches Python's recursion limit.

Any object with the :class:`Codec` methods can replace the JSON codec. There
is deliberately no pickle codec: unpickling received data runs the sender's
code. A codec may call :func:`to_triple` to apply the same shape rules.
"""

from __future__ import annotations

import json
import json.encoder
import math
from typing import Any, Protocol, Sequence

from pollframe.errors import BadShape, DecodeError, EncodeError, MessageError, shorten

Triple = tuple[str, list[Any], dict[str, Any]]

_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    tuple: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_name(value: object) -> str:
    """Name the type of a decoded value as a peer in any language sees it."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


class Codec(Protocol):
    """What a handler needs from a codec."""

    def decode(self, frame: bytes) -> Triple:
        """Return ``(msg_type, args, kwargs)`` or raise a MessageError."""

    def encode(self, msg_type: str, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
        """Return the frame for a message, or raise EncodeError."""


def to_triple(value: object) -> Triple:
    """Check the shape of a decoded message and return it as a triple.

    Accepts ``[msg_type, args, kwargs]`` (args a list, kwargs an object) and
    ``[msg_type, data]``; tuples are accepted too, for handler return values.
    """
    if not isinstance(value, (list, tuple)):
        raise BadShape(f"message is {_json_name(value)}, not an array")
    if len(value) == 3:
        msg_type, args, kwargs = value
        if not isinstance(args, (list, tuple)):
            raise BadShape(f"args (item 1) is {_json_name(args)}, not an array")
        if not isinstance(kwargs, dict):
            raise BadShape(f"kwargs (item 2) is {_json_name(kwargs)}, not an object")
        if type(args) is not list:
            args = list(args)
    elif len(value) == 2:
        msg_type, data = value
        args, kwargs = [data], {}
    else:
        raise BadShape(f"message has {len(value)} items, not [type, args, kwargs] or [type, data]")
    if not isinstance(msg_type, str):
        raise BadShape(f"message type is {_json_name(msg_type)}, not a string")
    return msg_type, args, kwargs


# Depth check on raw bytes. UTF-8 multi-byte sequences never contain ASCII
# bytes, so the brackets and quotes found here are the JSON text's own.
_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_TO_PARENS = bytes.maketrans(b"[{]}", b"(())")


def nesting_exceeds(frame: bytes, limit: int) -> bool:
    """Tell whether the JSON text *frame* nests arrays/objects deeper than *limit*.

    Unbalanced brackets count as too deep: such a frame is not JSON anyway.
    Linear in the frame size, no recursion, no per-character Python loop.
    """
    # The common case: too few brackets to nest that deep.
    return frame.count(b"[") + frame.count(b"{") > limit and _deeper_than(frame, limit)


def _deeper_than(frame: bytes, limit: int) -> bool:
    """:func:`nesting_exceeds` for a frame with more than *limit* openings."""
    # Drop escaped backslashes, then escaped quotes (left to right, as a JSON
    # parser pairs them), then every byte but quotes and brackets.
    skeleton = frame.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    # Removing two adjacent quotes keeps every other byte inside or outside a
    # string as it was; what remains are strings that hold brackets.
    skeleton = skeleton.replace(b'""', b"")
    skeleton = b"".join(skeleton.split(b'"')[::2]).translate(_TO_PARENS)
    # Each pass removes the innermost level of every nest; a run of more
    # than `limit` openings is too deep at once, without peeling it level by level.
    too_deep = b"(" * (limit + 1)
    for _ in range(limit):
        if too_deep in skeleton:
            return True
        size = len(skeleton)
        skeleton = skeleton.replace(b"()", b"")
        if not skeleton:
            return False
        if len(skeleton) == size:
            return True
    return True


_NUMBER_SHAPE = bytes.maketrans(b"123456789E", b"000000000e")


def _loads(decoder: json.JSONDecoder, text: str) -> Any:
    """``decoder.decode(text)``, faster on the usual frame.

    ``raw_decode`` skips decode's whitespace handling, which costs as much
    as parsing a short frame; a frame with whitespace around it, extra data
    or an error is parsed again by ``decode``, for its exact semantics.
    """
    try:
        value, end = decoder.raw_decode(text)
    except json.JSONDecodeError:
        return decoder.decode(text)
    return value if end == len(text) else decoder.decode(text)


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"not JSON: {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError("not JSON: a number overflows to Infinity")
    return value


class JsonCodec:
    """The default codec: strict JSON, UTF-8, the triple or the pair.

    ``max_depth`` bounds nesting (the message array itself is level 1);
    ``max_int_digits`` bounds integer literals (Python's own limit is 4300
    digits on recent versions, none on older ones, and parsing is quadratic).
    Replies are encoded with ``json.dumps`` defaults (ASCII, ``", "``
    separators), refusing NaN and Infinity so that pollframe never sends what
    it would refuse to receive.
    """

    def __init__(self, *, max_depth: int = 32, max_int_digits: int = 100) -> None:
        self.max_depth = max_depth
        self.max_int_digits = max_int_digits
        self._fast = json.JSONDecoder(parse_constant=_refuse_constant)
        self._careful = json.JSONDecoder(
            parse_constant=_refuse_constant,
            parse_int=self._bounded_int,
            parse_float=_finite_float,
        )
        self._long_int = b"0" * (max_int_digits + 1)
        self._encoder = json.JSONEncoder(allow_nan=False)
        self._encode = self._c_encoder()

    def __reduce__(self) -> tuple[Any, ...]:
        # The decoders hold C scanners that cannot be pickled; the settings
        # are all a codec is, so a ZmqProcess holding one can be pickled
        # into a spawn or forkserver child.
        return _rebuild_json_codec, (type(self), self.max_depth, self.max_int_digits)

    def _bounded_int(self, text: str) -> int:
        if len(text) - text.startswith("-") > self.max_int_digits:
            raise DecodeError(f"not JSON: an integer has more than {self.max_int_digits} digits")
        return int(text)

    def decode(self, frame: bytes) -> Triple:
        """Decode one frame; raise DecodeError or BadShape if it is refused."""
        if not isinstance(frame, bytes):
            frame = bytes(frame)  # a zmq.Frame or memoryview
        # nesting_exceeds(), with its first test inline: most frames stop there.
        if frame.count(b"[") + frame.count(b"{") > self.max_depth and _deeper_than(frame, self.max_depth):
            raise DecodeError(f"not JSON, or nested deeper than {self.max_depth} levels")
        try:
            text = str(frame, "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8: invalid byte at position {exc.start}") from None
        # A frame that may hold a long integer or a float exponent of three
        # digits (which may overflow to Infinity) takes the careful decoder,
        # whose hooks cost a Python call per number; digits in a string only
        # cost that time. One C-speed translate and three searches, no regex.
        shape = frame.translate(_NUMBER_SHAPE)
        careful = self._long_int in shape or b"e000" in shape or b"e+000" in shape
        try:
            value = _loads(self._careful if careful else self._fast, text)
        except MessageError:
            raise
        except json.JSONDecodeError as exc:
            raise DecodeError(f"not JSON: {exc.msg} at char {exc.pos}") from None
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"not JSON ({type(exc).__name__})") from None
        if type(value) is list and len(value) == 3:  # the common case, checked inline
            msg_type, args, kwargs = value
            if type(msg_type) is str and type(args) is list and type(kwargs) is dict:
                return msg_type, args, kwargs
        return to_triple(value)

    def _c_encoder(self) -> Any:
        """``self._encoder``'s C encoder, made once instead of per call as ``JSONEncoder.encode`` does.

        What ``JSONEncoder.iterencode`` builds for a one-shot encode, with the
        same settings. A failed encode leaves its circular-reference markers
        behind (holding the values it was given), so :meth:`encode` makes a
        new one after a failure. None without the C accelerator.
        """
        make = getattr(json.encoder, "c_make_encoder", None)
        enc = self._encoder
        if make is None:  # pragma: no cover - CPython always has it
            return None
        return make({}, enc.default, json.encoder.encode_basestring_ascii, None, enc.key_separator,
                    enc.item_separator, enc.sort_keys, enc.skipkeys, enc.allow_nan)

    def encode(self, msg_type: str, args: Sequence[Any], kwargs: dict[str, Any]) -> bytes:
        """Encode a message as ``[msg_type, args, kwargs]``; raise EncodeError."""
        if not isinstance(msg_type, str):
            raise EncodeError(f"reply type is {type(msg_type).__name__}, not a string")
        try:
            if self._encode is None:  # pragma: no cover
                return self._encoder.encode([msg_type, args, kwargs]).encode("ascii")
            return "".join(self._encode([msg_type, args, kwargs], 0)).encode("ascii")
        except (TypeError, ValueError, RecursionError) as exc:
            self._encode = self._c_encoder()
            reason = f"reply {shorten(msg_type)} cannot be encoded as JSON ({type(exc).__name__})"
            raise EncodeError(reason) from exc


def _rebuild_json_codec(cls: type[JsonCodec], max_depth: int, max_int_digits: int) -> JsonCodec:
    """Unpickle a :class:`JsonCodec` (or subclass) from its settings."""
    return cls(max_depth=max_depth, max_int_digits=max_int_digits)
