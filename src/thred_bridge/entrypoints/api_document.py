"""The bridge's OpenAPI document (``GET /api/openapi.json``): the routes ``serve`` answers, with the statuses
each can answer and why. Built from the processors the bridge runs (their names and the content types each
accepts), so a processor added to the registry is in the document without an edit here. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from thred_bridge import __version__
from thred_bridge.processors.base import Processor

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "why, in words"}},
}
_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

_WEBHOOK_REFUSALS = {
    "400": "the signature, timestamp or body is wrong (the reason says which); nothing was stored",
    "401": "missing or wrong Basic auth (Adyen); nothing was stored",
    "404": "no such processor, or no active connection of that processor with this id",
    "408": "the body did not arrive in time",
    "413": "the body is over the limit (refused before it is read whole when its length is declared)",
    "415": "a content type the processor does not send",
    "503": "the event could not be stored; the processor retries",
}


def _webhook(processors: Mapping[str, Processor]) -> dict[str, Any]:
    media_types = sorted({kind for p in processors.values() for kind in p.media_types})
    bodies = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in media_types}
    responses: dict[str, Any] = {
        "200": {
            "description": "every verified event is stored (Adyen: the body `[accepted]`)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["received", "stored"],
                        "properties": {"received": {"type": "integer"}, "stored": {"type": "integer"}},
                    }
                },
                "text/plain": {"schema": {"type": "string", "enum": ["[accepted]"]}},
            },
        }
    }
    responses |= {status: {"description": why, "content": _ERROR_JSON} for status, why in _WEBHOOK_REFUSALS.items()}
    return {
        "post": {
            "operationId": "deliver_webhook",
            "summary": "A processor's webhook delivery, verified on its raw bytes and stored before the answer",
            "parameters": [
                {"name": "processor", "in": "path", "required": True, "schema": {"enum": sorted(processors)}},
                {
                    "name": "connection_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                },
            ],
            "requestBody": {"required": True, "content": bodies},
            "responses": responses,
        }
    }


def _readiness() -> dict[str, Any]:
    state = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["ready", "unavailable"]},
            "schema": {"type": ["string", "null"]},
            "expected": {"type": "string"},
            "database": {"type": "string"},
            "fix": {"type": "string"},
        },
    }
    content = {"application/json": {"schema": state}}
    return {
        "get": {
            "operationId": "readiness",
            "summary": "Ready: the database answers and its schema is the current one",
            "responses": {
                "200": {"description": "ready", "content": content},
                "503": {"description": "the database is unreachable or not migrated (`fix` says what to run)",
                        "content": content},
            },
        }
    }  # fmt: skip


def openapi_document(processors: Mapping[str, Processor]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes ``serve`` answers, for ``processors``."""
    liveness = {"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}
    unauthorized = {"description": "no or a wrong admin bearer token", "content": _ERROR_JSON}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "thred-bridge",
            "version": __version__,
            "description": "Payment-processor webhooks into Thred, exactly once. Admin routes take the "
            "BRIDGE_ADMIN_TOKEN as a bearer token and exist only when it is set.",
        },
        "paths": {
            "/webhooks/{processor}/{connection_id}": _webhook(processors),
            "/healthz": {
                "get": {
                    "operationId": "liveness",
                    "summary": "The process is up",
                    "responses": {"200": {"description": "up", "content": liveness}},
                }
            },
            "/readyz": _readiness(),
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text format",
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {}}}}},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "operationId": "api_document",
                    "summary": "This document",
                    "security": [{"admin": []}],
                    "responses": {
                        "200": {"description": "the document", "content": {"application/json": {"schema": {}}}},
                        "401": unauthorized,
                    },
                }
            },
        },
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
    }
