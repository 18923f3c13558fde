"""Identifiers for requests and events.

uuid.uuid4() reads os.urandom per call, which showed up in profiles of the API under load with
8 Waitress threads; a UUID4-shaped value from the process's Mersenne Twister (seeded from
urandom at start) is unique enough for ids and much cheaper. Not for secrets.
"""

from __future__ import annotations

import random
import re
import uuid

_random = random.Random()
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def new_id() -> str:
    return str(uuid.UUID(int=_random.getrandbits(128), version=4))


def sane_request_id(value: str | None) -> str | None:
    """An incoming X-Request-ID we can echo and log safely, else None."""
    if value and _SANE_REQUEST_ID.fullmatch(value):  # fullmatch: "$" would allow "\n"
        return value
    return None
