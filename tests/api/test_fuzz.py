"""Fuzz the whole API from its OpenAPI document with schemathesis, on every configured database.

Positive and negative examples for every operation of /api/v1/openapi.json (experiments, sends,
conversions, owners, the tracking endpoints), sent through the WSGI app with a real Bearer key:
- no 5xx, ever;
- every 4xx under /api/ is JSON with `error`, `message` and `field`;
- status code, content type and response body match the document;
- negative examples (requests the document forbids) are rejected with a 4xx.
Examples per operation and mode are bounded so each database's run stays well under two minutes.

(schemathesis' own pytest integration, `schemathesis.pytest.from_fixture`, reads a private pytest
attribute that pytest 9 removed, so the operations are parametrized here and each one runs its
hypothesis strategy directly.)
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance, status_code_conformance)

from emailexp.api.openapi import PATHS

# Operations owned by the ingestion engineer; until their routes are registered they answer 404 and
# are skipped with that reason instead of failing here.
PARALLEL_PATHS = ("/api/v1/sends", "/api/v1/conversions", "/api/v1/owners")
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
OPERATIONS = [(method.upper(), path) for path, item in PATHS.items() for method in item if method in HTTP_METHODS]
#: Operations whose only inputs are free-form string path parameters or nothing at all.
NOTHING_TO_NEGATE = {("GET", "/api/v1/openapi.json"), ("GET", "/api/v1/owners"), ("GET", "/o/{token}.gif"),
                     ("GET", "/c/{token}")}
MAX_EXAMPLES = 25

pytestmark = pytest.mark.slow


@pytest.fixture
def seeded(client, auth):
    """Experiments in every state, so generated ids 1..3 reach real rows and not only 404s."""
    for name in ("draft", "running", "stopped"):
        resp = client.post("/api/v1/experiments", headers=auth, json={
            "name": name, "variants": [{"key": "A", "subject": "a"}, {"key": "B", "subject": "b", "segment": "smb"}]})
        assert resp.status_code == 201, resp.get_json()
    for url in ("/api/v1/experiments/2/start", "/api/v1/experiments/3/start", "/api/v1/experiments/3/stop"):
        assert client.post(url, headers=auth).status_code == 200


def _registered(app, path: str) -> bool:
    rule_path = path.replace("{", "<").replace("}", ">")
    return any(rule.rule.replace("int:", "") == rule_path for rule in app.url_map.iter_rules())


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_fuzz(app, seeded, auth, method, path, mode):
    if mode is GenerationMode.NEGATIVE and (method, path) in NOTHING_TO_NEGATE:
        pytest.skip("no input of this operation can be made invalid (no body, no typed parameter)")
    if path in PARALLEL_PATHS and not _registered(app, path):
        pytest.skip(f"{path} is not registered yet (implemented in parallel by the ingestion engineer)")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.config.generation.update(with_security_parameters=False)  # the real key is sent with every call
    operation = schema[path][method]
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        if mode is GenerationMode.POSITIVE and isinstance((case.path_parameters or {}).get("experiment_id"), int):
            # Mostly the seeded experiments 1..3, sometimes a missing one (4).
            case.path_parameters["experiment_id"] = 1 + (case.path_parameters["experiment_id"] - 1) % 4
        response = case.call(headers=auth)
        case.validate_response(response, checks=checks)
        if path.startswith("/api/") and 400 <= response.status_code < 500:
            body = json.loads(response.content)
            assert {"error", "message", "field"} <= body.keys(), body
            assert isinstance(body["message"], str) and body["message"], body

    fuzz()
