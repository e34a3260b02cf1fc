"""``portable-loader plugins|streams|rules|symbols|status``: a client of the REST API.

Standard library only (urllib), so the client costs nothing beyond the
loader's own install.  The API answers as eKuiper does: plain text for a
change that succeeded, JSON for lists and descriptions, and eKuiper's error
``{"error": <number>, "message": ...}`` (with the loader's ``code`` word)
served as text; the client reads all three.  Human-readable tables by
default, the API's JSON with ``--json``.  Exit codes: 0 done, 1 the loader
refused (its error is printed), 3 the loader could not be reached.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_URL = "http://127.0.0.1:9081"
URL_ENV = "PORTABLE_LOADER_URL"
TOKEN_ENV = "PORTABLE_LOADER_TOKEN"
TIMEOUT_S = 30.0
#: Install and update answer once the plugin runs, which may include building its venv.
SLOW_TIMEOUT_S = 900.0
EXIT_REFUSED, EXIT_UNREACHABLE = 1, 3


class ApiFailure(Exception):
    """A refusal: HTTP status, eKuiper's error number, the loader's code word and the message."""

    def __init__(self, status: int, code: str, message: str, number: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.number = status, code, message, number

    def body(self) -> dict[str, Any]:
        return {"error": self.number, "message": self.message, "code": self.code}


class Unreachable(Exception):
    pass


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, timeout: float = TIMEOUT_S) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        return self.send(method, path, data, "application/json", timeout)

    def upload(self, method: str, path: str, data: bytes, timeout: float = TIMEOUT_S) -> Any:
        """Send a plugin zip as the request body (the loader's addition to eKuiper's URL form)."""
        return self.send(method, path, data, "application/zip", timeout)

    def send(self, method: str, path: str, data: bytes | None, content_type: str, timeout: float) -> Any:
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw, media = response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raise _failure(exc.code, exc.read(), str(exc.reason)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(
                f"cannot reach the loader at {self.url}: {reason}; is it running "
                "(portable-loader serve) with rest enabled, and is --url right?"
            ) from None
        if media == "application/json":
            return json.loads(raw)
        return raw.decode("utf-8", errors="replace") if raw.strip() else None


def _failure(status: int, raw: bytes, reason: str) -> ApiFailure:
    """An error answer: eKuiper's JSON (served as text) or, from anything else in between, its text."""
    try:
        error = json.loads(raw)
    except ValueError:
        error = None
    if isinstance(error, dict) and "message" in error:
        number = error.get("error") if isinstance(error.get("error"), int) else None
        return ApiFailure(status, str(error.get("code") or error.get("error")), str(error["message"]), number)
    text = raw.decode(errors="replace").strip()
    return ApiFailure(status, "http_error", text or reason)


