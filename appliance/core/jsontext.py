"""Compact JSON as UTF-8 bytes, fast: orjson, with the standard library for what it refuses.

Measured in bench/request_cost.py: four encodings per request (two events, the access line, the
response body) with ``json.dumps`` were ~15 % of the API's CPU per request. orjson writes the
same JSON text for the values the appliance encodes (insertion order, raw UTF-8, no spaces; the
one difference is a negative exponent: 1e-7 where json.dumps wrote 1e-07, the same
numbers); it refuses integers beyond 64 bits and keys that are not strings, which a caller's
custom event may hold: those go through ``json.dumps``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

# Values orjson would write in its own way (datetime as RFC 3339, a dataclass as an object) go
# to ``default``, as json.dumps(default=...) sends them.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any) -> bytes:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()``, faster."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a key not a string
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dumps_text(value: Any, default: Callable[[Any], Any]) -> str:
    """``json.dumps(value, default=default, separators=(",", ":"))``, for log lines: the same
    text, ASCII with ``\\u`` escapes (a line that is not ASCII takes the standard library's path)."""
    try:
        encoded = orjson.dumps(value, default=default, option=_PASSTHROUGH)
    except TypeError:
        encoded = b""
    if encoded and encoded.isascii():
        return encoded.decode("ascii")
    return json.dumps(value, default=default, separators=(",", ":"))
