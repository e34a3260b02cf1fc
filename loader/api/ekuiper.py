"""eKuiper 2.x's shapes of a stream, a rule's status and its topology, built from the loader's own state.

Pure functions: they read a stream definition or a rule entry and return
what eKuiper answers for it, so a client written for eKuiper finds the keys
it looks for.  The loader's richer data (its finer rule state, the causes
of a degraded rule, when records last moved) stays as extra keys.

eKuiper names a rule's nodes by their place in its plan.  For the loader's
``SELECT ... FROM <stream>`` rules that plan is, measured on eKuiper 2.4:
``source_<stream>_0``, ``op_2_ratelimit_0``, ``op_3_project_0``, then per
action ``i`` of sink ``s``: ``op_s_i_0_transform_0``, ``op_s_i_1_encode_0``,
``sink_s_i_0``.  The loader runs the query as one step and sinks encode
their own records, so the rate-limit, transform and encode nodes carry the
counts of what passed through them (nothing is limited or dropped there).
"""

from __future__ import annotations

import re
from typing import Any

_CREATE_KEYWORD = re.compile(r"^\s*CREATE\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def misplaced_stream_keyword(sql: str) -> str | None:
    """The word after CREATE when it is neither STREAM nor TABLE (eKuiper: ``found "X", expected keyword ...``)."""
    match = _CREATE_KEYWORD.match(sql)
    if match is None or match.group(1).upper() in ("STREAM", "TABLE"):
        return None
    return match.group(1).upper()


def stream_options(stream: Any) -> dict[str, Any]:
    """eKuiper's ``Options`` of a stream: lowerCamel keys in its order; ``shared`` only when set."""
    options: dict[str, Any] = {
        "datasource": stream.datasource,
        "format": stream.format.lower(),
        "confKey": stream.conf_key,
        "type": stream.type,
    }
    if stream.shared:
        options["shared"] = True
    return options


def _node(name: str, metrics: Any, connected: bool, started_ms: int) -> dict[str, Any]:
    """One node's keys in eKuiper's order; ``metrics`` has the loader's counters (loader/dataplane/metrics.py)."""
    records_in = getattr(metrics, "records_in", 0)
    values: dict[str, Any] = {
        f"{name}_records_in_total": records_in,
        f"{name}_records_out_total": getattr(metrics, "records_out", 0),
        f"{name}_messages_processed_total": records_in,
        f"{name}_process_latency_us": 0,
        f"{name}_buffer_length": 0,
        f"{name}_last_invocation": getattr(metrics, "last_in_time", 0),
        f"{name}_exceptions_total": getattr(metrics, "exceptions", 0),
        f"{name}_last_exception": getattr(metrics, "last_exception", ""),
        f"{name}_last_exception_time": getattr(metrics, "last_exception_time", 0),
    }
    if connected:
        values.update(
            {
                f"{name}_connection_status": 1,
                f"{name}_connection_last_connected_time": started_ms,
                f"{name}_connection_last_disconnected_time": 0,
                f"{name}_connection_last_disconnected_message": "",
                f"{name}_connection_last_try_time": started_ms,
            }
        )
    # The loader's own: when a record last came in and went out (ms, 0: never).
    values[f"{name}_last_record_in_time"] = getattr(metrics, "last_in_time", 0)
    values[f"{name}_last_record_out_time"] = getattr(metrics, "last_out_time", 0)
    return values


class _PassThrough:
    """A node that hands on what it gets: its counts are another node's."""

    def __init__(self, count: int, last_ms: int) -> None:
        self.records_in = self.records_out = count
        self.last_in_time = self.last_out_time = last_ms


def sink_base(prefix: str) -> str:
    """``collect_0`` from the sink node prefix ``sink_collect_0_0``."""
    base = prefix[len("sink_") :] if prefix.startswith("sink_") else prefix
    return base[: -len("_0")] if base.endswith("_0") else base


def rule_nodes(pipeline: Any) -> dict[str, Any]:
    """Every node of a running rule's pipeline, as eKuiper names and counts them."""
    started = int(getattr(pipeline, "started_at", 0))
    source = pipeline.source_metrics
    values = _node(source.prefix, source, True, started)
    values.update(_node("op_2_ratelimit_0", _PassThrough(source.records_out, source.last_out_time), False, started))
    values.update(_node("op_3_project_0", pipeline.op_metrics, False, started))
    for sink in pipeline.sinks:
        metrics = sink.metrics
        base = sink_base(metrics.prefix)
        handed = _PassThrough(metrics.records_in, metrics.last_in_time)
        values.update(_node(f"op_{base}_0_transform_0", handed, False, started))
        values.update(_node(f"op_{base}_1_encode_0", handed, False, started))
        values.update(_node(metrics.prefix, metrics, True, started))
    return values


def _own_prefixes(pipeline: Any) -> tuple[str, ...]:
    return (
        pipeline.source_metrics.prefix + "_",
        pipeline.op_metrics.prefix + "_",
        *(sink.metrics.prefix + "_" for sink in pipeline.sinks),
    )


TOP_KEYS = ("status", "message", "lastStartTimestamp", "lastStopTimestamp", "nextStartTimestamp")


def ekuiper_rule_status(entry: Any, status: dict[str, Any]) -> dict[str, Any]:
    """eKuiper's rule status from the rule manager's (loader/rules/reconciler.py ``status``).

    ``status`` is ``running`` or ``stopped``; the loader's finer state
    (``running``, ``degraded``, ``waiting``, ``error``, ``stopped``) is kept
    as ``state``, a degraded rule's ``causes`` too.  Node metrics are there
    while the rule runs.
    """
    pipeline = entry.pipeline
    view: dict[str, Any] = {
        "status": "running" if entry.state == "running" else "stopped",
        "message": status.get("message", ""),
        "lastStartTimestamp": int(status.get("lastStartTimestamp") or 0),
        "lastStopTimestamp": int(status.get("lastStopTimestamp") or 0),
        "nextStartTimestamp": 0,
    }
    if pipeline is not None:
        view.update(rule_nodes(pipeline))
        own = _own_prefixes(pipeline)
        for key, value in status.items():  # nodes the pipeline may report beyond these
            if key not in TOP_KEYS and key not in ("causes",) and not key.startswith(own) and key not in view:
                view[key] = value
    view["state"] = status.get("status", entry.state)
    if "causes" in status:
        view["causes"] = status["causes"]
    return view


def rule_topology(definition: Any, stream: str | None) -> dict[str, Any]:
    """eKuiper's ``GET /rules/{id}/topo``: the source nodes and the edges between nodes (no ``_0`` suffix)."""
    if definition is None or stream is None:
        return {"sources": [], "edges": {}}
    source, ratelimit, project = f"source_{stream}", "op_2_ratelimit", "op_3_project"
    edges: dict[str, list[str]] = {source: [ratelimit], ratelimit: [project], project: []}
    for index, action in enumerate(definition.actions):
        base = f"{action.sink}_{index}"
        transform, encode = f"op_{base}_0_transform", f"op_{base}_1_encode"
        edges[project].append(transform)
        edges[transform] = [encode]
        edges[encode] = [f"sink_{base}"]
    return {"sources": [source], "edges": edges}
