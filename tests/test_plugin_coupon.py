"""Coupons: presence rules over fake time; watch time and activity on a node without sockets
(NodeHarness); drops end to end with real clients and a SIGKILL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from liveroom.plugins.coupon_rules import ActivityLog, Presence, parse_rule
from plugin_support import code, joined, room_name
from support import ServerProcess, Viewer

from liveroom.config import Config, LimitsConfig
from liveroom.testing import HarnessConnection, NodeHarness

RULES = (
    "id=w trigger=watch_time minutes=0.05 budget=2 title=Watcher,"
    "id=chatty trigger=activity activity=danmaku count=2 budget=10"
)


def test_presence_survives_a_short_gap_only() -> None:
    presence = Presence(grace_ms=60_000)
    assert presence.joined("ann", 0) == 0
    presence.left("ann", 10_000)
    assert presence.present_since("ann") is None
    assert presence.joined("ann", 50_000) == 0  # back within the grace period
    presence.left("ann", 60_000)
    assert presence.joined("ann", 200_000) == 200_000  # too long away: starts again


def test_rules_parse_or_fail_clearly() -> None:
    rule = parse_rule('id=w30 trigger=watch_time minutes=30 budget=5 title="Five off"')
    assert rule.minutes == 30 and rule.title == "Five off"
    with pytest.raises(ValueError, match="trigger must be"):
        parse_rule("id=x trigger=nope budget=1")
    with pytest.raises(ValueError, match="budget"):
        parse_rule("id=x trigger=watch_time minutes=1")


def test_a_like_streak_counts_only_recent_likes() -> None:
    rule = parse_rule("id=streak trigger=activity activity=like count=10 within_s=5 budget=9")
    assert rule.within_s == 5
    log, key = ActivityLog(), ("room", "ann", "like")
    log.add(key, 0, 6)
    log.add(key, 4_000, 3)
    assert log.count(key, 4_000, rule.within_s) == 9  # not yet a streak of 10
    log.add(key, 7_000, 3)  # the first 6 are older than 5 s now: 3 + 3
    assert log.count(key, 7_000, rule.within_s) == 6
    assert log.count(key, 7_000, 0) == 12  # without a window: the whole show
    log.add(key, 8_000, 4)
    assert log.count(key, 8_000, rule.within_s) >= rule.count
    with pytest.raises(ValueError, match="within_s"):
        parse_rule("id=x trigger=activity activity=like count=1 within_s=-1 budget=1")


COUPON = {"coupon": {"rules": tuple(RULES.split(",")), "grace_s": 1.0}}
FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


def grants(viewer: HarnessConnection, rule: str) -> list[dict[str, Any]]:
    return [i for i in viewer.of_type("coupon.granted") if i["data"]["rule"] == rule]


async def test_watch_time_with_grace_budget_and_pending_grants() -> None:
    async with NodeHarness(FAST, plugins=COUPON) as h:
        ann, bob = await h.connect("ann"), await h.connect("bob")
        await ann.join("r")
        await bob.join("r")
        await h.advance(0.5)
        carol = await h.connect("carol")
        await carol.join("r")
        await h.advance(0.5)
        await bob.vanish()  # a short disconnect, within the 1 s grace period
        await h.advance(0.3)
        bob = await h.connect("bob")
        await bob.join("r")
        await h.advance(2.0)  # 3 s (0.05 minutes) after ann and bob came
        for viewer in (ann, bob):
            [item] = viewer.of_type("coupon.granted")
            assert item["seq"] is None and item["data"]["rule"] == "w" and item["data"]["user"] == viewer.user
        await h.advance(1.2)
        assert grants(carol, "w") == []  # the budget of 2 was spent
        await ann.vanish()
        ann = await h.connect("ann")
        state = (await ann.join("r"))["state"]["coupon"]
        assert [g["rule"] for g in state["pending"]] == ["w"]
        claimed = await ann.command("coupon.claim", {"room": "r", "rule": "w"})
        assert claimed["ok"] and claimed["grant"]["rule"] == "w"
        assert code(await ann.command("coupon.claim", {"room": "r", "rule": "w"})) == "already_claimed"
        assert code(await ann.command("coupon.claim", {"room": "r", "rule": "chatty"})) == "not_found"
        assert (await ann.join("r"))["state"]["coupon"]["pending"] == []


async def test_activity_grants_once() -> None:
    async with NodeHarness(FAST, plugins={**COUPON, "danmaku": {"rate_per_s": 100, "burst": 100}}) as h:
        ann = await h.connect("ann")
        await ann.join("r")
        for n in range(4):
            assert code(await ann.command("danmaku.send", {"room": "r", "text": f"hi {n}"})) == "ok"
        await h.advance(1.0)
        assert len(grants(ann, "chatty")) == 1


async def test_drops_are_first_come_and_durable(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    viewers: list[Viewer] = []
    room = room_name()
    try:
        host = await joined(server, viewers, "host", room, "host")
        fans = [await joined(server, viewers, f"fan{n}", room) for n in range(3)]
        denied = code(await fans[0].call("coupon.drop", {"room": room, "title": "x", "count": 1}))
        assert denied == "forbidden"
        rule = (await host.call("coupon.drop", {"room": room, "title": "Flash 50%", "count": 2}))["rule"]
        [drop] = await fans[0].wait_for(lambda i: i["type"] == "coupon.drop")
        assert drop["data"] == {"rule": rule, "title": "Flash 50%", "count": 2} and drop["seq"] is not None
        acks = await asyncio.gather(*(f.call("coupon.grab", {"room": room, "rule": rule}) for f in fans))
        assert sorted(code(a) for a in acks) == ["exhausted", "ok", "ok"]
        winner = next(n for n, a in enumerate(acks) if a["ok"])
        again = await fans[winner].call("coupon.grab", {"room": room, "rule": rule})
        assert again["grant"] == acks[winner]["grant"]
        assert code(await fans[0].call("coupon.grab", {"room": room, "rule": "nope"})) == "not_found"
        server.stop(signal.SIGKILL)
        for viewer in viewers:
            await viewer.close()
        server.start()
        back = await joined(server, viewers, f"fan{winner}", room)
        pending = (await back.call("join", {"room": room}))["state"]["coupon"]["pending"]
        assert [g["id"] for g in pending] == [acks[winner]["grant"]["id"]]
        loser = next(n for n, a in enumerate(acks) if not a["ok"])
        late = await joined(server, viewers, f"fan{loser}", room)
        assert code(await late.call("coupon.grab", {"room": room, "rule": rule})) == "exhausted"
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()
