"""WHIP (RFC 9725) and WHEP over aiohttp: thin adapters around `MediaPlane`.

POST /whip/{room}[?path=backup][?camera=NAME]  offer in, 201 + Location + answer out (host or guest token)
POST /whep/{room}[?slot=host|N][&quality=480p]  offer in, 201 + Location + answer out (any room token)
DELETE <Location>                  ends the session (its owner, an admin, or the room's host for a guest)
DELETE /whip/{room}/slots/{slot}   ends whoever publishes in that slot (the same check as DELETE <Location>);
                                   `?user=<id>`: only if that user does (a node asking for the plugin)
PATCH <Location>                   trickle ICE: the client's late candidates (trickle.py); 204
GET /media/demo                    a page that publishes / plays from a browser (page.py)
GET /hls/{room}/master.m3u8        the host program as HLS (hls.py, hls_routes.py)
GET <Location>                     the session's state for its owner (a viewer: ABR rung, switches)
/api/rooms/{room}/recordings       start, stop and list recordings (recording_routes.py)
/api/rooms/{room}/restreams        add, list and remove restream destinations (restream_routes.py)
/api/rooms/{room}/program          the host's cameras: which is on air, and cuts (program_routes.py)
rtmp://HOST:PORT/live/{room}       RTMP ingest, the publish token as the stream key (rtmp_server.py)

Errors are `{"error": {"code", "message"}}` with a 4xx status.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from liveroom.errors import CommandError
from liveroom.events import stream_event
from liveroom.node import Node
from liveroom.protocol import is_name

from .admission import check_offer
from .backend import LocalMedia, MediaBackend
from .callers import HOST_SLOT, Caller, CallerVerifier, bearer_token
from .hls_routes import add_hls_routes
from .hooks import count_codec_instances
from .locator import LOCATOR_KEY, MediaLocator, redirect
from .metrics import MediaCollector
from .page import demo_page
from .pool import WorkerPool
from .program_routes import add_program_routes
from .recording_routes import add_recording_routes
from .restream_routes import add_restream_routes
from .rtmp_server import RtmpServer
from .stage import StageSync
from .trickle import MAX_FRAGMENT_BYTES

__all__ = ["BACKEND_KEY", "RTMP_KEY", "add_media_routes", "worker_count"]

BACKEND_KEY = web.AppKey("liveroom_media_backend", MediaBackend)
VERIFIER_KEY = web.AppKey("liveroom_media_verifier", CallerVerifier)
RTMP_KEY = web.AppKey("liveroom_media_rtmp", RtmpServer)
STAGE_KEY = web.AppKey("liveroom_media_stage", StageSync)
MAX_SDP_BYTES = 64 * 1024
STATUS = {
    "bad_request": 400,
    "malformed_sdp": 400,
    "no_media": 400,
    "codec_mismatch": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "wrong_room": 403,
    "not_found": 404,
    "not_publishing": 404,
    "no_such_camera": 404,
    "camera_not_sending": 409,
    "already_publishing": 409,
    "already_recording": 409,
    "too_many_restreams": 409,
    "too_many_publishers": 409,
    "unsupported_media_type": 415,
    "too_many_sessions": 429,
    "too_many_viewers": 503,
    "media_unavailable": 503,
    "unavailable": 503,
    # A media worker that did not answer in time: the session may or may not exist there.
    "outcome_unknown": 504,
}


def add_media_routes(app: web.Application, node: Node) -> None:
    """Mount WHIP/WHEP, and start/stop the media plane with the app."""
    if not node.config.media.enabled:
        return
    from liveroom.auth import resolve_secret

    count_codec_instances()
    config = node.config.media
    workers = worker_count(config.workers)

    events = next(iter(node.plugin_hosts.values())).events if node.plugin_hosts else None

    async def publish_event(room: str, item_type: str, data: dict[str, Any]) -> None:
        # Stats are a stream of samples: members get them live, history does not keep them.
        await node.publish(room, item_type, data, history=item_type != "media.stats")
        camera = data.get("path") == "camera"  # another camera of the host: not the stream
        if item_type == "media.publisher" and events is not None and not camera:  # stream.started / stopped
            await stream_event(events, node.store, room, data, node.clock.now_ms())
        if item_type == "media.publisher" and locator is not None:
            await locator.publisher_event(room, data)

    locator = _locator(node)
    if locator is not None:
        app[LOCATOR_KEY] = locator

    backend: MediaBackend = (
        LocalMedia(config, publish_event) if workers == 1 else WorkerPool(config, workers, publish_event)
    )
    app[BACKEND_KEY] = backend
    app[VERIFIER_KEY] = CallerVerifier(node.authority, resolve_secret(node.config.auth), node.publish_tokens)
    app[STAGE_KEY] = StageSync(backend, node.publish_tokens, node.clock, locator, node.authority)
    node.metrics.registry.register(MediaCollector(backend.snapshots))
    app.router.add_post("/whip/{room}", _whip)
    app.router.add_post("/whep/{room}", _whep)
    for kind in ("whip", "whep"):
        app.router.add_delete(f"/{kind}/{{room}}/{{session}}", _delete)
        app.router.add_patch(f"/{kind}/{{room}}/{{session}}", _patch)
        app.router.add_get(f"/{kind}/{{room}}/{{session}}", _status)
    app.router.add_delete("/whip/{room}/slots/{slot}", _delete_slot)
    app.router.add_get("/media/demo", demo_page)
    if config.hls_enabled:
        add_hls_routes(app, config.hls_dir)
    add_recording_routes(app, node)
    add_restream_routes(app)
    add_program_routes(app)
    if config.rtmp_enabled:
        app[RTMP_KEY] = RtmpServer(config, app[VERIFIER_KEY], backend, _name)
    app.cleanup_ctx.append(_lifespan)


def _locator(node: Node) -> MediaLocator | None:
    """On a cluster (broker on Redis), where each room's media is held (locator.py)."""
    if node.config.broker.kind != "redis":
        return None
    from liveroom.redis_client import connect_redis

    server, redis = node.config.server, node.config.redis
    url = server.public_url or f"http://{server.host}:{server.port}"
    return MediaLocator(connect_redis(redis, max_connections=8), redis.key_prefix, url)


