"""One probe per component. Each returns (state, one-line detail, data) and never raises:
the agent wraps them, but a probe that knows its failure says it better."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from confluent_kafka import Consumer, KafkaException, TopicPartition

from appliance.core.config import Settings
from appliance.core.kafka import base_config

Result = tuple[str, str, dict[str, Any]]
TIMEOUT = 1.5  # seconds per network probe: a round stays well inside STATUS_INTERVAL
LAG_DEGRADED = 10_000  # events behind before the consumer counts as DEGRADED
EVENT_TABLES = ("http_requests", "http_responses", "errors", "custom_events", "dead_letters")


def http_get(url: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def api(settings: Settings) -> Result:
    try:
        status, _ = http_get(f"http://127.0.0.1:{settings.port}/healthz")
    except OSError as exc:
        return "DOWN", f"/healthz not answering: {exc}", {}
    return ("UP", "answers /healthz", {}) if status == 200 else ("DOWN", f"/healthz {status}", {})


class KafkaProbe:
    """Reachability, topic, partitions and the consumer group's lag per partition.

    Uses a consumer that never subscribes: it reads the group's committed offsets without
    joining the group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Consumer | None = None

    def client(self) -> Consumer:
        if self._client is None:
            self._client = Consumer({**base_config(self.settings),
                                     "group.id": self.settings.kafka_consumer_group,
                                     "enable.auto.commit": False, "log_level": 0})
        return self._client

    def __call__(self) -> Result:
        if not self.settings.kafka_enabled:
            return "DISABLED", "KAFKA_BROKERS not set", {}
        topic = self.settings.kafka_topic_events
        try:
            metadata = self.client().list_topics(timeout=TIMEOUT)
        except KafkaException as exc:
            return "DOWN", f"broker {self.settings.kafka_bootstrap} not reachable: {exc.args[0].str()}", {}
        if topic not in metadata.topics or metadata.topics[topic].error:
            return "DEGRADED", f"reachable, topic {topic} missing", {"partitions": 0}
        lag = self.lag(sorted(metadata.topics[topic].partitions))
        total = sum(lag.values())
        data = {"partitions": len(lag), "lag": lag, "lag_total": total}
        if total > LAG_DEGRADED:
            return "DEGRADED", f"consumer {total} events behind", data
        return "UP", f"{len(lag)} partitions, lag {total}", data

    def lag(self, partitions: list[int]) -> dict[str, int]:
        topic, client = self.settings.kafka_topic_events, self.client()
        committed = client.committed([TopicPartition(topic, p) for p in partitions], timeout=TIMEOUT)
        lag = {}
        for tp in committed:
            low, high = client.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                     timeout=TIMEOUT)
            lag[str(tp.partition)] = max(0, high - (tp.offset if tp.offset >= 0 else low))
        return lag

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def otel(settings: Settings) -> Result:
    if not settings.otel_endpoint:
        return "DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT not set", {}
    url = urlparse(settings.otel_endpoint if "//" in settings.otel_endpoint
                   else f"http://{settings.otel_endpoint}")
    port = url.port or (443 if url.scheme == "https" else 4317)
    try:
        with socket.create_connection((url.hostname, port), timeout=TIMEOUT):
            pass
    except OSError as exc:
        return "DOWN", f"collector {url.hostname}:{port} not reachable: {exc}", {}
    return "UP", f"collector {url.hostname}:{port} accepts connections", {}


def prometheus(settings: Settings) -> Result:
    if not settings.prometheus_url:
        return "DISABLED", "PROMETHEUS_URL not set", {}
    base = settings.prometheus_url.rstrip("/")
    try:
        status, _ = http_get(f"{base}/-/ready")
        if status != 200:
            return "DOWN", f"Prometheus not ready ({status})", {}
        _, body = http_get(f"{base}/api/v1/targets?state=active")
        targets = json.loads(body)["data"]["activeTargets"]
    except (OSError, ValueError, KeyError) as exc:
        return "DOWN", f"Prometheus at {base} not reachable: {exc}", {}
    ours = [t for t in targets if t.get("scrapeUrl", "").split("/")[2].endswith(f":{settings.port}")]
    if not ours:
        return "DEGRADED", "ready, but not scraping this appliance", {"targets": len(targets)}
    healthy = all(t.get("health") == "up" for t in ours)
    return ("UP" if healthy else "DEGRADED",
            "scraping this appliance" if healthy else "scrapes of this appliance failing", {})


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection: a probe must never create or lock what it looks at."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT)
    try:
        yield db
    finally:
        db.close()


def database(settings: Settings, consumer_state: dict[str, Any] | None) -> Result:
    path: Path = settings.db_path
    if not path.exists():
        return "DOWN", f"{path} does not exist (yet)", {}
    try:
        with read_only(path) as db:
            # MAX(id) instead of COUNT(*): rows are never deleted, and it is O(1) on big tables.
            counts = {t: db.execute(f"SELECT COALESCE(MAX(id), 0) FROM {t}").fetchone()[0]
                      for t in EVENT_TABLES}
            newest = db.execute("SELECT MAX(occurred_at) FROM http_responses").fetchone()[0]
    except sqlite3.Error as exc:
        return "DOWN", f"cannot read {path}: {exc}", {}
    data = {"rows": counts, "newest_event_at": newest}
    failing = (consumer_state or {}).get("db_failing")
    if failing:
        return "DOWN", f"writes failing: {consumer_state.get('last_db_error')}", data
    return "UP", f"{sum(counts.values())} rows, newest {newest or 'none'}", data


def spool(settings: Settings) -> Result:
    path = settings.spool_dir / "spool.db"
    if not settings.kafka_enabled:
        return "DISABLED", "Kafka off: nothing to spool", {}
    if not path.exists():
        return "UP", "empty", {"depth": 0, "dropped": 0}
    try:
        with read_only(path) as db:
            depth = db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
            dropped = db.execute("SELECT value FROM meta WHERE name='dropped'").fetchone()[0]
    except sqlite3.Error as exc:
        return "DOWN", f"cannot read the spool: {exc}", {}
    data = {"depth": depth, "dropped": dropped}
    note = f", {dropped} dropped since created" if dropped else ""
    if depth:
        return "DEGRADED", f"{depth} events waiting for Kafka{note}", data
    return "UP", f"empty{note}", data
