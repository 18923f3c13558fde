"""Secure by default: with the run command's settings and nothing else, an anonymous client on
the public port reads nothing but its own answer and changes nothing; the admin plane answers
tokens of the right scope, on its own port and on the public one.

Every operation of the OpenAPI document is tried on both listeners with no token, a read token
and a write token, against `up` with the embedded broker (the README's run command) whose
tokens the appliance made itself at its first start.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from procs import HttpClient, free_port, run_cli, wait_until
from test_appliance_e2e import Supervised

from appliance.api.http.access import ADMIN_ROUTES, OPEN_ON_THE_ADMIN_LISTENER
from appliance.api.http.openapi import ADMIN_BY_PATH, openapi_document
from appliance.core.version import __version__
from appliance.schema.switches import CHECK_EVERY

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
BODIES = {("POST", "/kafka/publish"): json.dumps({"event_type": "plane.check", "payload": {}}).encode(),
          ("POST", "/events/dead-letters/replay"): json.dumps({"all": True}).encode(),
          ("POST", "/faults"): json.dumps({"delay_ms": 1, "routes": ["/nothing"], "duration_s": 1}).encode()}
QUERIES = {("POST", "/kafka/flush"): "timeout=0"}


def operations() -> list[tuple[str, str]]:
    paths = openapi_document(__version__)["paths"]
    return sorted((method.upper(), path) for path, item in paths.items() for method in item)


def target(path: str) -> str:
    """``path`` with its ``{name}`` as the first of the names its document allows, a status of
    200 and a delay of 0."""
    path = path.replace("{code}", "200").replace("{seconds}", "0").replace("{letter_id}", "1")
    if "{name}" not in path:
        return path
    parameter = openapi_document(__version__)["paths"][path]["get"]["parameters"][0]
    return path.replace("{name}", parameter["schema"]["enum"][0])


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    """The run command's appliance: KAFKA_BROKERS=embedded and no token configured."""
    app = Supervised(tmp_path_factory.mktemp("planes"), API_TOKEN="",
                     RATE_LIMIT_WRITES="1000", RATE_LIMIT_READS="1000")
    app.up.start()
    wait_until(lambda: app._healthy(app.up), 30, 0.2, "the public port")
    app.admin = HttpClient("127.0.0.1", int(app.env["ADMIN_PORT"]))
    app.tokens = {}
    for scope in ("read", "write"):
        result = run_cli("token", "--scope", scope, env=app.env)
        assert result.returncode == 0, result.stderr
        app.tokens[scope] = result.stdout.strip()
    wait_until(lambda: ask(app.admin, "GET", "/status", app.tokens["read"])[0] == 200, 60, 0.5,
               "the admin plane")
    yield app
    app.stop()


def ask(client: HttpClient, method: str, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = BODIES.get((method, path))
    if body:
        headers["Content-Type"] = "application/json"
    query = QUERIES.get((method, path))
    url = f"{target(path)}?{query}" if query else target(path)
    reply = client.request(method, url, headers=headers, body=body, anonymous=True, timeout=10)
    return reply.status, reply.headers  # a case-insensitive lookup: Bottle sends Www-Authenticate


def expected(plane: str, method: str, path: str, scope: str | None) -> set[int]:
    """What an operation answers on ``plane`` with a token of ``scope`` (None: no token)."""
    needs = ADMIN_BY_PATH.get((method, path))
    if needs is None or (plane == "admin" and (method, path) in OPEN_ON_THE_ADMIN_LISTENER):
        return {200, 202}
    if scope is None:
        return {401}
    if needs == "write" and scope == "read":
        return {403}
    if path == "/events/dead-letters/{letter_id}":
        return {404}  # allowed in, and there is no dead letter 1
    return {200, 202}


@pytest.mark.parametrize("scope", [None, "read", "write"])
@pytest.mark.parametrize("plane", ["public", "admin"])
def test_every_operation_answers_each_token_as_the_planes_say(appliance, plane, scope):
    client = appliance.http if plane == "public" else appliance.admin
    token = appliance.tokens.get(scope) if scope else None
    wrong = {}
    for method, path in operations():
        status, headers = ask(client, method, path, token)
        if (method, path) == ("POST", "/readyz/enable"):
            time.sleep(CHECK_EVERY + 0.1)  # every API process follows the drain's end
        if status not in expected(plane, method, path, scope):
            wrong[f"{method} {path}"] = status
        if status == 401:
            assert headers["WWW-Authenticate"].startswith('Bearer realm="simple-time-service"')
        if status == 403:
            assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    assert wrong == {}


def test_an_anonymous_client_of_the_public_port_reads_its_own_answer_and_nothing_else(appliance):
    own = appliance.http.get("/", anonymous=True, headers={"X-Forwarded-For": "198.51.100.7"})
    assert own.status == 200 and own.json()["user_ip"] == "198.51.100.7"  # loopback is trusted
    for path in ("/events", "/events/export", "/events/stats", "/status", "/kafka/status",
                 "/metrics"):
        reply = appliance.http.get(path, anonymous=True)
        assert reply.status == 401 and b"198.51.100" not in reply.body, path
    for path in ("/kafka/publish", "/kafka/flush"):
        assert appliance.http.request("POST", path, anonymous=True).status == 401, path


def test_an_unknown_token_is_refused_with_invalid_token(appliance):
    status, headers = ask(appliance.admin, "GET", "/events", "not-a-token-of-this-appliance")
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]


