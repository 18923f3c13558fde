"""What a request says about the way it came: its headers as received (secrets redacted), the
forwarding headers parsed, and a bearer JWT decoded. GET /headers answers with it.

Every header a client sends is data: shown as text (UTF-8, undecodable bytes replaced), cut to
bounded sizes, and trusted (as the proto, host and port the caller used) only when the direct
peer is one of TRUSTED_PROXIES, as for X-Forwarded-For (api/http/clientip.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from appliance.api.http.clientip import is_trusted, parse_ip
from appliance.core.config import IPNetwork

ALWAYS_REDACTED = frozenset({"authorization", "cookie", "proxy-authorization"})
REDACTED = "[redacted]"
MAX_HEADERS = 100  # names shown; Waitress already bounds the whole header block
MAX_VALUE = 2048  # characters of one value shown
MAX_ELEMENTS = 16  # Forwarded elements parsed, nearest last (like X-Forwarded-For's hops)
MAX_JWT = 8192  # characters of a bearer token decoded as a JWT
MAX_DEPTH = 16  # nesting of a JWT's JSON shown
PAIR_KEYS = ("for", "by", "proto", "host")  # RFC 7239's parameters; others are ignored


def header_name(key: str) -> str:
    """``HTTP_X_REAL_IP`` -> ``X-Real-Ip``: WSGI keeps neither the case nor the dashes' place,
    so names are shown title-cased, as Waitress's own headers are."""
    return "-".join(part.capitalize() for part in key.split("_"))


def as_text(value: str, limit: int = MAX_VALUE) -> str:
    """A WSGI value (the bytes as latin-1) as the text it was sent as, at most ``limit``
    characters."""
    if not value.isascii():
        value = value.encode("latin-1", "replace").decode("utf-8", "replace")
    return value if len(value) <= limit else value[:limit] + "..."


def received_headers(environ: dict[str, Any], redact: frozenset[str]) -> tuple[dict[str, str], bool]:
    """The request's headers by name (values of one name joined by ", ", as WSGI hands them
    over), secrets redacted; and whether there were more than MAX_HEADERS."""
    keys = sorted(key for key in environ if key.startswith("HTTP_"))
    keys += [key for key in ("CONTENT_TYPE", "CONTENT_LENGTH") if environ.get(key)]
    headers = {}
    for key in keys[:MAX_HEADERS]:
        name = header_name(key[5:] if key.startswith("HTTP_") else key)
        hidden = name.lower() in ALWAYS_REDACTED or name.lower() in redact
        headers[name] = REDACTED if hidden else as_text(environ[key])
    return headers, len(keys) > MAX_HEADERS


def split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_forwarded(header: str | None) -> list[dict[str, str]]:
    """RFC 7239 ``Forwarded``: one dict per element (for, by, proto, host), the MAX_ELEMENTS
    nearest to us; a pair that does not parse is left out, never an error."""
    if not header:
        return []
    elements = []
    for element in split_outside_quotes(as_text(header), ",")[-MAX_ELEMENTS:]:
        pairs = {}
        for pair in split_outside_quotes(element, ";"):
            key, equals, value = pair.partition("=")
            key = key.strip().lower()
            if equals and key in PAIR_KEYS and key not in pairs:
                pairs[key] = unquote(value)[:256]
        if pairs:
            elements.append(pairs)
    return elements


def forwarding(environ: dict[str, Any], trusted: tuple[IPNetwork, ...]) -> dict[str, Any]:
    """The forwarding headers as sent, and what the caller used (proto, host, port): from those
    headers when the peer is a trusted proxy, else from the connection itself."""
    peer = parse_ip(environ.get("REMOTE_ADDR", ""))
    peer_trusted = peer is not None and is_trusted(peer, trusted)
    sent = {name: as_text(environ[key], 256) if key in environ else None for name, key in (
        ("x_real_ip", "HTTP_X_REAL_IP"), ("x_forwarded_proto", "HTTP_X_FORWARDED_PROTO"),
        ("x_forwarded_host", "HTTP_X_FORWARDED_HOST"), ("x_forwarded_port", "HTTP_X_FORWARDED_PORT"))}
    elements = parse_forwarded(environ.get("HTTP_FORWARDED"))
    # Each proxy appends its element: the nearest one that says, like X-Forwarded-Proto's value.
    nearest = {key: next((e[key] for e in reversed(elements) if key in e), None) for key in PAIR_KEYS}
    direct = {"proto": environ.get("wsgi.url_scheme", "http"),
              "host": as_text(environ.get("HTTP_HOST", ""), 256),
              "port": environ.get("SERVER_PORT", "")}
    effective = dict(direct)
    if peer_trusted:
        effective["proto"] = nearest.get("proto") or sent["x_forwarded_proto"] or direct["proto"]
        effective["host"] = nearest.get("host") or sent["x_forwarded_host"] or direct["host"]
        effective["port"] = sent["x_forwarded_port"] or direct["port"]
    return {"peer_trusted": peer_trusted, "forwarded": elements, **sent, "effective": effective}


def b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def plain(value: Any, depth: int = 0) -> Any:
    """Decoded JSON that any JSON encoder writes back: integers past 64 bits as text, nesting
    past MAX_DEPTH as "..." (orjson refuses both)."""
    if depth > MAX_DEPTH:
        return "..."
    if isinstance(value, dict):
        return {key: plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item, depth + 1) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        return str(value)
    return value


def decoded_jwt(authorization: str) -> dict[str, Any] | None:
    """A bearer JWT's header and claims, marked unverified (the signature is never checked,
    nor shown); None when the credentials are not a JWT."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or len(token) > MAX_JWT or token.count(".") != 2:
        return None
    header, claims, _signature = token.split(".")
    try:
        decoded = b64url_json(header), b64url_json(claims)
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        return None
    if not all(isinstance(part, dict) for part in decoded):
        return None
    return {"header": plain(decoded[0]), "claims": plain(decoded[1]), "verified": False}


def request_view(environ: dict[str, Any], trusted: tuple[IPNetwork, ...],
                 redact: frozenset[str]) -> dict[str, Any]:
    """GET /headers's document."""
    headers, truncated = received_headers(environ, redact)
    client = environ["sts.client"]
    return {
        "method": environ.get("REQUEST_METHOD", ""),
        "headers": headers, "headers_truncated": truncated,
        "peer": environ.get("REMOTE_ADDR", ""), "user_ip": client.user_ip,
        "proxy_chain": client.proxy_chain,
        "forwarding": forwarding(environ, trusted),
        "jwt": decoded_jwt(environ.get("HTTP_AUTHORIZATION", "")),
    }
