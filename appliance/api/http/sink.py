"""Where the API hands its events: the contract the routes and the middleware rely on.

The Kafka implementation is the pipeline's producer side (pipeline/producer/sink.py), passed in
through api/main.py by the program that builds the API (appliance/programs.py); with Kafka off
it is DisabledSink.
"""

from __future__ import annotations

from typing import Any, Protocol

from appliance.schema.producer_status import ProducerStatus

Headers = list[tuple[str, bytes]]


class EventSink(Protocol):
    enabled: bool  # False: the middleware does not build events at all

    @property
    def kafka_up(self) -> bool: ...

    def start(self) -> None:
        """Begin delivering (threads, first probe)."""

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout``; keep the rest for the next start."""

    def emit(self, event: dict[str, Any], headers: Headers | None = None,
             durable: bool = False) -> str:
        """Hand over one event; "queued", "spooled", "lost" or "disabled". Never raises.
        ``durable``: a kept event must be on disk before this returns."""

    def emit_all(self, pairs: list[tuple[dict[str, Any], Headers | None]],
                 durable: bool = False) -> str:
        """Several events in one hand-over (one wait with ``durable``); one outcome for all."""

    def emit_raw(self, messages: list[tuple[bytes | None, bytes, Headers | None]]) -> str:
        """Hand over messages as they are, (key, value, headers): a dead letter sent again.
        On disk before it returns; the outcome as for ``emit``."""

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for everything handed over to be delivered; how many were not."""

    def status(self) -> ProducerStatus:
        """The state /kafka/status shows."""


class DisabledSink:
    """Kafka not configured: the original degraded mode. Events are not even built."""

    enabled = False
    kafka_up = False

    def start(self) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass

    def emit(self, event: dict[str, Any], headers: Headers | None = None,
             durable: bool = False) -> str:
        return "disabled"

    def emit_all(self, pairs: list[tuple[dict[str, Any], Headers | None]],
                 durable: bool = False) -> str:
        return "disabled"

    def emit_raw(self, messages: list[tuple[bytes | None, bytes, Headers | None]]) -> str:
        return "disabled"

    def flush(self, timeout: float) -> int:
        return 0

    def status(self) -> ProducerStatus:
        return ProducerStatus(state="DISABLED")
