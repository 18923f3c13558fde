"""GET /, /healthz, /readyz, /version, /openapi.json."""

from __future__ import annotations

import platform
from typing import Any

import bottle

from appliance.schema import events
from appliance.core import metrics
from appliance.api.jsonio import error_response
from appliance.api.openapi import openapi_document
from appliance.api.services import Services
from appliance.core.version import __version__


def kafka_status_word(sink: events.EventSink) -> str:
    return "UP" if sink.kafka_up else "NOT UP"


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

    @app.get("/metrics")
    def metrics_():
        try:
            body, content_type = metrics.exposition(bottle.request.get_header("Accept"))
        except Exception as exc:  # the metrics machinery failed: say so, keep everything else up
            return error_response(503, f"metrics unavailable: {exc}")
        return bottle.HTTPResponse(body, status=200, headers={"Content-Type": content_type})

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return openapi_document(__version__)
