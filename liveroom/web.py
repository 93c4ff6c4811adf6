"""The aiohttp application: Engine.IO long-polling, health, readiness, metrics, CORS, and
the headers every response carries (`nosniff`; a CSP on every page)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from liveroom.api import add_api_routes
from liveroom.config import Config
from liveroom.node import Node
from liveroom.origins import OriginPolicy
from liveroom.pages import add_page_routes
from liveroom.polling import add_polling_route

__all__ = ["NODE_KEY", "OriginPolicy", "Siblings", "build_app"]


class Siblings(Protocol):
    """A worker's view of the other workers of its node (`liveroom serve --workers N`)."""

    async def all_ready(self) -> bool:
        """True when every worker is up (the supervisor's count)."""
        ...

    async def metrics(self) -> bytes:
        """Every worker's metrics, labelled by worker."""
        ...


NODE_KEY = web.AppKey("liveroom_node", Node)
SIBLINGS_KEY = web.AppKey("liveroom_siblings", Siblings)
# Pages that set none get this: scripts only from this server or, inline, by their hash.
DEFAULT_CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def build_app(
    config: Config, node: Node | None = None, siblings: Siblings | None = None, media_at: Path | None = None
) -> web.Application:
    """The node's application; `siblings` when it is one worker of several (its /readyz and
    /metrics then answer for every worker); `media_at` when another worker holds the media
    plane (its Unix socket: this worker forwards the media routes there)."""
    node = node or Node(config)
    policy = OriginPolicy(config.server.allowed_origins)
    app = web.Application(
        middlewares=[_cors_middleware(policy)], client_max_size=config.limits.max_message_bytes
    )
    app[NODE_KEY] = node
    if siblings is not None:
        app[SIBLINGS_KEY] = siblings
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
    app.on_response_prepare.append(_secure_headers)
    if config.media.enabled:
        # The media plane (WHIP/WHEP, docs/media.md), imported only when on: aiortc and av
        # are a quarter of a node's start-up CPU. mypy checks media/ as package `media`, so
        # it cannot follow the installed name liveroom.media.
        if media_at is None:
            from liveroom.media.routes import add_media_routes  # type: ignore[import-not-found,unused-ignore]

            add_media_routes(app, node)
        else:
            from liveroom.media.forward import add_media_forwarding  # type: ignore[import-not-found,unused-ignore]

            add_media_forwarding(app, node, media_at)
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
    siblings = request.app.get(SIBLINGS_KEY)
    if request.app[NODE_KEY].ready and (siblings is None or await siblings.all_ready()):
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "unavailable"}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    """Loopback only by default (it names rooms and counts everything); from anywhere with
    `[server] metrics_token` as a bearer token, or to all with `metrics_public`."""
    node = request.app[NODE_KEY]
    refused = _metrics_refusal(node.config.server.metrics_token, node.config.server.metrics_public, request)
    if refused is not None:
        return refused
    siblings = request.app.get(SIBLINGS_KEY)
    body = node.metrics.render() if siblings is None else await siblings.metrics()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _metrics_refusal(token: str, public: bool, request: web.Request) -> web.Response | None:
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip() == token:
            return None
        error = {"code": "unauthorized", "message": "send Authorization: Bearer <[server] metrics_token>"}
        return web.json_response({"error": error}, status=401)
    if public or _is_loopback(request.remote):
        return None
    error = {"code": "forbidden", "message": "/metrics is served to loopback only ([server] metrics_token)"}
    return web.json_response({"error": error}, status=403)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`nosniff` on every response; a CSP on every page that has none of its own."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.content_type == "text/html" and "Content-Security-Policy" not in response.headers:
        body = response.body if isinstance(response, web.Response) else None
        scripts = _INLINE_SCRIPT.findall(body) if isinstance(body, bytes) else []
        hashes = "".join(
            f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'" for script in scripts
        )
        response.headers["Content-Security-Policy"] = DEFAULT_CSP.format(scripts=hashes)


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
