"""A media worker process: one `MediaPlane` on its own core, driven over a Unix socket.

Started by `pool.WorkerPool` as `python -m liveroom.media.worker SOCKET CONFIG_JSON`.
The parent authenticates callers and picks the worker by room; the worker runs the peer
connections, so media flows between the clients and this process directly (its ICE
candidates are its own UDP ports). Endpoints (JSON in and out, errors as in routes.py):

POST /publish {"room", "caller", "offer", "backup", "camera"} -> {"session", "answer"}
POST /play    {"room", "slot", "caller", "offer", "quality"} -> {"session", "answer"}
POST /end     {"session", "caller"}                 -> {}
POST /end_slot {"room", "slot", "caller", "only_user"} -> {}
POST /trickle {"session", "caller", "fragment"}     -> {}
POST /status  {"session", "caller"}                 -> {"status": {...}}
POST /record/start {"room", "caller"}               -> {"recording": {...}}
POST /record/stop  {"room", "recording", "caller"}  -> {"recording": {...}}
POST /restream/add {"room", "caller", "url"}        -> {"restream": {...}}
POST /restream/list {"room", "caller"}              -> {"restreams": [...]}
POST /restream/remove {"room", "restream", "caller"} -> {"restream": {...}}
POST /program/cut {"room", "caller", "camera"}      -> {"program": {...}}
POST /program/get {"room", "caller"}                -> {"program": {...}}
GET  /events  NDJSON: {"room", "type", "data"} room items, {"snapshot": {...}} figures and
              {"viewer", "state"}: a WHEP session connected or closed (the node's pending count)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from liveroom.config import MediaConfig, build_section
from liveroom.errors import CommandError

from .callers import Caller
from .hooks import count_codec_instances
from .plane import MediaPlane
from .pool import ingest_path
from .rtmp_ingest import serve_ingest
from .sessions import Session

__all__ = ["main"]

SNAPSHOT_INTERVAL_S = 0.5
EVENT_QUEUE = 10_000
PLANE = web.AppKey("plane", MediaPlane)
EVENTS = web.AppKey("events", asyncio.Queue)
INGEST = web.AppKey("ingest", Path)


def build_worker_app(config: MediaConfig, ingest: Path) -> web.Application:
    app = web.Application()
    app[INGEST] = ingest
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_QUEUE)

    async def publish_event(room: str, item_type: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # the parent is gone or stuck: drop
            events.put_nowait({"room": room, "type": item_type, "data": data})

    app[PLANE] = plane = MediaPlane(config, publish_event)
    app[EVENTS] = events

    def viewer_state(session: Session, state: str) -> None:  # the node's pending count (pool.py)
        with contextlib.suppress(asyncio.QueueFull):
            events.put_nowait({"viewer": session.id, "state": state})

    plane.on_viewer = viewer_state
    app.router.add_post("/publish", _publish)
    app.router.add_post("/play", _play)
    app.router.add_post("/end", _end)
    app.router.add_post("/end_slot", _end_slot)
    app.router.add_post("/trickle", _trickle)
    app.router.add_post("/status", _status)
    app.router.add_post("/record/start", _record_start)
    app.router.add_post("/record/stop", _record_stop)
    app.router.add_post("/restream/add", _restream_add)
    app.router.add_post("/restream/list", _restream_list)
    app.router.add_post("/restream/remove", _restream_remove)
    app.router.add_post("/program/cut", _program_cut)
    app.router.add_post("/program/get", _program_get)
    app.router.add_get("/events", _events)
    app.cleanup_ctx.append(_lifespan)
    return app


async def _lifespan(app: web.Application) -> AsyncIterator[None]:
    await app[PLANE].start()
    watcher = asyncio.create_task(_exit_with_parent(os.getppid()))
    rtmp = await serve_ingest(app[PLANE], app[INGEST])  # RTMP publishes from the node
    yield
    rtmp.close()
    watcher.cancel()
    await app[PLANE].stop()


async def _exit_with_parent(parent: int) -> None:
    """A worker must not outlive its node (even one killed with SIGKILL)."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event says that the parent died)
        await asyncio.sleep(1)
    signal.raise_signal(signal.SIGTERM)


