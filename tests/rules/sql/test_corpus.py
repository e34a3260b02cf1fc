"""eKuiper SQL semantics, case by case, through the real rule runtime (see tests/rules/sql/corpus.py).

Every case of tests/rules/sql/cases/*.yaml is one test: its rule runs in the
corpus loader (tests/rules/sql/conftest.py) with a real source process replaying
its input and a real sink process recording what the rule emits.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.rules.sql.conftest import Corpus
from tests.rules.sql.corpus import Case, emissions, load_cases, same

CASES = load_cases()
TIMEOUT_S = 60.0
POLL_S = 0.05
#: Metrics read twice this far apart must not change for the rule to count as quiet.
QUIET_S = 0.15


def _fail(case: Case, corpus: Corpus, problem: str) -> None:
    got = corpus.messages(case)
    status = corpus.status(case)
    pytest.fail(
        f"{problem}\n{case.describe()}\ngot:      {json.dumps(_parsed(got))}\n"
        f"status:   {status.get('status')} {status.get('message', '')}",
        pytrace=False,
    )


def _parsed(messages: list[str]) -> list:
    try:
        return emissions(messages)
    except ValueError:
        return messages


def _counters(status: dict) -> dict:
    return {
        k: v for k, v in status.items() if k.endswith(("_records_in_total", "_records_out_total", "_exceptions_total"))
    }


def _source_in(status: dict) -> int:
    return sum(v for k, v in status.items() if k.startswith("source_") and k.endswith("_records_in_total"))


def _quiet(case: Case, corpus: Corpus) -> bool:
    """Every input row reached the rule, nothing is in flight to the sink, and nothing moves any more."""
    first = corpus.status(case)
    if _source_in(first) < len(case.input):
        return False
    sinks_in = sum(v for k, v in first.items() if k.startswith("sink_") and k.endswith("_records_in_total"))
    sinks_out = sum(v for k, v in first.items() if k.startswith("sink_") and k.endswith("_records_out_total"))
    if sinks_in != sinks_out:
        return False
    count = len(corpus.messages(case))
    time.sleep(QUIET_S)
    return _counters(corpus.status(case)) == _counters(first) and len(corpus.messages(case)) == count


def _wait(case: Case, corpus: Corpus, done) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            _fail(case, corpus, f"timed out after {TIMEOUT_S:g}s")
        time.sleep(POLL_S)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule_id}-{c.name}" for c in CASES])
def test_case(case: Case, corpus: Corpus) -> None:
    if case.error is not None:

        def refused() -> bool:
            status = corpus.status(case)
            if status.get("status") == "running":
                _fail(case, corpus, "the rule was admitted; expected it to be refused")
            return case.error in str(status.get("message", ""))

        _wait(case, corpus, refused)
        return
    expected = case.expected or []

    def enough() -> bool:
        status = corpus.status(case)
        if status.get("status") == "error":
            _fail(case, corpus, "the rule was refused")
        return status.get("status") in ("running", "degraded") and len(corpus.messages(case)) >= len(expected)

    _wait(case, corpus, enough)
    _wait(case, corpus, lambda: _quiet(case, corpus))
    got = _parsed(corpus.messages(case))
    if not same(expected, got):
        _fail(case, corpus, "the rule's output differs")
