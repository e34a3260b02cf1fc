"""The OpenAPI 3.0 document of the REST API, written by hand, served at ``/openapi.json``.

Written rather than generated so that it says exactly what the handlers
answer; the schemathesis test (tests/test_api_schema.py) holds the two
together.  The answers are eKuiper's: success messages and errors are
``text/plain`` (an error's text is eKuiper's JSON ``{"error": <number>,
"message": ...}`` plus the loader's ``code``), lists and descriptions JSON.
When a token is configured, every operation but ``/ping`` declares bearer
security.
"""

from __future__ import annotations

import copy
from typing import Any

from loader.manifest import load_schema
from loader.names import NAME_PATTERN

JSON = "application/json"
TEXT = "text/plain"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _text(description: str, example: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if example is not None:
        schema["example"] = example
    return {"description": description, "content": {TEXT: {"schema": schema}}}


ERROR_FORMAT = (
    'eKuiper\'s error, as text: {"error": <number>, "message": "...", "code": "<word>"}; number 1000 a '
    "bad request, 1002 not found, 2201 a sink not defined, 3000 a stream error, 5000 no such metadata; "
    "code is the loader's stable word for scripts"
)


def _error(description: str) -> dict[str, Any]:
    return _text(f"{description}. {ERROR_FORMAT}", '{"error":1000,"message":"...","code":"invalid_json"}')


NAME = {"type": "string", "pattern": NAME_PATTERN}
NULLABLE_STRING = {"type": "string", "nullable": True}


def _rule_schema(id_required: bool) -> dict[str, Any]:
    """schema/rule.schema.json (what the loader validates rule files with) in OpenAPI 3.0 terms."""
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


def _schemas() -> dict[str, Any]:
    symbols = {"type": "array", "items": {"type": "string"}}
    return {
        "PluginInstall": {
            "type": "object",
            "required": ["name", "file"],
            "properties": {
                "name": {**NAME, "description": "the plugin name: its folder and manifest name"},
                "file": {
                    "type": "string",
                    "pattern": "^(file|https?)://",
                    "description": "zip of the plugin folder: http(s), or file:///path.zip on the loader's host "
                    "(under systemd its /tmp is private: upload the zip as the body instead)",
                },
            },
            "example": {"name": "demo", "file": "https://example.com/demo.zip"},
        },
        "PluginUpdate": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "name": {**NAME, "description": "optional; must equal the name in the path"},
                "file": {"type": "string", "pattern": "^(file|https?)://"},
            },
            "example": {"name": "demo", "file": "https://example.com/demo-v2.zip"},
        },
        "PluginInfo": {
            "type": "object",
            "description": "the plugin's manifest as loaded, with its name",
            "required": ["name", "version", "language", "executable", "sources", "sinks", "functions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "language": {"type": "string"},
                "executable": {"type": "string"},
                "sources": symbols,
                "sinks": symbols,
                "functions": symbols,
            },
            "additionalProperties": True,
        },
        "PluginStatus": {
            "type": "object",
            "required": [
                "name",
                "refCount",
                "status",
                "errMsg",
                "pid",
                "state",
                "version",
                "previousVersion",
                "restarts",
                "since",
            ],
            "properties": {
                "name": {"type": "string"},
                "refCount": {
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                    "description": "running rule id -> symbols of this plugin it uses (eKuiper)",
                },
                "status": {
                    "type": "string",
                    "enum": ["running", "initializing", "error", "stop"],
                    "description": "eKuiper's status word",
                },
                "errMsg": {"type": "string"},
                "pid": {"type": "integer", "nullable": True},
                "state": {
                    "type": "string",
                    "enum": [
                        "waiting",
                        "building",
                        "starting",
                        "probation",
                        "running",
                        "restarting",
                        "crashloop",
                        "rolled_back",
                        "invalid",
                        "stopped",
                    ],
                    "description": "the loader's own, finer state (docs/architecture.md, Supervision)",
                },
                "version": NULLABLE_STRING,
                "previousVersion": NULLABLE_STRING,
                "restarts": {"type": "integer"},
                "since": {**NULLABLE_STRING, "description": "when the state last changed, ISO 8601 UTC"},
                "failedVersion": {
                    **NULLABLE_STRING,
                    "description": "a version that was refused, or failed its "
                    "probation and was rolled back; until the folder changes again",
                },
                "failedError": {**NULLABLE_STRING, "description": "why failedVersion failed"},
                "warnings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "what the last install or update over REST could not do (files kept)",
                },
            },
        },
        "Symbol": {
            "type": "object",
            "required": ["name", "type", "plugin", "version"],
            "properties": {
                "name": {"type": "string"},
                "type": {"type": "string", "enum": ["builtin", "plugin-portable"]},
                "plugin": NULLABLE_STRING,
                "version": NULLABLE_STRING,
            },
        },
        "Udf": {
            "type": "object",
            "required": ["name", "plugin"],
            "properties": {"name": {"type": "string"}, "plugin": {"type": "string"}},
        },
        "StreamBody": {
            "type": "object",
            "required": ["sql"],
            "properties": {"sql": {"type": "string", "minLength": 1}},
            "example": {"sql": 'CREATE STREAM demo () WITH (TYPE="counter", DATASOURCE="demo", FORMAT="json")'},
        },
        "StreamDetail": {
            "type": "object",
            "description": "eKuiper's name, type, format; the rest are the loader's",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "type": {"type": "string"},
                "format": {"type": "string"},
                "datasource": {"type": "string"},
                "confKey": {"type": "string"},
                "shared": {"type": "boolean"},
                "error": {"type": "string"},
            },
        },
        "Stream": {
            "type": "object",
            "description": "eKuiper's description of a stream; sql and error are the loader's",
            "required": ["Name", "StreamFields", "Options", "StreamType", "Statement"],
            "properties": {
                "Name": {"type": "string"},
                "StreamFields": {"type": "array", "nullable": True, "items": {"type": "object"}},
                "Options": {
                    "type": "object",
                    "nullable": True,
                    "additionalProperties": True,
                    "properties": {k: {"type": "string"} for k in ("datasource", "format", "confKey", "type")},
                },
                "StreamType": {"type": "integer"},
                "Statement": {"type": "string", "nullable": True},
                "sql": {"type": "string"},
                "error": {"type": "string", "description": "why the current file is not used"},
            },
        },
        "Rule": _rule_schema(id_required=True),
        "RuleUpdate": _rule_schema(id_required=False),
        "RuleDefinition": {
            "type": "object",
            "additionalProperties": True,
            "description": "the rule file as stored (eKuiper's rule JSON)",
        },
        "RuleBrief": {
            "type": "object",
            "required": ["id", "name", "status", "tags", "trace", "version", "state"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "status": {"type": "string", "enum": ["running", "stopped"], "description": "eKuiper's"},
                "tags": {"type": "array", "nullable": True, "items": {"type": "string"}},
                "trace": {"type": "boolean"},
                "version": {"type": "string"},
                "state": {
                    "type": "string",
                    "enum": ["running", "degraded", "stopped", "waiting", "error"],
                    "description": "the loader's finer state",
                },
                "message": {"type": "string", "description": "why the rule is degraded, waiting or failed"},
            },
        },
        "RuleTopo": {
            "type": "object",
            "required": ["sources", "edges"],
            "properties": {
                "sources": {"type": "array", "items": {"type": "string"}},
                "edges": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
        },
        "RuleStatus": {
            "type": "object",
            "required": ["status", "message", "lastStartTimestamp", "lastStopTimestamp", "nextStartTimestamp", "state"],
            "properties": {
                "status": {"type": "string", "enum": ["running", "stopped"], "description": "eKuiper's"},
                "state": {
                    "type": "string",
                    "enum": ["running", "degraded", "stopped", "waiting", "error"],
                    "description": "the loader's finer state",
                },
                "message": {"type": "string"},
                "nextStartTimestamp": {"type": "integer"},
                "causes": {
                    "type": "array",
                    "description": "why a degraded rule does not work: one entry per symbol and cause",
                    "items": {
                        "type": "object",
                        "required": ["symbol", "plugin", "cause", "message"],
                        "properties": {k: {"type": "string"} for k in ("symbol", "plugin", "cause", "message")},
                    },
                },
                "lastStopTimestamp": {"type": "integer"},
                "lastStartTimestamp": {"type": "integer"},
            },
            "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "string"}]},
            "description": "eKuiper 2.x's node metrics while the rule runs: source_<stream>_0_records_in_total, "
            "op_2_ratelimit_0_..., op_3_project_0_..., op_<sink>_<i>_0_transform_0_..., "
            "op_<sink>_<i>_1_encode_0_..., sink_<sink>_<i>_0_...; per node also the loader's "
            "<node>_last_record_in_time and <node>_last_record_out_time (ms, 0: never)",
        },
        "Overview": {
            "type": "object",
            "required": ["version", "plugins", "rules", "streams"],
            "properties": {
                "version": {"type": "string"},
                "plugins": {"type": "array", "items": _ref("PluginStatus")},
                "rules": {"type": "object", "additionalProperties": {"type": "integer"}},
                "streams": {"type": "integer"},
            },
        },
        "MetadataBrief": {
            "type": "object",
            "required": ["name", "about"],
            "properties": {"name": {"type": "string"}, "about": {"type": "object"}},
        },
        "Metadata": {
            "type": "object",
            "description": "eKuiper's UI metadata of a symbol, from the plugin's <kind>/<symbol>.json (or minimal)",
            "required": ["about", "libs", "properties", "node"],
            "properties": {
                "about": {"type": "object"},
                "libs": {"type": "array", "items": {"type": "string"}},
                "properties": {},
                "node": {"nullable": True},
                "error": {"type": "string"},
            },
        },
        "FunctionMetadata": {
            "type": "object",
            "required": ["about", "name", "functions"],
            "properties": {
                "about": {"type": "object"},
                "name": {"type": "string"},
                "functions": {"type": "array", "items": {"type": "object"}},
                "error": {"type": "string"},
            },
        },
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": dict(NAME), "description": description}


ZIP = "application/zip"


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    tag: str,
    zip_body: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if zip_body:  # our addition: the plugin zip itself as the body
        op["requestBody"]["content"][ZIP] = {"schema": {"type": "string", "format": "binary"}}
    if params:
        op["parameters"] = params
    return op


def build_openapi(token_required: bool, version: str) -> dict[str, Any]:
    bad = _error("the request is invalid; the message says which part and why")
    missing = _error("no such resource")
    unwritable = _error(
        "the loader cannot write its directories (permissions, read-only), or all plugin downloads "
        "are busy (limits.download_workers, with Retry-After); the message names the path and the fix"
    )
    full = _error("no space left where the loader writes; the message names the path")
    plugin = _path_param("name", "plugin name")
    stream = _path_param("name", "stream name")
    rule = _path_param("id", "rule id")
    udf = _path_param("name", "function name")
    symbol = _path_param("name", "source or sink name")
    upload_name = {
        "name": "name",
        "in": "query",
        "required": False,
        "schema": dict(NAME),
        "description": "plugin name, for a zip sent as the body (must equal the JSON body's name otherwise)",
    }
    force = {
        "name": "force",
        "in": "query",
        "required": False,
        "schema": {
            "type": "string",
            "enum": ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"],
        },
        "description": "drop the stream even while rules read it (eKuiper's)",
    }

    paths: dict[str, Any] = {
        "/": {
            "get": _op(
                "eKuiper's node information: version, os, arch, upTimeSeconds (JSON, served as text)",
                {"200": _text("information")},
                tag="loader",
            )
        },
        "/ping": {
            "get": {
                **_op("Liveness: 200 with an empty body", {"200": {"description": "the loader is up"}}, tag="loader"),
                "security": [],
            }
        },
        "/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.0 document")}, tag="loader")
        },
        "/status": {
            "get": _op(
                "Loader overview: every plugin's status, rule counts (the loader's addition)",
                {"200": _json(_ref("Overview"), "overview")},
                tag="loader",
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics: plugin states and restarts, rule states and record counters",
                {"200": _text("Prometheus text format")},
                tag="loader",
            )
        },
        "/plugins/portables": {
            "get": _op(
                "List loaded portable plugins (their manifests)",
                {"200": _json({"type": "array", "items": _ref("PluginInfo")}, "manifests")},
                tag="plugins",
            ),
            "post": _op(
                "Install a plugin from a zip; answers once it runs (201) or failed (400, rolled back). "
                "The zip comes from the URL in the JSON body (eKuiper's form) or is the body itself "
                "(Content-Type: application/zip, with ?name=)",
                {
                    "201": _text("installed and running", "portable plugin demo is created"),
                    "400": bad,
                    "503": unwritable,
                    "507": full,
                },
                body=_ref("PluginInstall"),
                params=[upload_name],
                tag="plugins",
                zip_body=True,
            ),
        },
        "/plugins/portables/{name}": {
            "get": _op(
                "Describe a loaded plugin (its manifest)",
                {"200": _json(_ref("PluginInfo"), "manifest"), "404": missing},
                params=[plugin],
                tag="plugins",
            ),
            "put": _op(
                "Update a plugin from a zip (installs it if there is none, as eKuiper does); running rules "
                "move to the new process, a failed update restores the previous version",
                {
                    "200": _text("updated and running", "portable plugin demo is updated"),
                    "400": bad,
                    "503": unwritable,
                    "507": full,
                },
                body=_ref("PluginUpdate"),
                params=[plugin],
                tag="plugins",
                zip_body=True,
            ),
            "delete": _op(
                "Delete a plugin (rules using it wait for a new provider)",
                {"200": _text("deleted", "portable plugin demo is deleted"), "400": bad},
                params=[plugin],
                tag="plugins",
            ),
        },
        "/plugins/portables/{name}/status": {
            "get": _op(
                "Plugin status: eKuiper's refCount, status, errMsg, and the loader's details",
                {"200": _json(_ref("PluginStatus"), "status"), "404": missing},
                params=[plugin],
                tag="plugins",
            ),
        },
        "/plugins/udfs": {
            "get": _op(
                "Functions provided by portable plugins",
                {"200": _json({"type": "array", "items": {"type": "string"}}, "names")},
                tag="plugins",
            ),
        },
        "/plugins/udfs/{name}": {
            "get": _op(
                "Which plugin provides a function",
                {"200": _json(_ref("Udf"), "function"), "404": missing},
                params=[udf],
                tag="plugins",
            ),
        },
        "/streams": {
            "get": _op(
                "Stream names", {"200": _json({"type": "array", "items": {"type": "string"}}, "names")}, tag="streams"
            ),
            "post": _op(
                "Create a stream (its source need not be installed yet)",
                {"201": _text("created", "Stream demo is created."), "400": bad},
                body=_ref("StreamBody"),
                tag="streams",
            ),
        },
        "/streamdetails": {
            "get": _op(
                "Every stream with its source type and format",
                {"200": _json({"type": "array", "items": _ref("StreamDetail")}, "streams")},
                tag="streams",
            ),
        },
        "/streams/{name}": {
            "get": _op(
                "Describe a stream",
                {"200": _json(_ref("Stream"), "stream"), "400": missing},
                params=[stream],
                tag="streams",
            ),
            "put": _op(
                "Replace a stream's SQL, or create the stream (rules on it restart)",
                {"200": _text("replaced", "Stream demo is replaced."), "400": bad},
                body=_ref("StreamBody"),
                params=[stream],
                tag="streams",
            ),
            "delete": _op(
                "Drop a stream; refused while rules read it, unless force=true (they then wait)",
                {"200": _text("dropped", "Stream demo is dropped."), "400": bad},
                params=[stream, force],
                tag="streams",
            ),
        },
        "/rules": {
            "get": _op(
                "Rules with a brief status",
                {"200": _json({"type": "array", "items": _ref("RuleBrief")}, "rules")},
                tag="rules",
            ),
            "post": _op(
                "Create (and start, unless triggered is false) a rule; 400 if anything it needs is missing",
                {"201": _text("created", "Rule demo was created successfully."), "400": bad},
                body=_ref("Rule"),
                tag="rules",
            ),
        },
        "/rules/{id}": {
            "get": _op(
                "The rule as stored",
                {"200": _json(_ref("RuleDefinition"), "rule"), "404": missing},
                params=[rule],
                tag="rules",
            ),
            "put": _op(
                "Replace a rule, or create it (it restarts)",
                {"200": _text("updated", "Rule demo was updated successfully."), "400": bad},
                body=_ref("RuleUpdate"),
                params=[rule],
                tag="rules",
            ),
            "delete": _op(
                "Delete a rule",
                {"200": _text("dropped", "Rule demo is dropped."), "400": bad},
                params=[rule],
                tag="rules",
            ),
        },
        "/rules/{id}/status": {
            "get": _op(
                "Rule status and metrics (eKuiper's names)",
                {"200": _json(_ref("RuleStatus"), "status"), "404": missing},
                params=[rule],
                tag="rules",
            ),
        },
        "/rules/{id}/topo": {
            "get": _op(
                "The rule's nodes and edges (eKuiper's names)",
                {"200": _json(_ref("RuleTopo"), "topology"), "404": missing},
                params=[rule],
                tag="rules",
            ),
        },
    }
    for action, summary, answer in (
        ("start", "Start a rule (persisted: triggered true)", "Rule demo was started"),
        ("stop", "Stop a rule (persisted: triggered false)", "Rule demo was stopped."),
        ("restart", "Restart a rule", "Rule demo was restarted"),
    ):
        paths[f"/rules/{{id}}/{action}"] = {
            "post": _op(
                summary, {"200": _text("done", answer), "400": bad, "404": missing}, params=[rule], tag="rules"
            ),
        }
    for kind in ("sources", "sinks", "functions"):
        paths[f"/{kind}"] = {
            "get": _op(
                f"Every available {kind[:-1]}: built in or from a portable plugin, with its version (the "
                "loader's addition)",
                {"200": _json({"type": "array", "items": _ref("Symbol")}, kind)},
                tag="symbols",
            ),
        }
        item = _ref("FunctionMetadata") if kind == "functions" else _ref("MetadataBrief")
        paths[f"/metadata/{kind}"] = {
            "get": _op(
                f"eKuiper's metadata of every {kind[:-1]}",
                {"200": _json({"type": "array", "items": item}, "metadata")},
                tag="metadata",
            ),
        }
    for kind in ("sources", "sinks"):
        paths[f"/metadata/{kind}/{{name}}"] = {
            "get": _op(
                f"eKuiper's metadata of one {kind[:-1]}: about, libs, properties, node",
                {"200": _json(_ref("Metadata"), "metadata"), "400": missing},
                params=[symbol],
                tag="metadata",
            ),
        }
    unauthorized = _error("missing or wrong bearer token")
    for operations in paths.values():
        for operation in operations.values():
            if token_required and operation.get("security") != []:
                operation["responses"]["401"] = unauthorized

    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "portable-loader REST API",
            "version": version,
            "description": "eKuiper-compatible management of portable plugins, streams and rules, answering as "
            "eKuiper 2.x does. " + ERROR_FORMAT + ". See docs/rest.md.",
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if token_required:
        document["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearerAuth": []}]
    return document