def worker_count(configured: int) -> int:
    """`media.workers`, where 0 means one per core."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    backend = app[BACKEND_KEY]
    await backend.start()
    rtmp, locator = app.get(RTMP_KEY), app.get(LOCATOR_KEY)
    if rtmp is not None:
        await rtmp.start()
    if locator is not None:
        await locator.start()
    yield
    if rtmp is not None:
        await rtmp.stop()
    await backend.stop()
    if locator is not None:
        await locator.stop()  # after the programs ended: their keys are gone


async def _whip(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "whip")


async def _whep(request: web.Request) -> web.StreamResponse:
    return await _handle(request, "whep")


async def _handle(request: web.Request, kind: str) -> web.StreamResponse:
    try:
        room = _name(request.match_info["room"], "room")
        elsewhere = await redirect(request, room)
        if elsewhere is not None:
            return elsewhere
        caller = await _caller(request)
        slot = _name(request.query.get("slot", HOST_SLOT), "slot")
        offer = await _offer(request)
        check_offer(offer, "send" if kind == "whip" else "receive")  # before any worker
        plane = request.app[BACKEND_KEY]
        if kind == "whip":
            backup = request.query.get("path") == "backup"
            camera = request.query.get("camera")  # one of the host's cameras (cameras.py)
            camera = None if camera is None else _name(camera, "camera")
            session, answer = await plane.publish(room, caller, offer, backup, camera)
        else:
            quality = request.query.get("quality")  # pin an ABR rung ("480p"); absent: automatic
            session, answer = await plane.play(room, slot, caller, offer, quality)
    except CommandError as error:
        return _error(error)
    location = f"/{kind}/{room}/{session}"
    headers = {
        "Location": location,
        "Content-Type": "application/sdp",
        "Access-Control-Expose-Headers": "Location",
    }
    return web.Response(status=201, text=answer, headers=headers)


async def _delete(request: web.Request) -> web.StreamResponse:
    elsewhere = await _elsewhere(request)
    if elsewhere is not None:
        return elsewhere
    try:
        caller = await _caller(request)
        await request.app[BACKEND_KEY].end(_name(request.match_info["session"], "session"), caller)
    except CommandError as error:
        return _error(error)
    return web.Response(status=200)


async def _status(request: web.Request) -> web.StreamResponse:
    """The session's state for its owner: for a viewer, its ABR rung and latest switches."""
    elsewhere = await _elsewhere(request)
    if elsewhere is not None:
        return elsewhere
    try:
        caller = await _caller(request)
        status = await request.app[BACKEND_KEY].status(
            _name(request.match_info["session"], "session"), caller
        )
    except CommandError as error:
        return _error(error)
    return web.json_response(status, headers={"Cache-Control": "no-store"})


