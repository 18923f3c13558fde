"""Settings: one frozen object, built once from the environment.

No other module reads a setting from ``os.environ`` (the ones that start other processes pass
the environment on whole). Each variable has a converter; a bad value raises
:class:`ConfigError` with one line naming the variable, the value and what was expected,
which the entry points print without a traceback.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from appliance.core import database_url
from appliance.core.cpus import usable_cpus
from appliance.core.database_url import DatabaseUrl
from appliance.core.layout import DataLayout

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """An environment variable holds a value the appliance cannot use."""


# --- converters: each takes the raw string and returns the value or raises ValueError(expected)


def as_port(raw: str) -> int:
    return as_int_range(1, 65535)(raw)


def as_optional_port(raw: str) -> int | None:
    """A port, or "off" (no such listener)."""
    if raw.strip().lower() == "off":
        return None
    try:
        return as_port(raw)
    except ValueError:
        raise ValueError("an integer from 1 to 65535, or off") from None


def _in_range(parse: Callable[[str], Any], low: Any, high: Any, expected: str) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            value = parse(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        if not low <= value <= high:  # also refuses nan
            raise ValueError(expected)
        return value

    return convert


def as_int_range(low: int, high: int) -> Callable[[str], int]:
    return _in_range(int, low, high, f"an integer from {low} to {high}")


def as_float_range(low: float, high: float) -> Callable[[str], float]:
    return _in_range(float, low, high, f"a number from {low:g} to {high:g}")


def as_networks(raw: str) -> tuple[IPNetwork, ...]:
    items = [item.strip() for item in raw.split(",") if item.strip()]
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError:
        raise ValueError("a comma-separated list of IP addresses or CIDRs, e.g. 10.0.0.0/8,::1") from None


def as_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def as_str(raw: str) -> str:
    return raw.strip()


def as_optional_str(raw: str) -> str | None:
    return raw.strip() or None


def as_ip(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("an IPv4 or IPv6 address") from None


def as_path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a file system path")
    return Path(raw.strip()).expanduser()


def as_path_list(raw: str) -> frozenset[str]:
    paths = [p.strip() for p in raw.split(",") if p.strip()]
    if any(not p.startswith("/") for p in paths):
        raise ValueError("a comma-separated list of paths starting with /")
    return frozenset(paths)


TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def as_fault_routes(raw: str) -> tuple[str, ...]:
    """FAULT_ROUTES: exact paths, or prefixes ending in *: /,/api/*."""
    routes = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not routes or any(not p.startswith("/") or "*" in p[:-1] for p in routes):
        raise ValueError("a comma-separated list of paths starting with /, a prefix ending "
                         "in *, e.g. /,/api/*")
    return routes


def as_topic(raw: str) -> str:
    value = raw.strip()
    if not TOPIC_RE.match(value):
        raise ValueError("a Kafka topic name of 1-249 characters [A-Za-z0-9._-]")
    return value


def as_group(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("a non-empty consumer group id")
    return value


def as_choice(*choices: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return value

    return convert


def as_attributes(raw: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES: key=value,key2=value2."""
    pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise ValueError("comma-separated key=value pairs, e.g. deployment.environment=prod")
    return {key.strip(): value.strip() for key, value in pairs}


SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")


# The supervised programs, in the order supervisord starts them (conf/supervisord.conf).
PROGRAMS = ("broker", "consumer", "agent", "api")


def as_programs(raw: str) -> tuple[str, ...]:
    names = {name.strip().lower() for name in raw.split(",") if name.strip()}
    if not names or not names <= set(PROGRAMS):
        raise ValueError("a comma-separated list of api, consumer, agent, broker, e.g. api,consumer,agent")
    return tuple(program for program in PROGRAMS if program in names)


def as_processes(raw: str) -> int | None:
    """WEB_PROCESSES: "auto" (None: one per usable CPU, at most AUTO_PROCESSES) or 1-64."""
    value = raw.strip().lower()
    if value == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise ValueError("auto, or a whole number of API processes from 1 to 64")
    return count


def as_system_group(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    try:
        grp.getgrnam(value)
    except KeyError:
        raise ValueError("the name of an existing group") from None
    return value


def as_token_pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """API_TOKENS: read:TOKEN,write:TOKEN,..."""
    pairs = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        scope, _, token = item.partition(":")
        if scope not in ("read", "write") or len(token) < 8 or any(c.isspace() for c in token):
            raise ValueError("comma-separated read:TOKEN or write:TOKEN pairs, each token of at "
                             "least 8 characters without spaces")
        pairs.append((scope, token))
    return tuple(pairs)


HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # RFC 9110's field-name characters


def as_header_names(raw: str) -> frozenset[str]:
    """REDACT_HEADERS: header names, compared without case."""
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not all(HEADER_NAME_RE.match(name) for name in names):
        raise ValueError("a comma-separated list of header names, e.g. X-Api-Key,X-Session")
    return frozenset(name.lower() for name in names)


def as_optional_path(raw: str) -> Path | None:
    return Path(raw.strip()).expanduser() if raw.strip() else None


def as_token(raw: str) -> str | None:
    value = raw.strip()
    if value and (len(value) < 8 or any(c.isspace() for c in value)):
        raise ValueError("a token of at least 8 characters without spaces")
    return value or None


# --- the table: (environment variable, field name, converter). Defaults live on Settings.
VARIABLES: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("HOST", "host", as_str),
    ("PORT", "port", as_port),
    ("ADMIN_HOST", "admin_host", as_str),
    ("ADMIN_PORT", "admin_port", as_optional_port),
    ("CONSUMER_HEALTH_PORT", "consumer_health_port", as_optional_port),
    ("ADMIN_ON_PUBLIC_PORT", "admin_on_public_port", as_choice("token", "off", "open")),
    ("RATE_LIMIT_WRITES", "rate_limit_writes", as_float_range(0, 1_000_000)),
    ("RATE_LIMIT_READS", "rate_limit_reads", as_float_range(0, 1_000_000)),
    ("WEB_THREADS", "web_threads", as_int_range(1, 256)),
    ("WEB_PROCESSES", "web_processes", as_processes),
    ("CONNECTION_LIMIT", "connection_limit", as_int_range(1, 100_000)),
    # Below librdkafka's default message.max.bytes (1 MB) with room for the event envelope:
    # a larger published event could never be delivered and would block the spool's replay.
    ("MAX_BODY_BYTES", "max_body_bytes", as_int_range(1, 900_000)),
    ("TRUSTED_PROXIES", "trusted_proxies", as_networks),
    ("REDACT_HEADERS", "redact_headers", as_header_names),
    ("MAX_DELAY", "max_delay", as_float_range(0, 300)),
    ("DELAY_CONCURRENCY", "delay_concurrency", as_int_range(0, 255)),
    ("FAULT_ERROR_RATE", "fault_error_rate", as_float_range(0, 1)),
    ("FAULT_DELAY_MS", "fault_delay_ms", as_int_range(0, 60_000)),
    ("FAULT_ROUTES", "fault_routes", as_fault_routes),
    ("LOG_LEVEL", "log_level", as_log_level),
    ("SHUTDOWN_DELAY", "shutdown_delay", as_float_range(0, 300)),
    ("SHUTDOWN_TIMEOUT", "shutdown_timeout", as_float_range(0.1, 300)),
    ("REQUEST_HEADER_TIMEOUT", "request_header_timeout", as_float_range(0.1, 3600)),
    ("REQUEST_BODY_TIMEOUT", "request_body_timeout", as_float_range(0.1, 3600)),
    ("KEEPALIVE_TIMEOUT", "keepalive_timeout", as_float_range(0.1, 3600)),
    ("POD_IP", "pod_ip", as_ip),
    ("HOST_IP", "host_ip", as_ip),
    ("API_TOKEN", "api_token", as_token),
    ("API_TOKENS", "api_tokens", as_token_pairs),
    ("API_TOKENS_FILE", "api_tokens_file", as_optional_path),
    ("GIT_COMMIT", "git_commit", as_optional_str),
    ("DATA_DIR", "data_dir", as_path),
    ("DATA_DIR_GROUP", "data_dir_group", as_system_group),
    ("DB_PATH", "db_path", as_path),
    ("DATABASE_URL", "database_url", database_url.parse),
    ("RETENTION_DAYS", "retention_days", as_int_range(0, 36_500)),
    ("DB_MAX_MB", "db_max_mb", as_int_range(0, 10_000_000)),
    ("SPOOL_DIR", "spool_dir", as_path),
    ("SPOOL_MAX_MB", "spool_max_mb", as_float_range(0.01, 1_000_000)),
    ("EVENT_DURABILITY", "event_durability", as_choice("sync", "async")),
    ("KAFKA_BROKERS", "kafka_brokers", as_optional_str),
    ("KAFKA_TOPIC_EVENTS", "kafka_topic_events", as_topic),
    ("KAFKA_CONSUMER_GROUP", "kafka_consumer_group", as_group),
    ("KAFKA_PARTITIONS", "kafka_partitions", as_int_range(1, 1000)),
    ("EVENTS_EXCLUDE_PATHS", "events_exclude_paths", as_path_list),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_endpoint", as_optional_str),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "otel_protocol", as_choice("grpc", "http/protobuf")),
    ("OTEL_SERVICE_NAME", "otel_service_name", as_group),
    ("OTEL_TRACES_SAMPLER", "otel_traces_sampler", as_choice(*SAMPLERS)),
    ("OTEL_TRACES_SAMPLER_ARG", "otel_traces_sampler_arg", as_float_range(0, 1)),
    ("OTEL_RESOURCE_ATTRIBUTES", "otel_resource_attributes", as_attributes),
    ("EMBEDDED_BROKER_PORT", "embedded_broker_port", as_port),
    ("EMBEDDED_BROKER_MAX_MB", "embedded_broker_max_mb", as_float_range(16, 1_000_000)),
    ("EMBEDDED_BROKER_MAX_BATCHES", "embedded_broker_max_batches", as_int_range(100, 10_000_000)),
    ("STATUS_INTERVAL", "status_interval", as_float_range(0.5, 3600)),
    ("STATUS_DB_PATH", "status_db_path", as_path),
    ("PROMETHEUS_URL", "prometheus_url", as_optional_str),
    ("METRICS_DIR", "metrics_dir", as_path),
    ("APPLIANCE_PROGRAMS", "programs", as_programs),
)

AUTO_PROCESSES = 4  # WEB_PROCESSES=auto never starts more: each is ~50-75 MB
SECRETS = frozenset({"API_TOKEN", "API_TOKENS", "DATABASE_URL"})  # never repeated in an error
NAMED_KAFKA_VARIABLES = frozenset(name for name, _, _ in VARIABLES if name.startswith("KAFKA_"))
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    # The admin plane's own listener (api/http/access.py): loopback unless told otherwise.
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 8081  # None: no admin listener (ADMIN_PORT=off)
    # The consumer's /healthz, /readyz, /metrics on ADMIN_HOST, for a pod without the API.
    consumer_health_port: int | None = None
    admin_on_public_port: str = "token"  # token, off (404) or open (no token anywhere)
    rate_limit_writes: float = 50.0  # /kafka/publish per second per token or client; 0: none
    rate_limit_reads: float = 5.0  # /events/stats, /events/export per second, likewise
    web_threads: int = 8  # per API process
    web_processes: int | None = None  # API processes on the one port; None: auto (api_processes)
    connection_limit: int = 200  # concurrent connections Waitress accepts
    max_body_bytes: int = 65_536  # bytes; larger bodies get 413
    trusted_proxies: tuple[IPNetwork, ...] = LOOPBACK
    redact_headers: frozenset[str] = frozenset()  # GET /headers shows them as [redacted]
    max_delay: float = 10.0  # seconds /delay/<seconds> may ask for
    delay_concurrency: int = 2  # /delay in flight per API process (< WEB_THREADS); then 503
    fault_error_rate: float = 0.0  # share of FAULT_ROUTES answered 500 (api/http/faults.py)
    fault_delay_ms: int = 0  # milliseconds FAULT_ROUTES requests are held (DELAY_CONCURRENCY)
    fault_routes: tuple[str, ...] = ("/",)
    log_level: str = "INFO"
    shutdown_delay: float = 0.0  # seconds /readyz reports 503 before the listener closes
    shutdown_timeout: float = 10.0  # seconds in-flight requests get to finish
    request_header_timeout: float = 10.0  # seconds a request's headers may take to arrive
    request_body_timeout: float = 10.0  # seconds its body may take, from the end of its headers
    keepalive_timeout: float = 5.0  # seconds an idle keep-alive connection is kept
    pod_ip: str | None = None
    host_ip: str | None = None
    api_token: str | None = None  # a write token
    api_tokens: tuple[tuple[str, str], ...] = ()  # (scope, token): several at once, to rotate
    api_tokens_file: Path | None = None  # "scope token" lines; default DATA_DIR/api-tokens
    git_commit: str | None = None
    data_dir: Path = Path("data")
    data_dir_group: str | None = None  # a group that may list DATA_DIR (0750); else 0700
    db_path: Path | None = None  # default: <data_dir>/events.db
    # default: sqlite://<db_path>; a sqlite:// URL sets db_path (core/database_url.py)
    database_url: DatabaseUrl | None = None
    retention_days: int = 30  # events older than this are deleted; 0: kept forever
    db_max_mb: int = 1024  # megabytes the audit database may hold; past it the oldest go; 0: no limit
    spool_dir: Path | None = None  # default: <data_dir>/spool
    spool_max_mb: float = 256.0  # megabytes on disk before the oldest spooled events are dropped
    # sync: a request is answered once its events are on disk; async: up to 20 ms later
    event_durability: str = "async"
    kafka_brokers: str | None = None  # None: Kafka off
    kafka_topic_events: str = "simple-time-events"
    kafka_consumer_group: str = "simple-time-group"
    kafka_partitions: int | None = None  # default: 3, or 1 for the embedded broker
    kafka_extra: Mapping[str, str] = field(default_factory=dict)  # librdkafka properties
    # Probes, scrapes and the dashboard's polls: audit rows for them would drown the real ones.
    events_exclude_paths: frozenset[str] = frozenset(
        {"/healthz", "/readyz", "/metrics", "/status", "/events", "/version", "/openapi.json",
         "/kafka/status"})
    otel_endpoint: str | None = None  # None: tracing off
    otel_protocol: str = "grpc"
    otel_service_name: str = "simple-time-service"
    otel_traces_sampler: str = "parentbased_always_on"
    otel_traces_sampler_arg: float = 1.0  # ratio for the *traceidratio samplers
    otel_resource_attributes: Mapping[str, str] = field(default_factory=dict)
    embedded_broker_port: int = 19092  # 127.0.0.1 port of the embedded broker
    # RSS at which the agent recycles the embedded broker: at ~2,400 requests/s it grows ~0.55
    # MB/s, a recycle (2-3 s, nothing lost) every ~3.5 minutes (docs/embedded-broker.md).
    embedded_broker_max_mb: float = 128.0
    # Batches written at which the agent recycles it: a fetch lists each (~1.5 us; 15 ms at 10k)
    embedded_broker_max_batches: int = 10_000
    status_interval: float = 5.0  # seconds between the agent's probes
    status_db_path: Path | None = None  # default: <data_dir>/status.db (the agent's own file)
    prometheus_url: str | None = None
    metrics_dir: Path | None = None  # default: <data_dir>/metrics (prometheus multiprocess files)
    # What `up` supervises; default: api, consumer, agent, and broker with KAFKA_BROKERS=embedded
    programs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Derived paths default inside DATA_DIR so two appliances with different DATA_DIR
        # never share state.
        if self.database_url is not None and not self.database_url.is_postgres:
            object.__setattr__(self, "db_path", self.database_url.path)
        if self.db_path is None:
            object.__setattr__(self, "db_path", self.data_dir / "events.db")
        if self.database_url is None:
            object.__setattr__(self, "database_url", DatabaseUrl("sqlite", path=self.db_path))
        if self.spool_dir is None:
            object.__setattr__(self, "spool_dir", self.data_dir / "spool")
        if self.metrics_dir is None:
            object.__setattr__(self, "metrics_dir", self.data_dir / "metrics")
        if self.status_db_path is None:
            object.__setattr__(self, "status_db_path", self.data_dir / "status.db")
        if self.programs is None:
            object.__setattr__(self, "programs", tuple(
                p for p in PROGRAMS if p != "broker" or self.embedded_broker))

    @property
    def api_processes(self) -> int:
        """WEB_PROCESSES, or one per CPU this process may use, at most AUTO_PROCESSES: one
        Python process serves on one core at a time (api/workers/parent.py has the measurements).
        With the embedded broker too: each process writes a partition of its own
        (events_partitions), which made the soaks with two processes exact
        (docs/embedded-broker.md)."""
        if self.web_processes is not None:
            return self.web_processes
        return min(AUTO_PROCESSES, usable_cpus())

    @property
    def embedded_broker(self) -> bool:
        return (self.kafka_brokers or "").lower() == "embedded"

    @property
    def kafka_bootstrap(self) -> str | None:
        """What clients connect to: the embedded broker's address, or KAFKA_BROKERS as given."""
        if self.embedded_broker:
            return f"127.0.0.1:{self.embedded_broker_port}"
        return self.kafka_brokers

    @property
    def events_partitions(self) -> int:
        """Partitions of the events topic when the appliance creates it. The embedded broker's
        fetch cost grows with the record batches in a partition, and more partitions only make
        each batch smaller: it gets one per API process, each written by that process alone
        (pipeline/producer/relay.py; docs/embedded-broker.md)."""
        if self.kafka_partitions is not None:
            return self.kafka_partitions
        return self.api_processes if self.embedded_broker else 3

    @property
    def layout(self) -> DataLayout:
        """The files under DATA_DIR that are not settings of their own."""
        return DataLayout(self.data_dir)

    @property
    def local_admin_url(self) -> str:
        """Where a process on this host reaches the admin plane: the admin listener (its
        address, or loopback when it listens on every address), else the public port."""
        if self.admin_port is None:
            return f"http://127.0.0.1:{self.port}"
        host = self.admin_host if self.admin_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://[{host}]:{self.admin_port}" if ":" in host else f"http://{host}:{self.admin_port}"

    @property
    def kafka_enabled(self) -> bool:
        return bool(self.kafka_brokers)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``); raise ConfigError."""
        environ = os.environ if environ is None else environ
        settings = cls(**converted(environ), kafka_extra=kafka_extra_properties(environ))
        if "APPLIANCE_PROGRAMS" in environ:
            check_programs(settings, f"APPLIANCE_PROGRAMS={environ['APPLIANCE_PROGRAMS']!r}")
        return settings



def with_programs(settings: Settings, raw: str, source: str) -> Settings:
    """``settings`` with the programs given as ``raw`` by ``source`` (`up --programs`)."""
    try:
        programs = as_programs(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}={raw!r} is invalid: expected {exc}") from None
    chosen = replace(settings, programs=programs)
    check_programs(chosen, f"{source}={raw!r}")
    return chosen


def check_programs(settings: Settings, given: str) -> None:
    # The embedded broker is the only one the appliance can run: a broker program beside
    # an external Kafka would be a second, empty Kafka nobody uses.
    if "broker" in settings.programs and not settings.embedded_broker:
        raise ConfigError(f"{given} is invalid: the broker program runs only with "
                          f"KAFKA_BROKERS=embedded (KAFKA_BROKERS={settings.kafka_brokers or ''!r})")


def converted(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every variable of VARIABLES that ``environ`` sets, converted, by field name."""
    values: dict[str, Any] = {}
    for name, attr, convert in VARIABLES:
        raw = environ.get(name)
        if raw is None:
            continue
        try:
            values[attr] = convert(raw)
        except ValueError as exc:
            shown = "(value not shown: it holds a secret)" if name in SECRETS else repr(raw)
            raise ConfigError(f"{name}={shown} is invalid: expected {exc}") from None
    return values


def kafka_extra_properties(environ: Mapping[str, str]) -> dict[str, str]:
    """KAFKA_SECURITY_PROTOCOL=SASL_SSL -> {"security.protocol": "SASL_SSL"}, for librdkafka."""
    return {
        name[len("KAFKA_"):].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith("KAFKA_") and name not in NAMED_KAFKA_VARIABLES and value != ""
    }
