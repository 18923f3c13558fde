"""The HTTP API: a Bottle app built by ``create_app(settings, ...)``, wrapped by the middleware."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass, field
from typing import Any

import bottle

from . import events
from .config import Settings
from .httpjson import BadRequest, default_message, error_body, error_response
from .lifecycle import Lifecycle
from .middleware import AuditMiddleware
from .netinfo import HostInfo, host_info
from .openapi import openapi_document
from .version import __version__, git_commit

log = logging.getLogger("appliance.api")


class JsonBottle(bottle.Bottle):
    """Bottle whose every error page is ``{"error": ..., "status": ...}``, never HTML."""

    def default_error_handler(self, res: bottle.HTTPError) -> bytes:
        status = res.status_code
        message = res.body if isinstance(res.body, str) and status < 500 else default_message(status)
        if res.exception is not None and status >= 500:
            bottle.request.environ["sts.exception"] = res.exception
            log.error("unhandled error", exc_info=(type(res.exception), res.exception,
                                                   res.exception.__traceback__),
                      extra={"request_id": bottle.request.environ.get("sts.request_id")})
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Cache-Control", "no-store")
        return error_body(status, message.rstrip(".").lower() if status in (404, 405) else message)


@dataclass
class Services:
    """What the routes need besides settings; tests pass their own."""

    settings: Settings
    sink: events.EventSink = field(default_factory=events.DisabledSink)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    host: HostInfo | None = None
    commit: str | None = None

    def __post_init__(self) -> None:
        if self.host is None:
            self.host = host_info(self.settings)
        if self.commit is None:
            self.commit = self.settings.git_commit or git_commit()


def kafka_status_word(sink: events.EventSink) -> str:
    return "UP" if sink.kafka_up else "NOT UP"


def create_app(settings: Settings, services: Services | None = None) -> AuditMiddleware:
    services = services or Services(settings)
    app = JsonBottle()
    app.config["json.enable"] = True
    add_core_routes(app, services)
    return AuditMiddleware(app, settings, services.sink, services.host, services.lifecycle)


def add_core_routes(app: bottle.Bottle, services: Services) -> None:
    host = services.host

    @app.get("/")
    def index() -> dict[str, Any]:
        client = bottle.request.environ["sts.client"]
        status = kafka_status_word(services.sink)
        return {
            "message": f"Hello, Kafka is {status}",
            "timestamp": events.utc_now_iso(),
            "user_ip": client.user_ip,
            "proxy_chain": client.proxy_chain,
            "hostname": host.hostname,
            "os": host.os,
            "pod_ip": host.pod_ip,
            "kafka_status": status,
        }

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/readyz")
    def readyz():
        state = services.lifecycle.state
        if services.lifecycle.ready:
            return {"status": "ready"}
        return error_response(503, f"not ready: {state}")

    @app.get("/version")
    def version() -> dict[str, Any]:
        return {"version": __version__, "python": platform.python_version(),
                "commit": services.commit}

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return openapi_document(__version__)


def bad_request_response(exc: BadRequest) -> bottle.HTTPResponse:
    return error_response(exc.status, exc.message)


def json_response(status: int, body: dict[str, Any]) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(body), status=status,
                               headers={"Content-Type": "application/json"})
