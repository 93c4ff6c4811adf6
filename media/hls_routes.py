"""GET /hls/{room}/{file}: the HLS files the media processes write (hls.py), for players and CDNs.

Playlists change with every segment: `Cache-Control: max-age=1`, so a CDN revalidates
about once a second. Segment names are never reused (they carry the output's id):
`max-age=86400, immutable`. Anyone may read them, as from a CDN; CORS is open so a
player page on another origin (hls.js) can load them.
"""

from __future__ import annotations

import re

from aiohttp import web

from liveroom.protocol import is_name

from .hls import room_directory
from .locator import redirect

__all__ = ["add_hls_routes"]

HLS_DIR_KEY = web.AppKey("liveroom_media_hls_dir", str)
FILE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(m3u8|ts)$")
HEADERS = {
    "m3u8": {"Content-Type": "application/vnd.apple.mpegurl", "Cache-Control": "public, max-age=1"},
    "ts": {"Content-Type": "video/mp2t", "Cache-Control": "public, max-age=86400, immutable"},
}


def add_hls_routes(app: web.Application, hls_dir: str) -> None:
    app[HLS_DIR_KEY] = hls_dir
    app.router.add_get("/hls/{room}/{file}", _file)


async def _file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    room = request.match_info["room"]
    elsewhere = await redirect(request, room, public=True) if is_name(room) else None
    if elsewhere is not None:
        return elsewhere
    match = FILE.match(name)
    directory = room_directory(request.app[HLS_DIR_KEY], request.match_info["room"])
    path = directory / name if match and directory is not None else None
    if path is None or not path.is_file():
        error = {"code": "not_found", "message": "no such HLS file (is the host publishing H.264?)"}
        return web.json_response({"error": error}, status=404)
    headers = {**HEADERS[match.group(1) if match else "ts"], "Access-Control-Allow-Origin": "*"}
    try:
        body = path.read_bytes()  # small files, usually in the page cache; a segment may vanish
    except FileNotFoundError:
        return web.json_response({"error": {"code": "not_found", "message": "segment expired"}}, status=404)
    return web.Response(body=body, headers=headers)
