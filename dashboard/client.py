"""ApplianceClient: the dashboard's only way to the appliance, plain HTTP GETs with short timeouts.

Every failure becomes an :class:`ApplianceError` whose ``reason`` is one line a person can act
on; the dashboard shows it in a banner and never lets it escape.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

TIMEOUT = 2.0  # seconds per request: a dead appliance costs one short wait, never a hung UI
MAX_BODY = 8 * 1024 * 1024  # bytes read from one answer; the history of 60 minutes fits
# Our requests carry X-Request-ID "dashboard-<uuid>": the appliance records them as events like
# any others, and the dashboard recognises (and hides) its own polls by this prefix.
REQUEST_ID_PREFIX = "dashboard-"
# What to do about a 401: the appliance's admin plane needs a read token.
TOKEN_HINT = "pass --token; `simple-time-service token --scope read` prints one"


class ApplianceError(Exception):
    """A request to the appliance failed; ``kind`` says how, ``reason`` says it in one line."""

    UNREACHABLE, UNAUTHORIZED, SERVER, HTTP, MALFORMED = (
        "unreachable", "unauthorized", "server", "http", "malformed")

    def __init__(self, kind: str, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.kind, self.reason, self.status = kind, reason, status


def error_message(body: bytes) -> str:
    """The ``error`` of the appliance's JSON error body, else the start of the body."""
    try:
        document = json.loads(body)
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return document["error"]
    except ValueError:
        pass
    return body[:80].decode("utf-8", "replace").strip() or "no body"


def network_reason(exc: BaseException, timeout: float) -> str:
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g} s"
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, (ConnectionResetError, http.client.RemoteDisconnected)):
        return "connection closed by the appliance"
    if isinstance(cause, socket.gaierror):
        return f"host not found ({cause.strerror})"
    return str(getattr(cause, "strerror", None) or cause)


class ApplianceClient:
    """GET /status, /version, /events, /events/stats and /metrics of one appliance."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.sent = 0  # requests sent so far: the dashboard's own share of http_requests_total
        self._lock = threading.Lock()

    def get(self, path: str) -> bytes:
        """The body of a 200 answer; any other outcome raises ApplianceError."""
        with self._lock:
            self.sent += 1
        headers = {"Accept": "application/json", "User-Agent": "simple-time-service-dashboard",
                   "X-Request-ID": f"{REQUEST_ID_PREFIX}{uuid.uuid4()}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read(MAX_BODY)
        except urllib.error.HTTPError as err:
            raise self._http_error(path, err.code, err.read(MAX_BODY)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ApplianceError(ApplianceError.UNREACHABLE, network_reason(exc, self.timeout)) from None

    @staticmethod
    def _http_error(path: str, status: int, body: bytes) -> ApplianceError:
        message = error_message(body)
        if status == 401:
            return ApplianceError(ApplianceError.UNAUTHORIZED,
                                  f"GET {path}: 401 {message} ({TOKEN_HINT})", status)
        kind = ApplianceError.SERVER if status >= 500 else ApplianceError.HTTP
        return ApplianceError(kind, f"GET {path}: {status} {message}", status)

    def get_json(self, path: str) -> dict[str, Any]:
        body = self.get(path)
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise ApplianceError(ApplianceError.MALFORMED,
                                 f"GET {path}: malformed JSON ({exc})") from None
        if not isinstance(document, dict):
            raise ApplianceError(ApplianceError.MALFORMED,
                                 f"GET {path}: expected a JSON object, got {type(document).__name__}")
        return document

    def status(self, history_minutes: int = 0, since: str | None = None) -> dict[str, Any]:
        """With ``history_minutes``, the agent's rounds of those minutes; with ``since`` (the
        time of a round, as the appliance wrote it), only the rounds recorded after it."""
        if not history_minutes:
            return self.get_json("/status")
        query = {"history": history_minutes} | ({"since": since} if since else {})
        return self.get_json(f"/status?{urllib.parse.urlencode(query)}")

    def version(self) -> dict[str, Any]:
        return self.get_json("/version")

    def events(self, limit: int = 100) -> dict[str, Any]:
        # Newest by persisted time: an event delivered late (spool replay after a Kafka outage)
        # still lands among the newest rows, where the table picks it up.
        return self.get_json(f"/events?limit={limit}&order=persisted")

    def stats(self) -> dict[str, Any]:
        """/events/stats of the last hour (the appliance's default window)."""
        return self.get_json("/events/stats")

    def dead_letters(self, limit: int = 50) -> dict[str, Any]:
        """The newest dead letters and their counts by reason."""
        return self.get_json(f"/events/dead-letters?limit={limit}")

    def metrics(self) -> str | None:
        """Prometheus text, or None when the appliance has no /metrics (404)."""
        try:
            return self.get("/metrics").decode("utf-8", "replace")
        except ApplianceError as exc:
            if exc.status == 404:
                return None
            raise
