"""Traces against a real OTLP/gRPC receiver: HTTP request -> Kafka -> database in one trace."""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from otlp import HttpReceiver, Receiver
from procs import Appliance, Broker, free_port, wait_until

from appliance.core import tracing

pytestmark = pytest.mark.broker
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def traced(tmp_path, receiver):
    broker = Broker(free_port(), tmp_path / "broker.log").start()
    app = Appliance(tmp_path, broker.bootstrap, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                    OTEL_SERVICE_NAME="sts-test", POD_IP="10.9.8.7")
    app.start_api()
    app.consumer.start()
    yield app
    app.stop()
    broker.stop()


def spans_of(receiver: Receiver, trace_hex: str) -> list:
    return [(res, s) for res, s in receiver.snapshot() if s.trace_id.hex() == trace_hex]


def test_one_trace_covers_http_kafka_and_database_with_correct_parents(traced, receiver):
    status, body = traced.get("/", traceparent=TRACEPARENT, **{"X-Request-ID": "traced-1"})
    assert status == 200
    trace_hex = TRACEPARENT.split("-")[1]
    # server + 2 producer spans (request, response events) + 2 consumer spans
    wait_until(lambda: len(spans_of(receiver, trace_hex)) >= 5, 30, 0.2, "five spans of the trace")
    spans = [s for _, s in spans_of(receiver, trace_hex)]
    by_kind = {kind: [s for s in spans if s.kind == kind] for kind in
               (Span.SPAN_KIND_SERVER, Span.SPAN_KIND_PRODUCER, Span.SPAN_KIND_CONSUMER)}
    (server,) = by_kind[Span.SPAN_KIND_SERVER]
    assert server.parent_span_id.hex() == TRACEPARENT.split("-")[2]  # the caller's span
    assert server.name == "GET /"
    assert len(by_kind[Span.SPAN_KIND_PRODUCER]) == 2
    assert all(p.parent_span_id == server.span_id for p in by_kind[Span.SPAN_KIND_PRODUCER])
    producer_ids = {p.span_id for p in by_kind[Span.SPAN_KIND_PRODUCER]}
    assert len(by_kind[Span.SPAN_KIND_CONSUMER]) == 2
    assert {c.parent_span_id for c in by_kind[Span.SPAN_KIND_CONSUMER]} == producer_ids
    resource = spans_of(receiver, trace_hex)[0][0]
    assert resource["service.name"] == "sts-test"
    assert resource["k8s.pod.ip"] == "10.9.8.7" and resource["service.version"]


def test_trace_id_is_in_the_event_row_and_the_access_log(traced, receiver):
    traced.get("/", traceparent=TRACEPARENT, **{"X-Request-ID": "traced-2"})
    traced.wait_rows("http_responses", 1)
    rows = traced.rows("SELECT trace_id FROM http_responses WHERE request_id = 'traced-2'")
    assert rows == [(TRACEPARENT.split("-")[1],)]
    wait_until(lambda: TRACEPARENT.split("-")[1] in traced.api.output(), 5, 0.1, "trace_id logged")


def test_requests_without_traceparent_start_their_own_trace(traced, receiver):
    traced.get("/", **{"X-Request-ID": "fresh"})
    wait_until(lambda: any(s.kind == Span.SPAN_KIND_SERVER for _, s in receiver.snapshot()), 30, 0.2)
    server = next(s for _, s in receiver.snapshot() if s.kind == Span.SPAN_KIND_SERVER)
    assert server.parent_span_id == b"" and len(server.trace_id) == 16
    made_at_ms = int.from_bytes(server.trace_id, "big") >> 80  # time-ordered: ms first
    assert abs(made_at_ms / 1000 - time.time()) < 60


def test_trace_ids_the_appliance_makes_sort_by_time_and_end_in_80_random_bits():
    ids = tracing.TimeOrderedIds()
    made = []
    for _ in range(3):
        made.append(ids.generate_trace_id())
        time.sleep(0.002)
    assert made == sorted(made) and ids.is_trace_id_random()
    low_bits = {ids.generate_trace_id() & (2**80 - 1) for _ in range(1000)}
    assert len(low_bits) == 1000 and max(low_bits) > 2**79  # spread over all 80 bits


def test_collector_down_requests_still_answer(tmp_path, receiver):
    receiver.stop()  # nothing listens on the endpoint any more
    app = Appliance(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
    try:
        app.start_api()
        for _ in range(50):
            assert app.get("/")[0] == 200
        started = time.monotonic()
        assert app.api.stop() == 0  # SIGTERM: the span flush gives up instead of hanging
        assert time.monotonic() - started < 10
    finally:
        app.stop()


def test_http_protobuf_protocol_sends_spans_to_v1_traces(tmp_path):
    receiver = HttpReceiver().start()
    app = Appliance(tmp_path, None, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                    OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    try:
        app.start_api()
        app.get("/", traceparent=TRACEPARENT)
        trace_hex = TRACEPARENT.split("-")[1]
        ours = lambda: [(p, s) for p, s in receiver.spans if s.trace_id.hex() == trace_hex]  # noqa: E731
        wait_until(ours, 20, 0.2, "our request's span over OTLP/HTTP")
        (path, span), = ours()
        assert path == "/v1/traces" and span.name == "GET /"
    finally:
        app.stop()
        receiver.stop()
