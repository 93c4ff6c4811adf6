"""The host's restream API, under /api like the rest of the host/backend HTTP API:

POST   /api/rooms/{room}/restreams {"url"}   push the program there -> 201 {"restream"}
GET    /api/rooms/{room}/restreams           every destination and its state -> 200 {"restreams"}
DELETE /api/rooms/{room}/restreams/{id}      stop pushing there -> 200 {"restream"}

Bearer token of role host (of that room) or admin. `url` is rtmp:// or rtmps:// with its
stream key; a restream's `state` is connecting, live, retrying or failed (restream.py).
Destinations last as long as the host publishes.
"""

from __future__ import annotations

from aiohttp import web

from liveroom.errors import CommandError

from .api_body import string_field

__all__ = ["add_restream_routes"]


def add_restream_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms/{room}/restreams", _add)
    app.router.add_get("/api/rooms/{room}/restreams", _list)
    app.router.add_delete("/api/rooms/{room}/restreams/{restream}", _remove)


async def _add(request: web.Request) -> web.StreamResponse:
    from .recording_routes import _staff
    from .routes import BACKEND_KEY, error_response

    try:
        room, caller = _staff(request)
        url = await _url(request)
        restream = await request.app[BACKEND_KEY].add_restream(room, caller, url)
    except CommandError as error:
        return error_response(error)
    return web.json_response({"restream": restream}, status=201)


async def _list(request: web.Request) -> web.StreamResponse:
    from .recording_routes import _staff
    from .routes import BACKEND_KEY, error_response

    try:
        room, caller = _staff(request)
        restreams = await request.app[BACKEND_KEY].list_restreams(room, caller)
    except CommandError as error:
        return error_response(error)
    return web.json_response({"restreams": restreams}, headers={"Cache-Control": "no-store"})


async def _remove(request: web.Request) -> web.StreamResponse:
    from .recording_routes import _staff
    from .routes import BACKEND_KEY, error_response

    try:
        room, caller = _staff(request)
        restream = await request.app[BACKEND_KEY].remove_restream(
            room, request.match_info["restream"], caller
        )
    except CommandError as error:
        return error_response(error)
    return web.json_response({"restream": restream})


async def _url(request: web.Request) -> str:
    return await string_field(request, "url", '{"url": "rtmp://..."}')
