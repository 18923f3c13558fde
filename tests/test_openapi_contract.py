"""The OpenAPI document stays in step with the code, and the live server keeps its promises.

Schemathesis generates requests from the document and sends them to the real server process;
its checks fail on any 5xx and on any response the document does not allow (status, content
type, headers, body schema, unsupported methods answered with 405 + Allow).

The schema is built from ``openapi_document`` at import time (collection happens before any
server runs); ``test_served_document_is_the_generated_one`` ties it to what the server serves.
``schemathesis.pytest.from_fixture`` would load it from the live URL instead, but with pytest 9
it fails with ``AttributeError: 'Function' object has no attribute '_nodeid'``.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from procs import AUTHORIZATION
from schemathesis.checks import not_a_server_error, positive_data_acceptance

from appliance.api.http.app import create_app
from appliance.api.http.openapi import openapi_document
from appliance.core.config import Settings
from appliance.core.version import __version__

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def openapi_path(rule: str) -> str:
    """Bottle's ``/items/<item_id:int>`` is OpenAPI's ``/items/{item_id}``."""
    return re.sub(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>", r"{\1}", rule)


def documented_operations() -> set[tuple[str, str]]:
    paths = openapi_document(__version__)["paths"]
    return {(path, method.upper()) for path, item in paths.items() for method in item
            if method in HTTP_METHODS}


def app_operations() -> set[tuple[str, str]]:
    bottle_app = create_app(Settings.from_env({})).app.bottle  # behind the GET / fast path
    # Only routes registered explicitly: Bottle answers HEAD for a GET route in its router,
    # without a route of its own, so those implicit HEADs are not operations to document.
    return {(openapi_path(route.rule), route.method.upper()) for route in bottle_app.routes}


def test_documented_operations_are_exactly_the_app_routes():
    documented, routed = documented_operations(), app_operations()
    assert routed - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routed == set(), "documented operations the app does not have"


def test_document_is_openapi_3_1_with_the_version_file():
    document = openapi_document(__version__)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == __version__


@pytest.mark.e2e
def test_served_document_is_the_generated_one(live_server):
    reply = live_server.get("/openapi.json")
    assert reply.status == 200
    assert reply.json() == openapi_document(__version__)


LIVE_MAX_DELAY = 0.5  # kafka_live_server's MAX_DELAY: the delays asked stay short
schema = schemathesis.openapi.from_dict(openapi_document(__version__, LIVE_MAX_DELAY))


@pytest.mark.e2e
@pytest.mark.broker
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_live_server_conforms_to_its_document(case, kafka_live_server):
    # Kafka is up (a real broker), so a 5xx from any operation is a real failure.
    if case.query and looks_like_a_cursor(case):
        real_cursor(case, kafka_live_server)
    excluded = []
    if case.path == "/status/{code}":
        # It answers the status asked for, 5xx and 1xx too: documented, so neither a server
        # error nor a valid request refused. A final
        # 100 makes an HTTP client wait for the response after it (tests/test_target.py sends
        # one over a socket), so that one code is asked as 199, the same branch.
        excluded = [not_a_server_error, positive_data_acceptance]
        if str(case.path_parameters.get("code")) == "100":
            case.path_parameters["code"] = 199
    try:
        case.call_and_validate(base_url=kafka_live_server.url, timeout=35, headers=AUTHORIZATION,
                               excluded_checks=excluded)
    finally:  # a fault or a drain that a case set would reach the next cases: end it
        if case.path in ("/faults", "/readyz/disable"):
            assert kafka_live_server.request("DELETE", "/faults").status == 200
            assert kafka_live_server.request("POST", "/readyz/enable").status == 200


def looks_like_a_cursor(case) -> bool:
    """A cursor of the documented form: replaced by a real one. One that is not (a negative
    case) is sent as generated, and must be refused."""
    value = case.query.get("cursor")
    parameters = openapi_document(__version__)["paths"][case.path].get("get", {}).get("parameters", [])
    patterns = [p["schema"]["pattern"] for p in parameters if p["name"] == "cursor"]
    return bool(patterns) and isinstance(value, str) and re.search(patterns[0], value) is not None


def real_cursor(case, server) -> None:
    """A cursor is opaque: instead of a random string (a 400, rightly), the next of the first
    page of the same search; no cursor when that search has only one page."""
    query = {k: v for k, v in case.query.items() if k != "cursor"}
    query["limit"] = 1
    reply = server.get(f"{case.path}?" + urllib.parse.urlencode(query))  # with the harness's token
    following = reply.json().get("next") if reply.status == 200 else None
    if following:
        case.query["cursor"] = following
    else:
        del case.query["cursor"]
