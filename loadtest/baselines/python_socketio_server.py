"""A plain python-socketio server, as people write them: `sio.emit(..., room=...)` per item.

The baseline for `liveroom-loadtest compare`. It speaks the commands the load generator
uses (`join`, `danmaku.send`, `bench.publish`, `time`) and sends the same `batch` items as
liveroom, one message per emit. Tokens are not checked: it measures delivery, not auth.
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

import socketio
import uvloop
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")
app = web.Application()
sio.attach(app)
seqs: dict[str, int] = {}


async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
    return None


async def join(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    await sio.enter_room(sid, data["room"])
    return {"ok": True, "room": data["room"], "seq": seqs.get(data["room"], 0)}


async def danmaku_send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    message_id = secrets.token_hex(8)
    await _publish(
        data["room"],
        "danmaku.message",
        {"id": message_id, "user": {"id": sid, "name": sid}, "text": data["text"]},
    )
    return {"ok": True, "id": message_id}


async def bench_publish(sid: str, data: dict[str, Any]) -> dict[str, Any]:
    kind = "bench.priority" if data.get("priority") else "bench.message"
    seq = await _publish(data["room"], kind, {"text": data["text"]})
    return {"ok": True, "seq": seq}


async def server_time(sid: str, data: Any = None) -> dict[str, Any]:
    return {"ok": True, "server_time": time.time() * 1000}


async def _publish(room: str, item_type: str, data: Any) -> int:
    seq = seqs[room] = seqs.get(room, 0) + 1
    item = {"seq": seq, "type": item_type, "ts": int(time.time() * 1000), "data": data}
    await sio.emit("batch", {"room": room, "items": [item]}, room=room)
    return seq


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


app.router.add_get("/healthz", healthz)
sio.on("connect", connect)
sio.on("join", join)
sio.on("danmaku.send", danmaku_send)
sio.on("bench.publish", bench_publish)
sio.on("time", server_time)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    web.run_app(
        app, host="127.0.0.1", port=args.port, print=None, access_log=None, loop=uvloop.new_event_loop()
    )


if __name__ == "__main__":
    main()
