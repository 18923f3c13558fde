"""The OpenAPI 3 document for every route; tests check it matches the routes the app has."""

from __future__ import annotations

import re
from typing import Any

from appliance.api.http.access import ADMIN, ADMIN_ROUTES, PUBLIC
from appliance.api.http.docs import FILES as DOCS_FILES
from appliance.api.http.faults import NEVER_FAULTED, NEVER_FAULTED_PREFIXES
from appliance.api.http.pages import STATIC
from appliance.api.http.queries import MAX_LIMIT, ORDERS, ROUTE_LIMIT
from appliance.api.http.ratelimit import LIMITED_ROUTES
from appliance.api.http.routes.target import ECHO_ALLOWED, ECHO_PREFIX, MAX_ECHO_VALUE
from appliance.core.config import Settings
from appliance.schema import producer_status
from appliance.schema.tokens import WRITE
from appliance.schema.vocabulary import (
    CURSOR,
    EVENT_TYPE,
    METHOD,
    REQUEST_ID,
    STATUS_FILTER,
    STORED_INSTANT,
    TEXT_LIMITS,
    TRACE_ID,
)

ERROR_REF = {"$ref": "#/components/schemas/Error"}
DEFAULT_MAX_DELAY = Settings.max_delay


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ERROR_REF, description)


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameter = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # no leading zeros: not an address
IPV4_CIDR = rf"^({OCTET}\.){{3}}{OCTET}(/(3[0-2]|[12]?[0-9]))?$"
IPV6_CIDR = r"^([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?$"
SEARCH_PARAMETERS = [
    _query("type", EVENT_TYPE.schema(),
           "http_request, http_response, error, custom, dead_letter, or a custom event type"),
    _query("before", {"type": "string", "format": "date-time"}),
    _query("after", {"type": "string", "format": "date-time"}),
    _query("user_ip", {"anyOf": [{"type": "string", "pattern": IPV4_CIDR},
                                 {"type": "string", "pattern": IPV6_CIDR}]},
           "an address, or a network (CIDR); IPv6 also in its short forms (2001:db8::/32)"),
    _query("path", {"type": "string", "pattern": "^/", "maxLength": TEXT_LIMITS["path"]},
           "a path prefix"),
    _query("route", {"type": "string", "minLength": 1, "maxLength": ROUTE_LIMIT},
           "a route template"),
    _query("method", METHOD.schema()),
    _query("status", {"type": "string", "pattern": f"^{STATUS_FILTER.pattern}$"},
           "a code (404) or a class (5xx)"),
    _query("request_id", REQUEST_ID.schema()),
    _query("trace_id", TRACE_ID.schema()),
    _query("injected", {"enum": ["true", "false"]},
           "true: only exchanges answered with an injected fault (their http_response events); "
           "false: only the others"),
]
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50})
ORDER = _query("order", {"type": "string", "enum": list(ORDERS)},
               "occurred (default): by when the request happened; persisted: by when the row "
               "was written, so events delivered late still show up among the newest")
CURSOR_PARAMETER = _query("cursor", {"type": "string", "pattern": f"^{CURSOR.pattern}$"},
                          "the next of the previous page; only valid with the same filters")


STRING = {"type": "string"}
NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "status"],
        "properties": {"error": STRING, "status": {"type": "integer"}},
    },
    "Index": {
        "type": "object",
        "required": ["message", "timestamp", "user_ip", "proxy_chain", "hostname", "os",
                     "pod_ip", "kafka_status"],
        "additionalProperties": False,
        "properties": {
            "message": {"type": "string", "enum": ["Hello, Kafka is UP", "Hello, Kafka is NOT UP"]},
            "timestamp": {"type": "string", "pattern": f"^{STORED_INSTANT.pattern}$"},
            "user_ip": STRING,
            "proxy_chain": STRING,
            "hostname": STRING,
            "os": STRING,
            "pod_ip": NULLABLE_STRING,
            "kafka_status": {"type": "string", "enum": ["UP", "NOT UP"]},
        },
    },
}