async def _delete_slot(request: web.Request) -> web.StreamResponse:
    elsewhere = await _elsewhere(request)
    if elsewhere is not None:
        return elsewhere
    try:
        caller = await _caller(request)
        room, slot = _name(request.match_info["room"], "room"), _name(request.match_info["slot"], "slot")
        user = request.query.get("user")  # only if this user publishes there (a node, for the plugin)
        await request.app[BACKEND_KEY].end_slot(room, slot, caller, only_user=user)
    except CommandError as error:
        return _error(error)
    await request.app[STAGE_KEY].slot_ended(room, slot, user)  # the guest's token may not publish again
    return web.Response(status=200)


async def _patch(request: web.Request) -> web.StreamResponse:
    """Trickle ICE: `application/trickle-ice-sdpfrag` with the client's late candidates."""
    elsewhere = await _elsewhere(request)
    if elsewhere is not None:
        return elsewhere
    try:
        caller = await _caller(request)
        if request.content_type != "application/trickle-ice-sdpfrag":
            message = "send candidates as Content-Type: application/trickle-ice-sdpfrag"
            raise CommandError(message, "unsupported_media_type")
        body = await request.read()
        if len(body) > MAX_FRAGMENT_BYTES:
            raise CommandError("the SDP fragment is too large", "malformed_sdp")
        fragment = body.decode("utf-8", errors="replace")
        await request.app[BACKEND_KEY].trickle(
            _name(request.match_info["session"], "session"), caller, fragment
        )
    except CommandError as error:
        return _error(error)
    return web.Response(status=204)


async def _elsewhere(request: web.Request) -> web.Response | None:
    """A session's URL on a node that does not hold its room's media: 307 to the one that does."""
    room = request.match_info["room"]
    return await redirect(request, room) if is_name(room) else None


async def _caller(request: web.Request) -> Caller:
    token = bearer_token(request.headers.get("Authorization"))
    return await request.app[VERIFIER_KEY].verify_everywhere(token)


async def _offer(request: web.Request) -> str:
    if request.content_type != "application/sdp":
        raise CommandError(
            "the offer must be sent as Content-Type: application/sdp", "unsupported_media_type"
        )
    body = await request.read()
    if len(body) > MAX_SDP_BYTES:
        raise CommandError("the SDP offer is too large", "malformed_sdp")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("the SDP offer is not UTF-8 text", "malformed_sdp") from None


def _name(value: str, what: str) -> str:
    """Room, slot and every other path parameter: a name, the whole of it (no "r1\n")."""
    if not is_name(value):
        raise CommandError(f"{what} must be 1-64 letters, digits or _ . : -", "bad_request")
    return value


def error_response(error: CommandError) -> web.Response:
    return _error(error)


def _error(error: CommandError) -> web.Response:
    return web.json_response({"error": error.as_error()}, status=STATUS.get(error.code, 400))
