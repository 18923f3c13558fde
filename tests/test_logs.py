"""The JSON log: an access line written directly is the line logging would have written."""

from __future__ import annotations

import io
import json
import logging

import pytest

from appliance.core import logs

FIELDS = {"method": "GET", "route": "/", "path": "/caf\u00e9", "status": 200, "duration_ms": 0.412,
          "user_ip": "203.0.113.7", "request_id": "r-1"}


@pytest.fixture
def configured():
    """The process's logging as every program sets it up, writing into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)
    yield stream
    logs.flush()
    root.handlers[:], root.level = saved
    logs._handler = None


def lines(stream: io.StringIO) -> list[dict]:
    logs.flush()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_direct_line_has_the_fields_and_order_of_a_logged_one(configured):
    logger = logging.getLogger("appliance.access")
    logger.info("request", extra=FIELDS)
    logs.write(logger, logging.INFO, "request", FIELDS)
    logged, direct = lines(configured)
    assert list(direct) == list(logged) == ["time", "level", "logger", "message", *FIELDS]
    assert {**direct, "time": None} == {**logged, "time": None}
    assert direct["level"] == "info" and direct["logger"] == "appliance.access"
    assert direct["path"] == "/caf\u00e9"  # escaped as \\u00e9 in the text, as logging does
    assert "\\u00e9" in configured.getvalue().splitlines()[1]


def test_log_level_applies_to_direct_lines(configured):
    logging.getLogger().setLevel("WARNING")
    logs.write(logging.getLogger("appliance.access"), logging.INFO, "request", FIELDS)
    logs.write(logging.getLogger("appliance.access"), logging.WARNING, "slow", {"n": 1})
    assert [(r["level"], r["message"]) for r in lines(configured)] == [("warning", "slow")]


def test_another_handler_sees_direct_lines_through_logging(configured, caplog):
    with caplog.at_level(logging.INFO):
        logs.write(logging.getLogger("appliance.access"), logging.INFO, "request", FIELDS)
    assert [(r.name, r.getMessage(), r.status) for r in caplog.records] == [
        ("appliance.access", "request", 200)]


def test_a_filter_on_the_logger_still_decides(configured):
    logger = logging.getLogger("appliance.access.filtered")
    logger.addFilter(lambda record: record.status != 404)
    try:
        logs.write(logger, logging.INFO, "request", {**FIELDS, "status": 404})
        logs.write(logger, logging.INFO, "request", FIELDS)
    finally:
        logger.filters.clear()
    assert [r["status"] for r in lines(configured)] == [200]


def test_a_throttled_logger_passes_one_call_per_interval_and_counts_the_rest(configured, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock[0])
    throttled = logs.ThrottledLogger(logging.getLogger("waitress.queue.test"), interval=30.0)
    for depth in range(1, 6):
        throttled.warning("Task queue depth is %d", depth)
    clock[0] += 30.0
    throttled.warning("Task queue depth is %d", 9)
    assert [r["message"] for r in lines(configured)] == ["Task queue depth is 1", "Task queue depth is 9"]
    assert throttled.suppressed == 4
