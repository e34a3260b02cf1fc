"""Streams, rules and symbols over REST, in eKuiper's paths and shapes.

Files are the desired state: a write here is an atomic write of
``<data>/streams/<name>.json`` or ``<data>/rules/<id>.json`` followed by the
manager's reconcile of that one name, so the answer reflects the result.
A rule sent over REST is checked before it is written (valid SQL of the
subset, its stream defined, every source, sink and function available);
a rule file dropped by hand may still wait for what it needs.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from pathlib import Path
from typing import Any

from loader import jsonio
from loader.api.ekuiper import ekuiper_rule_status, misplaced_stream_keyword, rule_topology, stream_options
from loader.api.errors import SINK_UNDEFINED, STREAM_ERROR, bad_request, conflict, not_found
from loader.files import write_json_atomic
from loader.names import is_valid_name
from loader.rules.builtins import BUILTINS
from loader.rules.definitions import DefinitionError, RuleDef, rule_from_json, stream_from_json
from loader.rules.sql import SqlError, compile_query, parse_select
from loader.runtime.sink import BUILTIN_SINKS

KINDS = ("sources", "sinks", "functions")


def loader_version() -> str:
    try:
        return metadata.version("portable-loader")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _noop(args: list) -> None:
    return None


class Resources:
    """Handlers' logic for streams, rules, symbols and the loader status; no HTTP in here."""

    def __init__(self, service) -> None:
        self.service = service
        self._streams_lock = asyncio.Lock()
        self._rules_lock = asyncio.Lock()

    @property
    def rules(self):
        return self.service.rules

    # ------------------------------------------------------------ streams

    def stream_names(self) -> list[str]:
        return sorted(set(self.rules.streams) | set(self.rules.stream_errors))

    def stream_details(self) -> list[dict[str, Any]]:
        """eKuiper's ``name``, ``type``, ``format``, then the loader's datasource, confKey, shared (and error)."""
        details = []
        for name in self.stream_names():
            stream = self.rules.streams.get(name)
            view: dict[str, Any] = {"name": name}
            if stream is not None:
                view.update(
                    type=stream.type,
                    format=stream.format,
                    datasource=stream.datasource,
                    confKey=stream.conf_key,
                    shared=stream.shared,
                )
            if name in self.rules.stream_errors:
                view["error"] = self.rules.stream_errors[name]
            details.append(view)
        return details

    def describe_stream(self, name: str) -> dict[str, Any]:
        """eKuiper's stream description (``Name``, ``StreamFields``, ``Options``, ...) plus the SQL as written."""
        if name not in self.rules.streams and name not in self.rules.stream_errors:
            raise bad_request(
                "not_found", f"describe stream error: Describe stream fails, {name} is not found.", STREAM_ERROR
            )
        stream = self.rules.streams.get(name)
        view: dict[str, Any] = {"Name": name, "StreamFields": None, "Options": None, "StreamType": 0, "Statement": None}
        if stream is not None:
            view["Options"] = stream_options(stream)
            view["sql"] = stream.sql
        if name in self.rules.stream_errors:
            view["error"] = self.rules.stream_errors[name]
        return view

    def _stream_path(self, name: str) -> Path:
        return self.rules.streams_dir / f"{name}.json"

    @staticmethod
    def _parse_stream(body: Any):
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
        async with self._streams_lock:
            path = self._stream_path(stream.name)
            if stream.name in self.rules.streams or path.exists():
                raise conflict("exists", f"Create stream fails: Item {stream.name} already exists.", STREAM_ERROR)
            write_json_atomic(path, {"sql": stream.sql})
            await self.rules.reconcile_stream(stream.name)
            await self._reject_if_invalid(stream.name, path, previous=None)
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
        async with self._streams_lock:
            path = self._stream_path(name)
            previous = _read_bytes(path)
            write_json_atomic(path, {"sql": stream.sql})
            await self.rules.reconcile_stream(name)
            await self._reject_if_invalid(name, path, previous)
        return f"Stream {name} is replaced."

    async def _reject_if_invalid(self, name: str, path: Path, previous: bytes | None) -> None:
        error = self.rules.stream_errors.get(name)
        if error is None:
            return
        _restore(path, previous)
        await self.rules.reconcile_stream(name)
        raise bad_request("invalid_stream", error, STREAM_ERROR)

    async def drop_stream(self, name: str, force: bool) -> str:
        """eKuiper's drop: refused while a rule reads the stream (unless ``force``); an unknown name is fine."""
        async with self._streams_lock:
            users = sorted(rule_id for rule_id, entry in self.rules.rules.items() if _rule_stream(entry) == name)
            if users and not force:
                raise bad_request("in_use", f"stream {name} has been referenced by other rules")
            if not is_valid_name(name):
                raise bad_request(
                    "bad_name",
                    f"invalid name {name}: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit",
                )
            path = self._stream_path(name)
            if path.is_file():
                path.unlink(missing_ok=True)
                await self.rules.reconcile_stream(name)
        return f"Stream {name} is dropped."

    # -------------------------------------------------------------- rules

    def rule_list(self) -> list[dict[str, Any]]:
        """eKuiper's brief (``status`` running or stopped) plus the loader's ``state`` and, if any, why."""
        listed = []
        for rule_id, entry in sorted(self.rules.rules.items()):
            found = self.rules.causes(entry)
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

    def _rule_path(self, rule_id: str) -> Path:
        return self.rules.rules_dir / f"{rule_id}.json"

    def _known_rule(self, rule_id: str) -> bool:
        return is_valid_name(rule_id) and (rule_id in self.rules.rules or self._rule_path(rule_id).is_file())

    def describe_rule(self, rule_id: str) -> dict[str, Any]:
        if not self._known_rule(rule_id):
            raise not_found(f"Describe rule error: Rule {rule_id} is not found.")
        path = self._rule_path(rule_id)
        try:
            data = jsonio.loads(path.read_text(), strict=True)
        except (OSError, ValueError) as exc:
            entry = self.rules.rules.get(rule_id)
            if entry is not None and isinstance(entry.raw, dict) and "unreadable" not in entry.raw:
                return entry.raw
            return {"id": rule_id, "error": f"{path}: cannot read the rule file: {exc}"}
        if not isinstance(data, dict):
            return {"id": rule_id, "error": f"{path}: the rule file is not a JSON object"}
        return data

    def rule_status(self, rule_id: str) -> dict[str, Any]:
        entry = self.rules.rules.get(rule_id) if is_valid_name(rule_id) else None
        status = self.rules.status(rule_id) if entry is not None else None
        if entry is None or status is None:
            raise not_found(f"get rule status error: Rule {rule_id} is not found")
        return ekuiper_rule_status(entry, status)

    def rule_topo(self, rule_id: str) -> dict[str, Any]:
        entry = self.rules.rules.get(rule_id) if is_valid_name(rule_id) else None
        if entry is None:
            raise not_found(f"get rule topo error: Rule {rule_id} is not found")
        return rule_topology(entry.definition, _rule_stream(entry))

    def check_rule(self, body: Any) -> RuleDef:
        """Everything a rule needs, checked now: the answer to POST/PUT is 400 rather than a waiting rule.

        The messages are eKuiper's where it says the same thing; the loader's
        own (naming the field and the fix) where it knows more.
        """
        if not isinstance(body, dict):
            raise bad_request(
                "invalid_rule", 'invalid rule json: the body must be a JSON object {"id", "sql", "actions": [...]}'
            )
        try:
            rule = rule_from_json(body, "request body")
        except DefinitionError as exc:
            raise bad_request("invalid_rule", f"invalid rule json: {exc}") from None
        if not rule.sql.lstrip()[:6].upper() == "SELECT":
            raise bad_request("invalid_sql", f"invalid rule json: SQL {rule.sql} is not a select statement.")
        try:
            plan = parse_select(rule.sql)
        except SqlError as exc:
            raise bad_request("invalid_sql", _sql_error(rule.sql, str(exc))) from None
        except Exception as exc:  # e.g. a tokenizer error: still the client's SQL, not our fault
            raise bad_request("invalid_sql", _sql_error(rule.sql, f"cannot parse the SQL: {exc}")) from None
        registry = self.service.registry
        for name, _args in plan.functions:  # eKuiper's parser knows its functions: checked before the stream
            if registry.owner("functions", name) is None and name not in BUILTINS:
                raise bad_request("unavailable", _sql_error(rule.sql, f"function {name} not found"))
        stream = self.rules.streams.get(plan.stream)
        if stream is None:
            raise bad_request("unavailable", f"fail to get stream {plan.stream}, please check if stream is created")
        if registry.owner("sources", stream.type) is None:
            raise bad_request(
                "unavailable",
                f"stream {plan.stream} reads source {stream.type}, which no loaded plugin "
                "provides; install one that does (POST /plugins/portables)",
            )
        for action in rule.actions:
            if registry.owner("sinks", action.sink) is None and action.sink not in BUILTIN_SINKS:
                raise bad_request("unavailable", f"sink {action.sink} is not defined", SINK_UNDEFINED)
        try:
            compile_query(plan, lambda name, index: _noop)
        except SqlError as exc:
            raise bad_request("invalid_sql", _sql_error(rule.sql, str(exc))) from None
        except Exception as exc:
            raise bad_request("invalid_sql", _sql_error(rule.sql, f"the SQL cannot be compiled: {exc}")) from None
        return rule

    async def create_rule(self, body: Any) -> str:
        rule = self.check_rule(body)
        async with self._rules_lock:
            path = self._rule_path(rule.id)
            if rule.id in self.rules.rules or path.exists():
                raise conflict("exists", f"rule {rule.id} already exists")
            write_json_atomic(path, body)
            await self.rules.reconcile_rule(rule.id)
            await self._reject_if_failed(rule.id, path, previous=None)
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
        async with self._rules_lock:
            path = self._rule_path(rule_id)
            previous = _read_bytes(path)
            write_json_atomic(path, body)
            await self.rules.reconcile_rule(rule_id)
            await self._reject_if_failed(rule_id, path, previous)
        return f"Rule {rule_id} was updated successfully."

    async def _reject_if_failed(self, rule_id: str, path: Path, previous: bytes | None) -> None:
        """A rule that could not start (a symbol refused its config, ...) is not kept: restore what was there."""
        entry = self.rules.rules.get(rule_id)
        if entry is None or entry.state != "error":
            return
        error = entry.error or "the rule could not start"
        _restore(path, previous)
        await self.rules.reconcile_rule(rule_id)
        raise bad_request("rule_failed", f"rule {rule_id} could not start: {error}")

    async def delete_rule(self, rule_id: str) -> str:
        async with self._rules_lock:
            if not self._known_rule(rule_id):
                raise bad_request("not_found", f"Delete rule error: rule {rule_id} not found")
            self._rule_path(rule_id).unlink(missing_ok=True)
            await self.rules.reconcile_rule(rule_id)
        return f"Rule {rule_id} is dropped."

    async def control_rule(self, rule_id: str, action: str) -> str:
        """start, stop or restart: persisted as ``triggered`` in the rule file, then reconciled."""
        async with self._rules_lock:
            if not self._known_rule(rule_id):
                raise not_found(
                    f"{action} rule error: Rule {rule_id} is not found in registry, please check if it is created"
                )
            path = self._rule_path(rule_id)
            try:
                data = jsonio.loads(path.read_text(), strict=True)
            except (OSError, ValueError) as exc:
                raise bad_request(
                    "invalid_rule",
                    f"{action} rule error: {path}: cannot read the rule file ({exc}); "
                    f"replace it with PUT /rules/{rule_id}",
                ) from None
            if not isinstance(data, dict):
                raise bad_request(
                    "invalid_rule",
                    f"{action} rule error: {path}: the rule file is not a JSON object; "
                    f"replace it with PUT /rules/{rule_id}",
                )
            triggered = action != "stop"
            changed = data.get("triggered", True) != triggered
            if changed:
                write_json_atomic(path, {**data, "triggered": triggered})
            await self.rules.reconcile_rule(rule_id)
            entry = self.rules.rules.get(rule_id)
            if triggered and not changed and entry is not None and (action == "restart" or entry.state != "running"):
                await self.rules.restart_rule(rule_id)
            entry = self.rules.rules.get(rule_id)
            if triggered and entry is not None and entry.state == "error":
                raise bad_request("rule_failed", f"{action} rule error: rule {rule_id} could not start: {entry.error}")
        return {
            "start": f"Rule {rule_id} was started",
            "stop": f"Rule {rule_id} was stopped.",
            "restart": f"Rule {rule_id} was restarted",
        }[action]

    # ------------------------------------------------------------ symbols

    def symbols(self, kind: str) -> list[dict[str, Any]]:
        """Every symbol of ``kind`` rules can use now: portable ones, then built-ins they do not shadow."""
        reconciler = self.service.reconciler
        found: dict[str, dict[str, Any]] = {}
        for (symbol_kind, symbol), plugin in self.service.registry.symbols().items():
            if symbol_kind != kind:
                continue
            supervisor = reconciler.supervisors.get(plugin)
            found[symbol] = {
                "name": symbol,
                "type": "plugin-portable",
                "plugin": plugin,
                "version": supervisor.spec.version if supervisor is not None else None,
            }
        builtins: tuple[str, ...] = {"sources": (), "sinks": tuple(BUILTIN_SINKS), "functions": tuple(BUILTINS)}[kind]
        version = loader_version()
        for symbol in builtins:
            found.setdefault(symbol, {"name": symbol, "type": "builtin", "plugin": None, "version": version})
        return [found[name] for name in sorted(found)]

    def udfs(self) -> list[str]:
        return sorted(symbol for (kind, symbol) in self.service.registry.symbols() if kind == "functions")

    def describe_udf(self, name: str) -> dict[str, Any]:
        plugin = self.service.registry.owner("functions", name)
        if plugin is None:
            raise not_found(
                f"function {name} is not found; no loaded plugin provides it, list them with GET /plugins/udfs"
            )
        return {"name": name, "plugin": plugin}

    # ------------------------------------------------------------- status

    def overview(self, plugin_statuses: list[dict[str, Any]]) -> dict[str, Any]:
        counts = {state: 0 for state in ("running", "degraded", "stopped", "waiting", "error")}
        for entry in self.rules.rules.values():
            state = self.rules.state_of(entry)
            counts[state] = counts.get(state, 0) + 1
        return {
            "version": loader_version(),
            "plugins": plugin_statuses,
            "rules": counts,
            "streams": len(self.rules.streams),
        }


def _rule_stream(entry: Any) -> str | None:
    """The stream a rule reads: known once it started, else read from its SQL (None if that cannot be parsed)."""
    if entry.stream is not None or entry.definition is None:
        return entry.stream
    try:
        return parse_select(entry.definition.sql).stream
    except Exception:  # a rule with SQL outside the subset reads nothing yet
        return None


def _sql_error(sql: str, problem: str) -> str:
    """eKuiper's sentence for SQL it cannot use: ``invalid rule json: Parse SQL <sql> error: <problem>.``"""
    return f"invalid rule json: Parse SQL {sql} error: {problem.rstrip('.')}."


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _restore(path: Path, previous: bytes | None) -> None:
    """Put back what ``path`` held before a refused change: its bytes, or no file."""
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        _write_bytes_atomic(path, previous)


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.restore")
    tmp.write_bytes(data)
    tmp.replace(path)
