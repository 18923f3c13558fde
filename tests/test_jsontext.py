"""appliance.core.jsontext: the fast encoder writes exactly what json.dumps wrote before."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

from appliance.core import jsontext
from appliance.schema import events

SAMPLES = [
    {"schema": 1, "event_id": "e-1", "trace_id": None, "payload": {"status": 200, "duration_ms": 0.412,
                                                                "ok": True, "list": [1, 2.5, "x"]}},
    {"text": "caf\u00e9 \u65e5\u672c \U0001f600", "quote": "\"\\/", "control": "\n\t\x01\x7f"},
    {"big": 2**63 - 1, "negative": -(2**63), "float": 0.1 + 0.2, "nested": {"a": [{"b": {}}]}},
    [], {}, "plain", 0,
]


@pytest.mark.parametrize("value", SAMPLES)
def test_dumps_is_the_compact_utf8_text_json_dumps_wrote(value):
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert jsontext.dumps(value) == expected


def test_dumps_writes_exponents_without_padding_the_same_numbers():
    # The one difference: json.dumps writes 1e-07, orjson 1e-7.
    value = {"small": 1e-7, "large": 1e20, "negative": -2.5e-300}
    assert jsontext.dumps(value) == b'{"small":1e-7,"large":1e+20,"negative":-2.5e-300}'
    assert json.loads(jsontext.dumps(value)) == value


@pytest.mark.parametrize("value", [{"n": 2**64}, {"n": -(2**70)}, {1: "int key"}, {"k": {2.5: "x"}}])
def test_dumps_takes_the_standard_path_for_what_orjson_refuses(value):
    assert jsontext.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [
    {"time": "2026-02-03T10:30:45.123Z", "level": "info", "n": 3, "f": 0.5, "none": None},
    {"path": "/caf\u00e9", "agent": "\u65e5\u672c"},  # not ASCII: escaped as json.dumps does
    {"when": datetime(2026, 2, 3, 10, 30, tzinfo=timezone.utc), "point": Point(1), "set": {1}},
    {"huge": 10**30, 5: "int key"},
])
def test_dumps_text_is_what_json_dumps_with_default_wrote(value):
    assert jsontext.dumps_text(value, default=str) == json.dumps(value, default=str, separators=(",", ":"))


# --- reading: events.loads_strict (orjson, with the standard library where they differ) ----

STRICT_INPUTS = [
    b'{"schema":1,"payload":{"path":"/","bytes":12,"duration_ms":1.25}}', b"[1, 2.5, -0, null]",
    b'{"big": 18446744073709551616}', b'{"small": -9223372036854775809}', b'{"id": "1234567890123456789"}',
    b"1e999", b"-1e400", b"NaN", b"[Infinity]", b'"\\ud800"', b"\xff", b'"\xe9"', b"[1,]", b'{"a":1,"a":2}',
    b"[" * 33 + b"]" * 33, b"[" * 32 + b"]" * 32, '{"é": 1}'.encode("utf-16"), b"\xef\xbb\xbf{}", b"",
    b'{"a": "{[{[{[{[{[{[{[{[{[{[{[{[{[{[{[{[{[{["}',
]


def slow_strict(raw: bytes):
    """What loads_strict answered before its fast path: the standard library alone."""
    try:
        value = json.loads(raw, parse_constant=events._no_constant, parse_float=events._finite_float)
        events.check_depth(value)
        return ("ok", value, [type(v) for v in (value.values() if isinstance(value, dict) else [])])
    except (ValueError, RecursionError) as exc:
        return ("error", type(exc).__name__ == "InvalidJson" or isinstance(exc, ValueError))


@pytest.mark.parametrize("raw", STRICT_INPUTS)
def test_loads_strict_answers_what_the_standard_library_answered(raw):
    try:
        value = events.loads_strict(raw)
        got = ("ok", value, [type(v) for v in (value.values() if isinstance(value, dict) else [])])
    except events.InvalidJson:
        got = ("error", True)
    assert got == slow_strict(raw)


def test_an_integer_beyond_64_bits_stays_an_exact_integer():
    assert events.loads_strict(b'{"n": 18446744073709551616}')["n"] == 18446744073709551616
