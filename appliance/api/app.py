"""The HTTP API: a Bottle app built by ``create_app(settings, services)``, wrapped by the middleware."""

from __future__ import annotations

import logging

import bottle

from appliance.api.fastpath import IndexFastPath
from appliance.api.jsonio import HttpError, default_message, error_body
from appliance.api.middleware import AuditMiddleware
from appliance.api.routes.core import add_core_routes
from appliance.api.routes.events import add_event_routes
from appliance.api.routes.kafka import add_kafka_routes
from appliance.api.routes.status import add_status_routes
from appliance.api.services import Services
from appliance.core import jsontext
from appliance.core.config import Settings

log = logging.getLogger("appliance.api")



class JsonBottle(bottle.Bottle):
    """Bottle whose every error page is ``{"error": ..., "status": ...}``, never HTML."""

    def default_error_handler(self, res: bottle.HTTPError) -> bytes:
        status = res.status_code
        if isinstance(res, HttpError):  # ours: the message is meant for the client
            message = res.message
        else:  # Bottle's own (404, 405, ...) or an unexpected exception: no internals
            message = res.body if isinstance(res.body, str) and status < 500 else default_message(status)
        if res.exception is not None and status >= 500:
            bottle.request.environ["sts.exception"] = res.exception
            log.error("unhandled error", exc_info=(type(res.exception), res.exception,
                                                   res.exception.__traceback__),
                      extra={"request_id": bottle.request.environ.get("sts.request_id")})
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Cache-Control", "no-store")
        return error_body(status, message.rstrip(".").lower() if status in (404, 405) else message)


def create_app(settings: Settings, services: Services | None = None) -> AuditMiddleware:
    services = services or Services(settings)
    app = JsonBottle()
    app.config["json.enable"] = True
    app.uninstall(bottle.JSONPlugin)  # a route's dict becomes JSON through orjson instead
    app.install(bottle.JSONPlugin(json_dumps=jsontext.dumps))
    add_core_routes(app, services)
    add_kafka_routes(app, services)
    add_event_routes(app, services)
    add_status_routes(app, services)
    return AuditMiddleware(IndexFastPath(app, services), settings, services.sink, services.host,
                           services.lifecycle)
