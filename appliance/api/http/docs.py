"""GET /docs: Swagger UI for /openapi.json, from the files the swagger-ui-py package ships
(Swagger UI 5, which reads OpenAPI 3.1; swagger-ui-bundle's 4.15 does not): nothing is fetched
from elsewhere (the appliance runs where nothing outside can be
reached). Its own initializer is a file (static/docs-init.js), so no inline script is needed and
the Content-Security-Policy allows scripts from the appliance only; Swagger UI sets styles
inline, which the policy allows."""

from __future__ import annotations

from pathlib import Path

import bottle
import swagger_ui

from appliance.api.http.errors import HttpError
from appliance.api.http.pages import HERE, TEMPLATES

DOCS_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
BUNDLE = Path(swagger_ui.__file__).parent / "static"
FILES = {"swagger-ui.css": "text/css; charset=utf-8",
         "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
         "favicon-32x32.png": "image/png", "docs-init.js": "text/javascript; charset=utf-8"}


def docs_page() -> bottle.HTTPResponse:
    return bottle.HTTPResponse(TEMPLATES.get_template("docs.html").render(), status=200, headers={
        "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": DOCS_POLICY,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


def docs_file(name: str) -> bottle.HTTPResponse:
    if name not in FILES:
        raise HttpError(404, f"not found: '/docs/{name}'")
    source = HERE / "static" / name if name == "docs-init.js" else BUNDLE / name
    return bottle.HTTPResponse(source.read_bytes(), status=200, headers={
        "Content-Type": FILES[name], "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff"})
