"""The ASGI application: routes, bearer-token check, JSON errors.

One route per path, dispatching on the method, so a wrong method gets a 405
with an ``Allow`` header listing exactly what the path supports.  Every
handler runs inside one wrapper that turns ``ApiError`` into its JSON
answer and anything unexpected into a logged 500 (which the schemathesis
test makes sure no request can reach).
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from loader.api.errors import ApiError, bad_request, not_found, storage_error
from loader.api.openapi import build_openapi
from loader.api.plugins import PluginInstaller, check_plugin_name, is_upload, plugin_info, plugin_status, \
    receive_upload
from loader.api.resources import KINDS, Resources, loader_version
from loader.log import get_logger
from loader.names import is_valid_name

MAX_BODY = 1024 * 1024
Handler = Callable[[Request], Awaitable[Any]]


class JsonResponse(Response):
    """JSON with non-ASCII escaped: any string a client sent (even a lone surrogate) can be echoed safely."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(error: ApiError) -> JsonResponse:
    return JsonResponse(error.body(), status_code=error.status, headers=error.headers)


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
            response = error_response(ApiError(401, "unauthorized",
                                               "this route needs the header 'Authorization: Bearer <token>' with the "
                                               "loader's rest_token (or PORTABLE_LOADER_TOKEN)",
                                               headers={"WWW-Authenticate": 'Bearer realm="portable-loader"'}))
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


