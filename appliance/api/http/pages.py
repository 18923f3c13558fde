"""The pages a browser gets: GET / as an HTML status page when the browser prefers HTML
(api/http/negotiation.py), and the page's stylesheet.

Jinja2 with autoescape: every value is escaped by the engine, whatever the template author
remembers, and a client controls several of them (its path, user agent, request id, the proxy
chain it sends). The page needs no JavaScript, loads nothing but /static/page.css from the
appliance itself, and says so to the browser (Content-Security-Policy: no script at all, no
other origin). Who called is shown to anyone; the components of /status only to a viewer with a
read token (a browser sends it as the Basic password after the sign-in link asks).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import bottle
import jinja2

from appliance.api.http import clientip
from appliance.api.http.errors import HttpError
from appliance.api.http.middleware import wsgi_text
from appliance.api.http.services import Services
from appliance.core.version import __version__

PAGE_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Type": "text/html; charset=utf-8", "Vary": "Accept",
                "Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
STATIC = {"page.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
HERE = resources.files("appliance.api.http")
TEMPLATES = jinja2.Environment(
    loader=jinja2.FunctionLoader(lambda name: (HERE / "templates" / name).read_text()),
    autoescape=True, undefined=jinja2.StrictUndefined)


def status_page(services: Services, environ: dict, index: dict[str, Any],
                status: Any) -> bottle.HTTPResponse:
    """The page of GET / for a browser. ``status(services)``: /status's snapshot, asked only
    when the viewer may see it."""
    settings = services.settings
    components = None
    allowed = settings.admin_on_public_port == "open" or \
        services.access.viewer_scope(environ.get("HTTP_AUTHORIZATION", "")) is not None
    if allowed:
        snapshot = status(services)
        components, overall = sorted(snapshot["components"].items()), snapshot["overall"]
    elif "signin" in environ.get("QUERY_STRING", ""):
        raise HttpError(401, "sign in with a read token as the password",
                        **{"WWW-Authenticate": 'Basic realm="simple-time-service", charset="UTF-8"'})
    body = TEMPLATES.get_template("status.html").render(
        index=index, kafka_state="up" if index["kafka_status"] == "UP" else "not-up",
        peer=environ.get("REMOTE_ADDR", ""), path=wsgi_text(environ["sts.path"], "path"),
        user_agent=wsgi_text(environ.get("HTTP_USER_AGENT", ""), "user_agent"),
        request_id=environ["sts.request_id"],
        hops=clientip.hops(environ.get("HTTP_X_FORWARDED_FOR"), settings.trusted_proxies),
        components=components, overall=overall if allowed else None, version=__version__)
    return bottle.HTTPResponse(body, status=200, headers=PAGE_HEADERS)


def static_file(name: str) -> bottle.HTTPResponse:
    if name not in STATIC:
        raise HttpError(404, f"not found: '/static/{name}'")
    body = (HERE / "static" / name).read_bytes()
    return bottle.HTTPResponse(body, status=200, headers={
        "Content-Type": STATIC[name], "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff"})
