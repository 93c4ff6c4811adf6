"""The aiohttp application: Socket.IO at /socket.io/, health, readiness, metrics, CORS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from liveroom.api import add_api_routes
from liveroom.config import Config
from liveroom.node import Node
from liveroom.pages import add_page_routes
from liveroom.polling import add_polling_route

__all__ = ["NODE_KEY", "OriginPolicy", "build_app"]

NODE_KEY = web.AppKey("liveroom_node", Node)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class OriginPolicy:
    """Which browser origins may talk to the server (CORS and the Socket.IO origin check).

    Configured origins if any; otherwise the server's own origin (the Host it was reached
    at) and localhost / 127.0.0.1 / [::1] on any port.
    """

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self._allowed = {origin.rstrip("/") for origin in allowed}

    def allows(self, origin: str, host: str | None) -> bool:
        if self._allowed:
            return "*" in self._allowed or origin.rstrip("/") in self._allowed
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https"):
            return False
        return parts.hostname in LOCAL_HOSTS or (host is not None and parts.netloc == host)


def build_app(config: Config, node: Node | None = None) -> web.Application:
    node = node or Node(config)
    policy = OriginPolicy(config.server.allowed_origins)
    app = web.Application(
        middlewares=[_cors_middleware(policy)], client_max_size=config.limits.max_message_bytes
    )
    app[NODE_KEY] = node
    for path, server in (("/socket.io/", node.sio), ("/socket.io-msgpack/", node.msgpack_sio)):
        server.allow_origin = policy.allows
        add_polling_route(app.router, path, server)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    add_api_routes(app.router, node)
    add_page_routes(app)  # the viewer, host and dashboard pages (docs/pages.md)
    app.cleanup_ctx.append(_lifespan)
    app.on_shutdown.append(_on_shutdown)
    # The media plane (WHIP/WHEP, docs/media.md). mypy checks media/ as package `media`,
    # so it cannot follow the installed name liveroom.media.
    from liveroom.media.routes import add_media_routes  # type: ignore[import-not-found,unused-ignore]

    add_media_routes(app, node)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    node = app[NODE_KEY]
    await node.start()
    yield
    await node.stop()


async def _on_shutdown(app: web.Application) -> None:
    await app[NODE_KEY].close_connections()


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[NODE_KEY].ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "unavailable"}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[NODE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _cors_middleware(policy: OriginPolicy) -> Any:
    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.path.startswith("/socket.io") or origin is None:  # and /socket.io-msgpack/
            return await handler(request)  # Engine.IO applies the same policy itself
        if not policy.allows(origin, request.host):
            return web.json_response(
                {"error": {"code": "forbidden_origin", "message": f"origin {origin} is not allowed"}},
                status=403,
            )
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    return cors
