"""The ASGI application: routes, bearer-token check, answers shaped as eKuiper's.

One route per path, dispatching on the method.  Answers are eKuiper 2.x's
(docs/rest.md): a success message is plain text (``Stream demo is
created.``), lists and descriptions are JSON, an error is eKuiper's JSON
``{"error": <number>, "message": ...}`` served as ``text/plain`` (with the
loader's ``code`` word as an extra key), an unknown path is ``404 page not
found`` and a wrong method a 405 with an empty body.  Every handler runs
inside one wrapper that turns ``ApiError`` into its answer and anything
unexpected into a logged 500 (which the schemathesis test makes sure no
request can reach).
"""

from __future__ import annotations

import hmac
import json
import platform
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from loader.api import metadata
from loader.api.errors import ApiError, bad_request, not_found, storage_error
from loader.api.openapi import build_openapi
from loader.api.plugins import api_error, is_upload, plugin_info, plugin_status, receive_upload
from loader.api.resources import KINDS, Resources, loader_version
from loader.api.view import LoaderView
from loader.dataplane.sink import BUILTIN_SINKS
from loader.install.errors import PluginChangeError
from loader.install.installer import check_plugin_name
from loader.log import get_logger
from loader.plugins.manifest import PluginSpec

MAX_BODY = 1024 * 1024
Handler = Callable[[Request], Awaitable[Any]]
TEXT = "text/plain; charset=utf-8"
#: eKuiper's answer to a path it does not serve (Go's, with its newline).
NOT_FOUND_PAGE = "404 page not found\n"
#: The words eKuiper (Go's strconv.ParseBool) takes for a boolean query parameter.
BOOLEANS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
#: A metadata file eKuiper does not have: its ConfKeyError number.
CONF_KEY_ERROR = 5000


class JsonResponse(Response):
    """JSON with non-ASCII escaped: any string a client sent (even a lone surrogate) can be echoed safely."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def text_response(text: str, status: int = 200) -> Response:
    """A plain-text answer, as eKuiper gives its success messages."""
    return Response(text, status_code=status, media_type=TEXT)


def error_response(error: ApiError) -> Response:
    """eKuiper's error: its JSON as ``text/plain`` with a final newline (Go's ``http.Error``)."""
    body = json.dumps(error.body(), ensure_ascii=True, separators=(",", ":")) + "\n"
    headers = {"X-Content-Type-Options": "nosniff", **error.headers}
    return Response(body, status_code=error.status, headers=headers, media_type=TEXT)


class TokenAuth:
    """Pure ASGI middleware: every path but /ping needs ``Authorization: Bearer <token>`` when a token is set.

    The token is read from the service's configuration on every request, so a
    SIGHUP reload that changes it applies at once.
    """

    def __init__(self, app: ASGIApp, token: Callable[[], str | None]) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/ping":
            await self.app(scope, receive, send)
            return
        expected = self.token()
        if expected and not _authorized(scope, expected):
            response = error_response(
                ApiError(
                    401,
                    "unauthorized",
                    "this route needs the header 'Authorization: Bearer <token>' with the "
                    "loader's rest_token (or PORTABLE_LOADER_TOKEN)",
                    headers={"WWW-Authenticate": 'Bearer realm="portable-loader"'},
                )
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _authorized(scope: Scope, expected: str) -> bool:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return hmac.compare_digest(credentials.strip(), expected.encode("utf-8"))
    return False


async def read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise bad_request("body_too_large", f"the request body is over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    """The body as JSON; ValueError saying why not (``EOF`` for an empty body, as eKuiper's decoder says)."""
    if not raw.strip():
        raise ValueError("EOF")

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"the body is not UTF-8: {exc}") from None


async def json_body(request: Request, context: str) -> Any:
    """The body parsed as JSON; 400 ``<context>: <why>`` for anything else (empty, too large, not JSON, NaN)."""
    raw = await read_body(request)
    try:
        return decode_json(raw)
    except ValueError as exc:
        raise bad_request("invalid_json", f"{context}: {exc}") from None


