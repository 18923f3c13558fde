"""One probe per component. Each returns (state, one-line detail, data) and never raises:
the agent wraps them, but a probe that knows its failure says it better."""

from __future__ import annotations

import json
import socket
import sqlite3
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from confluent_kafka import Consumer, KafkaException, TopicPartition

from appliance.core import diskspace
from appliance.core.config import Settings
from appliance.core.database import ERRORS as DB_ERRORS
from appliance.core.database import exists, is_postgres, open_database
from appliance.core.database_url import describe_error
from appliance.core.kafka import base_config
from appliance.schema import audit_db
from appliance.schema.consumer_report import ConsumerReport
from appliance.schema.producer_status import ProducerStatus
from appliance.schema.spool import read_stats
from appliance.schema.tokens import READ, Tokens

Result = tuple[str, str, dict[str, Any]]
TIMEOUT = 1.5  # seconds per network probe: a round stays well inside STATUS_INTERVAL
LAG_DEGRADED = 10_000  # events behind before the consumer counts as DEGRADED


def http_get(url: str, timeout: float = TIMEOUT, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def api_kafka_status(settings: Settings) -> ProducerStatus | None:
    """The API's /kafka/status (its producer's view, on the admin plane with a read token), or
    None when it does not answer."""
    try:
        token = Tokens(settings).any_token(READ)
        _, body = http_get(f"{settings.local_admin_url}/kafka/status", token=token)
        return ProducerStatus.from_json(json.loads(body))
    except (OSError, ValueError):  # TokenFileError is a ValueError
        return None


def not_run(settings: Settings) -> Result:
    return "DISABLED", f"not run by this appliance (APPLIANCE_PROGRAMS={','.join(settings.programs)})", {}


def api(settings: Settings) -> Result:
    if "api" not in settings.programs:
        return not_run(settings)
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
    scraped = settings.admin_port or settings.port  # /metrics is on the admin plane
    ours = [t for t in targets if t.get("scrapeUrl", "").split("/")[2].endswith(f":{scraped}")]
    if not ours:
        return "DEGRADED", "ready, but not scraping this appliance", {"targets": len(targets)}
    healthy = all(t.get("health") == "up" for t in ours)
    return ("UP" if healthy else "DEGRADED",
            "scraping this appliance" if healthy else "scrapes of this appliance failing", {})


def database(settings: Settings, report: ConsumerReport | None) -> Result:
    url = settings.database_url
    if not exists(url):
        return "DOWN", f"{url.path} does not exist (yet)", {}
    db = open_database(url, readonly=True, purpose="agent")
    try:
        with db.connection_context():
            counts, kept = audit_db.row_counts(db), audit_db.rows_kept(db)
            newest = audit_db.newest_event_at(db)
    except DB_ERRORS as exc:
        return "DOWN", f"cannot read {url.redacted()}: {describe_error(exc, url)}", {}
    finally:
        if is_postgres(db):
            db.close_all()
    data = {"engine": url.scheme, "rows": counts, "rows_kept": kept, "newest_event_at": newest,
            "retention": {"retention_days": settings.retention_days, "db_max_mb": settings.db_max_mb,
                          "size_mb": report.db_size_mb if report else None,
                          "oldest_event_at": report.oldest_event_at if report else None,
                          "pruned": report.pruned if report else {}}}
    if report is not None and report.db_failing:
        return "DOWN", f"writes failing: {report.last_db_error}", data
    return "UP", f"{sum(kept.values())} rows, newest {newest or 'none'}", data


def spool(settings: Settings, api_kafka: ProducerStatus | None) -> Result:
    """The spool holds every event until it is safe, so a depth is normal while Kafka is up
    (events sent and not yet confirmed): DEGRADED only when events wait for a Kafka that is
    not there. ``api_kafka`` is the API's /kafka/status (None when it does not answer)."""
    if not settings.kafka_enabled:
        return "DISABLED", "Kafka off: nothing to spool", {}
    if "api" not in settings.programs:  # the spool is the API's
        return not_run(settings)
    try:
        stats = read_stats(settings.spool_dir)
    except sqlite3.Error as exc:
        return "DOWN", f"cannot read the spool: {exc}", {}
    if stats is None:
        return "UP", "empty", {"depth": 0, "dropped": 0}
    data = {"depth": stats.depth, "dropped": stats.dropped,
            "unconfirmed": api_kafka.unconfirmed if api_kafka else None,
            "in_flight": api_kafka.in_flight if api_kafka else None}
    note = f", {stats.dropped} dropped since created" if stats.dropped else ""
    if api_kafka and api_kafka.spool_error:
        return "DOWN", (f"cannot write to the spool ({api_kafka.spool_error}): events are lost, "
                        f"{api_kafka.lost} so far"), data
    if stats.depth and not (api_kafka and api_kafka.connected):
        return "DEGRADED", f"{stats.depth} events waiting for Kafka{note}", data
    if stats.depth:
        return "UP", f"{stats.depth} events on their way{note}", data
    return "UP", f"empty{note}", data


def disk(settings: Settings) -> Result:
    return diskspace.check(settings)
