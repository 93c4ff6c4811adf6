"""Signed business events (liveroom.events, plugins/webhooks.py) to a real HTTP receiver that
verifies each signature as docs/protocol.md tells a backend to; on the harness, then end to end."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from http_support import post_endpoint
from media_support import publish
from plugin_support import room_name
from support import ServerProcess, Viewer, token

from liveroom.events import stream_event
from liveroom.testing import NodeHarness

SECRET = "events-secret"


def verify(secret: str, body: bytes, header: str, tolerance_s: float = 300) -> bool:
    """What a backend does (docs/protocol.md, *Webhooks*), written here from the docs alone."""
    parts = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(parts["t"])) <= tolerance_s
    return fresh and hmac.compare_digest(expected, parts["v1"])


@dataclass
class Receiver:
    url: str
    events: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    forged: int = 0

    async def wait(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"wanted {count} events, got {self.events}")
            await asyncio.sleep(0.02)
        return self.events

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver("")

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get("X-Liveroom-Signature", "t=0,v1=")):
            made.forged += 1
            return web.Response(status=400)
        made.events.append(orjson.loads(body))
        made.keys.append(request.headers["Idempotency-Key"])
        return web.Response(status=204)

    async with post_endpoint("/events", events) as url:
        made.url = url
        yield made


def webhooks(receiver: Receiver, events: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"url": receiver.url, "secret": SECRET, "events": events, "poll_interval_ms": 20.0}


async def test_events_of_the_built_ins_arrive_signed_once_each_and_by_subscription(
    receiver: Receiver,
) -> None:
    wanted = ("poll.closed", "coupon.granted", "moderation.action", "stream.started")
    async with NodeHarness(plugins={"webhooks": webhooks(receiver, wanted)}) as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        poll = await host.command(
            "poll.create", {"room": "r1", "question": "Q?", "options": ["a", "b"], "duration_s": 15}
        )
        await fan.command("poll.vote", {"room": "r1", "poll": poll["poll"], "option": 1})
        await host.command("poll.close", {"room": "r1", "poll": poll["poll"]})
        rule = await host.command(
            "coupon.rule", {"room": "r1", "title": "Gift", "trigger": "grant", "budget": 5}
        )
        await host.command(
            "coupon.grant", {"room": "r1", "user": "u1", "rule": rule["rule"], "request_id": "g"}
        )
        await fan.command("coupon.claim", {"room": "r1", "rule": rule["rule"]})  # not subscribed
        await host.command("danmaku.mute", {"room": "r1", "user": "u1", "duration_s": 60})
        events = h.node.plugins[0].host.events
        media = {"slot": "host", "state": "connected", "session": "s1", "user": {"id": "h1", "name": "H"}}
        await stream_event(events, h.store, "r1", media, h.clock.now_ms())
        await stream_event(events, h.store, "r1", {**media, "state": "ended"}, h.clock.now_ms())  # not wanted
        await receiver.wait(4)
        assert sorted(receiver.types()) == sorted(wanted)
        by_type = {event["type"]: event for event in receiver.events}
        assert by_type["poll.closed"]["data"]["counts"] == [0, 1]
        assert by_type["coupon.granted"]["data"]["user"] == "u1"
        assert by_type["moderation.action"]["data"]["action"] == "mute"
        assert by_type["stream.started"]["data"]["session"] == "s1"
        assert all(
            set(e) == {"id", "type", "room", "at", "data"} and e["room"] == "r1" for e in receiver.events
        )
        assert receiver.keys == [event["id"] for event in receiver.events] and len(set(receiver.keys)) == 4
        await h.restart()  # the cursors are durable: nothing is sent again
        host = await h.connect("h1", role="host")
        await host.join("r1")
        await host.command("danmaku.slow", {"room": "r1", "interval_s": 5})
        await receiver.wait(5)
        assert (
            receiver.types()[-1] == "moderation.action" and len(set(receiver.keys)) == len(receiver.keys) == 5
        )
        assert receiver.forged == 0


async def test_a_plugin_emits_its_own_events_and_bad_settings_stop_start_up(receiver: Receiver) -> None:
    async with NodeHarness(plugins={"webhooks": webhooks(receiver)}) as h:
        events = h.node.plugins[0].host.events
        assert await events.emit(h.store, "r1", "raffle.won", {"winners": ["u1"]}, "draw-1", h.clock.now_ms())
        await events.emit(h.store, "r1", "raffle.won", {"winners": ["u1"]}, "draw-1", h.clock.now_ms())
        with pytest.raises(ValueError, match="event type"):
            await events.emit(h.store, "r1", "no dots", {}, "k", h.clock.now_ms())
        await receiver.wait(1)
        assert receiver.events[0]["type"] == "raffle.won" and receiver.events[0]["id"] == "raffle.won:draw-1"
    for bad in ({"url": ""}, {"url": receiver.url, "events": ["Nope"]}):
        with pytest.raises(Exception, match=r"url|events"):
            async with NodeHarness(plugins={"webhooks": bad}):
                pass


async def test_end_to_end_events_from_a_real_server(tmp_path: Path, receiver: Receiver) -> None:
    env = {
        "LIVEROOM_PLUGINS_WEBHOOKS_URL": receiver.url,
        "LIVEROOM_PLUGINS_WEBHOOKS_SECRET": SECRET,
        "LIVEROOM_PLUGINS_WEBHOOKS_EVENTS": "poll.closed,moderation.action",
        "LIVEROOM_PLUGINS_WEBHOOKS_POLL_INTERVAL_MS": "100",
    }
    server = ServerProcess(tmp_path, env=env).start()
    host = Viewer(server.url, "host1", "host")
    try:
        room = room_name()
        await host.connect()
        await host.join(room)
        poll = await host.call(
            "poll.create", {"room": room, "question": "Colour?", "options": ["red", "blue"], "duration_s": 15}
        )
        assert (await host.call("poll.close", {"room": room, "poll": poll["poll"]}))["ok"]
        assert (await host.call("danmaku.ban", {"room": room, "user": "troll", "duration_s": 600}))["ok"]
        await receiver.wait(2)
        assert sorted(receiver.types()) == ["moderation.action", "poll.closed"]
        assert receiver.forged == 0
    finally:
        await host.close()
        server.stop()


async def test_end_to_end_a_host_going_live_and_stopping_reaches_the_backend(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = {
        "LIVEROOM_PLUGINS_WEBHOOKS_URL": receiver.url,
        "LIVEROOM_PLUGINS_WEBHOOKS_SECRET": SECRET,
        "LIVEROOM_PLUGINS_WEBHOOKS_EVENTS": "stream.started,stream.stopped",
    }
    server = ServerProcess(tmp_path, env=env).start()
    try:
        room = room_name()
        publisher = await publish(server.url, room, token("host1", "host"))
        try:
            started = (await receiver.wait(1))[0]
            assert started["type"] == "stream.started" and started["room"] == room, started
            assert started["data"]["user"]["id"] == "host1"
        finally:
            assert await publisher.end() in (200, 204)
        stopped = (await receiver.wait(2))[1]
        assert stopped["type"] == "stream.stopped" and stopped["data"]["reason"] == "ended", stopped
        assert stopped["data"]["on_air"] is False, stopped  # the only path: the show ended
        assert stopped["data"]["session"] == started["data"]["session"] and receiver.forged == 0
    finally:
        server.stop()