async def json_body(request: Request) -> Any:
    """The request body parsed as JSON; 400 for anything else (empty, too large, not JSON, NaN)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise bad_request("body_too_large", f"the request body is over {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("invalid_json", "the request needs a JSON body")

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        return json.loads(raw, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise bad_request("invalid_json", f"the body is not valid JSON: {exc}") from None


async def json_object(request: Request, example: str) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise bad_request("invalid_json", f"the body must be a JSON object, e.g. {example}")
    return body


class Api:
    """Binds the handlers to one loader service."""

    def __init__(self, service) -> None:
        self.service = service
        self.installer = PluginInstaller(service)
        self.resources = Resources(service)
        self.log = get_logger()

    # ------------------------------------------------------------ loader

    async def ping(self, request: Request) -> Response:
        return Response(status_code=200)

    async def openapi(self, request: Request) -> Any:
        return build_openapi(bool(self.service.config.rest_token), loader_version())

    async def status(self, request: Request) -> Any:
        names = sorted(set(self.service.board.names()) | set(self.service.reconciler.supervisors))
        statuses = [s for s in (plugin_status(self.service, n) for n in names) if s is not None]
        return self.resources.overview(statuses)

    # ----------------------------------------------------------- plugins

    async def list_plugins(self, request: Request) -> Any:
        supervisors = self.service.reconciler.supervisors
        return [plugin_info(supervisors[name].spec) for name in sorted(supervisors)]

    async def describe_plugin(self, request: Request) -> Any:
        name = request.path_params["name"]
        supervisor = self.service.reconciler.supervisors.get(name)
        if supervisor is None:
            status = self.service.board.get(name)
            hint = f"it is {status.state}: {status.last_error}" if status is not None and status.last_error else ""
            raise not_found("plugin", name, hint or "list loaded plugins with GET /plugins/portables")
        return plugin_info(supervisor.spec)

    async def plugin_status(self, request: Request) -> Any:
        name = request.path_params["name"]
        status = plugin_status(self.service, name)
        if status is None:
            raise not_found("plugin", name, "list plugins with GET /plugins/portables")
        return status

    async def install_plugin(self, request: Request) -> Any:
        """eKuiper's JSON ``{"name", "file": URL}``, or (our addition) the zip itself as the body with ``?name=``."""
        query_name = request.query_params.get("name")
        if is_upload(request):
            name = check_plugin_name(query_name)
            upload = await receive_upload(request, self.service.config)
            try:
                return 201, await self.installer.install(name, upload)
            finally:
                upload.discard()
        body = await json_object(request, '{"name": "demo", "file": "https://example.com/demo.zip"}')
        name = check_plugin_name(body.get("name"))
        if query_name is not None and query_name != name:
            raise bad_request("bad_name", f"the body names plugin {name!r} but the query names {query_name!r}")
        return 201, await self.installer.install(name, body.get("file"))

    async def update_plugin(self, request: Request) -> Any:
        name = request.path_params["name"]
        if is_upload(request):
            check_plugin_name(name)
            upload = await receive_upload(request, self.service.config)
            try:
                return await self.installer.update(name, upload)
            finally:
                upload.discard()
        body = await json_object(request, '{"file": "https://example.com/demo.zip"}')
        if "name" in body and body["name"] != name:
            raise bad_request("bad_name", f"the body names plugin {body['name']!r} but the path names {name!r}")
        return await self.installer.update(name, body.get("file"))

    async def delete_plugin(self, request: Request) -> Any:
        return await self.installer.delete(request.path_params["name"])

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
        return 201, await self.resources.create_stream(await json_body(request))

    async def describe_stream(self, request: Request) -> Any:
        return self.resources.describe_stream(request.path_params["name"])

    async def update_stream(self, request: Request) -> Any:
        name = request.path_params["name"]
        body = await json_body(request)
        if not is_valid_name(name):
            raise not_found("stream", name)
        return await self.resources.update_stream(name, body)

    async def drop_stream(self, request: Request) -> Any:
        return await self.resources.drop_stream(request.path_params["name"])

    # ------------------------------------------------------------- rules

    async def list_rules(self, request: Request) -> Any:
        return self.resources.rule_list()

    async def create_rule(self, request: Request) -> Any:
        return 201, await self.resources.create_rule(await json_body(request))

    async def describe_rule(self, request: Request) -> Any:
        return self.resources.describe_rule(request.path_params["id"])

    async def update_rule(self, request: Request) -> Any:
        rule_id = request.path_params["id"]
        body = await json_body(request)
        if not is_valid_name(rule_id):
            raise not_found("rule", rule_id)
        return await self.resources.update_rule(rule_id, body)

    async def delete_rule(self, request: Request) -> Any:
        return await self.resources.delete_rule(request.path_params["id"])

    async def rule_status(self, request: Request) -> Any:
        return self.resources.rule_status(request.path_params["id"])

    def rule_action(self, action: str) -> Handler:
        async def handle(request: Request) -> Any:
            return await self.resources.control_rule(request.path_params["id"], action)
        return handle

    # ----------------------------------------------------------- symbols

    def symbols(self, kind: str) -> Handler:
        async def handle(request: Request) -> Any:
            return self.resources.symbols(kind)
        return handle

    async def metrics(self, request: Request) -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST

        from loader.api.metrics import metrics_text

        return Response(metrics_text(self.service), media_type=CONTENT_TYPE_LATEST)

    # ----------------------------------------------------------- routing

    def routes(self) -> list[Route]:
        table: dict[str, dict[str, Handler]] = {
            "/ping": {"GET": self.ping},
            "/openapi.json": {"GET": self.openapi},
            "/status": {"GET": self.status},
            "/metrics": {"GET": self.metrics},
            "/plugins/portables": {"GET": self.list_plugins, "POST": self.install_plugin},
            "/plugins/portables/{name}": {"GET": self.describe_plugin, "PUT": self.update_plugin,
                                          "DELETE": self.delete_plugin},
            "/plugins/portables/{name}/status": {"GET": self.plugin_status},
            "/plugins/udfs": {"GET": self.list_udfs},
            "/plugins/udfs/{name}": {"GET": self.describe_udf},
            "/streams": {"GET": self.list_streams, "POST": self.create_stream},
            "/streamdetails": {"GET": self.stream_details},
            "/streams/{name}": {"GET": self.describe_stream, "PUT": self.update_stream, "DELETE": self.drop_stream},
            "/rules": {"GET": self.list_rules, "POST": self.create_rule},
            "/rules/{id}": {"GET": self.describe_rule, "PUT": self.update_rule, "DELETE": self.delete_rule},
            "/rules/{id}/status": {"GET": self.rule_status},
            **{f"/rules/{{id}}/{action}": {"POST": self.rule_action(action)}
               for action in ("start", "stop", "restart")},
            **{f"/{kind}": {"GET": self.symbols(kind)} for kind in KINDS},
        }
        return [Route(path, self._dispatch(methods), methods=list(methods)) for path, methods in table.items()]

    def _os_error(self, request: Request, exc: OSError) -> Response:
        """A storage problem (permissions, read-only, full) answers 503/507 with the fix; others are bugs: 500."""
        error = storage_error(exc)
        if error is not None:
            self.log.error("api.storage_error", method=request.method, path=request.url.path, file=exc.filename,
                           error=error.message)
            return error_response(error)
        self.log.exception("api.internal_error", method=request.method, path=request.url.path, error=str(exc))
        return error_response(ApiError(500, "internal", f"the loader failed on this request: {exc}; "
                                                        "see its log (event api.internal_error)"))

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
                self.log.exception("api.internal_error", method=request.method, path=request.url.path,
                                   error=str(exc))
                response = error_response(ApiError(500, "internal", f"the loader failed on this request: {exc}; "
                                                                    "see its log (event api.internal_error)"))
            else:
                if isinstance(result, Response):
                    response = result
                elif isinstance(result, tuple):
                    response = JsonResponse(result[1], status_code=result[0])
                else:
                    response = JsonResponse(result)
            if request.method not in ("GET", "HEAD"):
                self.log.info("api.request", method=request.method, path=request.url.path,
                              status=response.status_code, ms=round((time.monotonic() - started) * 1000, 1))
            return response
        return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    messages = {404: f"no route {request.url.path!r}; see GET /openapi.json for the routes",
                405: f"{request.method} is not allowed on {request.url.path!r}"}
    error = ApiError(exc.status_code, codes.get(exc.status_code, "http_error"),
                     messages.get(exc.status_code, str(exc.detail)), headers=dict(exc.headers or {}))
    return error_response(error)


def build_app(service) -> ASGIApp:
    api = Api(service)
    app = Starlette(routes=api.routes(), exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    return TokenAuth(app, lambda: service.config.rest_token)
