"""Rows of the result table, statistics over rounds, the printed table and the JSON.

A benchmark returns ``Row`` objects; ``ratio_row`` and ``limit_row`` build
the two kinds the goals need (a throughput compared with a ceiling measured
in the same rounds, and a value with an upper or exact limit).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------- stats


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (p in 0..100)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def round_order(keys: Sequence[str], round_index: int) -> list[str]:
    """The order of the subjects in one round: rotated every round, so none always runs first."""
    shift = round_index % len(keys)
    return list(keys[shift:]) + list(keys[:shift])


def interleave(subjects: Sequence[tuple[str, Callable[[], float]]], rounds: int) -> dict[str, list[float]]:
    """Run every subject once per round, rounds one after the other; samples by subject key."""
    funcs = dict(subjects)
    samples: dict[str, list[float]] = {key: [] for key in funcs}
    for index in range(rounds):
        for key in round_order(list(funcs), index):
            samples[key].append(funcs[key]())
    return samples


def guarded(key: str, func: Callable[[], float], errors: dict[str, str]) -> Callable[[], float]:
    """``func`` reporting a failure in ``errors[key]`` (and a NaN sample) instead of raising,
    so one failing subject does not cost the others their figures."""

    def run() -> float:
        try:
            return func()
        except Exception as exc:
            errors.setdefault(key, f"{type(exc).__name__}: {exc}")
            # The row carries one line; the whole traceback goes where a failed run is diagnosed from.
            print(f"bench: subject {key} failed:\n{''.join(traceback.format_exception(exc))}", file=sys.stderr)
            return math.nan

    return run


# -------------------------------------------------------------------- rows


@dataclass
class Row:
    key: str  # stable identifier, e.g. "source.sdk"
    figure: str  # the figure number
    label: str
    value: float | None
    unit: str
    ceiling: str | None = None  # what the value is compared with
    ceiling_value: float | None = None
    ratio: float | None = None
    goal: str = ""
    ok: bool | None = None  # None: no goal, or not measured
    note: str = ""
    samples: list[float] = field(default_factory=list)
    ceiling_samples: list[float] = field(default_factory=list)
    #: value / ceiling of each round (subject and ceiling measured moments apart), for judging the noise.
    round_ratios: list[float] = field(default_factory=list)
    error: str | None = None


def info_row(
    key: str, figure: str, label: str, value: float | None, unit: str, note: str = "", samples: Sequence[float] = ()
) -> Row:
    return Row(key, figure, label, value, unit, note=note, samples=list(samples))


def ratio_row(
    key: str,
    figure: str,
    label: str,
    samples: Sequence[float],
    unit: str,
    ceiling: str,
    ceiling_samples: Sequence[float],
    goal_ratio: float,
    note: str = "",
) -> Row:
    """Median of ``samples`` against the median of the ceiling measured in the same rounds."""
    value, ceil = median(samples), median(ceiling_samples)
    ratio = value / ceil if ceil else None
    rounds = [s / c for s, c in zip(samples, ceiling_samples, strict=True) if c]
    return Row(
        key,
        figure,
        label,
        value,
        unit,
        ceiling=ceiling,
        ceiling_value=ceil,
        ratio=ratio,
        goal=f">= {goal_ratio:g}x",
        ok=None if ratio is None else ratio >= goal_ratio,
        note=note,
        samples=list(samples),
        ceiling_samples=list(ceiling_samples),
        round_ratios=rounds,
    )


def limit_row(
    key: str,
    figure: str,
    label: str,
    value: float,
    unit: str,
    limit: float,
    note: str = "",
    samples: Sequence[float] = (),
    ceiling: str | None = None,
    exact: bool = False,
) -> Row:
    """A value that must stay at or below ``limit`` (or equal it, with ``exact``)."""
    goal = f"= {limit:g}" if exact else f"<= {limit:,.0f}" if limit >= 100 else f"<= {limit:g}"
    ok = value == limit if exact else value <= limit
    return Row(key, figure, label, value, unit, ceiling=ceiling, goal=goal, ok=ok, note=note, samples=list(samples))


def error_row(key: str, figure: str, label: str, error: str) -> Row:
    return Row(key, figure, label, None, "", error=error)


# ------------------------------------------------------------------- table


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("MB",):
        return f"{value:,.1f}"
    if unit in ("records", "") or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _status(row: Row) -> str:
    if row.error is not None:
        return "ERROR"
    if row.ok is None:
        return ""
    return "ok" if row.ok else "MISS"


def render(rows: Sequence[Row]) -> str:
    header = ("fig", "figure", "value", "unit", "compared with", "ratio", "goal", "")
    lines = []
    for row in rows:
        compared = ""
        if row.ceiling and row.ceiling_value is not None:
            compared = f"{row.ceiling} {_number(row.ceiling_value, row.unit)}"
        elif row.ceiling:
            compared = row.ceiling
        lines.append(
            (
                row.figure,
                row.label,
                _number(row.value, row.unit),
                row.unit,
                compared,
                f"{row.ratio:.2f}x" if row.ratio is not None else "",
                row.goal,
                _status(row),
            )
        )
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    right = {2, 5}

    def fmt(cells: Sequence[str]) -> str:
        out = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    text = [fmt(header), fmt(["-" * w for w in widths])]
    text += [fmt(line) for line in lines]
    notes = [(row.figure, row.label, (row.error or row.note).splitlines()[0]) for row in rows if row.error or row.note]
    if notes:
        text.append("")
        text += [f"[{fig}] {label}: {note}" for fig, label, note in notes]
    return "\n".join(text)


def _finite(value: Any) -> Any:
    """NaN (a failed sample) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(
    path: Path,
    rows: Sequence[Row],
    options: dict[str, Any],
    errors: dict[str, str],
    started: datetime,
    seconds: float,
    host: dict[str, Any],
) -> None:
    body = {
        "format": 1,
        "started": started.astimezone(UTC).isoformat(),
        "seconds": round(seconds, 1),
        "host": {"python": platform.python_version(), "machine": platform.machine(), **host},
        "options": options,
        "errors": errors,
        "rows": [_finite(asdict(row)) for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    tmp.replace(path)
