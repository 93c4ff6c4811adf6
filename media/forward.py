"""The media routes on a worker that does not hold the media plane: forwarded to the one that does.

With `liveroom serve --workers N` and media on, worker 0 holds the media plane (its WHIP
publishers, WHEP viewers, HLS files, recordings, restreams and RTMP listener) and also
serves its app on a Unix socket (`liveroom/worker_process.py`). The kernel gives a client's
connection to any worker; on the others, every media route is a reverse proxy to that
socket: the request (method, path and query as sent, headers, body streamed) goes there,
and the answer (status, headers such as Location, ETag, Link, Content-Range, and body
streamed) comes back as it is, so a client cannot tell which worker it reached. Only
HTTP needs it: the SDP answer names the media process's own UDP candidates, so ICE and RTP
go straight there.

While worker 0 is down (being restarted by the supervisor) a forwarded request answers at
once `503 {"error": {"code": "unavailable", "retry": "later"}}` with `Retry-After`; one it
stops answering gets the same after `READ_TIMEOUT_S` of silence, never a hung request.

A guest taken off the stage by the co-streaming plugin on this worker (the room's owner)
has their publish token revoked here: the guest's media session, on worker 0, is ended
there (`DELETE /whip/{room}/slots/{slot}?user=`, as stage.py asks a cluster's holder node).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from liveroom.errors import Unavailable
from liveroom.node import Node

__all__ = ["FORWARDED", "FORWARD_KEY", "MediaForward", "add_media_forwarding", "forward_routes"]

log = logging.getLogger(__name__)

# Every path the media plane serves (routes.py, hls_routes.py, recording_routes.py,
# restream_routes.py, program_routes.py, page.py); tests/test_media_forward.py checks that
# each route of a real media app is one of these.
FORWARDED = (
    "/whip/{tail:.*}",
    "/whep/{tail:.*}",
    "/hls/{tail:.*}",
    "/media/{tail:.*}",
    "/recordings/{tail:.*}",
    "/replay/{tail:.*}",
    "/api/rooms/{room}/recordings{tail:(/.*)?}",
    "/api/rooms/{room}/restreams{tail:(/.*)?}",
    "/api/rooms/{room}/program",
)
# Per connection, not end to end (RFC 9110 7.6.1): never passed on. Content-Length is
# passed on (the body is streamed as it is, not re-encoded).
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Expect",
    )
)
CONNECT_TIMEOUT_S = 5.0  # a free connection to the socket, and connecting it
READ_TIMEOUT_S = 60.0  # silence from worker 0 (a WHIP answer takes < 15 s, media/pool.py)
RETRY_AFTER_S = 1  # the supervisor starts a dead worker again within 0.1 s to 5 s
MAX_CONNECTIONS = 512  # open to worker 0 at once; more wait (under CONNECT_TIMEOUT_S) for one
HOLDER_TIMEOUT_S = 10.0  # ending a guest's session on worker 0


class MediaForward:
    """A reverse proxy to the app on one Unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.UnixConnector(path=str(self.socket_path), limit=MAX_CONNECTIONS)
        # auto_decompress off: a compressed body goes on compressed, with its Content-Encoding.
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
        body = request.content if request.body_exists else None
        try:
            upstream = await self._http.request(
                request.method,
                URL(f"http://media{request.raw_path}", encoded=True),  # path and query as sent
                headers=_passed_on(request.headers),
                data=body,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info(
                "media request %s %s not forwarded: %s", request.method, request.path, type(exc).__name__
            )
            return unavailable()
        async with upstream:
            return await _relay(request, upstream)

    async def end_slot(self, room: str, slot: int, user: str, token: str) -> None:
        """Ask worker 0 to end `user`'s session in `room`'s `slot` (only theirs)."""
        assert self._http is not None
        url = f"http://media/whip/{quote(room)}/slots/{slot}"
        try:
            async with self._http.delete(
                url,
                params={"user": user},
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=HOLDER_TIMEOUT_S),
            ) as reply:
                if reply.status not in (200, 404):  # 404: not (or no longer) on air
                    log.warning(
                        "media: worker 0 did not end %s's slot %d in %s: %d", user, slot, room, reply.status
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:  # worker 0 down: its sessions ended with it
            log.warning(
                "media: worker 0 could not be asked to end %s's slot %d in %s: %r", user, slot, room, exc
            )


FORWARD_KEY = web.AppKey("liveroom_media_forward", MediaForward)


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.update(_passed_on(upstream.headers))
    await response.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        # Worker 0 died or went silent mid-body: the status is sent, so the only honest
        # answer left is a cut connection (not a short body that looks whole).
        log.warning("media response to %s %s cut: %r", request.method, request.path, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def _passed_on(headers: Any) -> CIMultiDict[str]:
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in HOP_BY_HOP)


def unavailable() -> web.Response:
    error = Unavailable("the media plane's worker is restarting; retry shortly").as_error()
    return web.json_response({"error": error}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def add_media_forwarding(app: web.Application, node: Node, socket_path: Path) -> None:
    """Forward every media route to the worker serving the media plane on `socket_path`, and
    end there the media of a guest whose publish token is revoked here."""
    forward = forward_routes(app, socket_path)
    pending: set[asyncio.Task[None]] = set()

    def revoked(room: str, slot: int, user: str) -> None:
        if user:  # the plugin took a guest off the stage here; "" is a slot ended on worker 0
            token = node.authority.mint("liveroom", "liveroom", "admin", room, ttl_s=60)
            task = asyncio.ensure_future(forward.end_slot(room, slot, user, token))
            pending.add(task)
            task.add_done_callback(pending.discard)

    node.publish_tokens.on_revoke(revoked)


def forward_routes(app: web.Application, socket_path: Path) -> MediaForward:
    """The `FORWARDED` routes of `app`, proxied to the app on `socket_path`."""
    forward = app[FORWARD_KEY] = MediaForward(socket_path)
    for pattern in FORWARDED:
        app.router.add_route("*", pattern, forward.handle)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        await forward.start()
        yield
        await forward.stop()

    app.cleanup_ctx.append(lifespan)
    return forward
