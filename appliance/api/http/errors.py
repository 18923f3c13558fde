"""The one place where an error becomes what a client sees: ``{"error": ..., "status": ...}``.

Whoever finds the error (a route raising HttpError, Bottle's 404 and 405 or an exception in a
route, the middleware refusing a body before reading it, Waitress's own 400/413/431, the
guards' 408), the answer is made here: JSON, ``Cache-Control: no-store``, an ``X-Request-ID``,
and for a 5xx no internals (the exception goes to the log). Routes raise; they never format an
error themselves (datasette's handle_exception).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import bottle

from appliance.core import jsontext

log = logging.getLogger("appliance.api")
ERROR_HEADERS = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))


class HttpError(bottle.HTTPError):
    """A client-facing error: its status, a message for the client, optional extra fields of
    the body and headers."""

    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None,
                 **headers: str) -> None:
        super().__init__(status, message, **headers)
        self.message = message
        self.extra = extra or {}


def default_message(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


def error_body(status: int, message: str, extra: dict[str, Any] | None = None) -> bytes:
    return jsontext.dumps({"error": message, "status": status, **(extra or {})})


def error_response(status: int, message: str,
                   request_id: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    """(status line, headers, body) of an error answered outside Bottle."""
    headers = list(ERROR_HEADERS)
    if request_id is not None:
        headers.append(("X-Request-ID", request_id))
    return status_line(status), headers, error_body(status, message)


def raw_response(status: int, message: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for an answer the server writes
    to the socket itself (a request whose headers never finished arriving)."""
    line, headers, body = error_response(status, message, request_id)
    head = "".join(f"{name}: {value}\r\n" for name, value in
                   (*headers, ("Connection", "close"), ("Content-Length", str(len(body)))))
    return f"HTTP/1.1 {line}\r\n{head}\r\n".encode("latin-1") + body


def bottle_error(res: bottle.HTTPError) -> bytes:
    """The body of any error Bottle answers (ours, its own, or an exception in a route); the
    headers are set on Bottle's response. The middleware adds the X-Request-ID."""
    status = res.status_code
    if isinstance(res, HttpError):  # ours: the message is meant for the client
        message, extra = res.message, res.extra
    else:  # Bottle's own (404, 405, ...) or an unexpected exception: no internals
        message = res.body if isinstance(res.body, str) and status < 500 else default_message(status)
        extra = None
    if status in (404, 405):  # Bottle's "Not found: '/x'." as the others read
        message = message.rstrip(".").lower()
    if res.exception is not None and status >= 500:
        environ = bottle.request.environ
        environ["sts.exception"] = res.exception
        log.error("unhandled error", exc_info=(type(res.exception), res.exception,
                                               res.exception.__traceback__),
                  extra={"request_id": environ.get("sts.request_id")})
    for name, value in ERROR_HEADERS:
        bottle.response.set_header(name, value)
    return error_body(status, message, extra)
