"""Lucky bag (福袋): its pure rules (the draw re-run by an independent implementation), then
its life on the harness (fake clock): conditions, one entry per user, the draw at the
deadline, a store failure leaving no trace, a restart mid-bag, the winners' webhook."""

# ruff: noqa: RUF001 (full-width letters are what the keyword folding is for)

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from liveroom.plugins.luckybag_rules import Bag, check_entry, draw, keyword_matches, new_seed, seed_hash
from plugin_support import code
from test_webhooks import SECRET, Receiver, receiver  # noqa: F401 (the fixture)

from liveroom.config import Config, LimitsConfig
from liveroom.errors import CommandError
from liveroom.testing import HarnessConnection, NodeHarness

FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


def rerun(entrants: list[str], seed: str, winners: int) -> list[str]:
    """The draw as docs/plugins.md describes it, written from the docs alone."""
    key = bytes.fromhex(seed)
    ranked = sorted(
        set(entrants), key=lambda user: (hashlib.sha256(key + user.encode("utf-8")).digest(), user)
    )
    return ranked[:winners]


def test_the_draw_is_a_function_of_the_entries_and_the_seed() -> None:
    seed = new_seed()
    assert len(seed) == 64 and seed_hash(seed) == hashlib.sha256(bytes.fromhex(seed)).hexdigest()
    users = [f"u{n}" for n in range(1000)] + ["用户", "u1"]
    winners = draw(users, seed, 10)
    assert winners == rerun(users, seed, 10) == draw(list(reversed(users)), seed, 10)
    assert len(set(winners)) == 10 and draw(users, new_seed(), 10) != winners
    assert draw(["a", "b"], seed, 5) == rerun(["a", "b"], seed, 5) and len(draw([], seed, 3)) == 0


def test_entry_conditions() -> None:
    bag = Bag("b", "r", "Tea", 1, 0, 600_000, "h", keyword="我要福袋", watch_minutes=2, tiers=("vip",))
    assert keyword_matches("我要福袋", " 我要 福袋 ") and keyword_matches("Tea Time", "ＴＥＡ ｔｉｍｅ")
    assert not keyword_matches("我要福袋", "我要福袋!") and not keyword_matches("", "")

    def refused(tier: str | None, since: float | None, now: float, via: Any = "keyword") -> str:
        with pytest.raises(CommandError) as error:
            check_entry(bag, tier, since, now, via)
        return str(error.value.code)

    assert refused("vip", 0, 600_000) == "closed"
    assert refused("vip", 0, 200_000, "button") == "keyword_required"
    assert refused(None, 0, 200_000) == refused("gold", 0, 200_000) == "tier_required"
    assert refused("vip", 100_000, 200_000) == refused("vip", None, 200_000) == "watch_more"
    check_entry(bag, "vip", 80_000, 200_000, "keyword")


async def viewers(h: NodeHarness, room: str, *users: tuple[str, str | None]) -> list[HarnessConnection]:
    joined = []
    for user, tier in users:
        connection = await h.connect(user, tier=tier)
        await connection.join(room)
        joined.append(connection)
    return joined


async def test_a_bag_from_start_to_draw_with_every_condition() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        vip, pleb, late = await viewers(h, "r", ("vip1", "vip"), ("pleb", None), ("vip2", "vip"))
        start = {"room": "r", "prize": "Tea set", "winners": 1, "duration_s": 300, "keyword": "我要福袋"}
        start |= {"watch_minutes": 1, "tiers": ["vip"], "request_id": "bag1"}
        assert code(await vip.command("luckybag.start", start)) == "forbidden"
        assert code(await host.command("luckybag.start", {**start, "winners": 1000})) == "bad_request"
        assert code(await host.command("luckybag.start", {**start, "duration_s": 5})) == "bad_request"
        started = await host.command("luckybag.start", start)
        bag = started["bag"]
        assert (await host.command("luckybag.start", start))["bag"] == bag  # a retry: the same bag
        assert code(await host.command("luckybag.start", {**start, "request_id": "x"})) == "bag_active"
        [item] = vip.of_type("luckybag.started")
        assert item["data"]["seed_hash"] == started["seed_hash"] and "seed" not in item["data"]

        enter = {"room": "r", "bag": bag}
        assert code(await vip.command("luckybag.enter", enter)) == "keyword_required"
        assert code(await vip.command("luckybag.enter", {**enter, "bag": "b-nope"})) == "not_found"
        await vip.command("danmaku.send", {"room": "r", "text": "我要福袋"})
        await pleb.command("danmaku.send", {"room": "r", "text": "我要福袋"})
        assert [i["data"]["code"] for i in vip.of_type("luckybag.refused")] == ["watch_more"]
        assert [i["data"]["code"] for i in pleb.of_type("luckybag.refused")] == ["tier_required"]
        assert len(pleb.of_type("danmaku.message")) == 2  # the messages are published all the same
        await h.advance(61)
        for fan in (vip, vip, late):  # twice: one entry
            await fan.command("danmaku.send", {"room": "r", "text": "我要 福袋"})
        assert [i["data"]["entrants"] for i in vip.of_type("luckybag.entered")] == [1, 1]
        joined = await late.join("r")
        assert joined["state"]["luckybag"]["entered"] and joined["state"]["luckybag"]["open"]["entrants"] == 2
        await h.advance(1.1)
        assert host.of_type("luckybag.entrants")[-1]["data"]["entrants"] == 2
        page = await pleb.command("luckybag.entries", enter)
        assert sorted(e["user"] for e in page["entries"]) == ["vip1", "vip2"] and not page["drawn"]

        await h.advance(239)
        [drawn] = pleb.of_type("luckybag.drawn")
        result = drawn["data"]
        assert (
            drawn["seq"] is not None and result["entrants"] == 2 and result["algorithm"] == "sha256-rank-v1"
        )
        assert seed_hash(result["seed"]) == started["seed_hash"]
        entries = await pleb.command("luckybag.entries", enter)
        assert entries["drawn"] and entries["done"]
        users = [entry["user"] for entry in entries["entries"]]
        assert [w["id"] for w in result["winners"]] == rerun(users, result["seed"], 1)
        winner = {"vip1": vip, "vip2": late}[result["winners"][0]["id"]]
        assert winner.of_type("luckybag.won")[0]["data"] == {"bag": bag, "prize": "Tea set"}
        assert code(await vip.command("luckybag.enter", enter)) == "not_found"
        await h.restart()
        again = await h.connect("pleb")
        assert (await again.join("r"))["state"]["luckybag"]["last"] == result
        host = await h.connect("host", role="host")
        await host.join("r")
        assert code(await host.command("luckybag.start", {**start, "request_id": "b2"})) == "ok"