async def json_object(request: Request, context: str, example: str) -> dict[str, Any]:
    body = await json_body(request, context)
    if not isinstance(body, dict):
        raise bad_request("invalid_json", f"{context}: the body must be a JSON object, e.g. {example}")
    return body


async def rule_body(request: Request) -> Any:
    """A rule's JSON; eKuiper's ``invalid rule json: Parse rule <body> error : <why>.`` if it is not JSON."""
    raw = await read_body(request)
    try:
        return decode_json(raw)
    except ValueError as exc:
        text = raw.decode("utf-8", errors="replace")
        if len(text) > ECHO_LIMIT:  # eKuiper echoes the body; a huge one is cut
            text = text[:ECHO_LIMIT] + "..."
        raise bad_request("invalid_json", f"invalid rule json: Parse rule {text} error : {exc}.") from None


#: How much of a body that is not JSON an error message quotes.
ECHO_LIMIT = 200
PLUGIN_BODY = "Invalid body: Error decoding the portable plugin json"
STREAM_BODY = "Invalid body: Error decoding the statement descriptor"


class Api:
    """Binds the handlers to one loader (its ``LoaderView``; None only to list the routes)."""

    def __init__(self, view: LoaderView | None) -> None:
        self._view = view
        self.resources = Resources(view)
        self.log = get_logger()
        self.started = time.monotonic()
        #: What the last install or update of each plugin could not do (shown in its status as ``warnings``).
        self.warnings: dict[str, list[str]] = {}

    @property
    def view(self) -> LoaderView:
        assert self._view is not None, "an Api built without a loader only lists its routes"
        return self._view

    # ------------------------------------------------------------ loader

    async def root(self, request: Request) -> Any:
        """eKuiper's ``GET /``: version, os, arch and uptime (JSON, served as text as eKuiper does)."""
        info = {
            "version": loader_version(),
            "os": platform.system().lower(),
            "arch": platform.machine(),
            "upTimeSeconds": int(time.monotonic() - self.started),
        }
        return text_response(json.dumps(info, separators=(",", ":")))

    async def ping(self, request: Request) -> Response:
        return Response(status_code=200)

    async def openapi(self, request: Request) -> Any:
        return build_openapi(bool(self.view.config.rest_token), loader_version())

    async def status(self, request: Request) -> Any:
        statuses = [s for s in (plugin_status(self.view, n) for n in self.view.plugin_names()) if s is not None]
        return self.resources.overview(statuses)

    # ----------------------------------------------------------- plugins

    async def list_plugins(self, request: Request) -> Any:
        plugins_dir = self.view.config.plugins_dir
        return [plugin_info(spec, plugins_dir) for spec in self.view.running_specs().values()]

    async def describe_plugin(self, request: Request) -> Any:
        name = request.path_params["name"]
        spec = self.view.running_spec(name)
        if spec is None:
            status = self.view.plugin_status(name)
            hint = f"; it is {status.state}: {status.last_error}" if status is not None and status.last_error else ""
            raise not_found(f"describe portable plugin {name} error: not found{hint}")
        return plugin_info(spec, self.view.config.plugins_dir)

    async def plugin_status(self, request: Request) -> Any:
        name = request.path_params["name"]
        status = plugin_status(self.view, name)
        if status is None:
            raise not_found(f"portable plugin {name} not found: not found")
        status["warnings"] = self.warnings.get(name, [])
        return status

    async def install_plugin(self, request: Request) -> Any:
        """eKuiper's JSON ``{"name", "file": URL}``, or (our addition) the zip itself as the body with ``?name=``.

        Every refusal but an unreadable body is worded as eKuiper's: ``portable plugin create command error: ...``.
        """
        query_name = request.query_params.get("name")
        try:
            if is_upload(request):
                name = check_plugin_name(query_name)
                upload = await receive_upload(request, self.view.config)
                try:
                    result = await self.view.installer.install(name, upload)
                finally:
                    upload.discard()
            else:
                body = await json_object(
                    request, PLUGIN_BODY, '{"name": "demo", "file": "https://example.com/demo.zip"}'
                )
                name = check_plugin_name(body.get("name"))
                if query_name is not None and query_name != name:
                    raise bad_request("bad_name", f"the body names plugin {name} but the query names {query_name}")
                result = await self.view.installer.install(name, body.get("file"))
        except PluginChangeError as exc:
            raise api_error(exc).prefixed("portable plugin create command error") from None
        except ApiError as exc:
            if exc.message.startswith(PLUGIN_BODY):
                raise
            raise exc.prefixed("portable plugin create command error") from None
        self.warnings[name] = result.warnings
        return text_response(f"portable plugin {name} is created", 201)

    async def update_plugin(self, request: Request) -> Any:
        """eKuiper's update: the new version replaces the old (running rules move to it), or is installed."""
        name = request.path_params["name"]
        try:
            if is_upload(request):
                check_plugin_name(name)
                upload = await receive_upload(request, self.view.config)
                try:
                    result = await self.view.installer.update(name, upload)
                finally:
                    upload.discard()
            else:
                body = await json_object(request, PLUGIN_BODY, '{"file": "https://example.com/demo.zip"}')
                if "name" in body and body["name"] != name:
                    raise bad_request("bad_name", f"the body names plugin {body['name']} but the path names {name}")
                result = await self.view.installer.update(name, body.get("file"))
        except PluginChangeError as exc:
            raise api_error(exc).prefixed("portable plugin update command error") from None
        except ApiError as exc:
            if exc.message.startswith(PLUGIN_BODY):
                raise
            raise exc.prefixed("portable plugin update command error") from None
        self.warnings[name] = result.warnings
        return text_response(f"portable plugin {name} is updated")

    async def delete_plugin(self, request: Request) -> Any:
        name = request.path_params["name"]
        try:
            await self.view.installer.delete(name)
        except PluginChangeError as exc:
            raise api_error(exc, missing_status=400).prefixed(f"delete portable plugin {name} error") from None
        self.warnings.pop(name, None)
        return text_response(f"portable plugin {name} is deleted")

    async def list_udfs(self, request: Request) -> Any:
        return self.resources.udfs()

    async def describe_udf(self, request: Request) -> Any:
        return self.resources.describe_udf(request.path_params["name"])

    # ----------------------------------------------------------- streams

    async def list_streams(self, request: Request) -> Any:
        return self.resources.stream_names()

    async def stream_details(self, request: Request) -> Any:
        return self.resources.stream_details()

    async def create_stream(self, request: Request) -> Any:
        body = await json_body(request, STREAM_BODY)
        message = await _stream_error(self.resources.create_stream, body)
        return text_response(message, 201)

    async def describe_stream(self, request: Request) -> Any:
        return self.resources.describe_stream(request.path_params["name"])

    async def replace_stream(self, request: Request) -> Any:
        name = request.path_params["name"]
        body = await json_body(request, STREAM_BODY)
        return text_response(await _stream_error(self.resources.replace_stream, name, body))

    async def drop_stream(self, request: Request) -> Any:
        unknown = sorted(set(request.query_params) - {"force"})
        if unknown:
            raise bad_request("bad_parameter", f"unknown query parameter {unknown[0]}; this route takes only force")
        force = request.query_params.get("force", "false")
        if force not in BOOLEANS:
            raise bad_request("bad_parameter", f"force={force} is not a boolean: use true or false")
        return text_response(await self.resources.drop_stream(request.path_params["name"], BOOLEANS[force]))

    # ------------------------------------------------------------- rules

    async def list_rules(self, request: Request) -> Any:
        return self.resources.rule_list()

    async def create_rule(self, request: Request) -> Any:
        message = await self.resources.create_rule(await rule_body(request))
        return text_response(message, 201)

    async def describe_rule(self, request: Request) -> Any:
        return self.resources.describe_rule(request.path_params["id"])

    async def update_rule(self, request: Request) -> Any:
        rule_id = request.path_params["id"]
        try:
            message = await self.resources.update_rule(rule_id, await rule_body(request))
        except ApiError as exc:
            raise exc.prefixed("Update rule error") from None
        return text_response(message)

    async def delete_rule(self, request: Request) -> Any:
        return text_response(await self.resources.delete_rule(request.path_params["id"]))

    async def rule_status(self, request: Request) -> Any:
        return self.resources.rule_status(request.path_params["id"])

    async def rule_topo(self, request: Request) -> Any:
        return self.resources.rule_topo(request.path_params["id"])

    def rule_action(self, action: str) -> Handler:
        async def handle(request: Request) -> Any:
            return text_response(await self.resources.control_rule(request.path_params["id"], action))

        return handle

    # ----------------------------------------------------------- symbols

    def symbols(self, kind: str) -> Handler:
        async def handle(request: Request) -> Any:
            return self.resources.symbols(kind)

        return handle

    def _symbol_owners(self, kind: str) -> dict[str, str | None]:
        """Every symbol of ``kind`` rules can use: its plugin, or None for one built in (portable ones win)."""
        builtins: tuple[str, ...] = {"sources": (), "sinks": tuple(BUILTIN_SINKS), "functions": ()}[kind]
        owners: dict[str, str | None] = {symbol: None for symbol in builtins}
        owners.update(self.view.symbols(kind))
        return dict(sorted(owners.items()))

    def _folder(self, plugin: str | None) -> Path | None:
        spec: PluginSpec | None = self.view.running_spec(plugin) if plugin else None
        return spec.folder if spec is not None else None

    def metadata_list(self, kind: str) -> Handler:
        async def handle(request: Request) -> Any:
            owners = self._symbol_owners(kind)
            if kind == "functions":
                return [metadata.function_group(s, p, self._folder(p)) for s, p in owners.items()]
            return [metadata.brief(kind, s, p, self._folder(p)) for s, p in owners.items()]

        return handle

    def metadata_describe(self, kind: str) -> Handler:
        async def handle(request: Request) -> Any:
            name = request.path_params["name"]
            owners = self._symbol_owners(kind)
            if name not in owners:
                raise bad_request("not_found", f"This plugin was not found:{name}", CONF_KEY_ERROR)
            return metadata.describe(kind, name, owners[name], self._folder(owners[name]))

        return handle

    async def metrics(self, request: Request) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST

        from loader.api.metrics import metrics_text

        return Response(metrics_text(self.view), media_type=CONTENT_TYPE_LATEST)

    # ----------------------------------------------------------- routing

    def routes(self) -> list[Route]:
        table: dict[str, dict[str, Handler]] = {
            "/": {"GET": self.root},
            "/ping": {"GET": self.ping},
            "/openapi.json": {"GET": self.openapi},
            "/status": {"GET": self.status},
            "/metrics": {"GET": self.metrics},
            "/plugins/portables": {"GET": self.list_plugins, "POST": self.install_plugin},
            "/plugins/portables/{name}": {
                "GET": self.describe_plugin,
                "PUT": self.update_plugin,
                "DELETE": self.delete_plugin,
            },
            "/plugins/portables/{name}/status": {"GET": self.plugin_status},
            "/plugins/udfs": {"GET": self.list_udfs},
            "/plugins/udfs/{name}": {"GET": self.describe_udf},
            "/streams": {"GET": self.list_streams, "POST": self.create_stream},
            "/streamdetails": {"GET": self.stream_details},
            "/streams/{name}": {"GET": self.describe_stream, "PUT": self.replace_stream, "DELETE": self.drop_stream},
            "/rules": {"GET": self.list_rules, "POST": self.create_rule},
            "/rules/{id}": {"GET": self.describe_rule, "PUT": self.update_rule, "DELETE": self.delete_rule},
            "/rules/{id}/status": {"GET": self.rule_status},
            "/rules/{id}/topo": {"GET": self.rule_topo},
            **{
                f"/rules/{{id}}/{action}": {"POST": self.rule_action(action)} for action in ("start", "stop", "restart")
            },
            **{f"/{kind}": {"GET": self.symbols(kind)} for kind in KINDS},
            **{f"/metadata/{kind}": {"GET": self.metadata_list(kind)} for kind in KINDS},
            **{f"/metadata/{kind}/{{name}}": {"GET": self.metadata_describe(kind)} for kind in ("sources", "sinks")},
        }
        return [Route(path, self._dispatch(methods), methods=list(methods)) for path, methods in table.items()]

    def _os_error(self, request: Request, exc: OSError) -> Response:
        """A storage problem (permissions, read-only, full) answers 503/507 with the fix; others are bugs: 500."""
        error = storage_error(exc)
        if error is not None:
            self.log.error(
                "api.storage_error",
                method=request.method,
                path=request.url.path,
                file=exc.filename,
                error=error.message,
            )
            return error_response(error)
        self.log.exception("api.internal_error", method=request.method, path=request.url.path, error=str(exc))
        return error_response(
            ApiError(
                500, "internal", f"the loader failed on this request: {exc}; see its log (event api.internal_error)"
            )
        )

    def _dispatch(self, methods: dict[str, Handler]) -> Handler:
        async def endpoint(request: Request) -> Response:
            handler = methods.get(request.method) or methods["GET"]  # HEAD is answered like GET
            started = time.monotonic()
            try:
                result = await handler(request)
            except ApiError as exc:
                response: Response = error_response(exc)
            except OSError as exc:
                response = self._os_error(request, exc)
            except Exception as exc:  # a bug, never the client's input: say so, log it, keep serving
                self.log.exception("api.internal_error", method=request.method, path=request.url.path, error=str(exc))
                response = error_response(
                    ApiError(
                        500,
                        "internal",
                        f"the loader failed on this request: {exc}; see its log (event api.internal_error)",
                    )
                )
            else:
                response = _as_response(result)
            if request.method not in ("GET", "HEAD"):
                self.log.info(
                    "api.request",
                    method=request.method,
                    path=request.url.path,
                    status=response.status_code,
                    ms=round((time.monotonic() - started) * 1000, 1),
                )
            return response

        return endpoint


def _as_response(result: Any) -> Response:
    if isinstance(result, tuple):
        status, result = result
        if isinstance(result, Response):
            return result
        return JsonResponse(result, status_code=status)
    if isinstance(result, Response):
        return result
    return JsonResponse(result)


async def _stream_error(action: Callable[..., Awaitable[str]], *args: Any) -> str:
    """Run a stream change; its refusal worded as eKuiper's: ``Stream command error: ...``."""
    try:
        return await action(*args)
    except ApiError as exc:
        raise exc.prefixed("Stream command error") from None


async def _http_error(request: Request, exc: Exception) -> Response:
    """eKuiper's router: ``404 page not found`` for an unknown path, an empty 405 for a wrong method."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return Response(NOT_FOUND_PAGE, status_code=404, media_type=TEXT, headers={"X-Content-Type-Options": "nosniff"})
    if exc.status_code == 405:
        return Response(status_code=405, headers=dict(exc.headers or {}))
    return error_response(ApiError(exc.status_code, "http_error", str(exc.detail), headers=dict(exc.headers or {})))


def build_app(view: LoaderView) -> ASGIApp:
    api = Api(view)
    app = Starlette(routes=api.routes(), exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    return TokenAuth(app, lambda: view.config.rest_token)