# ------------------------------------------------------------------ output


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Left-aligned columns: (header, key) pairs; lists are joined with commas, None is '-'."""

    def cell(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value) or "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
        return str(value)

    cells = [[header for header, _ in columns]] + [[cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(lines)


def fields(data: dict[str, Any]) -> str:
    """``key: value`` lines, for one object."""
    if not data:
        return "(empty)"
    width = max(len(str(k)) for k in data)
    out = []
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        out.append(f"{str(key) + ':':<{width + 1}} {'-' if value is None or value == '' else value}")
    return "\n".join(out)


# ---------------------------------------------------------------- commands


def _name(value: str) -> str:
    return quote(value, safe="")


def plugin_zip(source: str) -> bytes:
    """The zip to upload: a local zip as it is, a local folder zipped in memory (what the digest covers)."""
    path = Path(source).expanduser()
    if path.is_dir():
        from loader.plugins.digest import content_files

        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in content_files(path.absolute()):
                archive.write(file, str(file.relative_to(path.absolute())))
        return buffer.getvalue()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SystemExit(
            f"portable-loader: {source}: no such file or folder (give a zip, a plugin folder or a URL)"
        ) from None
    except OSError as exc:
        raise SystemExit(f"portable-loader: cannot read {source}: {exc.strerror}") from None


def _rule_body(source: str) -> Any:
    """A rule from a JSON file, '-' for standard input, or inline JSON text."""
    if source == "-":
        text = sys.stdin.read()
    elif source.lstrip().startswith("{"):
        text = source
    else:
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise SystemExit(f"portable-loader: cannot read {source}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"portable-loader: {source}: not valid JSON: {exc}") from None


def _plugin_result(data: dict[str, Any], verb: str) -> str:
    """``installed demo v1.0.0: running (pid 42)`` and the install's warnings, from the plugin's status."""
    line = f"{verb} {data.get('name')} {data.get('version')}: {data.get('state')}"
    if data.get("pid"):
        line += f" (pid {data['pid']})"
    for warning in data.get("warnings") or []:
        line += f"\nwarning: {warning}"
    return line


PLUGIN_COLUMNS = [
    ("NAME", "name"),
    ("VERSION", "version"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("SOURCES", "sources"),
    ("SINKS", "sinks"),
    ("FUNCTIONS", "functions"),
]
RULE_COLUMNS = [("ID", "id"), ("STATE", "state"), ("STATUS", "status"), ("MESSAGE", "message")]
STATUS_COLUMNS = [
    ("PLUGIN", "name"),
    ("STATE", "state"),
    ("VERSION", "version"),
    ("PREVIOUS", "previousVersion"),
    ("PID", "pid"),
    ("RESTARTS", "restarts"),
    ("RULES", "refCount"),
    ("SINCE", "since"),
    ("FAILED", "failedVersion"),
    ("ERROR", "errMsg"),
]


def run_plugins(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    action = args.action
    if action == "list":
        manifests = client.call("GET", "/plugins/portables")
        states = {p["name"]: p for p in client.call("GET", "/status")["plugins"]}
        rows = [
            {**m, "state": states.get(m["name"], {}).get("state"), "pid": states.get(m["name"], {}).get("pid")}
            for m in manifests
        ]
        return manifests, table(rows, PLUGIN_COLUMNS) if rows else "no plugins loaded"
    if action == "describe":
        data = client.call("GET", f"/plugins/portables/{_name(args.name)}")
        return data, fields(data)
    if action == "status":
        data = client.call("GET", f"/plugins/portables/{_name(args.name)}/status")
        return data, fields(data)
    if action in ("install", "update"):
        method, path = (
            ("POST", f"/plugins/portables?name={_name(args.name)}")
            if action == "install"
            else ("PUT", f"/plugins/portables/{_name(args.name)}")
        )
        if "://" in args.file:  # a URL the loader fetches itself (eKuiper's form)
            body = {"name": args.name, "file": args.file} if action == "install" else {"file": args.file}
            message = client.call(method, path.split("?")[0], body, timeout=SLOW_TIMEOUT_S)
        else:  # a local zip or folder: sent in the body, so the loader needs no access to our files
            message = client.upload(method, path, plugin_zip(args.file), timeout=SLOW_TIMEOUT_S)
        data = {"message": message, **client.call("GET", f"/plugins/portables/{_name(args.name)}/status")}
        return data, _plugin_result(data, "installed" if action == "install" else "updated")
    message = client.call("DELETE", f"/plugins/portables/{_name(args.name)}")
    return {"message": message}, message


def run_streams(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    action = args.action
    if action == "list":
        data = client.call("GET", "/streamdetails")
        columns = [
            ("NAME", "name"),
            ("TYPE", "type"),
            ("FORMAT", "format"),
            ("DATASOURCE", "datasource"),
            ("CONF_KEY", "confKey"),
            ("SHARED", "shared"),
            ("ERROR", "error"),
        ]
        return data, table(data, columns) if data else "no streams"
    if action == "describe":
        data = client.call("GET", f"/streams/{_name(args.name)}")
        return data, fields(data)
    if action == "create":
        message = client.call("POST", "/streams", {"sql": args.sql})
    elif action == "update":
        message = client.call("PUT", f"/streams/{_name(args.name)}", {"sql": args.sql})
    else:
        message = client.call("DELETE", f"/streams/{_name(args.name)}")
    return {"message": message}, message


def run_rules(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    action = args.action
    if action == "list":
        data = client.call("GET", "/rules")
        return data, table(data, RULE_COLUMNS) if data else "no rules"
    if action == "describe":
        data = client.call("GET", f"/rules/{_name(args.id)}")
        return data, json.dumps(data, indent=2)
    if action == "status":
        data = client.call("GET", f"/rules/{_name(args.id)}/status")
        return data, fields(data)
    if action == "create":
        body = _rule_body(args.rule)
        message = client.call("POST", "/rules", body)
        rule_id = str(body.get("id")) if isinstance(body, dict) else args.id
    elif action == "update":
        message = client.call("PUT", f"/rules/{_name(args.id)}", _rule_body(args.rule))
    elif action == "delete":
        message = client.call("DELETE", f"/rules/{_name(args.id)}")
        return {"message": message}, message
    else:
        message = client.call("POST", f"/rules/{_name(args.id)}/{action}")
    if action != "create":
        rule_id = args.id
    # The answer is eKuiper's sentence; what became of the rule is in its status.
    status = client.call("GET", f"/rules/{_name(rule_id)}/status")
    data = {"message": message, "state": status.get("state"), "reason": status.get("message") or None}
    text = f"{message} ({data['state']}" + (f": {data['reason']})" if data["reason"] else ")")
    return data, text


def run_symbols(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    kinds = args.kinds or ["sources", "sinks", "functions"]
    data = {kind: client.call("GET", f"/{kind}") for kind in kinds}
    rows = [{"kind": kind[:-1], **symbol} for kind in kinds for symbol in data[kind]]
    columns = [("KIND", "kind"), ("NAME", "name"), ("TYPE", "type"), ("PLUGIN", "plugin"), ("VERSION", "version")]
    return data, table(rows, columns) if rows else "no symbols"


#: ``status`` lists rules in this order: what needs attention first.
RULE_ORDER = {"degraded": 0, "error": 1, "waiting": 2, "running": 3, "stopped": 4}


def run_status(client: Client, args: argparse.Namespace) -> tuple[Any, str]:
    data = client.call("GET", "/status")
    rule_list = sorted(client.call("GET", "/rules"), key=lambda r: (RULE_ORDER.get(r.get("state"), 5), r["id"]))
    rules = ", ".join(f"{count} {state}" for state, count in data["rules"].items())
    head = (
        f"portable-loader {data['version']}: {len(data['plugins'])} plugins, {data['streams']} streams, rules: {rules}"
    )
    body = table(data["plugins"], STATUS_COLUMNS) if data["plugins"] else "no plugins"
    if rule_list:
        body += "\n" + table(
            rule_list, [("RULE", "id"), ("STATE", "state"), ("STATUS", "status"), ("MESSAGE", "message")]
        )
    failures = [
        f"{p['name']}: version {p['failedVersion']} failed, {p['version']} keeps running: {p['failedError']}"
        for p in data["plugins"]
        if p.get("failedVersion")
    ]
    return {**data, "ruleList": rule_list}, "\n".join([head, body, *failures])


RUNNERS = {
    "plugins": run_plugins,
    "streams": run_streams,
    "rules": run_rules,
    "symbols": run_symbols,
    "status": run_status,
}


# ------------------------------------------------------------------ parser


def _kind(value: str) -> str:
    if value not in ("sources", "sinks", "functions"):
        raise argparse.ArgumentTypeError(f"{value!r} is not one of sources, sinks, functions")
    return value


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"the loader's REST address (default ${URL_ENV} or {DEFAULT_URL})",
    )
    common.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token, if the loader has one (default ${TOKEN_ENV})"
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
    return common


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client subcommands on the ``portable-loader`` parser."""
    common = _common()

    plugins = commands.add_parser("plugins", help="portable plugins: list, describe, status, install, update, delete")
    actions = plugins.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="loaded plugins with their state")
    for action, text in (
        ("describe", "a plugin's manifest"),
        ("status", "a plugin's status (eKuiper's and ours)"),
        ("delete", "unload and remove a plugin"),
    ):
        actions.add_parser(action, parents=[common], help=text).add_argument("name")
    for action, text in (
        ("install", "install a plugin; answers once it runs or failed"),
        ("update", "update a plugin; running rules move to the new version"),
    ):
        sub = actions.add_parser(action, parents=[common], help=text)
        sub.add_argument("name")
        sub.add_argument(
            "file",
            help="plugin zip or plugin folder (zipped for you), uploaded to the loader; or an "
            "http(s):// or file:// URL the loader fetches itself",
        )

    streams = commands.add_parser("streams", help="streams: list, describe, create, update, delete")
    actions = streams.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="streams with their source type")
    for action, text in (("describe", "a stream's definition"), ("delete", "drop a stream")):
        actions.add_parser(action, parents=[common], help=text).add_argument("name")
    actions.add_parser("create", parents=[common], help="CREATE STREAM ... SQL").add_argument("sql")
    update = actions.add_parser("update", parents=[common], help="replace a stream's SQL")
    update.add_argument("name")
    update.add_argument("sql")

    rules = commands.add_parser(
        "rules", help="rules: list, describe, create, update, start, stop, restart, delete, status"
    )
    actions = rules.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="rules with their state")
    for action, text in (
        ("describe", "the rule as stored"),
        ("start", "start it (persisted)"),
        ("stop", "stop it (persisted)"),
        ("restart", "stop and start it"),
        ("delete", "delete it"),
        ("status", "its status and metrics"),
    ):
        actions.add_parser(action, parents=[common], help=text).add_argument("id")
    actions.add_parser("create", parents=[common], help="create a rule").add_argument(
        "rule", help="rule JSON: a file, '-' for standard input, or the JSON text"
    )
    update = actions.add_parser("update", parents=[common], help="replace a rule")
    update.add_argument("id")
    update.add_argument("rule", help="rule JSON: a file, '-' for standard input, or the JSON text")

    symbols = commands.add_parser("symbols", parents=[common], help="every available source, sink and function")
    symbols.add_argument(
        "kinds", nargs="*", metavar="KIND", type=_kind, help="sources, sinks and/or functions (default: all)"
    )

    commands.add_parser("status", parents=[common], help="the loader's plugins and rules at a glance")


def run_client(args: argparse.Namespace) -> int:
    client = Client(args.url, args.token)
    try:
        data, text = RUNNERS[args.command](client, args)
    except ApiFailure as exc:
        if args.json:
            print(json.dumps(exc.body(), indent=2))
        print(f"portable-loader: {exc.message} ({exc.status} {exc.code})", file=sys.stderr)
        return EXIT_REFUSED
    except Unreachable as exc:
        print(f"portable-loader: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(json.dumps(data, indent=2) if args.json else text)
    return 0