SCHEMAS.update({
    "PublishRequest": {
        "type": "object",
        "required": ["event_type"],
        "additionalProperties": False,
        "properties": {
            "event_type": {**EVENT_TYPE.schema(),
                           "description": "not http_request, http_response or error (reserved)"},
            "payload": {"type": "object"},
        },
    },
    "PublishAccepted": {
        "type": "object", "required": ["event_id", "status"],
        "properties": {"event_id": STRING, "status": {"enum": ["queued", "spooled"]}},
    },
    "KafkaStatus": producer_status.json_schema(),
})

SCHEMAS["Status"] = {
    "type": "object",
    "required": ["version", "hostname", "overall", "stale", "agent", "components"],
    "properties": {
        "version": STRING, "hostname": STRING, "api_uptime_s": {"type": "number"},
        "switches": {"type": "object", "required": ["active", "draining"],
                     "description": "the fault injected now (POST /faults, FAULT_*), until "
                                    "when, and whether /readyz is drained"},
        "overall": {"enum": ["UP", "DEGRADED", "DOWN"]}, "stale": {"type": "boolean"},
        "agent": {"type": "object", "required": ["state", "detail"]},
        "components": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["state", "detail", "since", "checked_at"],
            "properties": {"state": {"enum": ["UP", "DEGRADED", "DOWN", "DISABLED"]}}}},
        "history": {"type": "object"},
    },
}

SCHEMAS["DeadLetter"] = {
    "type": "object",
    "required": ["id", "reason", "received_at", "topic", "partition", "offset", "bytes", "preview",
                 "replayed_at", "replay_outcome"],
    "properties": {"id": {"type": "integer"}, "reason": STRING, "received_at": STRING,
                   "topic": STRING, "partition": {"type": "integer"}, "offset": {"type": "integer"},
                   "bytes": {"type": "integer"}, "preview": STRING, "replayed_at": NULLABLE_STRING,
                   "replay_outcome": {"enum": ["persisted", "failed", None]}},
}
SCHEMAS["AsAsked"] = {"type": "object", "required": ["status", "message"],
                      "properties": {"status": {"type": "integer"}, "message": STRING}}
SCHEMAS["RequestView"] = {
    "type": "object",
    "required": ["method", "headers", "headers_truncated", "peer", "user_ip", "proxy_chain",
                 "forwarding", "jwt"],
    "properties": {
        "method": STRING, "headers": {"type": "object", "additionalProperties": STRING},
        "headers_truncated": {"type": "boolean"}, "peer": STRING, "user_ip": STRING,
        "proxy_chain": STRING,
        "forwarding": {"type": "object", "required": ["peer_trusted", "forwarded", "effective"],
                       "properties": {"peer_trusted": {"type": "boolean"},
                                      "forwarded": {"type": "array", "items": {"type": "object"}},
                                      "effective": {"type": "object"}}},
        "jwt": {"oneOf": [{"type": "null"}, {
            "type": "object", "required": ["header", "claims", "verified"],
            "properties": {"verified": {"const": False}}}]},
    },
}
FAULT = {"type": ["object", "null"], "properties": {
    "error_rate": {"type": "number"}, "delay_ms": {"type": "integer"},
    "routes": {"type": "array", "items": STRING}, "until": NULLABLE_STRING,
    "source": {"enum": ["settings", "runtime"]}}}
SCHEMAS["Faults"] = {"type": "object", "required": ["active", "runtime", "configured", "draining"],
                     "properties": {"active": FAULT, "runtime": FAULT, "configured": FAULT,
                                    "draining": {"type": "boolean"}}}
SCHEMAS["Drain"] = {"type": "object", "required": ["draining", "readyz"],
                    "properties": {"draining": {"type": "boolean"}, "readyz": {"enum": [200, 503]}}}
SCHEMAS["FaultRequest"] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "error_rate": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 60000, "default": 0},
        "routes": {"type": "array", "minItems": 1, "maxItems": 32, "default": ["/"],
                   "items": {"type": "string", "pattern": "^/[^*]*\\*?$", "maxLength": 255,
                             "not": {"anyOf": [
                                 {"enum": sorted(NEVER_FAULTED)},
                                 {"pattern": "^(" + "|".join(NEVER_FAULTED_PREFIXES) + ")"}]}}},
        "duration_s": {"type": "number", "minimum": 1, "maximum": 86400, "default": 300}},
    "anyOf": [{"required": ["error_rate"], "properties": {"error_rate": {"exclusiveMinimum": 0}}},
              {"required": ["delay_ms"], "properties": {"delay_ms": {"minimum": 1}}}],
    "description": "error_rate or delay_ms above 0; never /healthz, /readyz or an admin route"}
