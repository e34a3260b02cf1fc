"""Run one symbol of a plugin locally, without a host and without sockets.

    python -m sdk.debug PLUGIN.py source SYMBOL [--datasource DS] [--conf JSON] [--count N] [--duration S]
    python -m sdk.debug PLUGIN.py sink SYMBOL [--conf JSON]        < lines of JSON
    python -m sdk.debug PLUGIN.py function SYMBOL --args JSON [--args JSON ...]

The plugin file runs as ``__main__`` exactly as a host would run it, but
``start()`` hands its PluginConfig to this runner instead of dialing a host
(see ``sdk.plugin.start_hook``).  Emitted records and function replies go to
stdout as JSON lines, acks and logs to stderr, so the output pipes into jq.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import threading
import time
from typing import Any

from sdk import log, plugin
from sdk.api import Context, PluginConfig
from sdk.args import RuntimeArgs
from sdk.log import context_logger
from sdk.protocol.control import TYPE_FUNC, TYPE_SINK, TYPE_SOURCE, Control
from sdk.protocol.messages import ACK_OK, encode_ack
from sdk.runtimes import AckGate, FunctionRuntime, error_text, requires_ack

DEBUG_RULE = "debug"
DEBUG_OP = "op"


class _Captured(BaseException):
    """Unwinds the plugin's ``__main__`` once it has called start(); BaseException so
    a plugin's ``except Exception`` cannot swallow it."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__()
        self.config = config


def _capture(config: PluginConfig) -> None:
    raise _Captured(config)


def load_plugin(path: str) -> PluginConfig:
    """Run the plugin file as a host would (cwd = its folder) and take the config it starts."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    sys.path.insert(0, folder)
    os.chdir(folder)
    sys.argv = [path]
    plugin.start_hook = _capture
    try:
        module_globals = runpy.run_path(path, run_name="__main__")
    except _Captured as captured:
        return captured.config
    finally:
        plugin.start_hook = None
    for value in module_globals.values():
        if isinstance(value, PluginConfig):
            return value
    raise SystemExit(f"{path} neither calls sdk.start() nor defines a PluginConfig")


def _context(symbol: str, emit: Any = None, ack: Any = None) -> Context:
    logger = context_logger(symbol, DEBUG_RULE, DEBUG_OP, 0)
    return Context(DEBUG_RULE, DEBUG_OP, 0, logger, emit=emit, ack=ack)


def run_source(config: PluginConfig, symbol: str, datasource: str, conf: dict, count: int, duration: float) -> int:
    """Print each emitted record; stop after ``count`` records, ``duration`` seconds or Ctrl-C."""
    source = config.factory(TYPE_SOURCE, symbol)()
    source.configure(datasource, conf)
    done = threading.Event()
    emitted = 0

    def emit(data: bytes) -> None:
        nonlocal emitted
        if done.is_set():
            return
        sys.stdout.write(data.decode() + "\n")
        sys.stdout.flush()
        emitted += 1
        if count and emitted >= count:
            done.set()

    ctx = _context(symbol, emit=emit)
    failure: list[BaseException] = []
    thread = threading.Thread(target=_run_open, args=(source, ctx, failure, done), daemon=True)
    thread.start()
    _wait(done, duration)
    done.set()
    source.close(ctx)
    thread.join(1.0)
    if failure:
        print(f"source open raised {error_text(failure[0])}", file=sys.stderr)
        return 1
    return 0


def _run_open(source: Any, ctx: Context, failure: list[BaseException], done: threading.Event) -> None:
    try:
        source.open(ctx)
    except Exception as err:
        failure.append(err)
    finally:
        done.set()


def _wait(done: threading.Event, duration: float) -> None:
    deadline = time.monotonic() + duration if duration else None
    try:
        while not done.wait(0.1):
            if deadline is not None and time.monotonic() >= deadline:
                return
    except KeyboardInterrupt:
        return


def run_sink(config: PluginConfig, symbol: str, conf: dict, lines: Any) -> int:
    """Collect each non-empty input line as one message; acks (when requireAck) go to stderr."""
    sink = config.factory(TYPE_SINK, symbol)()
    sink.configure(conf)
    gate = AckGate(_print_ack if requires_ack(conf) else None)
    ctx = _context(symbol, ack=gate.send)
    sink.open(ctx)
    try:
        for line in lines:
            line = line.strip()
            if not line:
                continue
            gate.begin()
            try:
                sink.collect(ctx, line.encode())
            except Exception as err:
                gate.send(encode_ack(error_text(err)))
            else:
                gate.send(ACK_OK)
    except KeyboardInterrupt:
        pass
    finally:
        sink.close(ctx)
    return 0


def _print_ack(payload: bytes) -> None:
    print(f"ack {payload.decode()}", file=sys.stderr, flush=True)


def run_function(config: PluginConfig, symbol: str, calls: list[list[Any]]) -> int:
    """Send IsAggregate, then Validate and Exec for each argument list, as the host would."""
    control = Control(symbol=symbol, plugin_type=TYPE_FUNC, rule_id="", op_id="", instance_id=0)
    runtime = FunctionRuntime(control, config.factory(TYPE_FUNC, symbol), RuntimeArgs())
    meta = json.dumps({"ruleId": DEBUG_RULE, "opId": DEBUG_OP, "instanceId": 0, "funcId": 0})
    _call(runtime, "IsAggregate", None)
    for args in calls:
        _call(runtime, "Validate", args)
        _call(runtime, "Exec", [*args, meta])
    return 0


def _call(runtime: FunctionRuntime, name: str, arg: Any) -> None:
    reply = runtime.handle(json.dumps({"func": name, "arg": arg}).encode())
    shown = arg[:-1] if name == "Exec" else arg
    print(json.dumps({"call": name, "args": shown, "reply": json.loads(reply)}), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sdk.debug", description=__doc__.split("\n\n")[0])
    parser.add_argument("plugin", help="the plugin's executable .py file")
    parser.add_argument("kind", choices=["source", "sink", "function", "func"])
    parser.add_argument("symbol")
    parser.add_argument("--conf", type=json.loads, default={}, help="symbol config as a JSON object")
    parser.add_argument("--datasource", default="", help="source only: the stream's DATASOURCE")
    parser.add_argument("--count", type=int, default=0, help="source only: stop after N records")
    parser.add_argument("--duration", type=float, default=0, help="source only: stop after S seconds")
    parser.add_argument(
        "--args",
        dest="calls",
        type=json.loads,
        action="append",
        default=[],
        help="function only: a JSON list of argument values; repeatable",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    log.install()
    config = load_plugin(options.plugin)
    try:
        return _run(options, config)
    except LookupError as err:
        print(err, file=sys.stderr)
        return 2


def _run(options: argparse.Namespace, config: PluginConfig) -> int:
    if options.kind == "source":
        return run_source(config, options.symbol, options.datasource, options.conf, options.count, options.duration)
    if options.kind == "sink":
        return run_sink(config, options.symbol, options.conf, sys.stdin)
    calls = [c if isinstance(c, list) else [c] for c in options.calls]
    return run_function(config, options.symbol, calls)


if __name__ == "__main__":
    sys.exit(main())
