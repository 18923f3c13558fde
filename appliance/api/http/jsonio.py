"""JSON bodies in and out: a request's body read as one JSON object, a route's answer written
with the appliance's one encoder (compact, orjson: core/jsontext.py)."""

from __future__ import annotations

from typing import Any

import bottle

from appliance.api.http.errors import HttpError
from appliance.core import jsontext
from appliance.schema import events


def read_json_object(request: bottle.BaseRequest, max_bytes: int) -> dict[str, Any]:
    """Parse the body as one JSON object, or raise HttpError with 400/413/415."""
    media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HttpError(415, "Content-Type must be application/json")
    if request.content_length > max_bytes:
        raise HttpError(413, f"body larger than {max_bytes} bytes")
    raw = request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise HttpError(413, f"body larger than {max_bytes} bytes")
    try:
        body = events.loads_strict(raw)
    except events.InvalidJson as exc:
        raise HttpError(400, f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    try:
        jsontext.dumps(body)
    except UnicodeEncodeError:  # "\ud800" parses, but no UTF-8 event can carry it
        raise HttpError(400, "body contains text that is not valid Unicode (lone surrogate)") from None
    return body


def json_response(status: int, body: dict[str, Any]) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(jsontext.dumps(body), status=status,
                               headers={"Content-Type": "application/json"})