async def test_a_failed_entry_leaves_no_trace_and_a_failed_draw_is_tried_again() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        ann, bob = await viewers(h, "r", ("ann", None), ("bob", None))
        bag = (await host.command("luckybag.start", {"room": "r", "prize": "Mug", "duration_s": 60}))["bag"]
        enter = {"room": "r", "bag": bag}
        h.store.fail_next_write("unavailable")
        assert code(await ann.command("luckybag.enter", enter)) == "unavailable"
        assert (await bob.join("r"))["state"]["luckybag"]["open"]["entrants"] == 0
        assert (await ann.command("luckybag.enter", enter))["entrants"] == 1
        assert code(await host.command("luckybag.enter", enter)) == "not_eligible"
        h.store.fail_next_write("unknown_done")  # written, the answer lost: read back at the draw
        assert code(await bob.command("luckybag.enter", enter)) == "outcome_unknown"
        await h.advance(59)
        h.store.fail_next_write("unavailable")  # the result's write
        await h.advance(1)
        assert not bob.of_type("luckybag.drawn")
        assert code(await bob.command("luckybag.enter", enter)) == "closed"
        await h.advance(1.5)
        [drawn] = bob.of_type("luckybag.drawn")
        assert drawn["data"]["entrants"] == 2
        [winner] = [w["id"] for w in drawn["data"]["winners"]]
        assert {"ann": ann, "bob": bob}[winner].of_type("luckybag.won")
        entries = await ann.command("luckybag.entries", enter)
        assert sorted(e["user"] for e in entries["entries"]) == ["ann", "bob"]


async def test_a_restart_mid_bag_keeps_the_entries_and_draws_at_the_deadline() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        fans = await viewers(h, "r", *((f"f{n}", None) for n in range(5)))
        start = {"room": "r", "prize": "Bag", "winners": 3, "duration_s": 60}
        started = await host.command("luckybag.start", start)
        for fan in fans:
            await fan.command("luckybag.enter", {"room": "r", "bag": started["bag"]})
        await h.restart()  # nobody comes back: the awake index loads the room
        await h.advance(61)
        watcher = await h.connect("watcher")
        last = (await watcher.join("r"))["state"]["luckybag"]["last"]
        assert last["entrants"] == 5 and seed_hash(last["seed"]) == started["seed_hash"]
        assert [w["id"] for w in last["winners"]] == rerun([f"f{n}" for n in range(5)], last["seed"], 3)


async def test_the_winners_reach_the_backend_as_a_signed_event(receiver: Receiver) -> None:  # noqa: F811
    webhooks = {"url": receiver.url, "secret": SECRET, "events": ["luckybag.won"], "poll_interval_ms": 50}
    async with NodeHarness(FAST, plugins={"webhooks": webhooks}) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        [fan] = await viewers(h, "r", ("fan", None))
        started = await host.command("luckybag.start", {"room": "r", "prize": "Tea", "duration_s": 30})
        await fan.command("luckybag.enter", {"room": "r", "bag": started["bag"]})
        await h.advance(31)
        [event] = await receiver.wait(1)
        assert event["type"] == "luckybag.won" and event["data"]["winners"] == [{"id": "fan", "name": "Fan"}]
        assert seed_hash(event["data"]["seed"]) == started["seed_hash"] and receiver.forged == 0
