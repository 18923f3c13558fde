"""The files a browser fetches: the status page's stylesheet and icon, Swagger UI at /docs."""

from __future__ import annotations

import bottle

from appliance.api.http import docs, pages


def add_browser_routes(app: bottle.Bottle) -> None:

    @app.get("/static/<name>")
    def static(name: str):
        return pages.static_file(name)

    @app.get("/docs")
    def api_docs():
        return docs.docs_page()

    @app.get("/docs/<name>")
    def api_docs_file(name: str):
        return docs.docs_file(name)
