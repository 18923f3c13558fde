"""JSON bodies in and JSON errors out: the only shapes a client ever sees.

Routes raise HttpError; the app's error handler (app.JsonBottle) renders every error, ours and
Bottle's and Waitress's, as ``{"error": ..., "status": ...}``.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import bottle

from appliance.schema import events


class HttpError(bottle.HTTPError):
    """A client-facing error: its status, a message for the client, optional headers."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(status, message, **headers)
        self.message = message


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def default_message(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


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
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # "\ud800" parses, but no UTF-8 event can carry it
        raise HttpError(400, "body contains text that is not valid Unicode (lone surrogate)") from None
    return body


def json_response(status: int, body: dict[str, Any]) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(body), status=status,
                               headers={"Content-Type": "application/json"})
