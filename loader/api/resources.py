"""Streams, rules and symbols over REST, in eKuiper's paths and shapes.

Files are the desired state: a write here is an atomic write of
``<data>/streams/<name>.json`` or ``<data>/rules/<id>.json`` followed by the
manager's reconcile of that one name, so the answer reflects the result.
A rule sent over REST is checked before it is written (valid SQL of the
subset, its stream defined, every source, sink and function available);
a rule file dropped by hand may still wait for what it needs.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from loader.api.ekuiper import ekuiper_rule_status, misplaced_stream_keyword, rule_topology, stream_options
from loader.api.errors import GENERAL, SINK_UNDEFINED, STREAM_ERROR, bad_request, conflict, not_found
from loader.api.view import LoaderView
from loader.dataplane.sink import BUILTIN_SINKS
from loader.names import is_valid_name
from loader.rules.admission import RuleRefused, Unavailable, check_rule
from loader.rules.builtins import BUILTINS
from loader.rules.definitions import DefinitionError, RuleDef, StreamDef, stream_from_json
from loader.rules.store import BadName, DefinitionStore, Exists, InUse, Refused, Unreadable

KINDS = ("sources", "sinks", "functions")


def loader_version() -> str:
    try:
        return metadata.version("portable-loader")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class Resources:
    """Handlers' logic for streams, rules, symbols and the loader status; no HTTP in here."""

    def __init__(self, view: LoaderView | None) -> None:
        self._view = view

    @property
    def view(self) -> LoaderView:
        assert self._view is not None, "Resources built without a loader"
        return self._view

    @property
    def store(self) -> DefinitionStore:
        return self.view.store

    # ------------------------------------------------------------ streams

    def stream_names(self) -> list[str]:
        return sorted(set(self.view.streams()) | set(self.view.stream_errors()))

    def stream_details(self) -> list[dict[str, Any]]:
        """eKuiper's ``name``, ``type``, ``format``, then the loader's datasource, confKey, shared (and error)."""
        details = []
        for name in self.stream_names():
            stream = self.view.streams().get(name)
            view: dict[str, Any] = {"name": name}
            if stream is not None:
                view.update(
                    type=stream.type,
                    format=stream.format,
                    datasource=stream.datasource,
                    confKey=stream.conf_key,
                    shared=stream.shared,
                )
            if name in self.view.stream_errors():
                view["error"] = self.view.stream_errors()[name]
            details.append(view)
        return details

    def describe_stream(self, name: str) -> dict[str, Any]:
        """eKuiper's stream description (``Name``, ``StreamFields``, ``Options``, ...) plus the SQL as written."""
        if name not in self.view.streams() and name not in self.view.stream_errors():
            raise bad_request(
                "not_found", f"describe stream error: Describe stream fails, {name} is not found.", STREAM_ERROR
            )
        stream = self.view.streams().get(name)
        view: dict[str, Any] = {"Name": name, "StreamFields": None, "Options": None, "StreamType": 0, "Statement": None}
        if stream is not None:
            view["Options"] = stream_options(stream)
            view["sql"] = stream.sql
        if name in self.view.stream_errors():
            view["error"] = self.view.stream_errors()[name]
        return view

    @staticmethod
    def _parse_stream(body: Any) -> StreamDef:
        if not isinstance(body, dict):
            raise bad_request("invalid_stream", 'the body must be a JSON object {"sql": "CREATE STREAM ..."}')
        sql = body.get("sql")
        if isinstance(sql, str):
            keyword = misplaced_stream_keyword(sql)
            if keyword is not None:
                raise bad_request(
                    "invalid_stream", f'found "{keyword}", expected keyword stream or table.', STREAM_ERROR
                )
        try:
            return stream_from_json(body, "request body")
        except DefinitionError as exc:
            raise bad_request("invalid_stream", str(exc), STREAM_ERROR) from None
        except Exception as exc:  # the DDL reader must never turn odd input into a 500
            raise bad_request(
                "invalid_stream", f"request body at /sql: cannot read the stream SQL: {exc}", STREAM_ERROR
            ) from None

    async def create_stream(self, body: Any) -> str:
        stream = self._parse_stream(body)
        try:
            await self.store.put_stream(stream, create=True)
        except Exists as exc:
            raise conflict("exists", exc.message, STREAM_ERROR) from None
        except Refused as exc:
            raise bad_request("invalid_stream", exc.message, STREAM_ERROR) from None
        return f"Stream {stream.name} is created."

    async def replace_stream(self, name: str, body: Any) -> str:
        """eKuiper's PUT: replaces the stream, or creates it when there is none."""
        stream = self._parse_stream(body)
        if stream.name != name:
            raise bad_request(
                "invalid_stream",
                f"the SQL defines stream {stream.name} but the path names {name}; "
                "a stream cannot be renamed, create the new one and drop the old",
                STREAM_ERROR,
            )
        try:
            await self.store.put_stream(stream, create=False)
        except Refused as exc:
            raise bad_request("invalid_stream", exc.message, STREAM_ERROR) from None
        return f"Stream {name} is replaced."

    async def drop_stream(self, name: str, force: bool) -> str:
        """eKuiper's drop: refused while a rule reads the stream (unless ``force``); an unknown name is fine."""
        try:
            await self.store.drop_stream(name, force)
        except InUse as exc:
            raise bad_request("in_use", exc.message) from None
        except BadName as exc:
            raise bad_request("bad_name", exc.message) from None
        return f"Stream {name} is dropped."

    # -------------------------------------------------------------- rules

    def rule_list(self) -> list[dict[str, Any]]:
        """eKuiper's brief (``status`` running or stopped) plus the loader's ``state`` and, if any, why."""
        listed = []
        for rule_id, entry in sorted(self.view.rules().items()):
            found = self.view.rule_causes(entry)
            state = "degraded" if found else entry.state
            message = "; ".join(cause.message for cause in found) if found else (entry.error or "")
            raw = entry.raw if isinstance(entry.raw, dict) else {}
            brief = {
                "id": rule_id,
                "name": raw.get("name") or rule_id,
                "status": "running" if entry.state == "running" else "stopped",
                "tags": raw.get("tags"),
                "trace": False,
                "version": str(raw.get("version") or ""),
                "state": state,
            }
            if message:
                brief["message"] = message
            listed.append(brief)
        return listed

    def _known_rule(self, rule_id: str) -> bool:
        return is_valid_name(rule_id) and self.store.rule_known(rule_id)

    def describe_rule(self, rule_id: str) -> dict[str, Any]:
        if not self._known_rule(rule_id):
            raise not_found(f"Describe rule error: Rule {rule_id} is not found.")
        try:
            return self.store.read_rule(rule_id)
        except Unreadable as exc:
            if exc.problem is None:
                return {"id": rule_id, "error": exc.message}
            entry = self.view.rules().get(rule_id)
            if entry is not None and isinstance(entry.raw, dict) and "unreadable" not in entry.raw:
                return entry.raw
            return {"id": rule_id, "error": f"{exc.path}: cannot read the rule file: {exc.problem}"}

    def rule_status(self, rule_id: str) -> dict[str, Any]:
        entry = self.view.rules().get(rule_id) if is_valid_name(rule_id) else None
        status = self.view.rule_status(rule_id) if entry is not None else None
        if entry is None or status is None:
            raise not_found(f"get rule status error: Rule {rule_id} is not found")
        return ekuiper_rule_status(entry, status)

    def rule_topo(self, rule_id: str) -> dict[str, Any]:
        entry = self.view.rules().get(rule_id) if is_valid_name(rule_id) else None
        if entry is None:
            raise not_found(f"get rule topo error: Rule {rule_id} is not found")
        return rule_topology(entry.definition, self.view.rule_stream(entry))

    def check_rule(self, body: Any) -> RuleDef:
        """Everything a rule needs, checked now (loader/rules/admission.py): 400 rather than a waiting rule."""
        try:
            return check_rule(body, self.view.streams(), self.view.symbol_owner)
        except Unavailable as exc:
            raise bad_request(exc.code, exc.message, SINK_UNDEFINED if exc.kind == "sink" else GENERAL) from None
        except RuleRefused as exc:
            raise bad_request(exc.code, exc.message) from None

    async def create_rule(self, body: Any) -> str:
        rule = self.check_rule(body)
        try:
            await self.store.put_rule(rule.id, body, create=True)
        except Exists as exc:
            raise conflict("exists", exc.message) from None
        except Refused as exc:
            raise bad_request("rule_failed", exc.message) from None
        return f"Rule {rule.id} was created successfully."

    async def update_rule(self, rule_id: str, body: Any) -> str:
        """eKuiper's PUT: replaces the rule, or creates it when there is none."""
        if isinstance(body, dict) and "id" not in body:
            body = {**body, "id": rule_id}
        rule = self.check_rule(body)
        if rule.id != rule_id:
            raise bad_request(
                "invalid_rule", f"the body has id {rule.id} but the path names {rule_id}; a rule cannot be renamed"
            )
        try:
            await self.store.put_rule(rule_id, body, create=False)
        except Refused as exc:
            raise bad_request("rule_failed", exc.message) from None
        return f"Rule {rule_id} was updated successfully."

    async def delete_rule(self, rule_id: str) -> str:
        if not is_valid_name(rule_id) or not await self.store.delete_rule(rule_id):
            raise bad_request("not_found", f"Delete rule error: rule {rule_id} not found")
        return f"Rule {rule_id} is dropped."

    async def control_rule(self, rule_id: str, action: str) -> str:
        """start, stop or restart: persisted as ``triggered`` in the rule file, then reconciled."""
        if not self._known_rule(rule_id):
            raise not_found(
                f"{action} rule error: Rule {rule_id} is not found in registry, please check if it is created"
            )
        try:
            await self.store.trigger_rule(rule_id, run=action != "stop", restart=action == "restart")
        except Unreadable as exc:
            raise bad_request(
                "invalid_rule", f"{action} rule error: {exc.message}; replace it with PUT /rules/{rule_id}"
            ) from None
        except Refused as exc:
            raise bad_request("rule_failed", f"{action} rule error: {exc.message}") from None
        return {
            "start": f"Rule {rule_id} was started",
            "stop": f"Rule {rule_id} was stopped.",
            "restart": f"Rule {rule_id} was restarted",
        }[action]

    # ------------------------------------------------------------ symbols

    def symbols(self, kind: str) -> list[dict[str, Any]]:
        """Every symbol of ``kind`` rules can use now: portable ones, then built-ins they do not shadow."""
        found: dict[str, dict[str, Any]] = {}
        for symbol, plugin in self.view.symbols(kind).items():
            spec = self.view.running_spec(plugin)
            found[symbol] = {
                "name": symbol,
                "type": "plugin-portable",
                "plugin": plugin,
                "version": spec.version if spec is not None else None,
            }
        builtins: tuple[str, ...] = {"sources": (), "sinks": tuple(BUILTIN_SINKS), "functions": tuple(BUILTINS)}[kind]
        version = loader_version()
        for symbol in builtins:
            found.setdefault(symbol, {"name": symbol, "type": "builtin", "plugin": None, "version": version})
        return [found[name] for name in sorted(found)]

    def udfs(self) -> list[str]:
        return sorted(self.view.symbols("functions"))

    def describe_udf(self, name: str) -> dict[str, Any]:
        plugin = self.view.symbol_owner("functions", name)
        if plugin is None:
            raise not_found(
                f"function {name} is not found; no loaded plugin provides it, list them with GET /plugins/udfs"
            )
        return {"name": name, "plugin": plugin}

    # ------------------------------------------------------------- status

    def overview(self, plugin_statuses: list[dict[str, Any]]) -> dict[str, Any]:
        counts = {state: 0 for state in ("running", "degraded", "stopped", "waiting", "error")}
        for entry in self.view.rules().values():
            state = self.view.rule_state(entry)
            counts[state] = counts.get(state, 0) + 1
        return {
            "version": loader_version(),
            "plugins": plugin_statuses,
            "rules": counts,
            "streams": len(self.view.streams()),
        }
