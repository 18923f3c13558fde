"""The OpenAPI 3 document for every route; tests check it matches the routes the app has."""

from __future__ import annotations

from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(ERROR_REF, description)


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
            "timestamp": {"type": "string",
                          "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"},
            "user_ip": STRING,
            "proxy_chain": STRING,
            "hostname": STRING,
            "os": STRING,
            "pod_ip": NULLABLE_STRING,
            "kafka_status": {"type": "string", "enum": ["UP", "NOT UP"]},
        },
    },
}

PATHS: dict[str, Any] = {
    "/": {"get": {
        "summary": "Request metadata: time, real client IP, proxy chain, host, Kafka status",
        "parameters": [{"name": "X-Forwarded-For", "in": "header", "required": False,
                        "schema": STRING}],
        "responses": {"200": _json({"$ref": "#/components/schemas/Index"}, "metadata")},
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
    "/openapi.json": {"get": {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
    }},
}


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "simple-time-service", "version": version,
                 "description": "Request metadata + event audit appliance. Every error is "
                                "JSON {\"error\": ..., \"status\": ...}."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
