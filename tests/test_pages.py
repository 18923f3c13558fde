"""GET / for browsers: content negotiation with q-values, the page's safety headers, every
client-controlled value escaped, the components for a viewer with a read token only, and the
page audited like any other exchange. In-process; tests/test_browser.py has the real browser."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import call_wsgi
from test_app import UpSink

from appliance.api.http.app import create_app
from appliance.api.http.negotiation import prefers_html
from appliance.api.http.services import Services
from appliance.core.config import Settings

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
TOKEN = "pages-read-token-123"


@pytest.mark.parametrize(("accept", "query", "html"), [
    (BROWSER, "", True), ("*/*", "", False), (None, "", False), ("application/json", "", False),
    ("text/html", "", True), ("text/html;q=0.5, application/json", "", False),
    ("application/json;q=0.4, text/*", "", False),  # only a client naming text/html gets HTML
        ("application/json;q=0.4, text/html", "", True), ("text/html;q=0", "", False),
    ("text/html;q=abc", "", False), (BROWSER, "format=json", False), ("*/*", "format=html", True),
    ("text/html, application/json", "", False),  # a tie: JSON, what every API client gets
])
def test_a_browser_gets_html_and_everything_else_json(accept, query, html):
    assert prefers_html(accept, query) is html


def app_for(sink=None, **env):
    settings = Settings.from_env({"API_TOKENS": f"read:{TOKEN}", **env})
    return create_app(settings, Services(settings, **({"sink": sink} if sink else {})))


def page(app, **headers):
    return call_wsgi(app, "GET", "/", headers={"Accept": BROWSER, **headers})


@pytest.mark.parametrize("query", ["format=null", "format=", "format=xml&format=json&format=pdf"])
def test_a_format_other_than_json_or_html_is_a_400_naming_it(query):
    answer = call_wsgi(app_for(), "GET", "/", query=query, headers={"Accept": BROWSER})
    assert answer.status == 400 and answer.headers["Content-Type"].startswith("application/json")
    assert json.loads(answer.body)["error"].startswith("format: expected json or html")


def test_the_last_format_wins_as_in_any_query():
    assert prefers_html("*/*", "format=json&format=html") is True


def test_the_page_says_how_it_may_be_used_and_cached():
    answer = page(app_for())
    assert answer.status == 200 and answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Vary"] == "Accept"
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy  # no script at all
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert b"<script" not in answer.body and b"http://" not in answer.body


@pytest.mark.parametrize("agent", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>',
                                   "{{ 7*7 }}", "&amp; é \u202e"])
def test_a_value_the_client_controls_is_text_on_the_page(agent):
    on_the_wire = agent.encode().decode("latin-1")  # a header arrives in WSGI as latin-1 of its bytes
    body = page(app_for(), **{"User-Agent": on_the_wire}).body.decode()
    assert "<script>alert" not in body and "<img src=x" not in body
    escaped = agent.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
    assert f"<bdi>{escaped}</bdi>" in body  # isolated, so a bidi override cannot reorder the page
    shown = body.split("<dt>User agent</dt><dd>")[1].split("</dd>")[0]
    assert "49" not in shown  # a template in a header is not run


def test_the_components_are_for_a_viewer_with_a_read_token():
    app = app_for()
    assert "sign in" in page(app).body.decode()
    challenge = call_wsgi(app, "GET", "/", query="signin=1", headers={"Accept": BROWSER})
    assert challenge.status == 401 and challenge.headers["WWW-Authenticate"].startswith("Basic ")
    basic = "Basic " + base64.b64encode(f"operator:{TOKEN}".encode()).decode()
    signed_in = page(app, Authorization=basic).body.decode()
    assert "Overall:" in signed_in and "<th scope=\"row\">disk</th>" in signed_in
    wrong = "Basic " + base64.b64encode(b"operator:not-the-token").decode()
    assert "Overall:" not in page(app, Authorization=wrong).body.decode()


def test_the_page_is_an_audited_exchange_like_any_other():
    sink = UpSink()
    page(app_for(sink), **{"User-Agent": "browser/1.0"})
    assert [(e["event_type"], e["payload"]["route"], e["payload"]["user_agent"]) for e in sink.events] \
        == [("http_request", "/", "browser/1.0"), ("http_response", "/", "browser/1.0")]


def test_json_clients_get_the_json_as_before_and_told_that_it_varies():
    for accept in ("*/*", "application/json"):
        answer = call_wsgi(app_for(), "GET", "/", headers={"Accept": accept})
        assert answer.headers["Content-Type"] == "application/json" and answer.headers["Vary"] == "Accept"
        assert answer.json()["user_ip"] == "127.0.0.1"


def test_the_stylesheet_and_the_docs_files_are_served_and_nothing_else():
    app = app_for()
    assert call_wsgi(app, "GET", "/static/page.css").headers["Content-Type"].startswith("text/css")
    assert call_wsgi(app, "GET", "/static/../../config.py").status == 404
    assert call_wsgi(app, "GET", "/docs").headers["Content-Type"].startswith("text/html")
    assert call_wsgi(app, "GET", "/docs/swagger-ui-bundle.js").status == 200
    assert call_wsgi(app, "GET", "/docs/index.html").status == 404