def test_the_tokens_file_is_the_owner_s_only_and_no_token_is_logged(appliance):
    path = appliance.data_dir / "api-tokens"
    assert path.stat().st_mode & 0o077 == 0
    output = appliance.up.output()
    assert all(token not in output for token in appliance.tokens.values())
    assert str(path) in output, "the place of the tokens is said"


def start_api(start_server, **env: str):
    server = start_server(API_TOKEN="plane-test-write-token", **env)
    return server, {"Authorization": "Bearer plane-test-write-token"}


@pytest.mark.parametrize("mode", ["off", "open"])
def test_admin_on_public_port_off_hides_the_admin_plane_and_open_warns_at_every_start(
        start_server, mode):
    server, bearer = start_api(start_server, ADMIN_ON_PUBLIC_PORT=mode)
    reply = server.get("/events", headers=bearer)
    assert reply.status == (404 if mode == "off" else 200)
    assert server.get("/events", anonymous=True).status == (404 if mode == "off" else 200)
    admin = HttpClient("127.0.0.1", int(server.env["ADMIN_PORT"]))
    assert admin.get("/events", headers=bearer, anonymous=True).status == 200
    warned = "ADMIN_ON_PUBLIC_PORT=open" in server.stdout()
    assert warned == (mode == "open")


def test_a_token_added_to_the_tokens_file_works_without_a_restart(start_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("write first-write-token-123\n")
    server = start_server(API_TOKEN="", API_TOKENS_FILE=str(tokens))
    assert server.get("/events", headers={"Authorization": "Bearer first-write-token-123"},
                      anonymous=True).status == 200
    tokens.write_text("read second-read-token-456\n")  # the first one rotated out
    wait_until(lambda: server.get("/events", anonymous=True, headers={
        "Authorization": "Bearer second-read-token-456"}).status == 200, 10, 0.3, "the new token")
    # Each API process looks at the file again at most once a second, when a request comes.
    wait_until(lambda: all(server.get("/events", anonymous=True, headers={
        "Authorization": "Bearer first-write-token-123"}).status == 401 for _ in range(6)),
        10, 0.5, "the rotated-out token refused by every API process")


def test_a_tokens_file_that_cannot_be_read_is_a_one_line_startup_error(tmp_path):
    result = run_cli("api", env={"HOST": "127.0.0.1", "PORT": str(free_port()), "API_TOKEN": "",
                                 "API_TOKENS_FILE": str(tmp_path / "missing"),
                                 "DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "missing" in result.stderr, result.stderr


def test_the_openapi_document_says_which_plane_and_scope_each_operation_has():
    document = openapi_document(__version__)
    for method, path in operations():
        operation = document["paths"][path][method.lower()]
        scope = ADMIN_BY_PATH.get((method, path))
        assert operation["tags"] == (["public"] if scope is None else ["admin"]), (method, path)
        if scope is not None:
            assert operation["security"] == [{"bearer": [scope]}]
            assert "401" in operation["responses"]


def test_every_admin_route_is_an_operation_of_the_document():
    assert len(ADMIN_BY_PATH) == len(ADMIN_ROUTES)
    assert set(ADMIN_BY_PATH) <= set(operations())
