"""Make the running rules match the stream and rule files.

Like plugins, streams and rules are files (``<data>/streams/<name>.json``,
``<data>/rules/<id>.json``); this module is their reconciler, the rules reconciler.  A rule is in
one of four states:

- ``running``;
- ``stopped``: its file says ``"triggered": false``;
- ``waiting``: something it needs is missing (its stream, or a plugin
  providing one of its symbols); it starts by itself when that appears;
- ``error``: its definition is wrong (bad JSON, SQL outside the subset, a
  symbol that refused its configuration); it is retried when its file, its
  stream or the plugins change.

A running rule is reported ``degraded`` while something keeps it from
working (a plugin it uses is not running, its source reported an error, its
sink error-acks records, a function call timed out, a sink got no ack for
``limits.sink_stall_s``; loader/rules/health.py); ``watch_health`` logs
``rule.degraded`` when such a cause appears and ``rule.recovered`` when it
clears.

Plugin changes reach the manager through ``on_plugins_changed``: a rule whose
plugin was unloaded goes back to waiting; a plugin swapped for a new version
keeps its supervisor, which replays the rule's symbols on the new process, so
the rule is not touched.  All changes go through one lock: they are rare,
and a single order of events is easy to reason about.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from loader import jsonio
from loader.config import LiveConfig, LoaderConfig, live
from loader.dataplane.function import FunctionHandle, FunctionPool
from loader.dataplane.metrics import now_ms
from loader.dataplane.parts import RuleParts
from loader.dataplane.sink import PortableSink
from loader.dataplane.source import SourceInstance
from loader.log import get_logger
from loader.plugins.folders import MAX_DEFINITION_BYTES, FolderError, read_regular
from loader.plugins.supervisor import PluginSupervisor
from loader.plugins.symbols import SymbolRegistry
from loader.rules.admission import Binding, builtin_sink, function_binding
from loader.rules.buffer import DEFAULT_CAPACITY
from loader.rules.checkpoint import Checkpointer, checkpoint_path, wants_checkpoints
from loader.rules.definitions import DefinitionError, RuleDef, StreamDef, rule_from_json, stream_from_json
from loader.rules.functions import BUILTINS, Builtin, RuleScoped
from loader.rules.health import Cause, NodeFacts, PluginFacts, causes, changes
from loader.rules.pipeline import RulePipeline, RuleSink
from loader.rules.sql import (
    CompiledQuery,
    SelectPlan,
    SqlError,
    call_position,
    compile_query,
    literal_arguments,
    parse_select,
)
from loader.rules.symbol_config import SymbolConfigError, source_config
from loader.rules.windowed import EventTime, WindowedRule
from loader.wire.codec import DataChannelError
from loader.wire.control import ControlError


class RuleState(StrEnum):
    """A rule's state as REST, metrics and systemd's status line report it."""

    RUNNING = "running"
    STOPPED = "stopped"  # by a stop request or the rule's stop actions
    WAITING = "waiting"  # for its stream, or for a plugin to provide a symbol it uses
    ERROR = "error"  # could not start; ``RuleEntry.error`` says why
    #: Reported for a running rule with causes (loader/rules/health.py); never stored in ``RuleEntry.state``.
    DEGRADED = "degraded"


HEALTH_INTERVAL_S = 1.0

SupervisorLookup = Callable[[str], "PluginSupervisor | None"]
#: What a rule's function name resolves to: a built-in, or the handle of a portable function symbol.
_Bindable = Builtin | RuleScoped | FunctionHandle
#: A file's identity and version as the rescan compares them: inode, size, mtime and ctime in ns.
_FileStat = tuple[int, int, int, int]


class _Waiting(Exception):
    """Something the rule needs is not there yet; it starts when it appears."""


@dataclass
class RuleEntry:
    id: str
    raw: Any = None
    definition: RuleDef | None = None
    state: RuleState = RuleState.WAITING
    error: str | None = None
    pipeline: RulePipeline | None = None
    stream: str | None = None
    plugins: dict[str, PluginSupervisor] = field(default_factory=dict)
    symbols: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, symbol, plugin)
    stop_actions: list[Callable[[], Any]] = field(default_factory=list)
    last_stop: int = 0
    sources: list[SourceInstance] = field(default_factory=list)
    #: The causes last logged as ``rule.degraded`` and not yet recovered, by ``Cause.key``.
    logged_causes: dict[tuple[str, str, str], Cause] = field(default_factory=dict)


class RuleReconciler:
    def __init__(
        self, config: LoaderConfig | LiveConfig, registry: SymbolRegistry, supervisors: SupervisorLookup
    ) -> None:
        self.live = live(config)
        config = self.live.current
        self.registry = registry
        self.supervisor_of = supervisors
        self.streams_dir = config.data_dir / "streams"
        self.rules_dir = config.data_dir / "rules"
        self.streams: dict[str, StreamDef] = {}
        self.stream_errors: dict[str, str] = {}
        self.rules: dict[str, RuleEntry] = {}
        self.functions = FunctionPool(config.ipc_dir, config.batch, config.limits.function_timeout_s)
        self._shared: dict[str, tuple[SourceInstance, set[str]]] = {}
        #: Stat of each stream and rule file when it was last read: the rescan reads only files that changed.
        self._file_stats: dict[Path, _FileStat | None] = {}
        self._lock = asyncio.Lock()
        self._closing = False

    @property
    def config(self) -> LoaderConfig:
        return self.live.current

    # ------------------------------------------------------------ reconcile

    async def reconcile_all(self) -> None:
        """Every stream, then every rule."""
        await self.reconcile_streams()
        await self.reconcile_rules()

    async def reconcile_streams(self) -> None:
        """Every stream file, and every stream whose file is gone."""
        async with self._lock:
            for name in sorted(self._names(self.streams_dir) | set(self.streams) | set(self.stream_errors)):
                await self._guarded_stream(name)

    async def reconcile_rules(self) -> None:
        """Every rule file, and every rule whose file is gone."""
        async with self._lock:
            for rule_id in sorted(self._names(self.rules_dir) | set(self.rules)):
                await self._guarded_rule(rule_id)

    async def reconcile_stream(self, name: str) -> None:
        async with self._lock:
            await self._guarded_stream(name)

    async def reconcile_rule(self, rule_id: str) -> None:
        async with self._lock:
            await self._guarded_rule(rule_id)

    async def _guarded_stream(self, name: str) -> None:
        """One stream's reconcile; a failure is that stream's error, never the loader's (start-up goes on)."""
        try:
            await self._reconcile_stream(name)
        except Exception as exc:
            error = f"{self.streams_dir / (name + '.json')}: cannot be used: {type(exc).__name__}: {exc}"
            get_logger(stream=name).error("stream.reconcile_failed", error=error, exc_info=exc)
            self.stream_errors[name] = error

    async def _guarded_rule(self, rule_id: str) -> None:
        """One rule's reconcile; a failure is that rule's error, never the loader's (start-up goes on)."""
        try:
            await self._reconcile_rule(rule_id)
        except Exception as exc:
            entry = self.rules.setdefault(rule_id, RuleEntry(id=rule_id))
            self._set_error(
                entry,
                f"{self.rules_dir / (rule_id + '.json')}: cannot be used: {type(exc).__name__}: {exc}",
                exc_info=exc,
            )

    async def on_plugins_changed(self) -> None:
        """Stop rules whose plugins went away or changed hands; retry rules that could not start."""
        async with self._lock:
            for entry in list(self.rules.values()):
                if entry.state == RuleState.RUNNING and not self._still_provided(entry):
                    await self._stop(entry, reason="a plugin it uses was unloaded or no longer provides its symbol")
                    entry.state = RuleState.WAITING
                if (
                    entry.state in (RuleState.WAITING, RuleState.ERROR)
                    and entry.definition is not None
                    and entry.definition.triggered
                ):
                    await self._start(entry)

    async def shutdown(self) -> None:
        async with self._lock:
            self._closing = True
            for entry in self.rules.values():
                if entry.state == RuleState.RUNNING:
                    await self._stop(entry, reason="loader stopping")

    def ref_count(self, plugin: str) -> dict[str, int]:
        """eKuiper's plugin ``refCount``: each running rule that uses ``plugin`` -> how many of its symbols."""
        return {
            rule_id: sum(1 for _kind, _symbol, owner in entry.symbols if owner == plugin)
            for rule_id, entry in sorted(self.rules.items())
            if entry.state == RuleState.RUNNING and plugin in entry.plugins
        }

    @staticmethod
    def stream_of(entry: RuleEntry) -> str | None:
        """The stream a rule reads: known once it started, else read from its SQL (None if that cannot be parsed)."""
        if entry.stream is not None or entry.definition is None:
            return entry.stream
        try:
            return parse_select(entry.definition.sql).stream
        except Exception:  # a rule with SQL outside the subset reads nothing yet
            return None

    def symbol_users(self, plugin: str) -> dict[tuple[str, str], list[str]]:
        """Running rules by the symbols of ``plugin`` they use: ``{(kind, symbol): [rule ids]}`` (read only)."""
        users: dict[tuple[str, str], list[str]] = {}
        for rule_id, entry in sorted(self.rules.items()):
            if entry.state != RuleState.RUNNING:
                continue
            for kind, symbol, owner in entry.symbols:
                if owner == plugin and rule_id not in users.setdefault((kind, symbol), []):
                    users[(kind, symbol)].append(rule_id)
        return users

    def causes(self, entry: RuleEntry) -> list[Cause]:
        """What keeps a running rule from working now (empty: it works, or it does not run)."""
        if entry.state != RuleState.RUNNING:
            return []
        plugins = [
            PluginFacts(
                name,
                *self._plugin_state(supervisor),
                tuple(sorted({symbol for _, symbol, plugin in entry.symbols if plugin == name})),
            )
            for name, supervisor in sorted(entry.plugins.items())
        ]
        nodes = [
            NodeFacts(
                "source",
                s.symbol,
                s.supervisor.name,
                s.last_record_ms,
                s.last_error_ms,
                s.last_error,
                s.error_generation,
                s.supervisor.generation,
            )
            for s in entry.sources
        ]
        if entry.pipeline is not None:
            nodes += [
                NodeFacts(
                    "sink",
                    k.symbol,
                    k.supervisor.name,
                    k.metrics.last_out_time,
                    k.metrics.last_exception_time,
                    k.metrics.last_exception,
                    k.error_generation,
                    k.supervisor.generation,
                )
                for k in entry.pipeline.sinks
                if isinstance(k, PortableSink)
            ]
        stuck = entry.pipeline.parts.facts() if entry.pipeline is not None else []
        return causes(plugins, nodes, now_ms(), int(self.config.rules.degraded_hold_s * 1000), stuck)

    @staticmethod
    def _plugin_state(supervisor: PluginSupervisor) -> tuple[str, str | None]:
        status = supervisor.board.get(supervisor.name)
        return (status.state, status.last_error) if status is not None else ("unknown", None)

    def state_of(self, entry: RuleEntry) -> RuleState:
        """The state as reported: ``degraded`` for a running rule with causes."""
        return RuleState.DEGRADED if self.causes(entry) else entry.state

    async def watch_health(self, interval_s: float = HEALTH_INTERVAL_S) -> None:
        """Log ``rule.degraded`` / ``rule.recovered`` as causes appear and clear; runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            for entry in list(self.rules.values()):
                self._log_health(entry)

    def _log_health(self, entry: RuleEntry) -> None:
        appeared, cleared = changes(entry.logged_causes, self.causes(entry))
        if not appeared and not cleared:
            return  # the common case, every second for every rule: no logger bound for nothing
        log = get_logger(rule=entry.id)
        for cause in cleared:
            del entry.logged_causes[cause.key]
            log.info(
                "rule.recovered",
                symbol=cause.symbol,
                plugin=cause.plugin,
                cause=cause.cause,
                remaining_causes=len(entry.logged_causes) + len(appeared),
            )
        for cause in appeared:
            entry.logged_causes[cause.key] = cause
            log.warning(
                "rule.degraded", symbol=cause.symbol, plugin=cause.plugin, cause=cause.cause, error=cause.message
            )

    def status(self, rule_id: str) -> dict[str, Any] | None:
        entry = self.rules.get(rule_id)
        if entry is None:
            return None
        found = self.causes(entry)
        status: dict[str, Any] = {"status": RuleState.DEGRADED if found else entry.state}
        if found:
            status["message"] = "; ".join(cause.message for cause in found)
            status["causes"] = [cause.as_dict() for cause in found]
        elif entry.error:
            status["message"] = entry.error
        if entry.pipeline is not None:
            status.update(entry.pipeline.metrics())
        status["lastStopTimestamp"] = entry.last_stop
        return status

    # -------------------------------------------------------------- streams

    async def _reconcile_stream(self, name: str) -> None:
        path = self.streams_dir / f"{name}.json"
        old = self.streams.get(name)
        if self._same_file(path) and (old is not None or name in self.stream_errors):
            return
        new: StreamDef | None = None
        error: str | None = None
        if path.is_file():
            try:
                new = stream_from_json(_read_json(path), str(path))
                if new.name != name:
                    raise DefinitionError(
                        f"{path} at /sql: the stream is named {new.name!r} but the file is "
                        f"{path.name}; name the file {new.name}.json"
                    )
            except DefinitionError as exc:
                error = str(exc)
        else:
            self._file_stats.pop(path, None)  # stream names come and go: remember only files that exist
        log = get_logger(stream=name)
        if error is not None:
            if self.stream_errors.get(name) != error:
                log.error("stream.invalid", error=error)
            self.stream_errors[name] = error
            new = old  # an invalid change keeps the last good definition
        else:
            self.stream_errors.pop(name, None)
        if new == old:
            return
        if new is None:
            self.streams.pop(name, None)
            log.info("stream.removed")
        else:
            self.streams[name] = new
            log.info("stream.defined" if old is None else "stream.updated", type=new.type, shared=new.shared)
        for entry in list(self.rules.values()):
            if entry.stream == name or (entry.state == RuleState.WAITING and entry.definition is not None):
                await self._restart(entry, reason=f"stream {name} changed")

    # ---------------------------------------------------------------- rules

    async def _reconcile_rule(self, rule_id: str) -> None:
        path = self.rules_dir / f"{rule_id}.json"
        entry = self.rules.get(rule_id)
        if self._same_file(path) and entry is not None and self._file_stats[path] is not None:
            return  # one stat per rule and rescan: most rules have not changed
        if not path.is_file():
            self._file_stats.pop(path, None)  # rule ids come and go: remember only files that exist
            if entry is not None:
                await self._stop(entry, reason="rule file removed")
                del self.rules[rule_id]
                checkpoint_path(self.config.data_dir, rule_id).unlink(missing_ok=True)
                get_logger(rule=rule_id).info("rule.deleted")
            return
        try:
            raw = _read_json(path)
        except DefinitionError as exc:
            raw = {"unreadable": str(exc)}
        if entry is not None and entry.raw == raw:
            return
        if entry is None:
            entry = self.rules[rule_id] = RuleEntry(id=rule_id)
        else:
            await self._stop(entry, reason="rule file changed")
        entry.raw = raw
        try:
            if "unreadable" in raw and len(raw) == 1:
                raise DefinitionError(raw["unreadable"])
            entry.definition = rule_from_json(raw, str(path))
            if entry.definition.id != rule_id:
                raise DefinitionError(
                    f"{path} at /id: the rule id is {entry.definition.id!r} but the file is "
                    f"{path.name}; name the file {entry.definition.id}.json"
                )
        except DefinitionError as exc:
            entry.definition = None
            self._set_error(entry, str(exc))
            return
        if not entry.definition.triggered:
            entry.state, entry.error = RuleState.STOPPED, None
            get_logger(rule=rule_id).info("rule.stopped", reason="triggered is false in its file")
            return
        await self._start(entry)

    async def _restart(self, entry: RuleEntry, reason: str) -> None:
        await self._stop(entry, reason=reason)
        if entry.definition is not None and entry.definition.triggered:
            await self._start(entry)

    async def _start(self, entry: RuleEntry) -> None:
        if self._closing or entry.definition is None:
            return
        log = get_logger(rule=entry.id)
        try:
            await self._build(entry, entry.definition)
        except _Waiting as exc:
            await self._unwind(entry)
            if entry.state != RuleState.WAITING or entry.error != str(exc):
                log.warning("rule.waiting", reason=str(exc))
            entry.state, entry.error = RuleState.WAITING, str(exc)
            return
        except (SqlError, DefinitionError, SymbolConfigError, ControlError, DataChannelError) as exc:
            await self._unwind(entry)
            self._set_error(entry, str(exc))
            return
        except Exception as exc:  # a bug or an input no check foresaw: this rule fails, the loader and the others run
            await self._unwind(entry)
            self._set_error(entry, f"the rule could not start: {type(exc).__name__}: {exc}", exc_info=exc)
            return
        entry.state, entry.error = RuleState.RUNNING, None
        log.info(
            "rule.started",
            stream=entry.stream,
            sinks=[a.sink for a in entry.definition.actions],
            plugins=sorted(entry.plugins),
        )

    def _set_error(self, entry: RuleEntry, error: str, exc_info: BaseException | None = None) -> None:
        if entry.state != RuleState.ERROR or entry.error != error:
            get_logger(rule=entry.id).error("rule.error", error=error, exc_info=exc_info)
        entry.state, entry.error = RuleState.ERROR, error

    async def _stop(self, entry: RuleEntry, reason: str) -> None:
        if entry.state != RuleState.RUNNING and not entry.stop_actions:
            return
        was_running = entry.state == RuleState.RUNNING
        await self._unwind(entry)
        entry.last_stop = int(time.time() * 1000)
        entry.state = RuleState.STOPPED
        if was_running:
            get_logger(rule=entry.id).info("rule.stopped", reason=reason)

    async def _unwind(self, entry: RuleEntry) -> None:
        """Undo what starting the rule did, last first."""
        actions, entry.stop_actions = entry.stop_actions, []
        for action in reversed(actions):
            try:
                await action()
            except Exception as exc:  # keep unwinding: every socket must close
                get_logger(rule=entry.id).warning("rule.stop_step_failed", error=str(exc))
        entry.plugins, entry.symbols, entry.pipeline, entry.sources = {}, [], None, []
        entry.logged_causes = {}  # a stopped rule is not degraded; rule.stopped says what happened

    # ---------------------------------------------------------------- build

    async def _build(self, entry: RuleEntry, rule: RuleDef) -> None:
        plan = parse_select(rule.sql)
        entry.stream = plan.stream
        stream = self.streams.get(plan.stream)
        if stream is None:
            raise _Waiting(
                f"stream {plan.stream!r} is not defined: create {self.streams_dir / (plan.stream + '.json')}"
            )
        source_sup = self._provider(entry, "sources", stream.type)
        parts = RuleParts(rule.id)
        sinks = [
            self._sink(entry, rule.id, index, action.sink, action.props, parts)
            for index, action in enumerate(rule.actions)
        ]
        resolved, aggregates = await self._functions(entry, plan)
        query = compile_query(
            plan, lambda name, index: _bind(resolved.get(name), rule.id, index, parts), rule.id, aggregates
        )
        windowed = _windowed(query, rule, stream)
        buffer_length = (rule.options or {}).get("bufferLength", DEFAULT_CAPACITY)  # schema-checked: 1..2**20
        buffer_bytes = int(self.config.limits.rule_buffer_mb * 1024 * 1024)
        checkpointer = Checkpointer.for_rule(self.config.data_dir, rule) if wants_checkpoints(rule) else None
        pipeline = RulePipeline(
            rule.id, stream.name, query, sinks, buffer_length, buffer_bytes, parts, windowed, checkpointer
        )
        await pipeline.start()
        entry.stop_actions.append(pipeline.stop)
        await self._attach_source(entry, stream, source_sup, pipeline)
        entry.pipeline = pipeline

    def _provider(self, entry: RuleEntry, kind: str, symbol: str) -> PluginSupervisor:
        owner = self.registry.owner(kind, symbol)
        supervisor = self.supervisor_of(owner) if owner else None
        if supervisor is None:
            raise _Waiting(f"no loaded plugin provides the {kind[:-1]} {symbol!r}; install one that does")
        entry.plugins[supervisor.name] = supervisor
        entry.symbols.append((kind, symbol, supervisor.name))
        return supervisor

    def _sink(
        self,
        entry: RuleEntry,
        rule_id: str,
        index: int,
        symbol: str,
        props: dict[str, Any],
        parts: RuleParts | None = None,
    ) -> RuleSink:
        builtin = builtin_sink(symbol, self.registry.owner)
        if builtin is not None:
            return builtin(rule_id, index, props)
        supervisor = self._provider(entry, "sinks", symbol)
        return PortableSink(
            supervisor, symbol, rule_id, index, dict(props), self.config.ipc_dir, parts, self.config.limits.sink_stall_s
        )

    async def _functions(self, entry: RuleEntry, plan: SelectPlan) -> tuple[dict[str, _Bindable], frozenset[str]]:
        """Bind every function the rule calls: portable symbols first, then built-ins; and name the
        portable ones that are aggregates.  Built-in aggregates and window_start/window_end are eKuiper's
        own and are not looked up in plugins."""
        resolved: dict[str, _Bindable] = {}
        aggregates: set[str] = set()
        for name, args in plan.functions:
            binding = function_binding(name, self.registry.owner)
            if name in resolved or binding == Binding.WINDOW:
                continue
            if binding == Binding.BUILTIN:
                resolved[name] = BUILTINS[name]
                continue
            if binding == Binding.MISSING:
                raise _Waiting(
                    f"{call_position(plan, name)}: no loaded plugin provides the function {name!r} "
                    "and it is not a built-in"
                )
            supervisor = self._provider(entry, "functions", name)
            handle = await self.functions.acquire(supervisor, name, {})  # as in eKuiper: no configuration
            entry.stop_actions.append(functools.partial(self.functions.release, handle))
            if await _check_function(handle, name, literal_arguments(args)):
                aggregates.add(name)
            resolved[name] = handle
        return resolved, frozenset(aggregates)

    async def _attach_source(
        self, entry: RuleEntry, stream: StreamDef, supervisor: PluginSupervisor, pipeline: RulePipeline
    ) -> None:
        config = source_config(stream.type, stream.conf_key, supervisor.spec.folder, self.config.etc_dir)
        if not stream.shared:
            source = SourceInstance(
                supervisor, stream.type, entry.id, f"src-{stream.name}", stream.datasource, config, self.config.ipc_dir
            )
            source.subscribe(entry.id, pipeline.offer, pipeline.on_source_error)
            await source.start()
            entry.stop_actions.append(source.stop)
            entry.sources.append(source)
            return
        shared = self._shared.get(stream.name)
        if shared is None or shared[0].supervisor is not supervisor:
            source = SourceInstance(
                supervisor,
                stream.type,
                f"shared.{stream.name}",
                f"src-{stream.name}",
                stream.datasource,
                config,
                self.config.ipc_dir,
            )
            await source.start()
            shared = self._shared[stream.name] = (source, set())
        source, users = shared
        users.add(entry.id)
        source.subscribe(entry.id, pipeline.offer, pipeline.on_source_error)
        entry.stop_actions.append(lambda: self._detach_shared(stream.name, source, entry.id))
        entry.sources.append(source)

    async def _detach_shared(self, stream: str, source: SourceInstance, rule_id: str) -> None:
        if source.unsubscribe(rule_id):
            if self._shared.get(stream, (None,))[0] is source:
                del self._shared[stream]
            await source.stop()

    def _still_provided(self, entry: RuleEntry) -> bool:
        for kind, symbol, plugin in entry.symbols:
            if self.registry.owner(kind, symbol) != plugin or self.supervisor_of(plugin) is not entry.plugins[plugin]:
                return False
        return True

    def _same_file(self, path: Path) -> bool:
        """Whether ``path`` has the stat it had when last looked at (reading it again would tell nothing new)."""
        try:
            st = path.stat()
            key: _FileStat | None = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            key = None
        same = path in self._file_stats and self._file_stats[path] == key
        self._file_stats[path] = key
        return same

    @staticmethod
    def _names(folder: Path) -> set[str]:
        """Names of the ``*.json`` files in ``folder`` (a plain listing: every rescan lists 400 rules)."""
        try:
            entries = os.listdir(folder)
        except OSError:  # missing (nothing defined yet) or unreadable: as glob saw it, no names
            return set()
        return {entry[:-5] for entry in entries if entry.endswith(".json") and not entry.startswith(".")}

    async def restart_rule(self, rule_id: str) -> bool:
        """Stop and start a rule again (REST restart, or retrying a waiting/failed one); False if unknown."""
        async with self._lock:
            entry = self.rules.get(rule_id)
            if entry is None:
                return False
            await self._restart(entry, reason="restart requested")
            return True


async def _check_function(handle: FunctionHandle, name: str, args: list[Any]) -> bool:
    """Validate the call's arguments with the plugin; True when the function is an aggregate."""
    try:
        await handle.validate(args)
        return await handle.is_aggregate()
    except DataChannelError as exc:
        raise DefinitionError(f"function {name!r}: {exc}") from None


