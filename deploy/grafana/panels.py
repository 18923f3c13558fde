"""The Grafana dashboard of simple-time-service, as code (grafana-foundation-sdk).

deploy/generate.py writes it to deploy/grafana/simple-time-service.json; import that file into
Grafana and pick the Prometheus data source that scrapes the appliances. tests/test_grafana.py
runs every query of the JSON against a real Prometheus scraping a live appliance.

Queries aggregate over every instance unless a panel is per instance; ``$__rate_interval`` is
Grafana's (at least four scrape intervals).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models.dashboard import DataSourceRef, ValueMap, ValueMappingResult

UID = "simple-time-service"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"

# (row, [(title, unit, kind, [(query, legend)])]); kind: "series" or "stat"
PANELS = [
    ("Requests", [
        ("Requests by route and status", "reqps", "series", [
            (f"sum by (route, status) (rate(http_requests_total{RATE}))", "{{route}} {{status}}")]),
        ("Latency quantiles (all routes)", "s", "series", [
            (f"histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket{RATE})))",
             f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)]),
        ("Latency p99 by route", "s", "series", [
            ("histogram_quantile(0.99, sum by (le, route) "
             f"(rate(http_request_duration_seconds_bucket{RATE})))", "{{route}}")]),
        ("Client and server errors by status", "reqps", "series", [
            (f'sum by (status) (rate(http_requests_total{{status=~"[45].."}}{RATE}))', "{{status}}")]),
    ]),
    ("Pipeline", [
        ("Events handed to Kafka, by outcome", "ops", "series", [
            (f"sum by (result) (rate(kafka_events_produced_total{RATE}))", "{{result}}")]),
        ("Events persisted, by table", "ops", "series", [
            (f"sum by (table) (rate(consumer_events_persisted_total{RATE}))", "{{table}}")]),
        ("Events dropped from a full spool", "short", "series", [
            (f"sum(increase(spool_dropped_total{RATE}))", "dropped")]),
        ("Spool: events waiting", "short", "series", [
            ("sum by (instance) (spool_depth)", "{{instance}}")]),
        ("Spool: share of its bound", "percentunit", "series", [
            ("sum by (instance) (spool_bytes) / sum by (instance) (spool_max_bytes)", "{{instance}}")]),
        ("Consumer lag, by partition", "short", "series", [
            ("max by (partition) (consumer_lag)", "partition {{partition}}")]),
        ("Dead letters (in the range)", "short", "stat", [
            ("sum(increase(dead_letters_total[$__range]))", "dead letters")]),
        ("Kafka reachable", "short", "stat", [("max(kafka_up)", "kafka")]),
    ]),
    ("Health", [
        ("Component states", "short", "stat", [
            ("min by (component) (component_up)", "{{component}}")]),
        ("Memory by process", "bytes", "series", [
            ("sum by (process) (process_resident_memory_bytes)", "{{process}}")]),
        ("CPU by process", "percentunit", "series", [
            (f"sum by (process) (rate(process_cpu_seconds{RATE}))", "{{process}}")]),
        ("Disk space left", "percentunit", "series", [
            ("min by (instance, path) (disk_free_bytes / disk_total_bytes)", "{{instance}} {{path}}")]),
    ]),
]

STATES = ValueMap({"1": ValueMappingResult(text="UP", color="green"),
                   "0.5": ValueMappingResult(text="DEGRADED", color="orange"),
                   "0": ValueMappingResult(text="DOWN", color="red")})


def panel(title: str, unit: str, kind: str, queries: list[tuple[str, str]]):
    built = (stat.Panel() if kind == "stat" else timeseries.Panel()).title(title).unit(unit)
    built = built.datasource(DATASOURCE).height(8).span(12 if kind == "series" else 6)
    for ref, (query, legend) in zip("ABCDEFGH", queries):
        built = built.with_target(Dataquery().expr(query).legend_format(legend).ref_id(ref)
                                  .datasource(DATASOURCE))
    if title == "Component states":
        built = built.mappings([STATES])
    return built


def build() -> Dashboard:
    board = (Dashboard("simple-time-service").uid(UID).tags(["simple-time-service"])
             .refresh("30s").time("now-1h", "now").timezone("browser")
             .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus")))
    for row, panels in PANELS:
        board = board.with_row(Row(row))
        for spec in panels:
            board = board.with_panel(panel(*spec))
    return board
