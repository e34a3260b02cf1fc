"""A windowed rule's partial windows, saved to disk when its ``qos`` asks for at least once.

eKuiper's rule options ``qos`` (0 at most once, the default; 1 at least
once; 2 exactly once) and ``checkpointInterval`` (ms, default 300,000) say
whether, and how often, a rule's operator state is checkpointed. Here the
state is a window's: the rows it holds, where its next window ends, and
under event time the watermark with the rows it holds back. With ``qos``
1 or 2 the rule's worker writes that state to
``<data_dir>/checkpoints/<rule id>.json`` every ``checkpointInterval``, and
once more when the rule stops (a loader stopping or restarting, the rule
stopped or changed). The next start of the same rule restores it, so a
restart loses no row a window already held.

A checkpoint belongs to one definition of the rule: its SQL and the options
that shape the window (``isEventTime``, ``lateTolerance``). A rule whose
definition changed starts with empty windows, and so does one whose
checkpoint cannot be read. A deleted rule's checkpoint is deleted.

What the loader cannot give is eKuiper's replay from the source: a record
that arrived after the last checkpoint and before a crash (SIGKILL, power
loss) is lost, because a portable source cannot be asked to send it
again. A clean stop always writes a final checkpoint, so only a crash loses
rows, and at most ``checkpointInterval`` of them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loader.files import write_bytes_atomic
from loader.log import get_logger
from loader.rules.definitions import RuleDef
from loader.rules.windowed import WindowedRule

STATE_VERSION = 1
#: eKuiper's default checkpointInterval, in ms.
DEFAULT_INTERVAL_MS = 300_000
#: Attributes of windows and watermarks that hold lists of tuples (JSON gives lists back).
_TUPLE_LISTS = ("entries", "held")


def wants_checkpoints(rule: RuleDef) -> bool:
    """``qos`` 1 (at least once) or 2 (exactly once, the best the loader can do is the same)."""
    return int((rule.options or {}).get("qos") or 0) >= 1


def definition_digest(rule: RuleDef) -> str:
    """What a checkpoint must match: the SQL and the options that shape the windows."""
    options = rule.options or {}
    shape = {
        "sql": rule.sql,
        "isEventTime": bool(options.get("isEventTime")),
        "lateTolerance": int(options.get("lateTolerance") or 0),
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def snapshot(rule: WindowedRule) -> dict[str, Any]:
    """The window's and the watermark's state as plain data."""
    return {
        "window": dict(vars(rule.window)),
        "watermark": dict(vars(rule.watermark)) if rule.watermark is not None else None,
    }


def restore(rule: WindowedRule, state: dict[str, Any]) -> int:
    """Put ``state`` back into ``rule``'s window (and watermark); the rows it holds again."""
    _assign(rule.window, state["window"])
    if rule.watermark is not None and state.get("watermark") is not None:
        _assign(rule.watermark, state["watermark"])
    held = len(getattr(rule.window, "entries", []))
    return held + (len(rule.watermark.held) if rule.watermark is not None else 0)


def _assign(target: object, values: dict[str, Any]) -> None:
    known = vars(target)
    for name, value in values.items():
        if name not in known:
            raise ValueError(f"unknown window state {name!r}")
        if name in _TUPLE_LISTS:
            value = [tuple(item) for item in value]
        setattr(target, name, value)


@dataclass
class Checkpointer:
    """One rule's checkpoint file and when the next one is due."""

    path: Path
    digest: str
    interval_ms: int = DEFAULT_INTERVAL_MS
    next_due: float = 0.0

    @classmethod
    def for_rule(cls, data_dir: Path, rule: RuleDef) -> Checkpointer:
        interval = int((rule.options or {}).get("checkpointInterval") or DEFAULT_INTERVAL_MS)
        return cls(checkpoint_path(data_dir, rule.id), definition_digest(rule), interval)

    def load_into(self, rule: WindowedRule, rule_id: str) -> None:
        """Restore the last checkpoint of this definition, if there is one; anything else starts empty."""
        log = get_logger(rule=rule_id)
        try:
            saved = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning(
                "rule.checkpoint_unreadable",
                file=str(self.path),
                error=str(exc),
                reason="the rule starts with empty windows",
            )
            return
        if not isinstance(saved, dict) or saved.get("version") != STATE_VERSION or saved.get("rule") != self.digest:
            log.info(
                "rule.checkpoint_skipped",
                file=str(self.path),
                reason="written for another definition of the rule; it starts with empty windows",
            )
            return
        try:
            rows = restore(rule, saved["state"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "rule.checkpoint_unreadable",
                file=str(self.path),
                error=f"{type(exc).__name__}: {exc}",
                reason="the rule starts with empty windows",
            )
            return
        log.info("rule.checkpoint_restored", rows=rows, saved_at=saved.get("saved_at"))

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def save(self, rule: WindowedRule, now: float | None = None) -> None:
        """Write the state now (atomically: a crash mid-write leaves the previous checkpoint)."""
        now = time.monotonic() if now is None else now
        data = {
            "version": STATE_VERSION,
            "rule": self.digest,
            "saved_at": int(time.time() * 1000),
            "state": snapshot(rule),
        }
        write_bytes_atomic(self.path, json.dumps(data, separators=(",", ":")).encode())
        self.next_due = now + self.interval_ms / 1000


def checkpoint_path(data_dir: Path, rule_id: str) -> Path:
    return data_dir / "checkpoints" / f"{rule_id}.json"
