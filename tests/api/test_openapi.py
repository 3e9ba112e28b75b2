"""The OpenAPI document: valid, complete, served without auth, and true to real responses."""
from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate

from emailexp.api.openapi import build_document

CONTRACT_OPERATIONS = {
    ("post", "/api/v1/experiments"), ("get", "/api/v1/experiments"), ("get", "/api/v1/experiments/{experiment_id}"),
    ("patch", "/api/v1/experiments/{experiment_id}"), ("post", "/api/v1/experiments/{experiment_id}/start"),
    ("post", "/api/v1/experiments/{experiment_id}/stop"),
    ("post", "/api/v1/experiments/{experiment_id}/assignments"),
    ("get", "/api/v1/experiments/{experiment_id}/metrics"),
    ("post", "/api/v1/sends"), ("post", "/api/v1/conversions"), ("put", "/api/v1/owners"), ("get", "/api/v1/owners"),
    ("get", "/o/{token}.gif"), ("get", "/c/{token}"), ("get", "/api/v1/openapi.json"),
}


@pytest.fixture(scope="module")
def document():
    return build_document()


def validator_for(document: dict, name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_matches(document: dict, name: str, instance) -> None:
    errors = sorted(validator_for(document, name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_document_is_valid_openapi(document):
    validate(document)  # raises on any violation of the OpenAPI 3.1 meta-schema
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]
        ["description"]}
    assert document["security"] == [{"bearerAuth": []}]


def test_document_covers_the_contract(document):
    documented = {(method, path) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    assert documented == CONTRACT_OPERATIONS
    # Public endpoints say so; every other operation falls back to the Bearer scheme.
    public = {(m, p) for (m, p) in documented if document["paths"][p][m].get("security") == []}
    assert public == {("get", "/o/{token}.gif"), ("get", "/c/{token}"), ("get", "/api/v1/openapi.json")}


def test_request_objects_are_closed(document):
    def walk(schema, where):
        if isinstance(schema, dict):
            if schema.get("type") == "object" and "properties" in schema:
                assert schema.get("additionalProperties") is False, where
            for key, value in schema.items():
                walk(value, f"{where}.{key}")
        elif isinstance(schema, list):
            for i, value in enumerate(schema):
                walk(value, f"{where}[{i}]")

    walk(document["components"]["schemas"], "schemas")


def test_documented_paths_exist_in_the_app(app, document):
    rules: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        rules.setdefault(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), set()).update(rule.methods)
    for method, path in CONTRACT_OPERATIONS:
        if path.startswith(("/api/v1/sends", "/api/v1/conversions", "/api/v1/owners")) and path not in rules:
            continue  # registered by the ingestion engineer's module
        flask_path = {"/o/{token}.gif": "/o/{name}", "/c/{token}": "/c/{name}"}.get(path, path)
        assert flask_path in rules, path
        assert method.upper() in rules[flask_path], (method, path)


def test_served_without_auth(client, document):
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.is_json
    assert resp.get_json() == document


def test_experiment_responses_match_their_schemas(client, auth, document):
    created = client.post("/api/v1/experiments", headers=auth, json={
        "name": "doc", "baseline_rate": 0.2, "variants": [
            {"key": "A", "subject": "a", "send_weekday": 2, "send_time": "08:00", "segment": "ent"},
            {"key": "B", "weight": 3}]})
    assert created.status_code == 201
    assert_matches(document, "Experiment", created.get_json())
    url = f"/api/v1/experiments/{created.get_json()['id']}"
    assert_matches(document, "Experiment", client.get(url, headers=auth).get_json())
    assert_matches(document, "ExperimentList", client.get("/api/v1/experiments", headers=auth).get_json())
    assert_matches(document, "Experiment", client.patch(url, headers=auth, json={"mde_relative": 0.5}).get_json())
    assignments = client.post(f"{url}/assignments", headers=auth,
                              json={"recipients": [{"id": f"l{i}", "segment": "ent"} for i in range(20)]})
    assert_matches(document, "AssignmentResponse", assignments.get_json())
    assert_matches(document, "Experiment", client.post(f"{url}/start", headers=auth).get_json())
    assert_matches(document, "ExperimentMetrics", client.get(f"{url}/metrics", headers=auth).get_json())
    assert_matches(document, "Experiment", client.post(f"{url}/stop", headers=auth).get_json())


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("post", "/api/v1/experiments", {"name": ""}, 422),
    ("post", "/api/v1/experiments", None, 422),
    ("get", "/api/v1/experiments/77", None, 404),
    ("post", "/api/v1/experiments/1/stop", None, 409),
    ("post", "/api/v1/experiments/1/assignments", {"recipients": [{"id": "a@b"}]}, 422),
    ("delete", "/api/v1/experiments/1", None, 405),
])
def test_error_responses_match_the_error_schema(client, auth, document, method, path, body, status):
    client.post("/api/v1/experiments", headers=auth, json={"name": "x", "variants": [{"key": "A"}, {"key": "B"}]})
    resp = getattr(client, method)(path, headers=auth, **({"json": body} if body is not None else {}))
    assert resp.status_code == status
    assert_matches(document, "Error", resp.get_json())
    unauthorized = client.get("/api/v1/experiments")
    assert unauthorized.status_code == 401
    assert_matches(document, "Error", unauthorized.get_json())


