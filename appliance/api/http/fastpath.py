"""GET / and HEAD / answered without Bottle's request and response objects.

GET / is the route a load balancer sends traffic to, so it is the one under load, and its answer
is a document that needs nothing of Bottle: under wrk, Bottle's routing, plugins and response
object were ~8 % of the API's GIL time (bench/profile_api.py). The answer is the one Bottle
gives (tests/test_app.py holds the two to the same status, headers and body); every other
method and path goes through Bottle.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import bottle

from appliance.api.http.routes.core import index_document
from appliance.api.http.services import Services
from appliance.core import jsontext

FAST_METHODS = frozenset({"GET", "HEAD"})
VARY = ("Vary", "Accept")  # the answer depends on it: a browser gets the page (api/http/pages.py)


class IndexFastPath:
    def __init__(self, app: bottle.Bottle, services: Services) -> None:
        self.bottle = app
        self.services = services
        # The middleware labels metrics and events with the route's rule, as for Bottle's.
        self.route = next(r for r in app.routes if r.rule == "/" and r.method == "GET")

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != "/" or environ.get("REQUEST_METHOD") not in FAST_METHODS
                or "html" in environ.get("HTTP_ACCEPT", "") or "format=" in environ.get("QUERY_STRING", "")):
            return self.bottle(environ, start_response)  # a browser's page, or anything else
        try:
            body = jsontext.dumps(index_document(self.services, environ["sts.client"]))
        except Exception:  # Bottle's route fails the same way and renders the JSON error
            return self.bottle(environ, start_response)
        environ["bottle.route"] = self.route
        start_response("200 OK", [VARY, ("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
