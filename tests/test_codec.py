"""The JSON codec: the wire shapes it accepts and every input it refuses."""

from __future__ import annotations

import json
import pickle
import weakref

import pytest

from pollframe.codec import JsonCodec, nesting_exceeds, to_triple
from pollframe.errors import (
    BadShape,
    DecodeError,
    EncodeError,
    MessageError,
    shorten,
)


@pytest.fixture
def codec() -> JsonCodec:
    return JsonCodec()


# -- accepted shapes ---------------------------------------------------------


def test_the_triple_decodes_to_type_args_and_kwargs(codec):
    assert codec.decode(b'["ping", [3], {"loud": true}]') == ("ping", [3], {"loud": True})


def test_the_pair_is_read_as_one_argument_and_no_kwargs(codec):
    assert codec.decode(b'["ping", 3]') == ("ping", [3], {})


def test_a_pair_whose_data_is_a_list_passes_the_list_as_one_argument(codec):
    assert codec.decode(b'["ping", [1, 2]]') == ("ping", [[1, 2]], {})


def test_whitespace_around_the_json_text_is_allowed(codec):
    assert codec.decode(b' \t["ping", 3]\r\n') == ("ping", [3], {})


def test_utf8_text_decodes(codec):
    assert codec.decode('["say", "grüße ☃"]'.encode()) == ("say", ["grüße ☃"], {})


def test_a_memoryview_frame_decodes_like_bytes(codec):
    assert codec.decode(memoryview(b'["ping", 0]')) == ("ping", [0], {})


def test_an_integer_at_the_digit_limit_is_accepted(codec):
    big = "9" * 100
    assert codec.decode(f'["n", -{big}]'.encode()) == ("n", [-int(big)], {})


def test_ordinary_floats_with_exponents_are_accepted(codec):
    assert codec.decode(b'["f", [1.5e3, 2E-2], {}]') == ("f", [1500.0, 0.02], {})


def test_nesting_up_to_the_depth_limit_is_accepted():
    codec = JsonCodec(max_depth=5)
    assert codec.decode(b'["t", [[[[1]]]], {}]') == ("t", [[[[1]]]], {})


def test_many_shallow_brackets_are_not_mistaken_for_depth():
    codec = JsonCodec(max_depth=3)
    frame = json.dumps(["points", [[i, i] for i in range(1000)], {}]).encode()
    assert codec.decode(frame)[1][999] == [999, 999]


def test_brackets_inside_strings_do_not_count_as_nesting():
    codec = JsonCodec(max_depth=3)
    frame = json.dumps(["s", ["[[[[[[", '\\"{{{{', "\\\\"], {}]).encode()
    assert codec.decode(frame) == ("s", ["[[[[[[", '\\"{{{{', "\\\\"], {})


# -- refused input -----------------------------------------------------------


@pytest.mark.parametrize(
    "frame, error",
    [
        (b"", DecodeError),
        (b"not json", DecodeError),
        (b'["ping", 3', DecodeError),
        (b'["ping", 3] trailing', DecodeError),
        (b"\xff\xfe\x00garbage", DecodeError),
        ('["ping", "caf\u00e9"]'.encode("latin-1"), DecodeError),
        ('["ping", 3]'.encode("utf-16"), DecodeError),
        (b'["ping", NaN]', DecodeError),
        (b'["ping", Infinity]', DecodeError),
        (b'["ping", -Infinity]', DecodeError),
        (b'["ping", 1e999]', DecodeError),
        (b'{"type": "ping"}', BadShape),
        (b'"ping"', BadShape),
        (b"3", BadShape),
        (b"null", BadShape),
        (b"[]", BadShape),
        (b'["ping"]', BadShape),
        (b'["ping", [], {}, 4]', BadShape),
        (b"[3, [], {}]", BadShape),
        (b"[null, 1]", BadShape),
        (b'["ping", 3, {}]', BadShape),
        (b'["ping", [], []]', BadShape),
        (b'["ping", [], "x"]', BadShape),
    ],
    ids=lambda v: shorten(v) if isinstance(v, bytes) else v.__name__,
)
def test_malformed_frames_raise_a_named_message_error(codec, frame, error):
    with pytest.raises(error) as caught:
        codec.decode(frame)
    assert isinstance(caught.value, MessageError) and isinstance(caught.value, ValueError)
    assert caught.value.reason and "\n" not in caught.value.reason


def test_json_nested_100000_deep_is_refused_without_recursion(codec):
    with pytest.raises(DecodeError, match="nested deeper than 32"):
        codec.decode(b"[" * 100_000 + b"]" * 100_000)


def test_deep_nesting_after_many_escaped_quotes_is_still_found(codec):
    frame = b'["s", "' + b'\\"' * 10_000 + b'", ' + b"[" * 40 + b"]" * 40 + b"]"
    with pytest.raises(DecodeError, match="nested"):
        codec.decode(frame)


def test_nesting_one_level_over_the_limit_is_refused():
    with pytest.raises(DecodeError, match="nested deeper than 5"):
        JsonCodec(max_depth=5).decode(b'["t", [[[[[1]]]]], {}]')


def test_a_5000_digit_integer_is_refused_with_a_short_reason(codec):
    with pytest.raises(DecodeError, match="more than 100 digits") as caught:
        codec.decode(b'["ping", ' + b"7" * 5000 + b"]")
    assert "7777" not in caught.value.reason