def test_ingestion_responses_match_their_schemas(app, client, auth, document):
    if not any(rule.rule == "/api/v1/sends" for rule in app.url_map.iter_rules()):
        pytest.skip("/api/v1/sends is not registered yet (ingestion engineer)")
    exp = client.post("/api/v1/experiments", headers=auth, json={
        "name": "x", "variants": [{"key": "A", "subject": "a"}, {"key": "B", "subject": "b"}]}).get_json()
    client.post(f"/api/v1/experiments/{exp['id']}/start", headers=auth)
    now = datetime.now(UTC).isoformat()
    sends = {"sends": [
        {"send_id": "s-1", "recipient_id": "lead-1", "segment": "ent", "owner_id": "rep-1", "experiment_id": exp["id"],
         "variant": "B", "sent_at": now, "links": ["https://example.com/a"],
         "html": '<html><body><a href="https://example.com/a">a</a></body></html>'},
        {"send_id": "s-2", "recipient_id": "lead-2", "subject": "plain", "campaign": "c", "sent_at": now}]}
    assert_matches(document, "SendBatch", sends)  # the example request is valid per the document
    resp = client.post("/api/v1/sends", headers=auth, json=sends)
    assert resp.status_code == 201, resp.get_json()
    assert_matches(document, "SendResult", resp.get_json())
    conversions = {"conversions": [
        {"conversion_id": "c-1", "kind": "deal", "recipient_id": "lead-1", "send_id": "s-1", "occurred_at": now,
         "amount": 1200000},
        {"conversion_id": "c-2", "kind": "meeting", "recipient_id": "lead-2", "occurred_at": now}]}
    assert_matches(document, "ConversionBatch", conversions)
    resp = client.post("/api/v1/conversions", headers=auth, json=conversions)
    assert resp.status_code == 201, resp.get_json()
    assert_matches(document, "ConversionResult", resp.get_json())
    owners = {"owners": [{"id": "rep-7", "name": "山田 太郎", "team": "東京IS"}]}
    assert_matches(document, "OwnerBatch", owners)
    resp = client.put("/api/v1/owners", headers=auth, json=owners)
    assert resp.status_code == 200, resp.get_json()
    assert_matches(document, "OwnerList", resp.get_json())
    assert_matches(document, "OwnerList", client.get("/api/v1/owners", headers=auth).get_json())
    metrics = client.get(f"/api/v1/experiments/{exp['id']}/metrics", headers=auth).get_json()
    assert_matches(document, "ExperimentMetrics", metrics)
    assert [(v["key"], v["sends"], v["deals"], v["deal_amount"]) for v in metrics["variants"]] == [
        ("A", 0, 0, 0), ("B", 1, 1, 1200000)]
