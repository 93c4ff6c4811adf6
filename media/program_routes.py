"""The host's cameras, under /api like the rest of the host/backend HTTP API:

POST /api/rooms/{room}/program {"camera"}   cut the program to that camera -> 200 {"program"}
GET  /api/rooms/{room}/program              the camera on air and every camera -> 200 {"program"}
                                            (camera null and no cameras while nobody publishes)

Bearer token of role host (of that room) or admin. `program` is `{"room", "camera": the
camera on air, "pending": the camera a cut waits for (its keyframe) or null, "cameras":
[{"name", "on_air", "sending"}]}`. A cut is made on the target's keyframe (cameras.py):
at once when one is at hand, which it nearly always is, else on the next one (`pending`).
"""

from __future__ import annotations

from aiohttp import web

from liveroom.errors import BadRequest, CommandError
from liveroom.protocol import is_name

from .api_body import string_field

__all__ = ["add_program_routes"]


def add_program_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms/{room}/program", _cut)
    app.router.add_get("/api/rooms/{room}/program", _show)


async def _cut(request: web.Request) -> web.StreamResponse:
    from .recording_routes import _staff
    from .routes import BACKEND_KEY, _elsewhere, error_response

    elsewhere = await _elsewhere(request)  # a cluster node not holding the room's media: 307
    if elsewhere is not None:
        return elsewhere
    try:
        room, caller = _staff(request)
        camera = await _camera(request)
        program = await request.app[BACKEND_KEY].cut_program(room, caller, camera)
    except CommandError as error:
        return error_response(error)
    return web.json_response({"program": program})


async def _show(request: web.Request) -> web.StreamResponse:
    from .recording_routes import _staff
    from .routes import BACKEND_KEY, _elsewhere, error_response

    elsewhere = await _elsewhere(request)
    if elsewhere is not None:
        return elsewhere
    try:
        room, caller = _staff(request)
        program = await request.app[BACKEND_KEY].program(room, caller)
    except CommandError as error:
        return error_response(error)
    return web.json_response({"program": program}, headers={"Cache-Control": "no-store"})


async def _camera(request: web.Request) -> str:
    camera = await string_field(request, "camera", '{"camera": "close"}')
    if not is_name(camera):
        raise BadRequest('the body must be JSON: {"camera": "<a camera name>"}')
    return camera
