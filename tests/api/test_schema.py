"""schemathesis against the served OpenAPI document of a live loader (REST on, token on, demo plugin).

Every operation is fed generated requests, valid and invalid; no answer may be
a 5xx, every answer must match the document (status code, content type,
body schema), invalid input must be refused with a 4xx, and the token must be
enforced.  ``positive_data_acceptance`` is left out on purpose: a rule or
stream that matches the schema can still be refused because its SQL is not
in the subset or its plugin is not installed, which no schema can say.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from tests.support.api import REPO, start_api
from tests.support.processes import ProcessTracker

# A live API server, driven over HTTP by schemathesis.
pytestmark = [pytest.mark.e2e]

TOKEN = "schema-test-token"
EXAMPLES = int(os.environ.get("API_SCHEMA_EXAMPLES", "20"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
    openapi_checks.unsupported_method,
]


@pytest.fixture(scope="module")
def live_api():
    tracker = ProcessTracker()
    root = Path(tempfile.mkdtemp(prefix="pl-schema-"))
    ipc = Path(tempfile.mkdtemp(prefix="pl-", dir="/tmp"))
    try:
        plugins = root / "plugins"
        shutil.copytree(REPO / "plugins" / "portable" / "demo", plugins / "demo")
        api = start_api(tracker, plugins, ipc, root / "data", extra=f"etc_dir: {root / 'etc'}\n", token=TOKEN)
        api.ok(
            "POST", "/streams", {"sql": 'CREATE STREAM demo () WITH (TYPE="counter", DATASOURCE="demo")'}, expect=201
        )
        api.ok(
            "POST",
            "/rules",
            {"id": "demo", "sql": "SELECT n, revert(name) AS r FROM demo", "actions": [{"nop": {}}]},
            expect=201,
        )
        yield api
    finally:
        tracker.cleanup()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ipc, ignore_errors=True)


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api.url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})


def _keep_local(case) -> None:
    """Generated plugin URLs must never make the loader download from another host: point them at loopback."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("file"), str):
        try:
            parts = urlsplit(body["file"])
            local = parts.scheme not in ("http", "https") and parts.netloc in ("", "localhost")
        except ValueError:
            local = True  # the loader refuses it as it is
        if not local:
            body["file"] = "http://127.0.0.1:9/plugin.zip"  # the discard port: refused at once


def _operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


# pytest 9 and schemathesis' own pytest integration (schema.parametrize) disagree on node ids, so the
# operations are driven with plain Hypothesis: every operation, valid and invalid data.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_conforms_to_its_openapi_document(live_api, api_schema, mode):
    operations = _operations(api_schema)
    document = live_api.ok("GET", "/openapi.json")
    documented = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    assert {op.label for op in operations} == documented - {"GET /openapi.json"}  # schemathesis skips its source

    negated = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.generate],
        )
        def run(case) -> None:
            _keep_local(case)
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=30)

        if mode is GenerationMode.NEGATIVE:
            try:
                run()
            except Unsatisfiable:  # nothing to negate: no parameters and no body
                continue
            negated += 1
        else:
            run()
    assert mode is GenerationMode.POSITIVE or negated >= 20
    # The fixtures survived the onslaught: the demo rule still runs.
    assert live_api.ok("GET", "/rules/demo/status")["state"] in ("running", "waiting")


def test_document_lists_every_route_and_undocumented_methods_get_405(live_api, api_schema):
    from loader.api.app import Api

    routes = {route.path: route.methods for route in Api(None).routes()}
    document = live_api.ok("GET", "/openapi.json")
    assert set(document["paths"]) == set(routes)
    for path, operations in document["paths"].items():
        assert {m.upper() for m in operations} | {"HEAD"} >= routes[path] - {"HEAD"}
        assert routes[path] - {"HEAD"} == {m.upper() for m in operations}, path
        concrete = path.replace("{name}", "demo").replace("{id}", "demo")
        for method in {"GET", "POST", "PUT", "DELETE", "PATCH"} - routes[path]:
            status, body = live_api.call(method, concrete, {} if method in ("POST", "PUT", "PATCH") else None)
            assert status == 405 and body is None, (method, path, status, body)  # eKuiper's: an empty 405


def test_answers_about_existing_resources_match_the_document(live_api, api_schema):
    """Generated names rarely hit what exists; these cases do, so the success shapes are checked too."""
    checked = 0
    for operation in _operations(api_schema):
        method, path = operation.label.split(" ", 1)
        if "{" not in path or method not in ("GET", "POST"):
            continue
        parameter = "id" if "{id}" in path else "name"
        value = {"/plugins/udfs": "revert", "/metadata/sources": "counter", "/metadata/sinks": "print"}.get(
            path.rsplit("/", 1)[0], "demo"
        )
        case = operation.Case(path_parameters={parameter: value})
        response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=30)
        assert response.status_code == 200, (operation.label, response.text)
        checked += 1
    assert checked == 12
    assert live_api.ok("GET", "/rules/demo/status")["sink_nop_0_0_records_in_total"] >= 0
