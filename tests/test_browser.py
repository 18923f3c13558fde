"""In a real browser: the status page at /, the API docs at /docs and the dashboard served by
`dashboard --serve`, in Debian's headless chromium driven by Playwright (never a downloaded
browser), against the appliance the README's run command starts (`up`, embedded broker, the
tokens it makes itself).

Each test saves a screenshot under its tmp dir; with STS_SCREENSHOTS=docs the ones the README
shows are written to docs/ too. The browser's network log must hold no request to any host
but the appliance's own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from procs import IN_CI, REPO, VENV_BIN, HttpClient, Process, free_port, run_cli, wait_until
from test_appliance_e2e import Supervised

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags chromium tries Google's hosts at every start, on a closed network.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ANSI = re.compile(r"\x1b\[[0-9;?$]*[A-Za-z]|\x1b\][^\x07]*\x07")
HOSTILE_AGENTS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>',
                  "<b onmouseover=alert(3)>bold</b>"]


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail("Debian's chromium is required in CI (.ci/run installs it)")
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright):
    # A new empty profile each launch (Playwright's own temporary user-data-dir).
    found = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
    yield found
    found.close()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    app = Supervised(tmp_path_factory.mktemp("browser"), API_TOKEN="")
    app.up.start()
    wait_until(lambda: app._healthy(app.up), 30, 0.2, "the public port")
    app.read_token = token_of(app, "read")
    admin = HttpClient("127.0.0.1", int(app.env["ADMIN_PORT"]))
    wait_until(lambda: admin.get("/status", anonymous=True, headers={
        "Authorization": f"Bearer {app.read_token}"}).json().get("overall") == "UP",
        60, 0.5, "every component UP")
    yield app
    app.stop()


def token_of(app: Supervised, scope: str) -> str:
    result = run_cli("token", "--scope", scope, env=app.env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class Watched:
    """A page and what it did: requests, console messages, dialogs."""

    def __init__(self, context) -> None:
        self.page = context.new_page()
        self.requests: list[str] = []
        self.console: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}")
                     if message.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def elsewhere(self, base: str) -> list[str]:
        return [url for url in self.requests if not url.startswith(base)]


def screenshot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("STS_SCREENSHOTS") == "docs":
        shutil.copy(tmp_path / name, REPO / "docs" / name)


def open_page(browser, url: str, **context_options):
    context = browser.new_context(extra_http_headers=context_options.pop("headers", {}),
                                  **context_options)
    watched = Watched(context)
    response = watched.page.goto(url, wait_until="load")
    return context, watched, response


def test_a_browser_gets_the_status_page_with_the_caller_and_nothing_from_elsewhere(
        browser, appliance, tmp_path):
    base = appliance.http.url
    context, watched, response = open_page(
        browser, base + "/", headers={"X-Forwarded-For": "203.0.113.7"})
    try:
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["vary"] == "Accept"
        assert "script-src" not in response.headers["content-security-policy"]
        text = watched.page.inner_text("main")
        assert "You are 203.0.113.7" in text and "trusted proxy" not in text.split("Proxy chain")[0]
        assert "NOT UP" not in text and "Kafka is UP" in " ".join(text.split())
        assert "sign in" in text  # the components are for a viewer with a token
        screenshot(watched.page, tmp_path, "browser-status.png")
        assert watched.elsewhere(base) == [] and watched.console == [] and watched.dialogs == []
    finally:
        context.close()


@pytest.mark.parametrize("agent", HOSTILE_AGENTS)
def test_a_hostile_user_agent_is_shown_as_text_and_runs_nothing(browser, appliance, agent):
    context, watched, _ = open_page(browser, appliance.http.url + "/", user_agent=agent)
    try:
        page = watched.page
        shown = page.locator("xpath=//dt[text()='User agent']/following-sibling::dd[1]")
        assert shown.inner_text() == agent
        assert page.locator("main script, main img, main b").count() == 0, "an element was made"
        assert watched.dialogs == [] and watched.console == []
    finally:
        context.close()


def test_the_page_works_without_javascript(browser, appliance):
    context, watched, _ = open_page(browser, appliance.http.url + "/", java_script_enabled=False)
    try:
        assert "You are 127.0.0.1" in watched.page.inner_text("main")
    finally:
        context.close()


def test_a_viewer_with_the_read_token_sees_every_component_with_its_state_in_words(
        browser, appliance, tmp_path):
    credentials = {"username": "operator", "password": appliance.read_token}
    context, watched, response = open_page(browser, appliance.http.url + "/?signin=1",
                                           http_credentials=credentials)
    try:
        assert response.status == 200
        rows = watched.page.locator("table tbody tr")
        names = [rows.nth(i).locator("th").inner_text() for i in range(rows.count())]
        assert {"kafka", "database", "process.api", "process.consumer"} <= set(names)
        states = {rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())}
        assert states <= {"UP", "DEGRADED", "DOWN", "DISABLED"} and "UP" in states
        screenshot(watched.page, tmp_path, "browser-status-signed-in.png")
    finally:
        context.close()


def test_the_page_reads_well_at_360_pixels_with_a_language_a_title_and_headings_in_order(
        browser, appliance, tmp_path):
    context, watched, _ = open_page(browser, appliance.http.url + "/",
                                    viewport={"width": 360, "height": 740})
    try:
        page = watched.page
        assert page.get_attribute("html", "lang") == "en" and page.title()
        levels = page.eval_on_selector_all("h1, h2, h3, h4", "hs => hs.map(h => +h.tagName[1])")
        assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:]))
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, "scrolls sideways"
        screenshot(page, tmp_path, "browser-status-360.png")
    finally:
        context.close()


def test_json_is_still_what_curl_and_probes_get(appliance):
    for accept in (None, "*/*", "application/json", "text/html;q=0.5, application/json"):
        reply = appliance.http.get("/", anonymous=True, headers={"Accept": accept} if accept else {})
        assert reply.headers["Content-Type"] == "application/json", accept
        assert set(reply.json()) == {"message", "timestamp", "user_ip", "proxy_chain", "hostname",
                                     "os", "pod_ip", "kafka_status"}
    assert appliance.http.get("/?format=json", anonymous=True,
                              headers={"Accept": BROWSER_ACCEPT}).headers["Content-Type"] == \
        "application/json"


def test_docs_renders_the_operations_of_openapi_json_from_the_appliance_alone(
        browser, appliance, tmp_path):
    base = appliance.http.url
    context, watched, _ = open_page(browser, base + "/docs")
    try:
        page = watched.page
        page.wait_for_selector(".opblock", timeout=15_000)
        text = page.inner_text("#swagger-ui")
        assert "/events" in text and "/kafka/publish" in text and "/healthz" in text
        screenshot(page, tmp_path, "browser-docs.png")
        assert watched.elsewhere(base) == []
        assert [line for line in watched.console if "Content Security Policy" in line] == []
    finally:
        context.close()


@pytest.fixture
def served_dashboard(appliance, tmp_path):
    port = free_port()
    admin_url = f"http://127.0.0.1:{appliance.env['ADMIN_PORT']}"
    process = Process([str(VENV_BIN / "simple-time-service"), "dashboard", "--serve", "--port",
                       str(port), "--url", admin_url, "--token", appliance.read_token],
                      appliance.env, tmp_path / "serve.log").start()
    def answers() -> bool:
        try:
            return HttpClient("127.0.0.1", port).get("/", anonymous=True).status == 200
        except OSError:
            return False
    wait_until(answers, 60, 0.3, "the served dashboard")  # textual-serve starts slowly under load
    yield f"http://127.0.0.1:{port}"
    process.stop()


def test_the_served_dashboard_shows_its_header_and_health_panel(browser, served_dashboard, tmp_path):
    """xterm.js draws on a canvas: what it draws is read from the websocket that carries the
    dashboard's screen to it, and the screenshot shows it."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    watched = Watched(context)
    frames: list[bytes] = []
    watched.page.on("websocket", lambda socket: socket.on(
        "framereceived", lambda data: frames.append(data if isinstance(data, bytes) else data.encode())))
    try:
        watched.page.goto(served_dashboard + "/", wait_until="load")

        def drawn() -> str:
            watched.page.wait_for_timeout(200)  # Playwright hands events over while it waits
            return ANSI.sub("", b"".join(frames).decode("utf-8", "replace"))
        try:
            wait_until(lambda: all(word in drawn() for word in ("Health", "proc consumer",
                                                                 "Last 10 min")), 30, 0.3)
        except AssertionError:
            raise AssertionError(f"the dashboard's health panel not drawn ({len(frames)} frames):\n"
                                 f"{drawn()[-3000:]}") from None
        assert "127.0.0.1" in drawn() and "✔ UP" in drawn()
        watched.page.wait_for_timeout(500)  # the canvas catches up with the last frame
        screenshot(watched.page, tmp_path, "browser-dashboard.png")
        own = (served_dashboard, served_dashboard.replace("http://", "ws://"))
        assert [url for url in watched.requests if not url.startswith(own)] == []
        assert watched.dialogs == []
    finally:
        context.close()


def test_the_served_dashboard_listens_on_loopback_by_default():
    result = subprocess.run([sys.executable, "-m", "dashboard", "--help"], capture_output=True,
                            text=True, cwd=REPO, timeout=30)
    assert "default 127.0.0.1" in " ".join(result.stdout.split())
