"""Clients that agree on msgpack: python-socketio's serializer="msgpack" at /socket.io-msgpack/,
in the same rooms as JSON clients."""

from __future__ import annotations

import uuid

from support import ServerProcess, Viewer


async def test_msgpack_and_json_clients_share_a_room(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = "mp-" + uuid.uuid4().hex[:8]
    packed = Viewer(server.url, "packed-" + room, serializer="msgpack")
    plain = Viewer(server.url, "plain-" + room)
    viewers.extend([packed, plain])
    await packed.client.connect(
        server.url,
        auth={"token": packed.token},
        transports=["websocket"],
        socketio_path="socket.io-msgpack",
        wait_timeout=10,
    )
    await plain.connect()
    await plain.join(room)
    await plain.call("danmaku.send", {"room": room, "text": "before"})
    await plain.wait_for(lambda i: i["type"] == "danmaku.message")
    ack = await packed.join(room, since=0)
    assert [m["data"]["text"] for m in ack["missed"]] == ["before"]  # the join ack's embedded items
    sent = await packed.call("danmaku.send", {"room": room, "text": "从 msgpack"})
    assert sent["ok"]
    for viewer in (packed, plain):
        items = await viewer.wait_for(
            lambda i: i["type"] == "danmaku.message" and i["data"]["text"] == "从 msgpack"
        )
        assert items[0]["data"]["user"]["id"] == packed.user and items[0]["seq"] == 2
    bad = await packed.call("danmaku.send", {"room": room, "text": 5})
    assert bad["ok"] is False and bad["error"]["code"] == "bad_request"
