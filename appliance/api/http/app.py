"""The HTTP API: a Bottle app built by ``create_app(settings, services)``, wrapped by the middleware."""

from __future__ import annotations

import bottle

from appliance.api.http.access import AccessPlugin
from appliance.api.http.errors import bottle_error
from appliance.api.http.fastpath import IndexFastPath
from appliance.api.http.middleware import AuditMiddleware
from appliance.api.http.ratelimit import RateLimitPlugin
from appliance.api.http.routes.browser import add_browser_routes
from appliance.api.http.routes.core import add_core_routes
from appliance.api.http.routes.dead_letters import add_dead_letter_routes
from appliance.api.http.routes.events import add_event_routes
from appliance.api.http.routes.kafka import add_kafka_routes
from appliance.api.http.routes.status import add_status_routes
from appliance.api.http.routes.switches import add_switch_routes
from appliance.api.http.routes.target import add_target_routes
from appliance.api.http.services import Services
from appliance.core import jsontext
from appliance.core.config import Settings


class JsonBottle(bottle.Bottle):
    """Bottle whose every error page is ``{"error": ..., "status": ...}`` (api/http/errors.py),
    never HTML."""

    def default_error_handler(self, res: bottle.HTTPError) -> bytes:
        return bottle_error(res)


def create_app(settings: Settings, services: Services | None = None) -> AuditMiddleware:
    services = services or Services(settings)
    app = JsonBottle()
    app.config["json.enable"] = True
    app.uninstall(bottle.JSONPlugin)  # a route's dict becomes JSON through orjson instead
    app.install(bottle.JSONPlugin(json_dumps=jsontext.dumps))
    app.install(AccessPlugin(services.access))  # first: applied outermost
    app.install(RateLimitPlugin(settings))
    add_core_routes(app, services)
    add_browser_routes(app)
    add_kafka_routes(app, services)
    add_event_routes(app, services)
    add_dead_letter_routes(app, services)
    add_status_routes(app, services)
    add_target_routes(app, services)
    add_switch_routes(app, services)
    return AuditMiddleware(IndexFastPath(app, services), settings, services.sink, services.host,
                           services.lifecycle, services.faults)
