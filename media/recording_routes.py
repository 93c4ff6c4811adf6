"""The host's recording API, under /api like the rest of the host/backend HTTP API:

POST /api/rooms/{room}/recordings              start recording the program -> 201 {"recording"}
POST /api/rooms/{room}/recordings/{id}/stop    stop it -> 200 {"recording"} (final size, duration)
GET  /api/rooms/{room}/recordings              every recording of the room -> 200 {"recordings"}

Bearer token of role host (of that room) or admin. The media process that owns the room
writes the file (recording.py); this node keeps the durable record in the Store: a
`media.recording` record when a recording starts (id, file, who, when) and a
`media.recording_end` record when it is stopped (duration, frames, bytes). Records are
written once per key, so the two kinds are merged when listed. While a recording runs,
this node also writes the room's timeline beside it (recording_timeline.py).

Watching (any token of the room, as a bearer or `?token=`, so a <video> can use it):

GET /recordings/{room}/{id}.mp4             the file, with range requests (206)
GET /recordings/{room}/{id}.m3u8            VOD HLS: byte ranges of the same file (recording_vod.py)
GET /recordings/{room}/{id}.timeline.json   {"recording", "items": [{"t", "seq", "type", "ts", "data"}]}
GET /replay/{room}/{id}                     a page that plays it with its danmaku (static/replay.*)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from liveroom.errors import CommandError, Forbidden
from liveroom.node import Node
from liveroom.record import Record

from .callers import Caller, bearer_token
from .hls import room_directory
from .recording_timeline import TimelineWriter, export
from .recording_vod import layout, playlist

__all__ = ["RECORDING", "RECORDING_END", "add_recording_routes"]

RECORDING = "media.recording"
RECORDING_END = "media.recording_end"
NODE_KEY = web.AppKey("liveroom_media_recording_node", Node)
TIMELINES_KEY = web.AppKey("liveroom_media_timelines", dict)
LIST_LIMIT = 1000
RECORDING_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
SERVED = (".timeline.json", ".mp4", ".m3u8")
STATIC_DIR = Path(__file__).parent / "static"


def add_recording_routes(app: web.Application, node: Node) -> None:
    app[NODE_KEY] = node
    app[TIMELINES_KEY] = {}
    app.router.add_post("/api/rooms/{room}/recordings", _start)
    app.router.add_post("/api/rooms/{room}/recordings/{recording}/stop", _stop)
    app.router.add_get("/api/rooms/{room}/recordings", _list)
    app.router.add_get("/recordings/{room}/{name}", _serve)
    app.router.add_get("/replay/{room}/{recording}", _replay_page)
    app.router.add_static("/media/static/", STATIC_DIR, append_version=False)
    app.on_cleanup.append(_stop_timelines)


async def _start(request: web.Request) -> web.StreamResponse:
    from .routes import BACKEND_KEY, error_response

    try:
        room, caller = _staff(request)
        recording = await request.app[BACKEND_KEY].start_recording(room, caller)
    except CommandError as error:
        return error_response(error)
    data = {**recording, "by": {"id": caller.user_id, "name": caller.name}}
    await _put(request, RECORDING, room, data)
    node = request.app[NODE_KEY]
    writer = TimelineWriter(node.broker, room, _file(request, room, str(data["id"]), ".timeline.jsonl"))
    with contextlib.suppress(Exception):  # the broker is down: the recording goes on without it
        await writer.start()
        request.app[TIMELINES_KEY][(room, str(data["id"]))] = writer
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
    writer = request.app[TIMELINES_KEY].pop((room, recording_id), None)
    if writer is not None:
        with contextlib.suppress(Exception):
            await writer.stop()
        data["timeline_items"] = writer.items
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
    from .routes import VERIFIER_KEY, _name

    room = _name(request.match_info["room"], "room")
    caller = request.app[VERIFIER_KEY].verify(bearer_token(request.headers.get("Authorization")))
    caller.check_room(room)
    if caller.role not in ("host", "admin"):
        raise Forbidden("this is for the room's host or an admin")
    return room, caller


async def _put(request: web.Request, kind: str, room: str, data: dict[str, Any]) -> None:
    node = request.app[NODE_KEY]
    await node.store.put_record(Record(kind, str(data["id"]), room, data, int(node.clock.now_ms())))


async def _stop_timelines(app: web.Application) -> None:
    for writer in app[TIMELINES_KEY].values():
        with contextlib.suppress(Exception):
            await writer.stop()


def _file(request: web.Request, room: str, recording_id: str, suffix: str) -> Path:
    root = request.app[NODE_KEY].config.media.recordings_dir
    directory = room_directory(root, room)
    if directory is None or not RECORDING_ID.match(recording_id):
        raise CommandError("no such recording", "not_found")
    return directory / f"{recording_id}{suffix}"


def _watcher(request: web.Request, room: str) -> Caller:
    """Anyone with a token for the room; `?token=` too, for players that send no headers."""
    from .routes import VERIFIER_KEY

    header = bearer_token(request.headers.get("Authorization"))
    caller = request.app[VERIFIER_KEY].verify(header or request.query.get("token"))
    caller.check_room(room)
    return caller


async def _serve(request: web.Request) -> web.StreamResponse:
    from .routes import _name, error_response

    try:
        room = _name(request.match_info["room"], "room")
        name = request.match_info["name"]
        recording_id, suffix = next(((name[: -len(s)], s) for s in SERVED if name.endswith(s)), (name, ""))
        if not suffix:
            raise CommandError("no such recording", "not_found")
        _watcher(request, room)
        media = _file(request, room, recording_id, ".mp4")
        if not media.exists():
            raise CommandError("no such recording", "not_found")
        if suffix == ".mp4":
            return web.FileResponse(media, headers={"Cache-Control": "private, max-age=60"})
        end = await _end_record(request, room, recording_id)
        if suffix == ".m3u8":
            return await _playlist(request, media, recording_id, end)
        return await _timeline(request, room, recording_id, end)
    except CommandError as error:
        return error_response(error)


async def _playlist(
    request: web.Request, media: Path, recording_id: str, end: dict[str, Any] | None
) -> web.Response:
    try:
        found = await asyncio.to_thread(layout, media)
    except ValueError:
        raise CommandError("the recording has no picture yet", "not_found") from None
    token = request.query.get("token")
    url = f"{recording_id}.mp4" + (f"?{urlencode({'token': token})}" if token else "")
    text = playlist(url, found, float(end["duration_s"]) if end is not None else None)
    headers = {"Cache-Control": "private, max-age=1" if end is None else "private, max-age=60"}
    return web.Response(text=text, content_type="application/vnd.apple.mpegurl", headers=headers)


async def _timeline(
    request: web.Request, room: str, recording_id: str, end: dict[str, Any] | None
) -> web.Response:
    start = await _start_record(request, room, recording_id)
    origin = (end or {}).get("media_started_at") or (start or {}).get("started_at") or 0.0
    path = _file(request, room, recording_id, ".timeline.jsonl")
    items = await asyncio.to_thread(export, path, float(origin))
    return web.json_response({"recording": recording_id, "items": items})


async def _start_record(request: web.Request, room: str, recording_id: str) -> dict[str, Any] | None:
    return await _record(request, RECORDING, room, recording_id)


async def _end_record(request: web.Request, room: str, recording_id: str) -> dict[str, Any] | None:
    return await _record(request, RECORDING_END, room, recording_id)


async def _record(request: web.Request, kind: str, room: str, recording_id: str) -> dict[str, Any] | None:
    records = await request.app[NODE_KEY].store.list_records(kind, room, limit=LIST_LIMIT)
    return next((dict(r.data) for r in records if r.key == recording_id), None)


async def _replay_page(request: web.Request) -> web.StreamResponse:
    from liveroom.pages import CSP

    response = web.FileResponse(STATIC_DIR / "replay.html", headers={"Cache-Control": "no-cache"})
    response.headers["Content-Security-Policy"] = CSP
    return response
