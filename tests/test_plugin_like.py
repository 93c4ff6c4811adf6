"""Likes: the allowance rule over fake time; aggregation and throttling on a node without sockets
(NodeHarness); totals through restarts with real clients and servers."""

from __future__ import annotations

import asyncio
import itertools
import signal
from pathlib import Path
from typing import Any

import pytest
from liveroom.plugins.like_rules import (
    MinuteCounts,
    PendingLikes,
    UnflushedLikes,
    minutes_back,
)
from plugin_support import api, code, room_name
from redis_support import RedisServer
from support import ServerProcess, Viewer

from liveroom.ratelimit import KeyedBuckets
from liveroom.testing import NodeHarness


def test_allowance_cuts_a_tap_storm_and_refills() -> None:
    allowance = KeyedBuckets(rate=10, burst=50)
    assert allowance.grant("ann", 80, 0.0) == 50
    assert allowance.grant("ann", 5, 0.0) == 0
    assert allowance.grant("ann", 80, 1.0) == 10
    assert allowance.grant("bob", 3, 1.0) == 3


def test_minute_counts_keep_the_peak() -> None:
    counts = MinuteCounts(keep=2)
    counts.add(5, 0)
    counts.add(9, 60_000)
    counts.add(1, 61_000)
    counts.add(2, 120_000)
    assert counts.series() == [{"minute": 60_000, "count": 10}, {"minute": 120_000, "count": 2}]
    assert counts.peak() == {"minute": 60_000, "count": 10}


async def test_likes_aggregate_and_are_throttled() -> None:
    async with NodeHarness() as h:
        ann, bob = await h.connect("ann"), await h.connect("bob")
        await ann.join("r")
        await bob.join("r")
        first = await ann.command("like.send", {"room": "r", "count": 30})
        assert first == {"ok": True, "accepted": 30, "total": 30}
        storm = await bob.command("like.send", {"room": "r", "count": 5000})
        assert storm["accepted"] == 100 and storm["total"] == 130
        assert code(await bob.command("like.send", {"room": "r", "count": 1000})) == "rate_limited"
        assert code(await bob.command("like.send", {"room": "r", "count": 0})) == "bad_request"
        for _ in range(5):
            await ann.command("like.send", {"room": "r", "count": 1})
            await h.advance(0.2)
        await h.advance(0.6)
        assert bob.of_type("like.total")[-1]["data"]["total"] == 135
        stamps = [i["ts"] for i in bob.of_type("like.total")]  # at most one per total_interval_ms
        assert len(stamps) >= 2 and all(b - a >= 500 for a, b in itertools.pairwise(stamps))
        assert (await ann.join("r"))["state"]["like"] == {"total": 135}
        stats = await h.node.interactions.query("r", ann.identity, "likes", {})
        assert stats["total"] == 135 and stats["peak"]["count"] == 135


def test_unflushed_likes_stay_pending_until_stored() -> None:
    unflushed = UnflushedLikes()
    unflushed.add("r", 5, 59_000)
    unflushed.add("r", 2, 61_000)
    batch = unflushed.pending("r")
    assert batch == PendingLikes(7, {0: 5, 60_000: 2})
    unflushed.add("r", 1, 62_000)  # a tap while the batch is being written
    unflushed.stored_total("r", batch.total)
    unflushed.stored_minute("r", 0, 5)
    assert unflushed.pending("r") == PendingLikes(1, {60_000: 3})  # the failed minute and the new tap
    unflushed.stored_minute("r", 60_000, 3)
    unflushed.stored_total("r", 1)
    assert unflushed.rooms() == [] and unflushed.pending("r") == PendingLikes()
    assert minutes_back(125_000, 3) == [0, 60_000, 120_000]


@pytest.fixture(params=["embedded", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    redis: RedisServer = request.getfixturevalue("redis_server")
    return {
        "LIVEROOM_STORE_KIND": "redis",
        "LIVEROOM_BROKER_KIND": "redis",
        "LIVEROOM_CLUSTER_LEASE_S": "1",  # the killed node's rooms are served again within it
        "LIVEROOM_REDIS_URL": redis.url,
        "LIVEROOM_REDIS_KEY_PREFIX": tmp_path.name,
    }


async def join_when_served(viewer: Viewer, room: str) -> dict[str, Any]:
    """On Redis a SIGKILLed node's rooms stay its own until their lease runs out: joins are
    answered `unavailable` (retry later) meanwhile."""
    for _ in range(200):
        ack: dict[str, Any] = await viewer.call("join", {"room": room})
        if ack["ok"] or ack["error"]["code"] != "unavailable":
            break
        await asyncio.sleep(0.05)
    assert ack["ok"], ack
    return ack


async def like_then_restart(process: ServerProcess, room: str, count: int, sig: int) -> int:
    """Like `count` (after the first total went out when killing), stop with `sig`, restart."""
    viewer = Viewer(process.url, "fan")
    try:
        await viewer.connect()
        await join_when_served(viewer, room)
        ack = await viewer.call("like.send", {"room": room, "count": count})
        if sig == signal.SIGKILL:  # like.total goes out once the likes are in the store
            await viewer.wait_for(lambda i: i["type"] == "like.total" and i["data"]["total"] == ack["total"])
    finally:
        await viewer.close()
    process.stop(sig)
    process.start()
    return int(ack["total"])


async def test_like_totals_survive_restarts(tmp_path: Path, store_env: dict[str, str]) -> None:
    room = room_name()
    process = ServerProcess(tmp_path / "node", store_env).start()
    try:
        assert await like_then_restart(process, room, 30, signal.SIGKILL) == 30
        assert await like_then_restart(process, room, 7, signal.SIGTERM) == 37  # flushed on the way out
        fan = Viewer(process.url, "fan2")
        try:
            await fan.connect()
            assert (await join_when_served(fan, room))["state"]["like"] == {"total": 37}
            assert (await fan.call("like.send", {"room": room, "count": 3}))["total"] == 40
        finally:
            await fan.close()
        status, stats = api(process, "GET", f"/api/rooms/{room}/likes")
        assert status == 200 and stats["total"] == 40
        assert sum(m["count"] for m in stats["per_minute"]) == 40 and stats["peak"]["count"] >= 20
    finally:
        process.stop()