@pytest.mark.parametrize("number", [b"1E+400", b"-2e999", b"1" * 310 + b".5"])
def test_a_float_that_overflows_to_infinity_is_refused(codec, number):
    with pytest.raises(DecodeError, match="Infinity"):
        codec.decode(b'["f", [' + number + b"], {}]")


def test_long_finite_floats_and_underflow_are_accepted(codec):
    mantissa = "0." + "1" * 200
    assert codec.decode(f'["f", [{mantissa}, 1e-400, 1e+300], {{}}]'.encode()) == (
        "f", [float(mantissa), 0.0, 1e300], {}
    )


def test_long_digit_runs_inside_strings_are_fine(codec):
    digits = "1" * 5000
    assert codec.decode(json.dumps(["id", digits]).encode()) == ("id", [digits], {})


def test_a_not_json_reason_names_the_position_and_quotes_nothing(codec):
    with pytest.raises(DecodeError) as caught:
        codec.decode(b'["ping", ' + b"x" * 10_000 + b"]")
    assert caught.value.reason == "not JSON: Expecting value at char 9"


# -- nesting_exceeds on its own ---------------------------------------------


@pytest.mark.parametrize(
    "text, depth",
    [
        ("[]", 1),
        ('["a", {"b": [1, [2]]}]', 4),
        ('["[[[", "\\\\", {"x\\n": [[1]]}, "\\\\\\"]"]', 4),
        ('[{"": [""]}, "", [[]]]', 3),
    ],
)
def test_nesting_exceeds_measures_the_depth_of_valid_json(text, depth):
    json.loads(text)  # the cases are valid JSON
    assert not nesting_exceeds(text.encode(), depth)
    assert nesting_exceeds(text.encode(), depth - 1)


def test_unbalanced_brackets_count_as_too_deep():
    assert nesting_exceeds(b"[[[]" * 10, 3)


# -- shape helper and encoding -----------------------------------------------


def test_to_triple_accepts_tuples_from_handler_return_values():
    assert to_triple(("pong", (1, 2), {"k": 3})) == ("pong", [1, 2], {"k": 3})


def test_replies_are_encoded_as_the_triple_like_json_dumps(codec):
    assert codec.encode("pong", [0], {}) == json.dumps(["pong", [0], {}]).encode()


def test_encoding_then_decoding_gives_the_message_back(codec):
    message = ("say", ["grüße", None, 1.5, [True]], {"to": "☃"})
    assert codec.decode(codec.encode(*message)) == message


def test_encoding_a_lone_surrogate_stays_ascii_and_round_trips(codec):
    frame = codec.encode("echo", ["\ud800"], {})
    assert frame.isascii() and codec.decode(frame) == ("echo", ["\ud800"], {})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}, object(), b"bytes"])
def test_values_json_cannot_carry_raise_encode_error(codec, value):
    with pytest.raises(EncodeError, match="cannot be encoded"):
        codec.encode("pong", [value], {})


def test_a_reply_that_failed_to_encode_is_not_kept_alive_by_the_codec(codec):
    class Unencodable:
        pass

    value = Unencodable()
    gone = weakref.ref(value)
    with pytest.raises(EncodeError):
        codec.encode("pong", [[value]], {})
    del value
    assert gone() is None, "the encoder's circular-reference markers still hold it"
    assert codec.encode("pong", [[1]], {}) == b'["pong", [[1]], {}]'


def test_a_circular_reply_is_refused_as_circular(codec):
    loop: list = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="ValueError") as refused:
        codec.encode("pong", [loop], {})
    assert "Circular" in str(refused.value.__cause__)


def test_a_non_string_reply_type_raises_encode_error(codec):
    with pytest.raises(EncodeError, match="not a string"):
        codec.encode(3, [], {})  # type: ignore[arg-type]


def test_a_codec_survives_a_pickle_round_trip_with_its_limits():
    # A ZmqProcess holding a codec is pickled into a spawn or forkserver child.
    copy = pickle.loads(pickle.dumps(JsonCodec(max_depth=3, max_int_digits=5)))
    assert (copy.max_depth, copy.max_int_digits) == (3, 5)
    assert copy.decode(b'["n", [12345], {}]') == ("n", [12345], {})
    with pytest.raises(DecodeError, match="5 digits"):
        copy.decode(b'["n", [123456], {}]')
    with pytest.raises(DecodeError, match="deeper than 3"):
        copy.decode(b'["n", [[[1]]], {}]')


# -- reasons are safe -----------------------------------------------------------


def test_shorten_cuts_long_input_to_a_few_dozen_characters():
    assert len(shorten("x" * 1_000_000)) <= 40
    assert shorten("ping") == "'ping'"


def test_a_reason_is_one_line_and_bounded():
    error = BadShape("line one\nline two " + "y" * 1000)
    assert "\n" not in error.reason and len(error.reason) <= 200
    assert str(error) == error.reason


def test_a_long_run_of_openings_is_refused_without_peeling_it_level_by_level():
    frame = b"[" * 100_000 + b"]" * 100_000
    assert nesting_exceeds(frame, 32)
    assert not nesting_exceeds(b"[" * 32 + b"]" * 32, 32)
