"""The OpenAPI 3.0 document of the REST API, written by hand, served at ``/openapi.json``.

Written rather than generated so that it says exactly what the handlers
answer; the schemathesis test (tests/test_api_schema.py) holds the two
together.  When a token is configured, every operation but ``/ping``
declares bearer security.
"""

from __future__ import annotations

import copy
from typing import Any

from loader.manifest import load_schema
from loader.names import NAME_PATTERN

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


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
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "stable machine-readable code", "example": "not_found"},
                "message": {"type": "string", "description": "what was wrong and what to do"},
            },
        },
        "Message": {
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        },
        "RuleResult": {
            "type": "object",
            "required": ["message", "state"],
            "properties": {
                "message": {"type": "string"},
                "state": {"type": "string", "enum": ["running", "stopped", "waiting", "error"]},
                "reason": {"type": "string"},
            },
        },
        "PluginInstall": {
            "type": "object",
            "required": ["name", "file"],
            "properties": {
                "name": {**NAME, "description": "the plugin name: its folder and manifest name"},
                "file": {"type": "string", "pattern": "^(file|https?)://",
                         "description": "zip of the plugin folder: http(s), or file:///path.zip on the loader's host "
                                        "(under systemd its /tmp is private: upload the zip as the body instead)"},
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
            "required": ["name", "refCount", "status", "errMsg", "pid", "state", "version", "previousVersion",
                         "restarts", "since"],
            "properties": {
                "name": {"type": "string"},
                "refCount": {"type": "object", "additionalProperties": {"type": "integer"},
                             "description": "running rule id -> symbols of this plugin it uses (eKuiper)"},
                "status": {"type": "string", "enum": ["running", "initializing", "error", "stop"],
                           "description": "eKuiper's status word"},
                "errMsg": {"type": "string"},
                "pid": {"type": "integer", "nullable": True},
                "state": {"type": "string", "enum": ["waiting", "building", "loading", "running", "restarting",
                                                     "crashloop", "invalid", "stopped"],
                          "description": "the loader's own, finer state"},
                "version": NULLABLE_STRING,
                "previousVersion": NULLABLE_STRING,
                "restarts": {"type": "integer"},
                "since": {**NULLABLE_STRING, "description": "when the state last changed, ISO 8601 UTC"},
            },
        },
        "PluginResult": {
            "allOf": [_ref("PluginStatus"), {
                "type": "object",
                "required": ["warnings"],
                "properties": {"warnings": {"type": "array", "items": {"type": "string"}}},
            }],
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
            "example": {"sql": "CREATE STREAM demo () WITH (TYPE=\"counter\", DATASOURCE=\"demo\", FORMAT=\"json\")"},
        },
        "StreamDetail": {
            "type": "object",
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
            "required": ["Name"],
            "properties": {
                "Name": {"type": "string"},
                "Options": {"type": "object", "additionalProperties": {"type": "string"}},
                "sql": {"type": "string"},
                "fields": {"type": "string"},
                "error": {"type": "string", "description": "why the current file is not used"},
            },
        },
        "Rule": _rule_schema(id_required=True),
        "RuleUpdate": _rule_schema(id_required=False),
        "RuleDefinition": {"type": "object", "additionalProperties": True,
                           "description": "the rule file as stored (eKuiper's rule JSON)"},
        "RuleBrief": {
            "type": "object",
            "required": ["id", "status", "state"],
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string",
                           "description": "eKuiper's text: Running, Running: degraded: <causes>, or Stopped: <reason>"},
                "state": {"type": "string", "enum": ["running", "degraded", "stopped", "waiting", "error"]},
            },
        },
        "RuleStatus": {
            "type": "object",
            "required": ["status", "lastStopTimestamp"],
            "properties": {
                "status": {"type": "string", "enum": ["running", "degraded", "stopped", "waiting", "error"]},
                "message": {"type": "string"},
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
            "description": "eKuiper's metric names: source_<stream>_0_records_in_total, op_..., sink_<type>_<n>_...; "
                           "per node also <node>_last_record_in_time and <node>_last_record_out_time (ms, 0: never)",
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
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": dict(NAME), "description": description}


ZIP = "application/zip"


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, tag: str, zip_body: bool = False) -> dict[str, Any]:
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
    exists = _error("the resource exists already, or a symbol belongs to another plugin")
    ok_message = _json(_ref("Message"), "done")
    plugin = _path_param("name", "plugin name")
    stream = _path_param("name", "stream name")
    rule = _path_param("id", "rule id")
    udf = _path_param("name", "function name")
    upload_name = {"name": "name", "in": "query", "required": False, "schema": dict(NAME),
                   "description": "plugin name, for a zip sent as the body (must equal the JSON body's name otherwise)"}
    unwritable = _error("the loader cannot write its directories (permissions, read-only); the message names the "
                        "path and the fix")
    full = _error("no space left where the loader writes; the message names the path")

    paths: dict[str, Any] = {
        "/ping": {"get": {**_op("Liveness: 200 with an empty body", {"200": {"description": "the loader is up"}},
                                tag="loader"), "security": []}},
        "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.0 document")},
                                     tag="loader")},
        "/status": {"get": _op("Loader overview: every plugin's status, rule counts",
                               {"200": _json(_ref("Overview"), "overview")}, tag="loader")},
        "/metrics": {"get": _op("Prometheus metrics: plugin states and restarts, rule states and record counters",
                                {"200": {"description": "Prometheus text format",
                                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
                                tag="loader")},
        "/plugins/portables": {
            "get": _op("List loaded portable plugins (their manifests)",
                       {"200": _json({"type": "array", "items": _ref("PluginInfo")}, "manifests")}, tag="plugins"),
            "post": _op("Install a plugin from a zip; answers once it runs (201) or failed (400, rolled back). "
                        "The zip comes from the URL in the JSON body (eKuiper's form) or is the body itself "
                        "(Content-Type: application/zip, with ?name=)",
                        {"201": _json(_ref("PluginResult"), "installed and running"), "400": bad, "409": exists,
                         "503": unwritable, "507": full},
                        body=_ref("PluginInstall"), params=[upload_name], tag="plugins", zip_body=True),
        },
        "/plugins/portables/{name}": {
            "get": _op("Describe a loaded plugin (its manifest)",
                       {"200": _json(_ref("PluginInfo"), "manifest"), "404": missing}, params=[plugin], tag="plugins"),
            "put": _op("Update a plugin from a zip; running rules move to the new process, a failed update "
                       "restores the previous version",
                       {"200": _json(_ref("PluginResult"), "updated and running"), "400": bad, "404": missing,
                        "409": exists, "503": unwritable, "507": full}, body=_ref("PluginUpdate"), params=[plugin],
                       tag="plugins", zip_body=True),
            "delete": _op("Delete a plugin (rules using it wait for a new provider)",
                          {"200": ok_message, "404": missing}, params=[plugin], tag="plugins"),
        },
        "/plugins/portables/{name}/status": {
            "get": _op("Plugin status: eKuiper's refCount, status, errMsg, pid and the loader's details",
                       {"200": _json(_ref("PluginStatus"), "status"), "404": missing}, params=[plugin],
                       tag="plugins"),
        },
        "/plugins/udfs": {
            "get": _op("Functions provided by portable plugins",
                       {"200": _json({"type": "array", "items": {"type": "string"}}, "names")}, tag="plugins"),
        },
        "/plugins/udfs/{name}": {
            "get": _op("Which plugin provides a function", {"200": _json(_ref("Udf"), "function"), "404": missing},
                       params=[udf], tag="plugins"),
        },
        "/streams": {
            "get": _op("Stream names", {"200": _json({"type": "array", "items": {"type": "string"}}, "names")},
                       tag="streams"),
            "post": _op("Create a stream (its source need not be installed yet)",
                        {"201": ok_message, "400": bad, "409": exists}, body=_ref("StreamBody"), tag="streams"),
        },
        "/streamdetails": {
            "get": _op("Every stream with its source type and format",
                       {"200": _json({"type": "array", "items": _ref("StreamDetail")}, "streams")}, tag="streams"),
        },
        "/streams/{name}": {
            "get": _op("Describe a stream", {"200": _json(_ref("Stream"), "stream"), "404": missing},
                       params=[stream], tag="streams"),
            "put": _op("Replace a stream's SQL (rules on it restart)",
                       {"200": ok_message, "400": bad, "404": missing}, body=_ref("StreamBody"), params=[stream],
                       tag="streams"),
            "delete": _op("Drop a stream (rules on it wait)", {"200": ok_message, "404": missing}, params=[stream],
                          tag="streams"),
        },
        "/rules": {
            "get": _op("Rules with a brief status",
                       {"200": _json({"type": "array", "items": _ref("RuleBrief")}, "rules")}, tag="rules"),
            "post": _op("Create (and start, unless triggered is false) a rule; 400 if anything it needs is missing",
                        {"201": _json(_ref("RuleResult"), "created"), "400": bad, "409": exists}, body=_ref("Rule"),
                        tag="rules"),
        },
        "/rules/{id}": {
            "get": _op("The rule as stored", {"200": _json(_ref("RuleDefinition"), "rule"), "404": missing},
                       params=[rule], tag="rules"),
            "put": _op("Replace a rule (it restarts)",
                       {"200": _json(_ref("RuleResult"), "updated"), "400": bad, "404": missing},
                       body=_ref("RuleUpdate"), params=[rule], tag="rules"),
            "delete": _op("Delete a rule", {"200": ok_message, "404": missing}, params=[rule], tag="rules"),
        },
        "/rules/{id}/status": {
            "get": _op("Rule status and metrics (eKuiper's names)",
                       {"200": _json(_ref("RuleStatus"), "status"), "404": missing}, params=[rule], tag="rules"),
        },
    }
    for action, summary in (("start", "Start a rule (persisted: triggered true)"),
                            ("stop", "Stop a rule (persisted: triggered false)"),
                            ("restart", "Restart a rule")):
        paths[f"/rules/{{id}}/{action}"] = {
            "post": _op(summary, {"200": _json(_ref("RuleResult"), "done"), "400": bad, "404": missing},
                        params=[rule], tag="rules"),
        }
    for kind in ("sources", "sinks", "functions"):
        paths[f"/{kind}"] = {
            "get": _op(f"Every available {kind[:-1]}: built in or from a portable plugin, with its version",
                       {"200": _json({"type": "array", "items": _ref("Symbol")}, kind)}, tag="symbols"),
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
            "description": "eKuiper-compatible management of portable plugins, streams and rules. Errors are "
                           "{\"error\": code, \"message\": text}. See docs/rest.md.",
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if token_required:
        document["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearerAuth": []}]
    return document
