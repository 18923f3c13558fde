"""JSON bodies in and JSON errors out: the only shapes a client ever sees."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import bottle


class BadRequest(Exception):
    """A client error with its status (400, 413, 415) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def error_response(status: int, message: str, **headers: str) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(
        error_body(status, message), status=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store", **headers},
    )


def default_message(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def read_json_object(request: bottle.BaseRequest, max_bytes: int) -> dict[str, Any]:
    """Parse the body as one JSON object, or raise BadRequest with 400/413/415."""
    media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(415, "Content-Type must be application/json")
    if request.content_length > max_bytes:
        raise BadRequest(413, f"body larger than {max_bytes} bytes")
    raw = request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise BadRequest(413, f"body larger than {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(400, f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, "body must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # "\ud800" parses, but no UTF-8 event can carry it
        raise BadRequest(400, "body contains text that is not valid Unicode (lone surrogate)") from None
    return body


def json_response(status: int, body: dict[str, Any]) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(body), status=status,
                               headers={"Content-Type": "application/json"})