def caseless(text: str) -> str:
    """A regular expression for ``text`` in any case (JSON Schema's patterns have no flags)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in text)  # "-" only


ECHO_NAME = "|".join([*(caseless(n) for n in sorted(ECHO_ALLOWED)),
                      caseless(ECHO_PREFIX) + "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,57}"])
RESPONSE_HEADER = _query("response_header", {
    "type": "string", "pattern": f"^({ECHO_NAME}):[\\x20-\\x7e]{{0,{MAX_ECHO_VALUE}}}$"},
                         "Name:Value, a header to answer with (repeatable, at most 8): "
                         "Cache-Control, Expires, ETag, Last-Modified, Retry-After, Age, "
                         "Content-Language, Vary or X-Echo-*")

KAFKA_STATUS_OR_ERROR = {"oneOf": [{"$ref": "#/components/schemas/KafkaStatus"}, ERROR_REF]}

PATHS: dict[str, Any] = {
    "/": {"get": {
        "summary": "Request metadata: time, real client IP, proxy chain, host, Kafka status "
                   "(an HTML page when Accept prefers text/html)",
        "parameters": [{"name": "X-Forwarded-For", "in": "header", "required": False,
                        "schema": STRING},
                       {"name": "format", "in": "query", "required": False,
                        "schema": {"enum": ["json", "html"]},
                        "description": "the answer's form whatever Accept says"}],
        "responses": {"200": {"description": "metadata", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Index"}},
            "text/html": {"schema": STRING}}},
            "400": _error("format other than json or html"),
            "401": _error("signin asked and no read token given (the page's sign-in link)")},
    }},
    "/static/{name}": {"get": {
        "summary": "The status page's stylesheet and icon",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"enum": sorted(STATIC)}}],
        "responses": {"200": {"description": "the file", "content": {
            "text/css": {"schema": STRING}, "image/svg+xml": {"schema": STRING}}},
            "404": _error("no such file")},
    }},
    "/docs": {"get": {
        "summary": "Swagger UI for this document (served by the appliance, nothing from elsewhere)",
        "responses": {"200": {"description": "the page", "content": {
            "text/html": {"schema": STRING}}}},
    }},
    "/docs/{name}": {"get": {
        "summary": "Swagger UI's files",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"enum": sorted(DOCS_FILES)}}],
        "responses": {"200": {"description": "the file", "content": {
            "text/css": {"schema": STRING}, "text/javascript": {"schema": STRING},
            "image/png": {"schema": STRING}}}, "404": _error("no such file")},
    }},
    "/healthz": {"get": {
        "summary": "Liveness: the process serves HTTP (never depends on Kafka, OTel or the DB)",
        "responses": {"200": _json({"type": "object", "required": ["status"],
                                    "properties": {"status": {"const": "healthy"}}}, "alive")},
    }},
    "/readyz": {"get": {
        "summary": "Readiness: 200 while serving, 503 while starting or shutting down",
        "responses": {
            "200": _json({"type": "object", "properties": {"status": {"const": "ready"}}}, "ready"),
            "503": _error("starting or draining"),
        },
    }},
    "/version": {"get": {
        "summary": "Version from VERSION, Python version and git commit when known",
        "responses": {"200": _json({
            "type": "object", "required": ["version", "python", "commit"],
            "properties": {"version": STRING, "python": STRING, "commit": NULLABLE_STRING},
        }, "version")},
    }},
    "/headers": {"get": {
        "summary": "The request as it arrived: headers (secrets redacted), the direct peer beside "
                   "user_ip, Forwarded and X-Forwarded-* parsed, a bearer JWT decoded (unverified)",
        "parameters": [RESPONSE_HEADER],
        "responses": {"200": _json({"$ref": "#/components/schemas/RequestView"}, "the request"),
                      "400": _error("a response_header not allowed, or an unknown parameter")},
    }},
    "/status/{code}": {method: {
        "summary": "Answer the status asked for (1xx, 204 and 304 without a body; a 3xx points at /)",
        "parameters": [{"name": "code", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 100, "maximum": 599}},
                       RESPONSE_HEADER],
        "responses": {"default": {"description": "the status asked for: JSON {status, message} "
                                                 "below 400, the error shape from 400",
                                  "content": {"application/json": {"schema": {"oneOf": [
                                      ERROR_REF, {"$ref": "#/components/schemas/AsAsked"}]}}}},
                      "1XX": {"description": "a 1xx asked for: no body, and the connection closes"},
                      "204": {"description": "no body"}, "304": {"description": "no body"},
                      "400": _error("a code outside 100-599, or a bad response_header")},
    } for method in ("get", "post", "put", "patch", "delete")},
    "/delay/{seconds}": {"get": {
        "summary": "Answer after a delay (at most MAX_DELAY; DELAY_CONCURRENCY in flight per process)",
        "parameters": [{"name": "seconds", "in": "path", "required": True,
                        "schema": {"type": "number", "minimum": 0}}, RESPONSE_HEADER],
        "responses": {"200": _json({"type": "object", "required": ["delay", "slept"],
                                    "properties": {"delay": {"type": "number"},
                                                   "slept": {"type": "number"}}}, "slept"),
                      "400": _error("seconds not a number from 0 to MAX_DELAY, or a bad response_header"),
                      "503": _error("DELAY_CONCURRENCY delays already in flight (Retry-After)")},
    }},
    "/readyz/disable": {"post": {
        "summary": "Drain: /readyz answers 503 on every API process (within 0.25 s) until enabled",
        "responses": {"200": _json({"$ref": "#/components/schemas/Drain"}, "draining")},
    }},
    "/readyz/enable": {"post": {
        "summary": "End a drain: /readyz answers 200 again",
        "responses": {"200": _json({"$ref": "#/components/schemas/Drain"}, "not draining")},
    }},
    "/faults": {
        "get": {"summary": "The fault in force (run-time or configured by FAULT_*) and the drain",
                "responses": {"200": _json({"$ref": "#/components/schemas/Faults"}, "faults")}},
        "post": {"summary": "Inject a fault for a while (never on /healthz, /readyz or the admin plane)",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/FaultRequest"}}}},
                 "responses": {"200": _json({"$ref": "#/components/schemas/Faults"}, "in force"),
                               "400": _error("malformed JSON or a bad field (the message names it)"),
                               "413": _error("body larger than MAX_BODY_BYTES"),
                               "415": _error("Content-Type is not application/json")}},
        "delete": {"summary": "End the run-time fault (a configured one stays)",
                   "responses": {"200": _json({"$ref": "#/components/schemas/Faults"}, "ended")}},
    },
    "/kafka/publish": {"post": {
        "summary": "Publish a custom event (202 queued to Kafka, or spooled while it is down)",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PublishRequest"}}}},
        "responses": {
            "202": _json({"$ref": "#/components/schemas/PublishAccepted"}, "accepted"),
            "400": _error("malformed JSON or schema error (the message names the field)"),
            "413": _error("body larger than MAX_BODY_BYTES"),
            "415": _error("Content-Type is not application/json"),
            "503": _error("Kafka not configured, or the event could not be kept"),
        },
    }},
    "/kafka/status": {"get": {
        "summary": "Producer state and counters; 503 (same shape) when the broker is unreachable",
        "responses": {
            "200": _json({"$ref": "#/components/schemas/KafkaStatus"}, "connected"),
            "503": _json(KAFKA_STATUS_OR_ERROR, "not reachable, or Kafka not configured"),
        },
    }},
    "/kafka/flush": {"post": {
        "summary": "Flush the producer queue within a bounded timeout",
        "parameters": [{"name": "timeout", "in": "query", "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": 30, "default": 5}}],
        "responses": {
            "200": _json({"type": "object", "required": ["remaining", "flushed"],
                          "properties": {"remaining": {"type": "integer"},
                                         "flushed": {"type": "boolean"}}}, "flushed"),
            "400": _error("a bad timeout or an unknown parameter"),
            "503": _error("Kafka not configured or not reachable"),
        },
    }},
    "/status": {"get": {
        "summary": "The status agent's latest snapshot: every component UP/DEGRADED/DOWN/DISABLED",
        "parameters": [{"name": "history", "in": "query", "required": False,
                        "description": "also return this many minutes of history (0-60)",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 60}},
                       {"name": "since", "in": "query", "required": False,
                        "description": "with history: only the rounds recorded after this time",
                        "schema": {"type": "string", "format": "date-time"}}],
        "responses": {
            "200": _json({"$ref": "#/components/schemas/Status"}, "snapshot (stale: true when "
                         "the agent has been silent for 3 intervals)"),
            "400": _error("bad history"),
            "503": _error("status database not readable"),
        },
    }},
    "/events": {"get": {
        "summary": "Persisted events, newest first, filtered and paged by cursor",
        "parameters": [*SEARCH_PARAMETERS, LIMIT, ORDER, CURSOR_PARAMETER],
        "responses": {
            "200": _json({"type": "object", "required": ["events", "count", "limit", "next"],
                          "properties": {"events": {"type": "array", "items": {"type": "object"}},
                                         "count": {"type": "integer"},
                                         "limit": {"type": "integer"},
                                         "next": {"type": ["string", "null"],
                                                  "description": "cursor of the next page"}}},
                          "events"),
            "400": _error("a bad or unknown parameter (the message names it)"),
            "503": _error("events database not readable"),
        },
    }},
    "/events/dead-letters": {"get": {
        "summary": "Dead letters, newest first, with their reasons; filtered by reason and time, "
                   "paged by cursor",
        "parameters": [_query("reason", {"type": "string", "minLength": 1, "maxLength": 200},
                              "a part of the error text"),
                       _query("after", {"type": "string", "format": "date-time"}),
                       _query("before", {"type": "string", "format": "date-time"}),
                       LIMIT, _query("cursor", {"type": "string", "pattern": "^d[0-9]{1,18}$"},
                                     "the next of the previous page")],
        "responses": {
            "200": _json({"type": "object",
                          "required": ["dead_letters", "count", "limit", "next", "by_reason"],
                          "properties": {
                              "dead_letters": {"type": "array",
                                               "items": {"$ref": "#/components/schemas/DeadLetter"}},
                              "count": {"type": "integer"}, "limit": {"type": "integer"},
                              "next": NULLABLE_STRING,
                              "by_reason": {"type": "array", "items": {
                                  "type": "object", "required": ["reason", "count"]}}}},
                         "dead letters"),
            "400": _error("a bad or unknown parameter (the message names it)"),
            "503": _error("events database not readable"),
        },
    }},
    "/events/dead-letters/{letter_id}": {"get": {
        "summary": "One dead letter with its bytes, as base64 and as text when they are UTF-8",
        "parameters": [{"name": "letter_id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}],
        "responses": {
            "200": _json({"allOf": [{"$ref": "#/components/schemas/DeadLetter"}, {
                "type": "object", "required": ["dedup_key", "raw_base64", "raw_text"],
                "properties": {"raw_base64": STRING, "raw_text": NULLABLE_STRING}}]}, "the dead letter"),
            "400": _error("an unknown parameter"),
            "404": _error("no dead letter of that id"),
            "503": _error("events database not readable"),
        },
    }},
    "/events/dead-letters/replay": {"post": {
        "summary": "Send dead letters again through the spool, once their cause is fixed "
                   "(idempotent: a replay never duplicates a row)",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False,
            "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                           "reason": {"type": "string", "minLength": 1, "maxLength": 200},
                           "all": {"type": "boolean"}},
            "anyOf": [{"required": ["id"]}, {"required": ["reason"]},
                      {"required": ["all"], "properties": {"all": {"const": True}}}]}}}},
        "responses": {
            "200": _json({"type": "object", "required": ["replayed", "ids", "outcome"],
                          "properties": {"replayed": {"type": "integer"},
                                         "ids": {"type": "array", "items": {"type": "integer"}},
                                         "outcome": {"enum": ["queued", "spooled", None]}}},
                         "handed to the spool"),
            "400": _error("malformed JSON, a bad field, or no id, reason or all"),
            "413": _error("body larger than MAX_BODY_BYTES"),
            "415": _error("Content-Type is not application/json"),
            "503": _error("Kafka not configured, the spool refused it, or the database not readable"),
        },
    }},
    "/events/stats": {"get": {
        "summary": "Counts and latency of a time window (default: the last hour), computed by the database",
        "parameters": [
            {"name": "since", "in": "query", "required": False,
             "schema": {"type": "string", "format": "date-time"}},
            {"name": "until", "in": "query", "required": False,
             "schema": {"type": "string", "format": "date-time"}},
        ],
        "responses": {
            "200": _json({"type": "object", "required": [
                "since", "until", "total", "by_type", "by_status_class", "top_clients",
                "top_routes", "top_proxy_chains", "duration_ms"], "properties": {
                "total": {"type": "integer"},
                "by_type": {"type": "object", "additionalProperties": {"type": "integer"}},
                "by_status_class": {"type": "object", "additionalProperties": {"type": "integer"}},
                "top_clients": {"type": "array", "items": {"type": "object"}},
                "top_routes": {"type": "array", "items": {"type": "object"}},
                "top_proxy_chains": {"type": "array", "items": {"type": "object"}},
                "duration_ms": {"type": "object"}}}, "statistics"),
            "400": _error("a bad or unknown parameter (the message names it)"),
            "503": _error("events database not readable"),
        },
    }},
    "/events/export": {"get": {
        "summary": "Every matching event as JSON lines, oldest first, streamed",
        "parameters": SEARCH_PARAMETERS,
        "responses": {
            "200": {"description": "one JSON object per line",
                    "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
            "400": _error("a bad or unknown parameter (the message names it)"),
        },
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics of every process (OpenMetrics when the scraper asks)",
        "responses": {
            "200": {"description": "exposition", "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}}}},
            "503": _error("the metrics machinery failed (every other endpoint still works)"),
        },
    }},
    "/openapi.json": {"get": {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
    }},
}


TAGS = [{"name": PUBLIC, "description": "the public plane (PORT): anyone may use it"},
        {"name": ADMIN, "description": "the admin plane: ADMIN_PORT, and the public port with a "
                                       "token (ADMIN_ON_PUBLIC_PORT); each needs a token of its "
                                       "scope, except /metrics on the admin listener"}]


# ADMIN_ROUTES by OpenAPI path: Bottle's /x/<id:int> is /x/{id} here.
ADMIN_BY_PATH = {(method, re.sub(r"<([A-Za-z_]\w*)(?::[^>]*)?>", r"{\1}", rule)): scope
                 for (method, rule), scope in ADMIN_ROUTES.items()}


def with_access(paths: dict[str, Any]) -> dict[str, Any]:
    """Each operation tagged with its plane, and the admin ones with the token scope they need
    (api/http/access.py) and the 401, 403 and 429 they may answer."""
    marked: dict[str, Any] = {}
    for path, item in paths.items():
        marked[path] = {}
        for method, operation in item.items():
            key = (method.upper(), path)
            scope = ADMIN_BY_PATH.get(key)
            operation = {**operation, "tags": [PUBLIC if scope is None else ADMIN]}
            responses = dict(operation["responses"])
            if scope is not None:
                operation["security"] = [{"bearer": [scope]}]
                responses["401"] = _error("no token, or one this appliance does not know")
                if scope == WRITE:
                    responses["403"] = _error("a read token on a route that needs a write token")
            if key in LIMITED_ROUTES:
                responses["429"] = _error("over the rate limit (Retry-After says when to retry)")
            marked[path][method] = {**operation, "responses": responses}
    return marked


def with_max_delay(paths: dict[str, Any], max_delay: float) -> dict[str, Any]:
    """/delay/{seconds} bounded by this appliance's MAX_DELAY."""
    delay = paths["/delay/{seconds}"]["get"]
    seconds = {**delay["parameters"][0], "schema": {"type": "number", "minimum": 0, "maximum": max_delay}}
    bounded = {**delay, "parameters": [seconds, *delay["parameters"][1:]]}
    return {**paths, "/delay/{seconds}": {"get": bounded}}


def openapi_document(version: str, max_delay: float = DEFAULT_MAX_DELAY) -> dict[str, Any]:
    """The document of an appliance whose MAX_DELAY is ``max_delay`` (the one value of the
    settings a valid request depends on)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "simple-time-service", "version": version,
                 "description": "Request metadata + event audit appliance. Every error is "
                                "JSON {\"error\": ..., \"status\": ...}."},
        "tags": TAGS,
        "paths": with_access(with_max_delay(PATHS, max_delay)),
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }
