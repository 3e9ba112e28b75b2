"""The OpenAPI 3.1 document of the JSON API and the tracking endpoints, served without auth at
GET /api/v1/openapi.json.

Hand-written so it says exactly what the API accepts: every request object is closed
(`additionalProperties: false`, as the API refuses unknown fields with a 422 naming them), strings
carry their length limits, and free text excludes NUL (U+0000), which PostgreSQL cannot store.
The tests validate the document (openapi-spec-validator), check real responses against it and
fuzz the app from it with schemathesis.
"""
from __future__ import annotations

import copy
from zoneinfo import available_timezones

from flask import jsonify

from emailexp.api import bp

API_VERSION = "1.0.0"
OPENAPI_VERSION = "3.1.0"

# --- small schema builders ----------------------------------------------------------------------
NO_NUL = "^[^\\u0000]*$"
#: Non-blank text without NUL (at least one character that is not whitespace).
NON_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
#: A client id: no NUL, no leading/trailing whitespace.
CLIENT_ID = "^[^\\s\\u0000]([^\\u0000]*[^\\s\\u0000])?$"
#: A lead id: a client id without "@" (never an e-mail address).
RECIPIENT_ID = "^[^\\s@\\u0000]([^@\\u0000]*[^\\s@\\u0000])?$"
SEGMENT_KEY = "^[A-Za-z0-9_.\\-]{1,120}$"
VARIANT_KEY = "^[A-Za-z0-9_\\-]{1,64}$"
HH_MM = "^([01][0-9]|2[0-3]):[0-5][0-9]$"
ISO_WITH_OFFSET = "^.*(Z|z|[+\\-][0-9]{2}:?[0-9]{2})$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(max_len: int, *, min_len: int = 0, pattern: str | None = None, **extra) -> dict:
    schema = {"type": "string", "maxLength": max_len, **extra}
    if min_len:
        schema["minLength"] = min_len
    schema["pattern"] = pattern or (NON_BLANK if min_len else NO_NUL)
    return schema


def _object(properties: dict, required: list[str] = (), **extra) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def _json_body(schema: dict, example: dict | None = None) -> dict:
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"required": True, "content": {"application/json": content}}


def _json_response(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    names = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed",
             409: "Conflict", 413: "TooLarge", 415: "UnsupportedMediaType", 422: "Unprocessable"}
    return {str(code): {"$ref": f"#/components/responses/{names[code]}"} for code in codes}


DATE_TIME = {"type": "string", "format": "date-time"}
EXPERIMENT_ID_PARAM = {
    "name": "experiment_id", "in": "path", "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
}

# --- schemas -------------------------------------------------------------------------------------
SCHEMAS: dict[str, dict] = {
    "Error": _object({
        "error": {"type": "string", "description": "machine-readable code, e.g. validation_error, invalid_state"},
        "message": {"type": "string", "description": "what is wrong and how to fix it"},
        "field": {"type": ["string", "null"], "description": "the offending field path, e.g. sends[3].sent_at"},
        "index": {"type": "integer", "minimum": 0, "description": "row index in a batch"},
    }, ["error", "message", "field"]),

    "VariantInput": _object({
        "key": {"type": "string", "pattern": VARIANT_KEY},
        "subject": _nullable(_text(500)),
        "send_weekday": {"type": ["integer", "null"], "minimum": 0, "maximum": 6,
                         "description": "0 = Monday ... 6 = Sunday, in the experiment's timezone"},
        "send_time": {"type": ["string", "null"], "pattern": HH_MM, "description": "local HH:MM"},
        "segment": {"type": ["string", "null"], "pattern": SEGMENT_KEY,
                    "description": "target segment key (created on first use); null = every segment"},
        "weight": {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000, "default": 1.0},
        "is_control": {"type": "boolean", "default": False},
    }, ["key"]),
    "Variant": _object({
        "id": {"type": "integer"},
        "key": {"type": "string"},
        "subject": {"type": ["string", "null"]},
        "send_weekday": {"type": ["integer", "null"], "minimum": 0, "maximum": 6},
        "send_time": {"type": ["string", "null"], "pattern": HH_MM},
        "segment": {"type": ["string", "null"]},
        "weight": {"type": "number", "exclusiveMinimum": 0},
        "is_control": {"type": "boolean"},
    }, ["id", "key", "subject", "send_weekday", "send_time", "segment", "weight", "is_control"]),
}

