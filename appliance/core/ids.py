"""Identifiers for requests and events.

uuid.uuid4() reads os.urandom per call, which showed up in profiles of the API under load with
8 Waitress threads; a UUID4-shaped value from the process's Mersenne Twister (seeded from
urandom at start) is unique enough for ids and much cheaper. Not for secrets.

Ids are UUID version 7 (RFC 9562): the first 48 bits are the Unix time in milliseconds, so ids
made later sort later. The audit database's unique index on event_id (and its request_id index)
then grows at its end, as the time index does, instead of taking each new row on a random page:
measured with bench/audit_scale.py, random (version 4) ids made the insert rate fall with the
table's size (see bench/README.md).
"""

from __future__ import annotations

import random
import time

_random = random.Random()


_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62


def new_id() -> str:
    """A UUID version 7: 48 bits of milliseconds, then 74 random bits around version and variant.
    Its text is made from the integer directly: a uuid.UUID object for it cost three times as
    much, three times per request."""
    bits = _random.getrandbits(74)
    value = ((time.time_ns() // 1_000_000) << 80 | _VERSION_7 | (bits >> 62) << 64 | _VARIANT
             | bits & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
