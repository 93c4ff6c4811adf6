"""The host's recording API, under /api like the rest of the host/backend HTTP API:

POST /api/rooms/{room}/recordings              start recording the program -> 201 {"recording"}
POST /api/rooms/{room}/recordings/{id}/stop    stop it -> 200 {"recording"} (final size, duration)
GET  /api/rooms/{room}/recordings              every recording of the room -> 200 {"recordings"}

Bearer token of role host (of that room) or admin. The media process that owns the room
writes the file (recording.py); this node keeps the durable record in the Store: a
`media.recording` record when a recording starts (id, file, who, when) and a
`media.recording_end` record when it is stopped (duration, frames, bytes). Records are
written once per key, so the two kinds are merged when listed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from liveroom.errors import CommandError, Forbidden
from liveroom.node import Node
from liveroom.record import Record

from .callers import Caller

__all__ = ["RECORDING", "RECORDING_END", "add_recording_routes"]

RECORDING = "media.recording"
RECORDING_END = "media.recording_end"
NODE_KEY = web.AppKey("liveroom_media_recording_node", Node)
LIST_LIMIT = 1000


def add_recording_routes(app: web.Application, node: Node) -> None:
    app[NODE_KEY] = node
    app.router.add_post("/api/rooms/{room}/recordings", _start)
    app.router.add_post("/api/rooms/{room}/recordings/{recording}/stop", _stop)
    app.router.add_get("/api/rooms/{room}/recordings", _list)


async def _start(request: web.Request) -> web.StreamResponse:
    from .routes import BACKEND_KEY, error_response

    try:
        room, caller = _staff(request)
        recording = await request.app[BACKEND_KEY].start_recording(room, caller)
    except CommandError as error:
        return error_response(error)
    data = {**recording, "by": {"id": caller.user_id, "name": caller.name}}
    await _put(request, RECORDING, room, data)
    return web.json_response({"recording": data}, status=201)


async def _stop(request: web.Request) -> web.StreamResponse:
    from .routes import BACKEND_KEY, error_response

    try:
        room, caller = _staff(request)
        recording_id = request.match_info["recording"]
        recording = await request.app[BACKEND_KEY].stop_recording(room, recording_id, caller)
    except CommandError as error:
        return error_response(error)
    data = {**recording, "stopped_by": {"id": caller.user_id, "name": caller.name}}
    await _put(request, RECORDING_END, room, data)
    return web.json_response({"recording": data})


async def _list(request: web.Request) -> web.StreamResponse:
    from .routes import error_response

    try:
        room, _ = _staff(request)
    except CommandError as error:
        return error_response(error)
    store = request.app[NODE_KEY].store
    ends = {r.key: r.data for r in await store.list_records(RECORDING_END, room, limit=LIST_LIMIT)}
    recordings = []
    for record in await store.list_records(RECORDING, room, limit=LIST_LIMIT):
        end = ends.get(record.key)
        merged: dict[str, Any] = {**record.data, **(end or {})}
        merged["recording"] = end is None and bool(record.data.get("recording"))
        recordings.append(merged)
    return web.json_response({"recordings": recordings})


def _staff(request: web.Request) -> tuple[str, Caller]:
    from .routes import _caller, _name

    room = _name(request.match_info["room"], "room")
    caller = _caller(request)
    caller.check_room(room)
    if caller.role not in ("host", "admin"):
        raise Forbidden("this is for the room's host or an admin")
    return room, caller


async def _put(request: web.Request, kind: str, room: str, data: dict[str, Any]) -> None:
    node = request.app[NODE_KEY]
    await node.store.put_record(Record(kind, str(data["id"]), room, data, int(node.clock.now_ms())))
