"""The OpenAPI 3.0 document of the REST API, served at ``/openapi.json``.

The document is a file, ``schema/openapi.json``, written by hand rather
than generated so that it says exactly what the handlers answer; the
schemathesis test (tests/api/test_schema.py) holds the two together.  The
answers are eKuiper's: success messages and errors are ``text/plain`` (an
error's text is eKuiper's JSON ``{"error": <number>, "message": ...}`` plus
the loader's ``code``), lists and descriptions JSON.

Only what depends on the running loader is patched in here: its version;
the rule schemas, taken from ``schema/rule.schema.json`` (what rule files are
validated with), so the two cannot drift; and, when a token is configured,
bearer security on every operation but ``/ping`` with its 401 answer.
"""

from __future__ import annotations

import copy
from typing import Any

from loader.jsonschemas import load_schema

DOCUMENT = "openapi.json"
#: The answer every operation but /ping gains when a token is configured (components.responses in the file).
UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}


def build_openapi(token_required: bool, version: str) -> dict[str, Any]:
    document = copy.deepcopy(load_schema(DOCUMENT))
    document["info"]["version"] = version
    schemas = document["components"]["schemas"]
    schemas["Rule"] = _rule_schema(id_required=True)
    schemas["RuleUpdate"] = _rule_schema(id_required=False)
    if token_required:
        for operations in document["paths"].values():
            for operation in operations.values():
                if operation.get("security") != []:
                    operation["responses"]["401"] = copy.deepcopy(UNAUTHORIZED)
        document["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearerAuth": []}]
    return document


def _rule_schema(id_required: bool) -> dict[str, Any]:
    """schema/rule.schema.json in OpenAPI 3.0 terms."""
    schema = copy.deepcopy(load_schema("rule.schema.json"))
    for key in ("$schema", "$id", "title"):
        schema.pop(key, None)
    actions = schema["properties"]["actions"]["items"]
    actions.pop("propertyNames", None)  # not in OpenAPI 3.0; the handler checks sink names
    actions["additionalProperties"] = {"type": "object", "nullable": True}
    schema["properties"]["options"] = {"type": "object", "nullable": True}
    if not id_required:
        schema["required"] = [k for k in schema["required"] if k != "id"]
    return schema
