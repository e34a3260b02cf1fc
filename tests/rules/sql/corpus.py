"""The SQL corpus: case files, how a case becomes a stream and a rule, and how its output is judged.

A case file (``tests/rules/sql/cases/*.yaml``) is a YAML list of cases::

    - name: filter with AND            # what the case shows
      sql: SELECT a FROM {stream} WHERE a > 1 AND b = "x"
      stream_options: {TIMESTAMP: ts}   # optional: extra WITH options of the stream
      options: {isEventTime: true}      # optional: rule options
      action: {sendSingle: true}        # optional: extra sink action properties
      meta: [{topic: t1}, ...]          # optional: source metadata of each input row
      id: my_rule                       # optional: the rule id (default: <file>_<position>)
      input: [{a: 1, b: x}, ...]        # rows the source emits, in order
      expected: [[{a: 2}], ...]         # emissions the sink must receive, in order
      error: "GROUP BY"                 # instead of expected: the rule is refused with this text

Each case runs as its own rule on its own stream.  A sink message that is a
JSON object counts as a one-row emission, a JSON array as one emission.
Floats are compared with a tolerance; an int never equals a float (eKuiper
keeps integer results integers, and so must we).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CASES_DIR = Path(__file__).resolve().parent / "cases"
FLOAT_TOLERANCE = 1e-9
_CASE_KEYS = {"name", "sql", "stream_options", "options", "action", "meta", "id", "input", "expected", "error"}


@dataclass(frozen=True)
class Case:
    file: str
    name: str
    rule_id: str
    sql: str
    input: list[dict[str, Any]]
    expected: list[list[dict[str, Any]]] | None
    error: str | None
    stream_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    action: dict[str, Any] = field(default_factory=dict)
    meta: list[Any] | None = None

    @property
    def stream(self) -> str:
        return f"s_{self.rule_id}"

    @property
    def rule_sql(self) -> str:
        return self.sql.replace("{stream}", self.stream)

    def describe(self) -> str:
        lines = [
            f"case {self.name!r} ({self.file}, rule {self.rule_id})",
            f"sql:      {self.rule_sql}",
            f"input:    {json.dumps(self.input)}",
        ]
        if self.error is not None:
            lines.append(f"error:    {self.error!r}")
        else:
            lines.append(f"expected: {json.dumps(self.expected)}")
        return "\n".join(lines)


def load_cases(folder: Path = CASES_DIR) -> list[Case]:
    cases: list[Case] = []
    ids: set[str] = set()
    for path in sorted(folder.glob("*.yaml")):
        entries = yaml.safe_load(path.read_text()) or []
        if not isinstance(entries, list):
            raise ValueError(f"{path.name}: a case file is a YAML list of cases")
        for position, entry in enumerate(entries, 1):
            case = _case(path, position, entry)
            if case.rule_id in ids:
                raise ValueError(f"{path.name} case {position}: rule id {case.rule_id!r} is used twice")
            ids.add(case.rule_id)
            cases.append(case)
    return cases


def _case(path: Path, position: int, entry: Any) -> Case:
    where = f"{path.name} case {position}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a case is a mapping with name, sql, input and expected (or error)")
    unknown = set(entry) - _CASE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_CASE_KEYS)}")
    for key in ("name", "sql", "input"):
        if key not in entry:
            raise ValueError(f"{where}: missing {key!r}")
    if ("expected" in entry) == ("error" in entry):
        raise ValueError(f"{where}: give exactly one of 'expected' and 'error'")
    if "{stream}" not in entry["sql"]:
        raise ValueError(f"{where}: the sql must read FROM {{stream}}")
    rule_id = str(entry.get("id") or f"{path.stem}_{position}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,50}", rule_id):
        raise ValueError(f"{where}: rule id {rule_id!r}: use letters, digits, '_' and '-' (at most 51)")
    meta = entry.get("meta")
    if meta is not None and len(meta) != len(entry["input"]):
        raise ValueError(f"{where}: 'meta' needs one entry per input row")
    return Case(
        file=path.name,
        name=str(entry["name"]),
        rule_id=rule_id,
        sql=entry["sql"],
        input=list(entry["input"]),
        expected=entry.get("expected"),
        error=entry.get("error"),
        stream_options=dict(entry.get("stream_options") or {}),
        options=dict(entry.get("options") or {}),
        action=dict(entry.get("action") or {}),
        meta=meta,
    )


def emissions(messages: list[str]) -> list[list[Any]]:
    """Sink messages as emissions: an object is a one-row emission, an array is one emission."""
    result: list[list[Any]] = []
    for message in messages:
        value = json.loads(message)
        result.append(value if isinstance(value, list) else [value])
    return result


def same(expected: Any, got: Any) -> bool:
    """Equal as JSON values, floats within a tolerance, ints never equal to floats or booleans."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, float) and isinstance(got, float):
        return math.isclose(expected, got, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(expected, (int, float)) or isinstance(got, (int, float)):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(same(expected[k], got[k]) for k in expected)
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(same(e, g) for e, g in zip(expected, got, strict=True))
    return expected == got
