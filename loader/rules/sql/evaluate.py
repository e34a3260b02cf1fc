"""A compiled rule run on records: ``CompiledQuery.apply`` per record, ``apply_many`` per batch.

Apart from the compiler because this is what runs on every record: the rule
pipeline and windowed rules hold a ``CompiledQuery`` and need nothing of the
parser.

Batched function calls: a resolved function may also offer ``many(rows)``
(one result per argument list, a failed row's result being an exception) and
a ``batching`` flag.  ``CompiledQuery.apply_many`` then evaluates a batch of
records in passes: each pass evaluates every unfinished record exactly as
``apply`` would, except that a batchable call site without a result for that
record notes its arguments and abandons the record for this pass; then each
call site with noted rows is called once, with all of them, and the next
pass reads those results.  So a call happens only for records whose
per-record evaluation reaches it (WHERE first, CASE branches, short-circuits
all respected), with the same arguments, inner calls before outer ones.
The call-site closures that do this are made by loader/rules/sql/compile.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from loader.rules.aggregates import Evaluator, GroupedQuery, Row
from loader.rules.window_syntax import WindowClause


@runtime_checkable
class BatchFunction(Protocol):
    """A call site that can also take many records' argument lists in one call (a portable function's)."""

    def __call__(self, args: list[Any], /) -> Any: ...

    def many(self, rows: list[list[Any]], /) -> list[Any]:
        """One result per argument list, in order; a failed row's result is its exception."""
        ...


class Deferred(Exception):
    """A batchable call site has no result yet for the record being evaluated."""


class _Batch:
    """State of one ``apply_many``, read by the call-site closures: which record, which results."""

    __slots__ = ("row", "results", "pending")

    def __init__(self) -> None:
        self.row = 0
        #: call site index -> {record index: value or exception}
        self.results: dict[int, dict[int, Any]] = {}
        #: call site index -> (function, record indexes, argument lists)
        self.pending: dict[int, tuple[BatchFunction, list[int], list[list[Any]]]] = {}

    def defer(self, index: int, function: BatchFunction, args: list[Any]) -> None:
        entry = self.pending.get(index)
        if entry is None:
            entry = self.pending[index] = (function, [], [])
        entry[1].append(self.row)
        entry[2].append(args)

    def call_pending(self) -> None:
        """One batched call per call site that has rows waiting."""
        pending, self.pending = self.pending, {}
        for index, (function, rows, args) in pending.items():
            try:
                values = list(function.many(args))
                if len(values) != len(rows):
                    raise RuntimeError(f"a batched call returned {len(values)} results for {len(rows)} rows")
            except Exception as exc:  # the whole call failed: so did each of its rows
                values = [exc] * len(rows)
            results = self.results.setdefault(index, {})
            for row, value in zip(rows, values, strict=True):
                results[row] = value


class BatchScope:
    """Shared by a query's call-site closures: the batch being evaluated, if any."""

    __slots__ = ("batch",)

    def __init__(self) -> None:
        self.batch: _Batch | None = None


@dataclass
class CompiledQuery:
    stream: str
    star: bool
    columns: list[tuple[str, Evaluator]]
    where: Evaluator | None
    #: functions of the call sites that can take batches (they have ``many``).
    batch_functions: list[BatchFunction] = field(default_factory=list)
    scope: BatchScope = field(default_factory=BatchScope, repr=False)
    #: For a rule with a window: how a window's rows become its emission (loader/rules/windowed.py runs it).
    grouped: GroupedQuery | None = None
    window: WindowClause | None = None
    filter: Evaluator | None = None
    trigger: Evaluator | None = None

    def apply(self, row: Row) -> Row | None:
        """The output record for ``row``, or None when WHERE filters it out."""
        if self.where is not None and self.where(row) is not True:
            return None
        if not self.columns:
            return row if self.star else {}
        out: Row = dict(row) if self.star else {}
        for name, evaluate in self.columns:
            out[name] = evaluate(row)
        return out

    @property
    def batching(self) -> bool:
        """True when a function of the query can take batches right now: use ``apply_many``."""
        return any(getattr(f, "batching", True) for f in self.batch_functions)

    def apply_many(self, rows: list[Row]) -> list[Any]:
        """Per record, in order: its output record, None (filtered out) or the exception that failed it."""
        outcomes: list[Any] = [None] * len(rows)
        todo: list[int] = list(range(len(rows)))
        batch = self.scope.batch = _Batch()
        apply = self.apply
        try:
            # Each pass either finishes a record or leaves it waiting on a call site that
            # gets its result before the next pass; a record reaches each site once.
            for _ in range(len(self.batch_functions) + 2):
                waiting: list[int] = []
                for index in todo:
                    batch.row = index
                    try:
                        outcomes[index] = apply(rows[index])
                    except Deferred:
                        waiting.append(index)
                    except Exception as exc:
                        outcomes[index] = exc
                if not waiting:
                    return outcomes
                batch.call_pending()
                todo = waiting
            for index in todo:  # unreachable unless a closure misbehaves
                outcomes[index] = RuntimeError("function results did not settle for this record")
            return outcomes
        finally:
            self.scope.batch = None
