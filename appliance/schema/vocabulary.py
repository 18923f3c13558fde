"""The appliance's words: what an event id, a request id, a trace id, an event type, a stored
instant and a cursor look like, and how long each text of an event may be.

Defined once, here, and used wherever one is checked or described: the API's validation of
query parameters and X-Request-ID (api/http/), the consumer's rules for what becomes a dead
letter (pipeline/consumer/persist.py), the export command (appliance/export.py), and the
OpenAPI document, whose patterns and limits are made from these (api/http/openapi.py).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Word:
    """Text of ``shortest`` to ``longest`` characters from one character class."""

    characters: str  # a regular-expression character class
    shortest: int
    longest: int

    @property
    def pattern(self) -> str:
        count = (f"{{{self.shortest}}}" if self.shortest == self.longest
                 else f"{{{self.shortest},{self.longest}}}")
        return self.characters + count

    @functools.cached_property
    def regex(self) -> re.Pattern:
        return re.compile(self.pattern)

    def matches(self, value: Any) -> bool:
        # fullmatch: "$" would let a trailing "\n" through
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    @property
    def expected(self) -> str:
        """What an error says is expected: "1-64 characters of [a-z0-9_.-]"."""
        count = (str(self.shortest) if self.shortest == self.longest
                 else f"{self.shortest}-{self.longest}")
        return f"{count} characters of {self.characters}"

    def schema(self) -> dict[str, Any]:
        """The OpenAPI (JSON schema) description of this word."""
        return {"type": "string", "pattern": f"^{self.pattern}$"}


# Our event ids are UUIDs (core/ids.py); another producer's may be longer, up to this.
EVENT_ID = Word("[A-Za-z0-9._:-]", 1, 64)
# An incoming X-Request-ID is kept when it is one of these, else replaced: echoed, logged and
# stored, so nothing in it may start a new log line or a header.
REQUEST_ID = Word("[A-Za-z0-9._:@/+=-]", 1, 128)
TRACE_ID = Word("[0-9a-f]", 32, 32)  # W3C trace id, lowercase hex
EVENT_TYPE = Word("[a-z0-9_.-]", 1, 64)
METHOD = Word("[A-Za-z]", 1, 16)  # an HTTP method as /events filters it

HTTP_REQUEST, HTTP_RESPONSE, ERROR = "http_request", "http_response", "error"
RESERVED_TYPES = frozenset({HTTP_REQUEST, HTTP_RESPONSE, ERROR})  # custom events may not use them
CUSTOM, DEAD_LETTER = "custom", "dead_letter"  # the other values of /events?type=
TYPE_FILTER_EXPECTED = ("http_request, http_response, error, custom, dead_letter or a custom "
                        f"event type of {EVENT_TYPE.characters}")

# The longest text of each payload field, in characters: the API cuts what it puts in an event
# to these (schema/events.clip), the consumer refuses longer ones (another producer's) as dead
# letters.
TEXT_LIMITS = {"method": 16, "route": 255, "path": 8192, "query": 8192, "user_ip": 64,
               "proxy_chain": 8192, "user_agent": 2048, "hostname": 255, "error": 255,
               "message": 8192}

# An instant as the appliance writes it (core/timefmt.iso): fixed width, so text order is time
# order. An event on the topic may carry fewer digits of fraction; the consumer normalises it.
STORED_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
EVENT_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
INSTANT_EXPECTED = "an ISO-8601 time, e.g. 2026-01-31T12:00:00Z"


class InstantOutOfRange(ValueError):
    """An ISO-8601 time that is past what a UTC datetime can hold (9999-12-31T23:59-05:00)."""


def parse_instant(raw: str) -> datetime:
    """Any ISO-8601 time, as UTC (one without a zone is UTC); ValueError otherwise."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(INSTANT_EXPECTED) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise InstantOutOfRange("out of range") from None

# /events?status=: a code (404) or a class (5xx).
STATUS_FILTER = re.compile(r"([1-5])([0-9][0-9]|xx)")

# A cursor is the base64url (unpadded) of the JSON [1, "<filters digest>", "<instant>", rank,
# id] (schema/audit_read.py): its first bytes '[1,"' are always "WzEsI".
CURSOR = re.compile(r"WzEsI[A-Za-z0-9_-]{40,200}")
