"""GET /, /healthz, /readyz, /version, /metrics, /openapi.json (the browser's files: browser.py)."""

from __future__ import annotations

import platform
from typing import Any

import bottle

from appliance.api.http import pages
from appliance.api.http.clientip import ClientAddress
from appliance.api.http.errors import HttpError
from appliance.api.http.negotiation import FormatError, prefers_html
from appliance.api.http.openapi import openapi_document
from appliance.api.http.routes.status import read_status
from appliance.api.http.services import Services
from appliance.core import metrics
from appliance.core.timefmt import utc_now_iso
from appliance.core.version import __version__


def index_document(services: Services, client: ClientAddress) -> dict[str, Any]:
    """What GET / answers: who called, through which proxies, and whether Kafka is up."""
    host = services.host
    status = "UP" if services.sink.kafka_up else "NOT UP"
    return {
        "message": f"Hello, Kafka is {status}",
        "timestamp": utc_now_iso(),
        "user_ip": client.user_ip,
        "proxy_chain": client.proxy_chain,
        "hostname": host.hostname,
        "os": host.os,
        "pod_ip": host.pod_ip,
        "kafka_status": status,
    }


def index_answer(services: Services, environ: dict[str, Any]):
    """GET /: the JSON document, or for a browser the page of it (api/http/negotiation.py)."""
    document = index_document(services, environ["sts.client"])
    try:
        html = prefers_html(environ.get("HTTP_ACCEPT"), environ.get("QUERY_STRING", ""))
    except FormatError as exc:
        raise HttpError(400, str(exc)) from None
    if html:
        return pages.status_page(services, environ, document, lambda s: read_status(s, 0))
    bottle.response.set_header("Vary", "Accept")
    return document


def add_core_routes(app: bottle.Bottle, services: Services) -> None:

    @app.get("/")
    def index():
        return index_answer(services, bottle.request.environ)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/readyz")
    def readyz():
        if not services.lifecycle.ready:
            raise HttpError(503, f"not ready: {services.lifecycle.state}")
        if services.switches.get().draining:
            raise HttpError(503, "not ready: drained by POST /readyz/disable (POST /readyz/enable ends it)")
        return {"status": "ready"}

    @app.get("/version")
    def version() -> dict[str, Any]:
        return {"version": __version__, "python": platform.python_version(),
                "commit": services.commit}

    @app.get("/metrics")
    def metrics_():
        try:
            # The raw header: Bottle's get_header decodes it as UTF-8 and raises on other bytes.
            body, content_type = metrics.exposition(bottle.request.environ.get("HTTP_ACCEPT"))
        except Exception as exc:  # the metrics machinery failed: say so, keep everything else up
            raise HttpError(503, f"metrics unavailable: {exc}") from None
        return bottle.HTTPResponse(body, status=200, headers={"Content-Type": content_type})

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return openapi_document(__version__, services.settings.max_delay)