_EXPERIMENT_FIELDS = {
    "name": _text(200, min_len=1),
    "hypothesis": _text(10_000),
    "timezone": {"type": "string", "enum": sorted(available_timezones()),
                 "description": "IANA timezone (this server's tz database); default: the workspace TIMEZONE"},
    "primary_metric": {"type": "string", "enum": ["open_rate", "meeting_rate"], "default": "open_rate"},
    "guardrails": {"type": "array", "items": {"type": "string", "enum": ["meeting_rate", "deal_rate"]},
                   "uniqueItems": True, "default": ["meeting_rate"]},
    "attribution_window_days": {"type": "integer", "minimum": 1, "maximum": 365, "default": 14},
    "baseline_rate": {"type": ["number", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "mde_relative": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 10},
    "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5, "default": 0.05},
    "power": {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1, "default": 0.8},
    "variants": {"type": "array", "minItems": 2, "maxItems": 8, "items": _ref("VariantInput"),
                 "description": "unique keys; at most one is_control (none flagged: the first is the control)"},
}
SCHEMAS["ExperimentCreate"] = _object(copy.deepcopy(_EXPERIMENT_FIELDS), ["name", "variants"])
SCHEMAS["ExperimentUpdate"] = _object(copy.deepcopy(_EXPERIMENT_FIELDS),
                                      description="only the fields to change; variants only while draft")
SCHEMAS["Experiment"] = _object({
    "id": {"type": "integer"},
    "name": {"type": "string"},
    "hypothesis": {"type": "string"},
    "status": {"type": "string", "enum": ["draft", "running", "stopped"]},
    "timezone": {"type": "string"},
    "primary_metric": {"type": "string", "enum": ["open_rate", "meeting_rate"]},
    "guardrails": {"type": "array", "items": {"type": "string", "enum": ["meeting_rate", "deal_rate"]}},
    "attribution_window_days": {"type": "integer", "minimum": 1, "maximum": 365},
    "baseline_rate": {"type": ["number", "null"]},
    "mde_relative": {"type": ["number", "null"]},
    "alpha": {"type": "number"},
    "power": {"type": "number"},
    "created_at": DATE_TIME,
    "started_at": _nullable(DATE_TIME),
    "stopped_at": _nullable(DATE_TIME),
    "variants": {"type": "array", "items": _ref("Variant")},
}, ["id", "name", "hypothesis", "status", "timezone", "primary_metric", "guardrails", "attribution_window_days",
    "baseline_rate", "mde_relative", "alpha", "power", "created_at", "started_at", "stopped_at", "variants"])
SCHEMAS["ExperimentList"] = _object({"experiments": {"type": "array", "items": _ref("Experiment")}},
                                    ["experiments"])
SCHEMAS["AssignmentRequest"] = _object({
    "recipients": {"type": "array", "maxItems": 10_000, "items": _object({
        "id": _text(200, min_len=1, pattern=RECIPIENT_ID, description="the lead's CRM id, never an e-mail address"),
        "segment": {"type": ["string", "null"], "pattern": SEGMENT_KEY},
    }, ["id"])},
}, ["recipients"])
SCHEMAS["AssignmentResponse"] = _object({"assignments": {"type": "array", "items": _object({
    "recipient_id": {"type": "string"},
    "segment": {"type": ["string", "null"]},
    "variant": {"type": "string"},
    "scheduled_at": _nullable(DATE_TIME),
}, ["recipient_id", "segment", "variant", "scheduled_at"])}}, ["assignments"])
_COUNT = {"type": "integer", "minimum": 0}
SCHEMAS["ExperimentMetrics"] = _object({
    "experiment_id": {"type": "integer"},
    "variants": {"type": "array", "items": _object({
        "key": {"type": "string"}, "sends": _COUNT, "unique_opens": _COUNT, "unique_human_opens": _COUNT,
        "total_opens": _COUNT, "clicks": _COUNT, "meetings": _COUNT, "deals": _COUNT,
        "deal_amount": {"type": "number", "minimum": 0},
    }, ["key", "sends", "unique_opens", "unique_human_opens", "total_opens", "clicks", "meetings", "deals",
        "deal_amount"])},
}, ["experiment_id", "variants"])

SCHEMAS["SendInput"] = _object({
    "send_id": _text(200, min_len=1, pattern=CLIENT_ID),
    "recipient_id": _text(200, min_len=1, pattern=RECIPIENT_ID, description="the lead's CRM id; never an e-mail"),
    "segment": {"type": ["string", "null"], "pattern": SEGMENT_KEY},
    "owner_id": _nullable(_text(120, min_len=1, pattern=CLIENT_ID)),
    "experiment_id": {"type": ["integer", "null"], "minimum": 1},
    "variant": _nullable(_text(64, min_len=1)),
    "subject": _nullable(_text(500, min_len=1, description="required unless a variant gives it")),
    "campaign": _nullable(_text(200)),
    "sent_at": {"type": "string", "format": "date-time", "pattern": ISO_WITH_OFFSET,
                "description": "ISO 8601 with a UTC offset, at most one day in the future"},
    "links": _nullable({"type": "array", "maxItems": 50, "uniqueItems": True,
                        "items": {"type": "string", "maxLength": 2048, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/]"}}),
    "html": _nullable(_text(1_000_000)),
}, ["send_id", "recipient_id", "sent_at"])
SCHEMAS["SendBatch"] = _object({"sends": {"type": "array", "maxItems": 10_000, "items": _ref("SendInput")}},
                               ["sends"])
SCHEMAS["SendResult"] = _object({
    "created": _COUNT, "existing": _COUNT,
    "sends": {"type": "array", "items": _object({
        "send_id": {"type": "string"},
        "pixel_url": {"type": "string"},
        "links": {"type": "array", "items": _object({"url": {"type": "string"}, "tracked_url": {"type": "string"}},
                                                    ["url", "tracked_url"])},
        "html": {"type": "string", "description": "the instrumented HTML, only when html was sent"},
    }, ["send_id", "pixel_url", "links"])},
}, ["created", "existing", "sends"])
SCHEMAS["ConversionInput"] = _object({
    "conversion_id": _text(200, min_len=1, pattern=CLIENT_ID),
    "kind": {"type": "string", "enum": ["meeting", "deal"]},
    "recipient_id": _text(200, min_len=1, pattern=RECIPIENT_ID),
    "send_id": _nullable(_text(200, min_len=1, pattern=CLIENT_ID)),
    "occurred_at": {"type": "string", "format": "date-time", "pattern": ISO_WITH_OFFSET},
    "amount": {"type": ["number", "null"], "minimum": 0, "exclusiveMaximum": 1e14, "multipleOf": 0.01,
               "description": "deals only"},
    "owner_id": _nullable(_text(120, min_len=1, pattern=CLIENT_ID)),
}, ["conversion_id", "kind", "recipient_id", "occurred_at"])
SCHEMAS["ConversionBatch"] = _object({"conversions": {"type": "array", "maxItems": 10_000,
                                                      "items": _ref("ConversionInput")}}, ["conversions"])
SCHEMAS["ConversionResult"] = _object({
    "created": _COUNT, "existing": _COUNT,
    "conversions": {"type": "array", "items": _object({
        "conversion_id": {"type": "string"},
        "send_id": {"type": ["string", "null"]},
        "attribution": {"type": "string", "enum": ["explicit", "window", "unattributed"]},
    }, ["conversion_id", "send_id", "attribution"])},
}, ["created", "existing", "conversions"])
SCHEMAS["Owner"] = _object({
    "id": _text(120, min_len=1, pattern=CLIENT_ID),
    "name": _text(200, min_len=1),
    "team": _nullable(_text(120)),
}, ["id", "name"])
SCHEMAS["OwnerBatch"] = _object({"owners": {"type": "array", "maxItems": 10_000, "items": _ref("Owner")}},
                                ["owners"])
SCHEMAS["OwnerList"] = _object({"owners": {"type": "array", "items": _object({
    "id": {"type": "string"}, "name": {"type": "string"}, "team": {"type": ["string", "null"]},
}, ["id", "name", "team"])}}, ["owners"])

RESPONSES = {
    name: _json_response(description, _ref("Error"))
    for name, description in [
        ("BadRequest", "The request is malformed"),
        ("Unauthorized", "No or an unknown API key (send Authorization: Bearer <key>)"),
        ("NotFound", "No such object"),
        ("MethodNotAllowed", "Method not allowed"),
        ("Conflict", "A conflict (same client id, other content) or the object is in the wrong state "
                     "(error: invalid_state)"),
        ("TooLarge", "The body or batch is too large"),
        ("UnsupportedMediaType", "Send Content-Type: application/json"),
        ("Unprocessable", "A field is invalid; `field` names it (and `index` the row)"),
    ]
}

_EXPERIMENT_ERRORS = _errors(401, 404)
_NOT_A_TRACKING_URL = {
    "description": "Unknown or tampered click token (plain text), or a path no token can have, such as one with "
                   "a line break (the framework's HTML 404 page)",
    "content": {"text/plain": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}},
}
PATHS = {
    "/api/v1/experiments": {
        "get": {
            "operationId": "listExperiments", "summary": "List experiments, newest first", "tags": ["experiments"],
            "parameters": [{"name": "status", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["draft", "running", "stopped"]}}],
            "responses": {"200": _json_response("The experiments", _ref("ExperimentList")), **_errors(401, 422)},
        },
        "post": {
            "operationId": "createExperiment", "summary": "Create a draft experiment", "tags": ["experiments"],
            "requestBody": _json_body(_ref("ExperimentCreate"), {
                "name": "Subject test Q1", "primary_metric": "open_rate",
                "variants": [{"key": "A", "subject": "Hello", "is_control": True},
                             {"key": "B", "subject": "Hi there", "send_weekday": 1, "send_time": "09:30"}]}),
            "responses": {"201": _json_response("The experiment", _ref("Experiment")),
                          **_errors(400, 401, 413, 415, 422)},
        },
    },
    "/api/v1/experiments/{experiment_id}": {
        "parameters": [EXPERIMENT_ID_PARAM],
        "get": {"operationId": "getExperiment", "summary": "One experiment", "tags": ["experiments"],
                "responses": {"200": _json_response("The experiment", _ref("Experiment")), **_EXPERIMENT_ERRORS}},
        "patch": {"operationId": "updateExperiment", "summary": "Change fields (variants only while draft)",
                  "tags": ["experiments"], "requestBody": _json_body(_ref("ExperimentUpdate")),
                  "responses": {"200": _json_response("The experiment", _ref("Experiment")),
                                **_errors(400, 401, 404, 409, 413, 415, 422)}},
    },
    "/api/v1/experiments/{experiment_id}/start": {
        "parameters": [EXPERIMENT_ID_PARAM],
        "post": {"operationId": "startExperiment", "summary": "draft → running", "tags": ["experiments"],
                 "responses": {"200": _json_response("The experiment", _ref("Experiment")), **_errors(401, 404, 409)}},
    },
    "/api/v1/experiments/{experiment_id}/stop": {
        "parameters": [EXPERIMENT_ID_PARAM],
        "post": {"operationId": "stopExperiment", "summary": "running → stopped", "tags": ["experiments"],
                 "responses": {"200": _json_response("The experiment", _ref("Experiment")), **_errors(401, 404, 409)}},
    },
    "/api/v1/experiments/{experiment_id}/assignments": {
        "parameters": [EXPERIMENT_ID_PARAM],
        "post": {"operationId": "assignRecipients", "tags": ["experiments"],
                 "summary": "Deterministic, weighted, per-segment assignment of recipients to variants",
                 "description": "Reads only. Same recipient + experiment → same variant in every call. "
                                "Refused (409) for a stopped experiment.",
                 "requestBody": _json_body(_ref("AssignmentRequest"),
                                           {"recipients": [{"id": "lead-42", "segment": "enterprise"}]}),
                 "responses": {"200": _json_response("One assignment per recipient, in order",
                                                     _ref("AssignmentResponse")),
                               **_errors(400, 401, 404, 409, 413, 415, 422)}},
    },
    "/api/v1/experiments/{experiment_id}/metrics": {
        "parameters": [EXPERIMENT_ID_PARAM],
        "get": {"operationId": "experimentMetrics", "summary": "Per-variant counts", "tags": ["experiments"],
                "responses": {"200": _json_response("Counts per variant", _ref("ExperimentMetrics")),
                              **_EXPERIMENT_ERRORS}},
    },
    "/api/v1/sends": {
        "post": {"operationId": "ingestSends", "tags": ["ingestion"],
                 "summary": "Register up to 10,000 sends; idempotent on send_id, atomic per batch",
                 "requestBody": _json_body(_ref("SendBatch"), {"sends": [{
                     "send_id": "s-0001", "recipient_id": "lead-42", "subject": "Hello",
                     "sent_at": "2026-12-04T09:30:00+09:00", "links": ["https://example.com/pricing"]}]}),
                 "responses": {"200": _json_response("Nothing new (a retried batch)", _ref("SendResult")),
                               "201": _json_response("Sends created", _ref("SendResult")),
                               **_errors(400, 401, 409, 413, 415, 422)}},
    },
    "/api/v1/conversions": {
        "post": {"operationId": "ingestConversions", "tags": ["ingestion"],
                 "summary": "Register meetings and deals and attribute them to sends",
                 "requestBody": _json_body(_ref("ConversionBatch")),
                 "responses": {"200": _json_response("Nothing new", _ref("ConversionResult")),
                               "201": _json_response("Conversions created", _ref("ConversionResult")),
                               **_errors(400, 401, 409, 413, 415, 422)}},
    },
    "/api/v1/owners": {
        "get": {"operationId": "listOwners", "tags": ["ingestion"], "summary": "Owners with their team",
                "responses": {"200": _json_response("The owners", _ref("OwnerList")), **_errors(401)}},
        "put": {"operationId": "upsertOwners", "tags": ["ingestion"], "summary": "Create or update owners and teams",
                "requestBody": _json_body(_ref("OwnerBatch"),
                                          {"owners": [{"id": "rep-7", "name": "山田 太郎", "team": "東京IS"}]}),
                "responses": {"200": _json_response("The owners as stored", _ref("OwnerList")),
                              **_errors(400, 401, 413, 415, 422)}},
    },
    "/api/v1/openapi.json": {
        "get": {"operationId": "openapiDocument", "summary": "This document", "tags": ["meta"], "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}},
    },
    "/o/{token}.gif": {
        "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}],
        "get": {"operationId": "openPixel", "tags": ["tracking"], "security": [],
                "summary": "Open pixel: always a 1x1 GIF; records an open for a valid token",
                "responses": {"200": {"description": "A 1x1 transparent GIF, never cached, for any token",
                                      "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}}},
                              "404": _NOT_A_TRACKING_URL}},
    },
    "/c/{token}": {
        "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}],
        "get": {"operationId": "clickRedirect", "tags": ["tracking"], "security": [],
                "summary": "Tracked link: records a click and redirects to the registered URL",
                "responses": {
                    "302": {"description": "Redirect to the link registered with the send",
                            "headers": {"Location": {"required": True, "schema": {"type": "string"}}}},
                    "404": _NOT_A_TRACKING_URL}},
    },
}


def build_document() -> dict:
    """A fresh copy of the document (callers may mutate it)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "emailexp API", "version": API_VERSION,
            "description": "Open-rate experiments for e-mail campaigns. Errors are "
                           "`{\"error\", \"message\", \"field\", \"index\"?}`; `field` names the offending "
                           "field path such as `sends[3].sent_at`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": "experiments"}, {"name": "ingestion"}, {"name": "tracking"}, {"name": "meta"}],
        "paths": copy.deepcopy(PATHS),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "an API key from `emailexp create-api-key NAME`"}},
            "schemas": copy.deepcopy(SCHEMAS),
            "responses": copy.deepcopy(RESPONSES),
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(build_document())
