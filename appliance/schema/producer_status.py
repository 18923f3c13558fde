"""The producer's status: what GET /kafka/status answers, in one definition.

Built by the producer side of each API process (pipeline/producer/sink.py), merged over the API
processes by the worker that got the request (api/workers/peers.py), described in the OpenAPI
document (api/http/openapi.py generates the schema from the fields below), and read by the
status agent, which decides on it whether the embedded broker may be restarted
(agent/recycler.py) and how the spool is doing (agent/probes.py).

Each field says how several API processes' values become one (``merge``), so a new counter
cannot be left out of the sum: SUM adds them, ALL is true only when every process says so,
OWN is the answering process's, ANY is the first process's value that is set, NEWEST goes with
the newest ``last_error_at``. ``state`` is not merged but worked out from ``connected``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SUM, ALL, OWN, ANY, NEWEST, DERIVED = "sum", "all", "own", "any", "newest", "derived"
STATES = ("UP", "DEGRADED", "DOWN", "DISABLED")


def _field(merge: str, doc: str, default: Any = None, optional: bool = False) -> Any:
    return field(default=default, metadata={"merge": merge, "doc": doc, "optional": optional})


@dataclass(frozen=True)
class ProducerStatus:
    brokers: str | None = _field(OWN, "the bootstrap servers the producer connects to")
    topic: str | None = _field(OWN, "the events topic")
    partitions: int | None = _field(OWN, "partitions of the events topic (null until known)")
    connected: bool = _field(ALL, "every API process reaches the broker", False)
    state: str = _field(DERIVED, "UP: every API process reaches the broker; DEGRADED: some do, "
                                 "or one did not answer; DOWN: none does", "DOWN")
    paused: bool = _field(ALL, "sending is paused while the embedded broker is recycled "
                               "(true only when every API process answered paused)", False)
    state_since: str | None = _field(OWN, "when the state last changed")
    in_queue: int = _field(SUM, "messages in librdkafka's queues", 0)
    queued: int = _field(SUM, "events handed over while Kafka was up, since start", 0)
    delivered: int = _field(SUM, "events the broker acknowledged, since start", 0)
    failed: int = _field(SUM, "delivery reports that failed (the event is sent again)", 0)
    spooled: int = _field(SUM, "events handed over while Kafka was down or paused", 0)
    lost: int = _field(SUM, "events the spool could not keep, since start", 0)
    release: str | None = _field(OWN, "when a spooled event may go: acknowledged (an external "
                                      "cluster) or committed (the embedded broker)")
    in_flight: int = _field(SUM, "events sent and not yet reported on", 0)
    unconfirmed: int = _field(SUM, "events the embedded broker holds that the consumer group "
                                   "has not committed", 0)
    confirmed: int = _field(SUM, "events released on the consumer group's commit, since start", 0)
    broker_batches: int = _field(SUM, "record batches written to this incarnation of the topic", 0)
    spool_depth: int = _field(SUM, "events in the spools: waiting, or sent and not confirmed", 0)
    spool_error: str | None = _field(ANY, "the last failed spool write, until one succeeds")
    spool_bytes: int = _field(SUM, "bytes the spools hold", 0)
    dropped: int = _field(SUM, "events ever dropped from a full spool", 0)
    last_error: str | None = _field(NEWEST, "the newest error any API process saw")
    last_error_at: str | None = _field(NEWEST, "when it was seen")
    workers: list[dict[str, Any]] | None = _field(
        DERIVED, "with WEB_PROCESSES > 1: each API process's worker, state, queued and "
                 "spool_depth (the counters above are sums)", optional=True)
    workers_unreachable: list[int] | None = _field(
        DERIVED, "API processes that did not answer (restarting)", optional=True)

    # --- the JSON form ---------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in FIELDS
                if not (f.metadata["optional"] and getattr(self, f.name) is None)}

    @classmethod
    def from_json(cls, data: Any) -> "ProducerStatus":
        """Whatever came over the wire: unknown keys are ignored, a value of the wrong type
        is the field's default."""
        if not isinstance(data, dict):
            return cls()
        return cls(**{f.name: data[f.name] for f in FIELDS
                      if f.name in data and _fits(data[f.name], HINTS[f.name])})

    # --- several API processes as one ------------------------------------------------------

    @classmethod
    def merge(cls, own: "ProducerStatus", others: dict[int, "ProducerStatus | None"],
              index: int) -> "ProducerStatus":
        """One status for every API process, from ``own`` (process ``index``) and the others'
        answers (None: no answer)."""
        answers = {index: own, **{i: s for i, s in others.items() if s is not None}}
        unreachable = sorted(i for i, s in others.items() if s is None)
        values = {f.name: _merged(f, list(answers.values())) for f in FIELDS
                  if f.metadata["merge"] != DERIVED}
        newest = max(answers.values(), key=lambda s: s.last_error_at or "")
        values.update(last_error=newest.last_error, last_error_at=newest.last_error_at)
        connected = values["connected"] and not unreachable
        some = any(s.connected for s in answers.values())
        values.update(connected=connected, paused=values["paused"] and not unreachable,
                      state="UP" if connected else "DEGRADED" if some else "DOWN",
                      workers=[{"worker": i, "state": s.state, "queued": s.queued,
                                "spool_depth": s.spool_depth} for i, s in sorted(answers.items())],
                      workers_unreachable=unreachable)
        return dataclasses.replace(own, **values)


def _merged(f: dataclasses.Field, answers: list[ProducerStatus]) -> Any:
    values = [getattr(s, f.name) for s in answers]
    how = f.metadata["merge"]
    if how == SUM:
        return sum(v or 0 for v in values)
    if how == ALL:
        return all(values)
    if how == ANY:
        return next((v for v in values if v), None)
    return values[0]  # OWN; NEWEST is set by merge


FIELDS = dataclasses.fields(ProducerStatus)
HINTS = typing.get_type_hints(ProducerStatus)


def _alternatives(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``str | None``), else the hint itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _fits(value: Any, hint: Any) -> bool:
    for kind in _alternatives(hint):
        base = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return True
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if base in (str, bool, list, dict) and isinstance(value, base):
            return True
    return False


JSON_TYPES = {type(None): "null", str: "string", int: "integer", bool: "boolean", list: "array",
              dict: "object"}


def json_schema() -> dict[str, Any]:
    """The JSON schema of ``to_json()``, for the OpenAPI document."""
    properties = {f.name: {**_schema_of(HINTS[f.name]), "description": f.metadata["doc"]}
                  for f in FIELDS}
    properties["state"]["enum"] = ["UP", "DEGRADED", "DOWN"]
    return {"type": "object", "properties": properties,
            "required": [f.name for f in FIELDS if not f.metadata["optional"]]}


def _schema_of(hint: Any) -> dict[str, Any]:
    kinds = _alternatives(hint)
    names = [JSON_TYPES[typing.get_origin(kind) or kind] for kind in kinds]
    schema: dict[str, Any] = {"type": names[0] if len(names) == 1 else names}
    for kind in kinds:
        if typing.get_origin(kind) is list:
            schema["items"] = _schema_of(typing.get_args(kind)[0])
    return schema
