"""stderr log lines: one JSON object per line, marked ``"src": "sdk"``, with instance context."""

from __future__ import annotations

import json
import logging

from sdk.log import JsonLineFormatter, context_logger


def render(logger: logging.Logger, message: str, **kw: object) -> dict:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        logger.warning(message, **kw)
    finally:
        logger.removeHandler(handler)
    line = JsonLineFormatter().format(records[0])
    assert "\n" not in line
    return json.loads(line)


def test_context_logger_is_a_real_logger_with_instance_context() -> None:
    logger = context_logger("counter", "rule9", "op2", 3)
    assert isinstance(logger, logging.Logger)
    line = render(logger, "hello", extra={"rows": 5})
    assert line == {
        "src": "sdk",
        "level": "warning",
        "event": "hello",
        "symbol": "counter",
        "rule": "rule9",
        "op": "op2",
        "instance": 3,
        "rows": 5,
    }


def test_sdk_lines_carry_context_and_exceptions_on_one_line() -> None:
    logger = logging.getLogger("sdk.test")
    try:
        raise ValueError("bad\nthing")
    except ValueError as err:
        line = render(logger, "start failed", extra={"sdk": {"symbol": "s", "error": str(err)}}, exc_info=True)
    assert line["src"] == "sdk" and line["event"] == "start failed" and line["symbol"] == "s"
    assert "ValueError: bad" in line["exc"]
    assert "logger" not in line


def test_plugin_module_logger_names_itself() -> None:
    line = render(logging.getLogger("mymodule"), "plain")
    assert line == {"src": "sdk", "level": "warning", "event": "plain", "logger": "mymodule"}
