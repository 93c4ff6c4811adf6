"""The host/backend HTTP API: every staff command and plugin query over JSON, OpenAPI-described.

`POST /api/rooms/{room}/commands/{NAME.verb}` runs a staff command (the body is its payload;
the room comes from the path) exactly as a host's socket would, through the dispatcher.
`GET /api/rooms/{room}/<query path>` serves the plugins' `QuerySpec`s. Both need
`Authorization: Bearer <token>` with role host or admin (a room-bound token: that room only).
Errors are 4xx/5xx with `{"error": {"code", "message"}}`; `/api/openapi.json` describes it all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import orjson
from aiohttp import web

from liveroom.auth import Identity
from liveroom.errors import BadRequest, CommandError, Forbidden, Unauthorized
from liveroom.plugin import QuerySpec
from liveroom.protocol import NAME_PATTERN, is_name

if TYPE_CHECKING:
    from liveroom.node import Node

__all__ = ["add_api_routes", "openapi_document"]

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "outranked": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "rate_limited": 429,
    "internal_error": 500,
    "unavailable": 503,
}
API_ROLES = ("host", "admin")


def add_api_routes(router: web.UrlDispatcher, node: Node) -> None:
    router.add_get("/api/openapi.json", _openapi_handler(node))
    router.add_post("/api/rooms/{room}/commands/{command}", _command_handler(node))
    for command in node.dispatcher.commands.values():
        if command.staff_only and command.http:  # a plugin's own path for a command (coupons/grants)
            router.add_post(f"/api/rooms/{{room}}/{command.http}", _command_handler(node, command.name))
    for plugin in node.plugins:
        for spec in plugin.queries():
            router.add_get(f"/api/rooms/{{room}}/{spec.path}", _query_handler(node, spec))


def error_response(error: CommandError) -> web.Response:
    return _json({"error": error.as_error()}, STATUS.get(error.code, 409))


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _caller(node: Node, request: web.Request, room: str) -> Identity:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("send Authorization: Bearer <token> (role host or admin)")
    identity = node.authority.verify(credentials.strip())
    if identity.role not in API_ROLES:
        raise Forbidden("the HTTP API is for host and admin tokens")
    if identity.room is not None and identity.room != room:
        raise Forbidden(f"this token is for room {identity.room!r} only")
    return identity


def _path_params(request: web.Request) -> None:
    """Every path parameter (room, command, a query's ids) is a name, the whole of it."""
    for key, value in request.match_info.items():
        if not is_name(value):
            raise BadRequest(f"{key} must be 1-64 letters, digits or _ . : -")


def _command_handler(node: Node, name: str = "") -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        room, command = request.match_info["room"], name or request.match_info["command"]
        try:
            _path_params(request)
            caller = _caller(node, request, room)
            try:
                body = orjson.loads(await request.read() or b"{}")
            except orjson.JSONDecodeError:
                raise BadRequest("the body is not JSON") from None
        except CommandError as error:
            return error_response(error)
        ack = await node.dispatcher.run_as(caller, room, command, body)
        if not ack["ok"]:
            return error_response(CommandError(ack["error"]["message"], ack["error"]["code"]))
        return _json(ack)

    return handle


def _query_handler(node: Node, spec: QuerySpec) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        room = request.match_info["room"]
        try:
            _path_params(request)
            caller = _caller(node, request, room)
            params = {**request.query, **request.match_info}
            return _json(await node.room_authority.query(room, caller, spec.path, params))
        except CommandError as error:
            return error_response(error)

    return handle


def _openapi_handler(node: Node) -> Callable[[web.Request], Awaitable[web.Response]]:
    document = openapi_document(node)

    async def handle(request: web.Request) -> web.Response:
        return _json(document)

    return handle


def openapi_document(node: Node) -> Mapping[str, Any]:
    specs = [spec for spec in node.dispatcher.commands.values() if spec.staff_only]
    _, components = msgspec.json.schema_components(
        [spec.payload for spec in specs], ref_template="#/components/schemas/{name}"
    )
    for schema in components.values():  # the room comes from the path
        schema.get("properties", {}).pop("room", None)
        if "room" in schema.get("required", []):
            schema["required"].remove("room")
    components["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
    }
    paths: dict[str, Any] = {}
    for spec in specs:
        body = {"$ref": f"#/components/schemas/{spec.payload.__name__}"}
        paths[f"/api/rooms/{{room}}/commands/{spec.name}"] = {"post": _operation(spec.summary, body)}
        if spec.http:
            paths[f"/api/rooms/{{room}}/{spec.http}"] = {"post": _operation(spec.summary, body)}
    for plugin in node.plugins:
        for query in plugin.queries():
            paths[f"/api/rooms/{{room}}/{query.path}"] = {"get": _operation(query.summary, None, query.path)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "liveroom host API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _operation(summary: str, body: dict[str, Any] | None, path: str = "") -> dict[str, Any]:
    parameters = [_path_param("room")]
    parameters += [_path_param(part[1:-1]) for part in path.split("/") if part.startswith("{")]
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "200": {"description": '`{"ok": true, ...}`'},
            "4XX": {"description": "refused", **error},
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _path_param(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN}
    return {"name": name, "in": "path", "required": True, "schema": schema}