def _windowed(query: CompiledQuery, rule: RuleDef, stream: StreamDef) -> WindowedRule | None:
    """The window state of a rule with a window: processing time, or event time when the rule sets
    ``isEventTime`` (then the stream must name its ``TIMESTAMP`` field)."""
    options = rule.options or {}
    event_time = bool(options.get("isEventTime"))
    if query.window is None:
        return None
    if not event_time:
        return WindowedRule(query)
    if not stream.timestamp:
        raise DefinitionError(
            f"rule {rule.id!r} sets isEventTime but stream {stream.name!r} declares no event time "
            'field: add TIMESTAMP="<field>" to its WITH options, or drop isEventTime'
        )
    tolerance = int(options.get("lateTolerance") or 0)  # schema-checked: an integer >= 0, in ms
    return WindowedRule(query, EventTime(stream.timestamp, tolerance))


def _bind(
    target: _Bindable | None, rule_id: str, index: int, parts: RuleParts | None = None
) -> Callable[[list[Any]], Any] | None:
    if isinstance(target, FunctionHandle):
        return target.caller(rule_id, index, parts)
    return target


def _read_json(path: Path) -> Any:
    try:
        text = read_regular(path, MAX_DEFINITION_BYTES).decode("utf-8")
    except (OSError, ValueError, FolderError) as exc:
        raise DefinitionError(f"{path}: cannot read it: {exc}; make it a readable UTF-8 file") from None
    try:
        return jsonio.loads(text, strict=True)
    except jsonio.JsonError as exc:
        raise DefinitionError(f"{path}: not valid JSON: {exc}; fix the file") from None
