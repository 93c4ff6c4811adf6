"""Likes: the allowance rule over fake time, then real clients."""

from __future__ import annotations

import itertools

from liveroom.plugins.like_rules import LikeAllowance, MinuteCounts
from plugin_support import api, code, joined, room_name
from support import ServerProcess, Viewer


def test_allowance_cuts_a_tap_storm_and_refills() -> None:
    allowance = LikeAllowance(rate=10, burst=50)
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


async def test_likes_aggregate_and_are_throttled(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    ann = await joined(server, viewers, "ann-" + room, room)
    bob = await joined(server, viewers, "bob-" + room, room)
    first = await ann.call("like.send", {"room": room, "count": 30})
    assert first == {"ok": True, "accepted": 30, "total": 30}
    storm = await bob.call("like.send", {"room": room, "count": 5000})
    assert storm["accepted"] == 100 and storm["total"] == 130
    assert code(await bob.call("like.send", {"room": room, "count": 1000})) == "rate_limited"
    assert code(await bob.call("like.send", {"room": room, "count": 0})) == "bad_request"
    for _ in range(5):
        await ann.call("like.send", {"room": room, "count": 1})
    await bob.wait_for(lambda i: i["type"] == "like.total" and i["data"]["total"] == 135)
    stamps = [i["ts"] for i in bob.of_type("like.total")]
    assert all(b - a >= 450 for a, b in itertools.pairwise(stamps))
    assert (await ann.call("join", {"room": room}))["state"]["like"] == {"total": 135}
    status, stats = api(server, "GET", f"/api/rooms/{room}/likes")
    assert status == 200 and stats["total"] == 135 and stats["peak"]["count"] == 135