async def _publish(request: web.Request) -> web.Response:
    body = await request.json()
    return await _answer(
        request.app[PLANE].publish(
            body["room"], _caller(body), body["offer"], body["backup"], body.get("camera")
        )
    )


async def _play(request: web.Request) -> web.Response:
    body = await request.json()
    plane = request.app[PLANE]
    return await _answer(
        plane.play(body["room"], body["slot"], _caller(body), body["offer"], body.get("quality"))
    )


async def _end(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        await request.app[PLANE].end(body["session"], _caller(body))
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)
    return web.json_response({})


async def _end_slot(request: web.Request) -> web.Response:
    body = await request.json()
    plane = request.app[PLANE]
    return await _done(plane.end_slot(body["room"], body["slot"], _caller(body), body.get("only_user")))


async def _trickle(request: web.Request) -> web.Response:
    body = await request.json()
    return await _done(request.app[PLANE].trickle(body["session"], _caller(body), body["fragment"]))


async def _status(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        status = request.app[PLANE].status(body["session"], _caller(body))
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)
    return web.json_response({"status": status})


async def _record_start(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        recording = request.app[PLANE].start_recording(body["room"], _caller(body))
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)
    return web.json_response({"recording": recording})


async def _record_stop(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        recording = request.app[PLANE].stop_recording(body["room"], body["recording"], _caller(body))
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)
    return web.json_response({"recording": recording})


async def _restream_add(request: web.Request) -> web.Response:
    body = await request.json()
    return _reply(
        "restream", lambda: request.app[PLANE].add_restream(body["room"], _caller(body), body["url"])
    )


async def _restream_list(request: web.Request) -> web.Response:
    body = await request.json()
    return _reply("restreams", lambda: request.app[PLANE].list_restreams(body["room"], _caller(body)))


async def _restream_remove(request: web.Request) -> web.Response:
    body = await request.json()
    plane = request.app[PLANE]
    return _reply("restream", lambda: plane.remove_restream(body["room"], body["restream"], _caller(body)))


async def _program_cut(request: web.Request) -> web.Response:
    body = await request.json()
    plane = request.app[PLANE]
    return _reply("program", lambda: plane.cut_program(body["room"], _caller(body), body["camera"]))


async def _program_get(request: web.Request) -> web.Response:
    body = await request.json()
    return _reply("program", lambda: request.app[PLANE].program(body["room"], _caller(body)))


def _reply(key: str, work: Any) -> web.Response:
    try:
        return web.json_response({key: work()})
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)


async def _done(work: Any) -> web.Response:
    try:
        await work
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)
    return web.json_response({})


async def _answer(work: Any) -> web.Response:
    try:
        session, answer = await work
    except CommandError as error:
        return web.json_response({"error": error.as_error()}, status=400)
    return web.json_response({"session": session, "answer": answer})


async def _events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the node went away: nothing more to say
        await _stream_events(request, response)
    return response


async def _stream_events(request: web.Request, response: web.StreamResponse) -> None:
    events, plane = request.app[EVENTS], request.app[PLANE]
    loop = asyncio.get_running_loop()
    next_snapshot = loop.time()
    while True:
        item: dict[str, Any] | None = None
        with contextlib.suppress(TimeoutError):
            item = await asyncio.wait_for(events.get(), max(0.0, next_snapshot - loop.time()))
        if item is None or loop.time() >= next_snapshot:
            await response.write(json.dumps({"snapshot": plane.snapshot()}).encode() + b"\n")
            next_snapshot = loop.time() + SNAPSHOT_INTERVAL_S
        if item is not None:
            await response.write(json.dumps(item).encode() + b"\n")


def _caller(body: dict[str, Any]) -> Caller:
    return Caller(**body["caller"])


def main(argv: list[str] | None = None) -> None:
    import uvloop

    socket_path, config_json = argv or sys.argv[1:]
    config = build_section(MediaConfig, json.loads(config_json), "media")
    count_codec_instances()
    app = build_worker_app(config, ingest_path(Path(socket_path)))
    web.run_app(app, path=socket_path, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
