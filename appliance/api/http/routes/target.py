"""The test target: GET /headers, /status/<code>, /delay/<seconds>, and ?response_header=.

What people point at a load balancer, an ingress or a mesh to see what it does: the request as
it arrived, and a backend that answers a chosen status or slowly, on purpose. Each exchange is
audited like any other. A delay holds a worker thread, so delays in flight are capped below
WEB_THREADS (DELAY_CONCURRENCY): GET / always keeps threads of its own.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from http import HTTPStatus

import bottle

from appliance.api.http.errors import HttpError, default_message
from appliance.api.http.forwarding import request_view
from appliance.api.http.queries import refuse_unknown
from appliance.api.http.services import Services
from appliance.core import jsontext
from appliance.core.config import HEADER_NAME_RE

STATUS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Headers a client may ask back: caching and language, and any X-Echo-*. Never one that
# changes how the answer is framed or routed (Content-Length, Location, Set-Cookie, ...).
ECHO_ALLOWED = frozenset({"cache-control", "expires", "etag", "last-modified", "retry-after",
                          "age", "content-language", "vary"})
ECHO_PREFIX = "x-echo-"
MAX_ECHOED, MAX_ECHO_VALUE = 8, 256
PRINTABLE = re.compile(r"^[\x20-\x7e]*$")
NO_BODY = frozenset({204, 304})


def echoed_headers(query_string: str) -> dict[str, str]:
    """The headers ``?response_header=Name:Value`` asks for, checked: 400 for one not allowed."""
    refuse_unknown(dict(urllib.parse.parse_qsl(query_string, keep_blank_values=True)),
                   {"response_header"})
    asked = [value for name, value in urllib.parse.parse_qsl(query_string, keep_blank_values=True)
             if name == "response_header"]
    if len(asked) > MAX_ECHOED:
        raise HttpError(400, f"response_header may be given at most {MAX_ECHOED} times")
    headers = {}
    for item in asked:
        name, colon, value = item.partition(":")
        name, value = name.strip(" \t"), value.strip(" \t")  # never CR or LF: refused below
        if not colon or not HEADER_NAME_RE.match(name):
            raise HttpError(400, "response_header must be Name:Value with a header name")
        if name.lower() not in ECHO_ALLOWED and not name.lower().startswith(ECHO_PREFIX):
            raise HttpError(400, f"response_header {name!r} is not allowed: one of "
                                 f"{', '.join(sorted(ECHO_ALLOWED))} or X-Echo-*")
        if len(value) > MAX_ECHO_VALUE or not PRINTABLE.match(value):
            raise HttpError(400, f"response_header value must be at most {MAX_ECHO_VALUE} "
                                 f"printable ASCII characters")
        headers[name] = value
    return headers


def parse_code(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and len(raw) == 3) or not 100 <= int(raw) <= 599:
        raise HttpError(400, "code must be an integer from 100 to 599")
    return int(raw)


def status_answer(code: int, headers: dict[str, str]) -> bottle.HTTPResponse:
    """The status asked for, with a body that says so; 1xx, 204 and 304 have none (RFC 9110),
    and a 3xx other than 304 points back at /."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unassigned"
    headers.setdefault("Cache-Control", "no-store")
    if code >= 400:
        raise HttpError(code, f"{default_message(code)}: status {code} as asked", **headers)
    if 300 <= code < 400 and code != 304:
        headers["Location"] = "/"
    if code < 200 or code in NO_BODY:
        return bottle.HTTPResponse(b"", status=code, headers=headers)
    body = jsontext.dumps({"status": code, "message": f"{phrase}, as asked"})
    return bottle.HTTPResponse(body, status=code,
                               headers={**headers, "Content-Type": "application/json"})


def parse_seconds(raw: str, limit: float) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= limit:  # also refuses nan and inf
        raise HttpError(400, f"seconds must be a number from 0 to {limit:g} (MAX_DELAY)")
    return seconds


def add_target_routes(app: bottle.Bottle, services: Services) -> None:
    settings = services.settings
    slots = services.delay_slots

    def answer(document: dict, headers: dict[str, str]) -> dict:
        for name, value in headers.items():
            bottle.response.set_header(name, value)
        bottle.response.set_header("Cache-Control", headers.get("Cache-Control", "no-store"))
        return document

    @app.get("/headers")
    def headers_():
        echo = echoed_headers(bottle.request.environ.get("QUERY_STRING", ""))
        view = request_view(bottle.request.environ, settings.trusted_proxies,
                            settings.redact_headers)
        return answer(view, echo)

    @app.route("/status/<code>", STATUS_METHODS)
    def status_code(code: str):
        echo = echoed_headers(bottle.request.environ.get("QUERY_STRING", ""))
        return status_answer(parse_code(code), echo)

    @app.get("/delay/<seconds>")
    def delay(seconds: str):
        echo = echoed_headers(bottle.request.environ.get("QUERY_STRING", ""))
        wanted = parse_seconds(seconds, settings.max_delay)
        started = time.monotonic()
        if not slots.hold(wanted):
            raise HttpError(503, "too many delays in flight (DELAY_CONCURRENCY)",
                            **{"Retry-After": "1"})
        return answer({"delay": wanted, "slept": round(time.monotonic() - started, 3)}, echo)
