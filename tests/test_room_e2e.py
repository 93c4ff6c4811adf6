"""The core through its real surface: a server process, python-socketio clients."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import pytest
import socketio

from support import ServerProcess, Viewer, token


def room_name() -> str:
    return "r-" + uuid.uuid4().hex[:10]


async def connected(server: ServerProcess, viewers: list[Viewer], user: str, **kwargs: object) -> Viewer:
    viewer = Viewer(server.url, user, **kwargs)  # type: ignore[arg-type]
    viewers.append(viewer)
    return await viewer.connect()


async def test_danmaku_reaches_everyone_in_the_room(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    alice = await connected(server, viewers, "alice-" + room)
    bob = await connected(server, viewers, "bob-" + room)
    first = await alice.join(room)
    assert first["seq"] == 0 and first["missed"] == [] and first["reset"] is False
    assert (
        first["online"] == 1 and isinstance(first["server_time"], float) and isinstance(first["state"], dict)
    )
    assert (await bob.join(room))["online"] == 2

    ack = await alice.call("danmaku.send", {"room": room, "text": "  hello 世界  "})
    assert ack["ok"] is True and isinstance(ack["id"], str)

    for viewer in (alice, bob):
        [item] = await viewer.wait_for(lambda i: i["type"] == "danmaku.message")
        assert item["seq"] == 1 and isinstance(item["ts"], int)
        assert item["data"] == {
            "id": ack["id"],
            "user": {"id": alice.user, "name": alice.user.title()},
            "text": "hello 世界",
        }
    [online] = await alice.wait_for(lambda i: i["type"] == "room.online" and i["data"]["count"] == 2)
    assert online["seq"] is None
    assert all(batch["room"] == room for batch in alice.batches)


async def test_seq_is_strictly_increasing_and_order_is_shared(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    room = room_name()
    senders = [await connected(server, viewers, f"s{i}-{room}") for i in range(3)]
    watcher = await connected(server, viewers, "w-" + room)
    for viewer in [*senders, watcher]:
        await viewer.join(room)
    await asyncio.gather(
        *(s.call("danmaku.send", {"room": room, "text": f"{n}"}) for s in senders for n in range(4))
    )
    seen = {}
    for viewer in [*senders, watcher]:
        items = await viewer.wait_for(lambda i: i["type"] == "danmaku.message", count=12)
        seqs = [item["seq"] for item in items]
        assert seqs == sorted(seqs) and len(set(seqs)) == 12
        seen[viewer.user] = [item["data"]["id"] for item in items]
    assert len({tuple(order) for order in seen.values()}) == 1


async def test_rooms_are_isolated(server: ServerProcess, viewers: list[Viewer]) -> None:
    room_a, room_b = room_name(), room_name()
    alice = await connected(server, viewers, "alice-" + room_a)
    bob = await connected(server, viewers, "bob-" + room_b)
    await alice.join(room_a)
    await bob.join(room_b)
    await alice.call("danmaku.send", {"room": room_a, "text": "only a"})
    await alice.wait_for(lambda i: i["type"] == "danmaku.message")
    await asyncio.sleep(0.2)
    assert bob.of_type("danmaku.message") == []


async def test_reconnect_with_since_recovers_exactly_the_missed(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    room = room_name()
    sender = await connected(server, viewers, "sender-" + room)
    leaver = await connected(server, viewers, "leaver-" + room)
    await sender.join(room)
    await leaver.join(room)
    await sender.call("danmaku.send", {"room": room, "text": "before"})
    [before] = await leaver.wait_for(lambda i: i["type"] == "danmaku.message")
    epoch = (await leaver.call("join", {"room": room}))["epoch"]
    await leaver.close()

    sent = [await sender.call("danmaku.send", {"room": room, "text": f"missed {n}"}) for n in range(3)]
    # The sender's rate limit (burst 5) allows these four without waiting.
    back = await connected(server, viewers, "leaver-" + room)
    ack = await back.join(room, since=before["seq"], epoch=epoch)
    assert ack["reset"] is False
    assert [m["data"]["id"] for m in ack["missed"]] == [s["id"] for s in sent]
    assert [m["seq"] for m in ack["missed"]] == [before["seq"] + 1, before["seq"] + 2, before["seq"] + 3]
    assert ack["seq"] == before["seq"] + 3
    await sender.call("danmaku.send", {"room": room, "text": "after"})
    [after] = await back.wait_for(lambda i: i["type"] == "danmaku.message")
    assert after["seq"] == ack["seq"] + 1


async def test_join_with_current_seq_misses_nothing_and_resets_nothing(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    room = room_name()
    viewer = await connected(server, viewers, "v-" + room)
    ack = await viewer.join(room)
    again = await viewer.join(room, since=ack["seq"])
    assert again["missed"] == [] and again["reset"] is False


async def test_since_from_the_future_or_another_epoch_resets(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    room = room_name()
    viewer = await connected(server, viewers, "v-" + room)
    assert (await viewer.join(room, since=1000))["reset"] is True
    await viewer.call("danmaku.send", {"room": room, "text": "one"})
    ack = await viewer.join(room, since=0, epoch="not-this-one")
    assert ack["reset"] is True and ack["missed"] == []


async def test_room_bound_token(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    viewer = await connected(server, viewers, "bound-" + room, room=room)
    other = await viewer.call("join", {"room": room_name()})
    assert other == {"ok": False, "error": {"code": "forbidden", "message": other["error"]["message"]}}
    assert (await viewer.call("join", {"room": room}))["ok"] is True


async def test_commands_need_a_joined_room(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    viewer = await connected(server, viewers, "nj-" + room)
    ack = await viewer.call("danmaku.send", {"room": room, "text": "hi"})
    assert ack["ok"] is False and ack["error"]["code"] == "not_joined"
    await viewer.join(room)
    assert (await viewer.call("leave", {"room": room}))["ok"] is True
    assert (await viewer.call("leave", {"room": room}))["error"]["code"] == "not_joined"
    ack = await viewer.call("danmaku.send", {"room": room, "text": "hi"})
    assert ack["error"]["code"] == "not_joined"


async def test_danmaku_limits(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    viewer = await connected(server, viewers, "lim-" + room)
    await viewer.join(room)
    ack = await viewer.call("danmaku.send", {"room": room, "text": "x" * 201})
    assert ack["error"]["code"] == "too_long"
    ack = await viewer.call("danmaku.send", {"room": room, "text": "   "})
    assert ack["error"]["code"] == "bad_request"
    results = [await viewer.call("danmaku.send", {"room": room, "text": f"m{n}"}) for n in range(8)]
    codes = [r["error"]["code"] if not r["ok"] else "ok" for r in results]
    assert codes[:5] == ["ok"] * 5 and "rate_limited" in codes[5:]


async def test_time_sync(server: ServerProcess, viewers: list[Viewer]) -> None:
    viewer = await connected(server, viewers, "clock")
    loop = asyncio.get_running_loop()
    import time

    before = time.time() * 1000
    ack = await viewer.call("time", {})
    after = time.time() * 1000
    assert ack["ok"] is True and isinstance(ack["server_time"], float)
    assert before - 5 <= ack["server_time"] <= after + 5
    del loop


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        (None, "a token is required"),
        ({"token": ""}, "a token is required"),
        ({"token": "not-a-jwt"}, "invalid token"),
        ({"token": token("late", ttl=-10)}, "expired"),
        ({"token": token("forged")[:-4] + "AAAA"}, "invalid token"),
        ({"token": 42}, "a token is required"),
    ],
)
async def test_bad_tokens_are_refused_with_unauthorized(
    server: ServerProcess, auth: object, reason: str
) -> None:
    client = socketio.AsyncClient()
    errors: list[object] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=5)
    assert len(errors) == 1
    data = errors[0]
    assert isinstance(data, dict) and data["code"] == "unauthorized" and reason in data["message"]
    await client.disconnect()


async def test_token_signed_with_another_secret_is_refused(server: ServerProcess) -> None:
    from liveroom.auth import TokenAuthority

    forged = TokenAuthority("another-secret-also-long-enough-for-hs256-0123456789").mint(
        "eve", "Eve", "admin"
    )
    client = socketio.AsyncClient()
    errors: list[object] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.url, auth={"token": forged}, transports=["websocket"], wait_timeout=5)
    assert errors[0]["code"] == "unauthorized"  # type: ignore[index]


async def test_long_polling_clients_work_too(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    poller = Viewer(server.url, "poller-" + room)
    viewers.append(poller)
    await poller.connect(transports=["polling"])
    sender = await connected(server, viewers, "sender-" + room)
    await poller.join(room)
    await sender.join(room)
    await sender.call("danmaku.send", {"room": room, "text": "to the poller"})
    [item] = await poller.wait_for(lambda i: i["type"] == "danmaku.message")
    assert item["data"]["text"] == "to the poller"


def test_health_ready_and_metrics(server: ServerProcess) -> None:
    with urllib.request.urlopen(server.url + "/healthz") as response:
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(server.url + "/readyz") as response:
        assert json.load(response) == {"status": "ready"}
    with urllib.request.urlopen(server.url + "/metrics") as response:
        text = response.read().decode()
    for name in (
        "liveroom_connections",
        "liveroom_rooms",
        "liveroom_items_sent_total",
        "liveroom_batches_sent_total",
        "liveroom_errors_total",
        "liveroom_tick_seconds_bucket",
    ):
        assert name in text


def test_foreign_origins_are_refused(server: ServerProcess) -> None:
    request = urllib.request.Request(server.url + "/healthz", headers={"Origin": "https://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    with caught.value as error:
        assert error.code == 403
        assert json.load(error)["error"]["code"] == "forbidden_origin"
    request = urllib.request.Request(server.url + "/healthz", headers={"Origin": "http://localhost:3000"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    polling = urllib.request.Request(
        server.url + "/socket.io/?EIO=4&transport=polling", headers={"Origin": "https://evil.example"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(polling)
    with caught.value as error:
        assert error.code == 400
