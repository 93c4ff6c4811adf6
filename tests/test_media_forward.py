"""media/forward.py in-process: a worker's media routes proxied to another app on a Unix socket.

The proxy passes the request (method, path and query, headers, body) and the answer
(status, headers, streamed body, ranges) on unchanged; answers 503 `unavailable` with
Retry-After at once when nobody listens on the socket; covers every route a real media app
registers; and ends a revoked guest's session on the media worker."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from liveroom.media.forward import FORWARD_KEY, forward_routes
from support import SECRET

from liveroom.auth import TokenAuthority
from liveroom.config import AuthConfig, Config, MediaConfig, StoreConfig
from liveroom.web import NODE_KEY, build_app

FILE = bytes(range(256)) * 40  # a "recording" of 10,240 bytes
FILE_KEY = web.AppKey("file", Path)


async def _whip(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {
        "Location": f"/whip/{request.match_info['room']}/s1",
        "ETag": '"v1"',
        "Link": '<stun:example.net>; rel="ice-server"',
        "Content-Type": "application/sdp",
        "X-Seen": f"{request.query_string}|{request.headers.get('Authorization')}|{request.host}",
    }
    return web.Response(status=201, body=b"answer:" + body, headers=headers)


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.apple.mpegurl"})
    await response.prepare(request)
    for n in range(5):
        await response.write(f"#part {n}\n".encode())
        await asyncio.sleep(0.01)
    await response.write_eof()
    return response


async def _file(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(request.app[FILE_KEY])


async def _missing(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"code": "not_found", "message": "no"}}, status=404)


@pytest.fixture
async def media_worker(tmp_path: Path) -> AsyncIterator[Path]:
    """An app on a Unix socket standing in for worker 0's."""
    app = web.Application()
    app[FILE_KEY] = tmp_path / "rec.mp4"
    app[FILE_KEY].write_bytes(FILE)
    app.router.add_post("/whip/{room}", _whip)
    app.router.add_get("/hls/{room}/index.m3u8", _stream)
    app.router.add_get("/recordings/{room}/{name}", _file)
    app.router.add_get("/api/rooms/{room}/recordings", _missing)
    path = tmp_path / "media.sock"
    runner = await serve_on_socket(app, path)
    yield path
    await runner.cleanup()


