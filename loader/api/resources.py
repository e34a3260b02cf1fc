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
from loader.api.errors import bad_request, conflict, not_found
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
        return [self._stream_view(name, brief=True) for name in self.stream_names()]

    def describe_stream(self, name: str) -> dict[str, Any]:
        if name not in self.rules.streams and name not in self.rules.stream_errors:
            raise not_found("stream", name, "list streams with GET /streams")
        return self._stream_view(name, brief=False)

    def _stream_view(self, name: str, brief: bool) -> dict[str, Any]:
        stream = self.rules.streams.get(name)
        error = self.rules.stream_errors.get(name)
        if brief:
            view: dict[str, Any] = {"name": name}
            if stream is not None:
                view.update(type=stream.type, format=stream.format, datasource=stream.datasource,
                            confKey=stream.conf_key, shared=stream.shared)
        else:
            view = {"Name": name}
            if stream is not None:
                view["Options"] = {"TYPE": stream.type, "DATASOURCE": stream.datasource, "CONF_KEY": stream.conf_key,
                                   "FORMAT": stream.format.upper(), "SHARED": str(stream.shared).lower()}
                view["sql"] = stream.sql
                view["fields"] = stream.fields
        if error is not None:
            view["error"] = error
        return view

    def _stream_path(self, name: str) -> Path:
        return self.rules.streams_dir / f"{name}.json"

    @staticmethod
    def _parse_stream(body: Any):
        if not isinstance(body, dict):
            raise bad_request("invalid_stream", 'the body must be a JSON object {"sql": "CREATE STREAM ..."}')
        try:
            return stream_from_json(body, "request body")
        except DefinitionError as exc:
            raise bad_request("invalid_stream", str(exc)) from None
        except Exception as exc:  # the DDL reader must never turn odd input into a 500
            raise bad_request("invalid_stream", f"request body at /sql: cannot read the stream SQL: {exc}") from None

    async def create_stream(self, body: Any) -> dict[str, Any]:
        stream = self._parse_stream(body)
        async with self._streams_lock:
            path = self._stream_path(stream.name)
            if stream.name in self.rules.streams or path.exists():
                raise conflict("exists", f"stream {stream.name!r} already exists; change it with PUT "
                                         f"/streams/{stream.name} or drop it first")
            write_json_atomic(path, {"sql": stream.sql})
            await self.rules.reconcile_stream(stream.name)
            await self._reject_if_invalid(stream.name, path, previous=None)
        return {"message": f"Stream {stream.name} is created."}

    async def update_stream(self, name: str, body: Any) -> dict[str, Any]:
        stream = self._parse_stream(body)
        if stream.name != name:
            raise bad_request("invalid_stream", f"the SQL defines stream {stream.name!r} but the path names {name!r}; "
                                                "a stream cannot be renamed, create the new one and drop the old")
        async with self._streams_lock:
            path = self._stream_path(name)
            if not path.is_file() and name not in self.rules.streams:
                raise not_found("stream", name, "create it with POST /streams")
            previous = _read_bytes(path)
            write_json_atomic(path, {"sql": stream.sql})
            await self.rules.reconcile_stream(name)
            await self._reject_if_invalid(name, path, previous)
        return {"message": f"Stream {name} is updated."}

    async def _reject_if_invalid(self, name: str, path: Path, previous: bytes | None) -> None:
        error = self.rules.stream_errors.get(name)
        if error is None:
            return
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            _write_bytes_atomic(path, previous)
        await self.rules.reconcile_stream(name)
        raise bad_request("invalid_stream", error)

    async def drop_stream(self, name: str) -> dict[str, Any]:
        async with self._streams_lock:
            path = self._stream_path(name)
            known = name in self.rules.streams or name in self.rules.stream_errors
            if not is_valid_name(name) or not (path.is_file() or known):
                raise not_found("stream", name)
            path.unlink(missing_ok=True)
            await self.rules.reconcile_stream(name)
        return {"message": f"Stream {name} is dropped."}

    # -------------------------------------------------------------- rules

    def rule_list(self) -> list[dict[str, Any]]:
        listed = []
        for rule_id, entry in sorted(self.rules.rules.items()):
            found = self.rules.causes(entry)
            if found:
                message = "; ".join(cause.message for cause in found)
                listed.append({"id": rule_id, "status": f"Running: degraded: {message}", "state": "degraded"})
            else:
                listed.append({"id": rule_id, "status": _ekuiper_rule_status(entry.state, entry.error),
                               "state": entry.state})
        return listed

    def _rule_path(self, rule_id: str) -> Path:
        return self.rules.rules_dir / f"{rule_id}.json"

    def _known_rule(self, rule_id: str) -> bool:
        return is_valid_name(rule_id) and (rule_id in self.rules.rules or self._rule_path(rule_id).is_file())

    def describe_rule(self, rule_id: str) -> dict[str, Any]:
        if not self._known_rule(rule_id):
            raise not_found("rule", rule_id, "list rules with GET /rules")
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
        status = self.rules.status(rule_id) if is_valid_name(rule_id) else None
        if status is None:
            raise not_found("rule", rule_id, "list rules with GET /rules")
        return status

    def check_rule(self, body: Any) -> RuleDef:
        """Everything a rule needs, checked now: the answer to POST/PUT is 400 rather than a waiting rule."""
        if not isinstance(body, dict):
            raise bad_request("invalid_rule", 'the body must be a JSON object {"id", "sql", "actions": [...]}')
        try:
            rule = rule_from_json(body, "request body")
        except DefinitionError as exc:
            raise bad_request("invalid_rule", str(exc)) from None
        try:
            plan = parse_select(rule.sql)
        except SqlError as exc:
            raise bad_request("invalid_sql", f"rule {rule.id!r}: {exc}") from None
        except Exception as exc:  # e.g. a tokenizer error: still the client's SQL, not our fault
            raise bad_request("invalid_sql", f"rule {rule.id!r}: cannot parse the SQL: {exc}") from None
        stream = self.rules.streams.get(plan.stream)
        if stream is None:
            raise bad_request("unavailable", f"rule {rule.id!r}: stream {plan.stream!r} is not defined; create it with "
                                             "POST /streams first")
        registry = self.service.registry
        if registry.owner("sources", stream.type) is None:
            raise bad_request("unavailable", f"rule {rule.id!r}: stream {plan.stream!r} reads source {stream.type!r}, "
                                             "which no loaded plugin provides; install one that does "
                                             "(POST /plugins/portables)")
        for action in rule.actions:
            if registry.owner("sinks", action.sink) is None and action.sink not in BUILTIN_SINKS:
                raise bad_request("unavailable", f"rule {rule.id!r}: sink {action.sink!r} is neither built in "
                                                 f"({', '.join(BUILTIN_SINKS)}) nor provided by a loaded plugin")
        known = {name for name, _args in plan.functions
                 if registry.owner("functions", name) is not None or name in BUILTINS}
        for name, _args in plan.functions:
            if name not in known:
                raise bad_request("unavailable", f"rule {rule.id!r}: function {name!r} is neither built in nor "
                                                 "provided by a loaded plugin")
        try:
            compile_query(plan, lambda name, index: _noop)
        except SqlError as exc:
            raise bad_request("invalid_sql", f"rule {rule.id!r}: {exc}") from None
        except Exception as exc:
            raise bad_request("invalid_sql", f"rule {rule.id!r}: the SQL cannot be compiled: {exc}") from None
        return rule

    async def create_rule(self, body: Any) -> dict[str, Any]:
        rule = self.check_rule(body)
        async with self._rules_lock:
            path = self._rule_path(rule.id)
            if rule.id in self.rules.rules or path.exists():
                raise conflict("exists", f"rule {rule.id!r} already exists; change it with PUT /rules/{rule.id} "
                                         "or delete it first")
            write_json_atomic(path, body)
            await self.rules.reconcile_rule(rule.id)
            await self._reject_if_failed(rule.id, path, previous=None)
        return {"message": f"Rule {rule.id} was created successfully.", **self._state(rule.id)}

    async def update_rule(self, rule_id: str, body: Any) -> dict[str, Any]:
        if isinstance(body, dict) and "id" not in body:
            body = {**body, "id": rule_id}
        rule = self.check_rule(body)
        if rule.id != rule_id:
            raise bad_request("invalid_rule", f"the body has id {rule.id!r} but the path names {rule_id!r}; a rule "
                                              "cannot be renamed")
        async with self._rules_lock:
            path = self._rule_path(rule_id)
            if not self._known_rule(rule_id):
                raise not_found("rule", rule_id, "create it with POST /rules")
            previous = _read_bytes(path)
            write_json_atomic(path, body)
            await self.rules.reconcile_rule(rule_id)
            await self._reject_if_failed(rule_id, path, previous)
        return {"message": f"Rule {rule_id} was updated successfully.", **self._state(rule_id)}

    async def _reject_if_failed(self, rule_id: str, path: Path, previous: bytes | None) -> None:
        """A rule that could not start (a symbol refused its config, ...) is not kept: restore what was there."""
        entry = self.rules.rules.get(rule_id)
        if entry is None or entry.state != "error":
            return
        error = entry.error or "the rule could not start"
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            _write_bytes_atomic(path, previous)
        await self.rules.reconcile_rule(rule_id)
        raise bad_request("rule_failed", f"rule {rule_id!r} could not start: {error}")

    async def delete_rule(self, rule_id: str) -> dict[str, Any]:
        async with self._rules_lock:
            if not self._known_rule(rule_id):
                raise not_found("rule", rule_id)
            self._rule_path(rule_id).unlink(missing_ok=True)
            await self.rules.reconcile_rule(rule_id)
        return {"message": f"Rule {rule_id} is dropped."}

    async def control_rule(self, rule_id: str, action: str) -> dict[str, Any]:
        """start, stop or restart: persisted as ``triggered`` in the rule file, then reconciled."""
        async with self._rules_lock:
            if not self._known_rule(rule_id):
                raise not_found("rule", rule_id, "list rules with GET /rules")
            path = self._rule_path(rule_id)
            try:
                data = jsonio.loads(path.read_text(), strict=True)
            except (OSError, ValueError) as exc:
                raise bad_request("invalid_rule", f"{path}: cannot read the rule file ({exc}); replace it with PUT "
                                                  f"/rules/{rule_id}") from None
            if not isinstance(data, dict):
                raise bad_request("invalid_rule", f"{path}: the rule file is not a JSON object; replace it with PUT "
                                                  f"/rules/{rule_id}")
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
                raise bad_request("rule_failed", f"rule {rule_id!r} could not start: {entry.error}")
        verb = {"start": "started", "stop": "stopped", "restart": "restarted"}[action]
        return {"message": f"Rule {rule_id} was {verb}.", **self._state(rule_id)}

    def _state(self, rule_id: str) -> dict[str, Any]:
        entry = self.rules.rules.get(rule_id)
        if entry is None:
            return {"state": "waiting"}
        view: dict[str, Any] = {"state": entry.state}
        if entry.error:
            view["reason"] = entry.error
        return view

    # ------------------------------------------------------------ symbols

    def symbols(self, kind: str) -> list[dict[str, Any]]:
        """Every symbol of ``kind`` rules can use now: portable ones, then built-ins they do not shadow."""
        reconciler = self.service.reconciler
        found: dict[str, dict[str, Any]] = {}
        for (symbol_kind, symbol), plugin in self.service.registry.symbols().items():
            if symbol_kind != kind:
                continue
            supervisor = reconciler.supervisors.get(plugin)
            found[symbol] = {"name": symbol, "type": "plugin-portable", "plugin": plugin,
                             "version": supervisor.spec.version if supervisor is not None else None}
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
            raise not_found("function", name, "no loaded plugin provides it; list them with GET /plugins/udfs")
        return {"name": name, "plugin": plugin}

    # ------------------------------------------------------------- status

    def overview(self, plugin_statuses: list[dict[str, Any]]) -> dict[str, Any]:
        counts = {state: 0 for state in ("running", "degraded", "stopped", "waiting", "error")}
        for entry in self.rules.rules.values():
            state = self.rules.state_of(entry)
            counts[state] = counts.get(state, 0) + 1
        return {"version": loader_version(), "plugins": plugin_statuses, "rules": counts,
                "streams": len(self.rules.streams)}


def _ekuiper_rule_status(state: str, error: str | None) -> str:
    if state == "running":
        return "Running"
    if state == "stopped":
        return "Stopped: canceled manually."
    if state == "waiting":
        return f"Stopped: waiting: {error}" if error else "Stopped: waiting."
    return f"Stopped: {error}" if error else "Stopped: error."


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.restore")
    tmp.write_bytes(data)
    tmp.replace(path)