async def serve_on_socket(app: web.Application, path: Path) -> web.AppRunner:
    """`app` served on the Unix socket `path` (what worker 0's media socket is); the caller
    cleans the runner up."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    return runner


async def front(socket_path: Path) -> TestClient[Any, Any]:
    app = web.Application()
    forward_routes(app, socket_path)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_request_and_its_answer_pass_unchanged(media_worker: Path) -> None:
    client = await front(media_worker)
    try:
        headers = {"Authorization": "Bearer abc", "Content-Type": "application/sdp", "Host": "live.example"}
        response = await client.post("/whip/r1?path=backup", data=b"v=0 offer", headers=headers)
        assert response.status == 201
        assert await response.read() == b"answer:v=0 offer"
        assert response.headers["Location"] == "/whip/r1/s1"
        assert response.headers["ETag"] == '"v1"'
        assert response.headers["Link"] == '<stun:example.net>; rel="ice-server"'
        assert response.headers["Content-Type"] == "application/sdp"
        assert response.headers["X-Seen"] == "path=backup|Bearer abc|live.example"
        missing = await client.get("/api/rooms/r1/recordings")
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    finally:
        await client.close()


async def test_bodies_stream_and_ranges_pass(media_worker: Path) -> None:
    client = await front(media_worker)
    try:
        streamed = await client.get("/hls/r1/index.m3u8")
        assert streamed.status == 200
        assert await streamed.text() == "".join(f"#part {n}\n" for n in range(5))
        whole = await client.get("/recordings/r1/rec.mp4")
        assert await whole.read() == FILE and whole.headers["Accept-Ranges"] == "bytes"
        etag = whole.headers["ETag"]
        part = await client.get("/recordings/r1/rec.mp4", headers={"Range": "bytes=100-199"})
        assert part.status == 206
        assert part.headers["Content-Range"] == f"bytes 100-199/{len(FILE)}"
        assert await part.read() == FILE[100:200]
        unchanged = await client.get("/recordings/r1/rec.mp4", headers={"If-None-Match": etag})
        assert unchanged.status == 304
        head = await client.head("/recordings/r1/rec.mp4")
        assert head.status == 200 and head.headers["Content-Length"] == str(len(FILE))
    finally:
        await client.close()


async def test_nobody_on_the_socket_is_503_unavailable_at_once(tmp_path: Path) -> None:
    closed = tmp_path / "media.sock"  # never bound: worker 0 is being restarted
    client = await front(closed)
    try:
        for method, path in (("POST", "/whep/r1"), ("GET", "/hls/r1/master.m3u8"), ("DELETE", "/whip/r1/s")):
            started = time.monotonic()
            response = await client.request(method, path, data=b"x")
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            error = (await response.json())["error"]
            assert error["code"] == "unavailable" and error["retry"] == "later", error
            assert time.monotonic() - started < 2
    finally:
        await client.close()


def _config(media: bool) -> Config:
    return Config(
        auth=AuthConfig(jwt_secret=SECRET),
        store=StoreConfig(kind="memory"),
        media=MediaConfig(enabled=media, workers=1),  # no pool: nothing to start or clean up
    )


def _sample(resource: web.AbstractResource) -> str:
    """A path that `resource` would serve: each {name} filled in."""
    info = resource.get_info()
    if "prefix" in info:  # a static directory
        return f"{info['prefix']}/replay.js"
    return re.sub(r"\{[^}]+\}", "x1", info.get("formatter") or info["path"])


async def test_every_media_route_is_forwarded() -> None:
    """Each route a real media app adds (WHIP, WHEP, HLS, recordings, restreams, pages) is
    one a worker without the media plane forwards; the core's routes are not."""
    core = {resource.canonical for resource in build_app(_config(False)).router.resources()}
    media = [r for r in build_app(_config(True)).router.resources() if r.canonical not in core]
    assert len(media) >= 10, [r.canonical for r in media]
    app = build_app(_config(True), media_at=Path("/nonexistent"))
    forward = app[FORWARD_KEY].handle
    for resource in media:
        path = _sample(resource)
        for method in ("GET", "HEAD", "POST", "DELETE", "PATCH"):
            match = await app.router.resolve(make_mocked_request(method, path))
            assert match.handler == forward, (method, path, resource.canonical)
    for path in ("/healthz", "/api/rooms/r1/commands/danmaku.send", "/api/rooms/r1/costream", "/static/x.js"):
        match = await app.router.resolve(make_mocked_request("GET", path))
        assert match.handler != forward, path


async def test_a_guest_revoked_here_is_ended_on_the_media_worker(tmp_path: Path) -> None:
    """The co-streaming plugin (the room's owner on this worker) takes a guest off the stage:
    worker 0 is asked to end that guest's session in that slot, as the node's admin."""
    asked: list[tuple[str, str, str]] = []

    async def end_slot(request: web.Request) -> web.Response:
        identity = TokenAuthority(SECRET).verify(request.headers["Authorization"].removeprefix("Bearer "))
        asked.append((request.path, request.query_string, identity.role))
        return web.Response(status=200)

    upstream = web.Application()
    upstream.router.add_delete("/whip/{room}/slots/{slot}", end_slot)
    path = tmp_path / "media.sock"
    runner = await serve_on_socket(upstream, path)
    app = build_app(_config(True), media_at=path)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert isinstance(app[FORWARD_KEY].socket_path, Path)
        node = app[NODE_KEY]
        node.publish_tokens.revoke("r1", 2, "guest7", time.time() * 1000)
        node.publish_tokens.revoke("r1", 3, "", time.time() * 1000)  # a slot ended on worker 0 itself
        for _ in range(100):
            if asked:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert asked == [("/whip/r1/slots/2", "user=guest7", "admin")]
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_cut_upstream_body_cuts_the_client_connection(tmp_path: Path) -> None:
    """Worker 0 dies mid-body: the client sees a broken response, not a short one that looks whole."""

    async def dying(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"#EXTM3U\n")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    upstream = web.Application()
    upstream.router.add_get("/hls/{room}/{file}", dying)
    path = tmp_path / "media.sock"
    runner = await serve_on_socket(upstream, path)
    client = await front(path)
    try:
        response = await client.get("/hls/r1/master.m3u8")
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    finally:
        await client.close()
        await runner.cleanup()
