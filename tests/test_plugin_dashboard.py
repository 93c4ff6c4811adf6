"""The live dashboard: its pure rules, then a node without sockets (NodeHarness, fake clock)
pushing `dashboard.stats` to staff only. (Through real sockets: the pages show, and the
scale-out test's dashboard over three nodes.)"""

from __future__ import annotations

import itertools
from typing import Any

from liveroom.plugins.coupon_rules import CouponTally
from liveroom.plugins.danmaku_rules import PerSecond
from liveroom.plugins.dashboard_rules import RoomWatch, conversion
from liveroom.plugins.sale_rules import SalesTally

from liveroom.config import Config, LimitsConfig
from liveroom.testing import HarnessConnection, NodeHarness


def test_room_watch_keeps_the_peak_the_watchers_and_new_viewers() -> None:
    watch = RoomWatch(max_viewers=2)
    for user, staff in [("h", True), ("a", False), ("a", False), ("b", False), ("c", False)]:
        watch.joined(user, staff)
    assert watch.watchers == {"h"} and watch.take_new_viewers() == 2 and watch.take_new_viewers() == 0
    watch.sample(3, 1000.0)
    watch.sample(2, 2000.0)
    assert (watch.online, watch.peak_online, watch.peak_at) == (2, 3, 1000.0)
    watch.left("h")
    assert watch.watchers == set()
    assert conversion(1, 4) == 0.25 and conversion(0, 0) is None


def test_per_second_counts_whole_seconds_only() -> None:
    rates = PerSecond(keep=3)
    for at in (1000, 1500, 2100, 5200):
        rates.add(at)
    assert rates.series(3999) == [0, 2, 1]  # seconds 0, 1, 2
    assert rates.series(5500) == [1, 0, 0]  # the second under way (5) is left out...
    assert rates.series(6000) == [0, 0, 1] and rates.total == 4  # ...until it is over


def test_tallies_fold_records_once() -> None:
    sales = SalesTally()
    sales.add({"qty": 2, "user": "a"}, 995, 7)  # prices in minor units: money stays exact
    sales.add({"qty": 1, "user": "a"}, 500, 9)
    assert sales.wire() == {"orders": 2, "units": 3, "gmv": "24.90", "gmv_minor": 2490, "buyers": 1}
    assert sales.after == 9
    coupons = CouponTally()
    coupons.grant({"id": "g1", "rule": "r"}, 3)
    coupons.grant({"id": "g2", "rule": "r"}, 4)
    coupons.claim({"grant": "g2"}, 5)
    assert (coupons.issued["r"], coupons.claimed["r"], coupons.grants_after, coupons.claims_after) == (
        2,
        1,
        4,
        5,
    )


FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


def stats_of(viewer: HarnessConnection) -> list[dict[str, Any]]:
    return [item["data"] for item in viewer.of_type("dashboard.stats")]


async def test_staff_get_live_figures_and_viewers_never_do() -> None:
    async with NodeHarness(FAST) as h:
        ann, bob, host = await h.connect("ann"), await h.connect("bob"), await h.connect("host", role="host")
        for client in (ann, bob, host):
            await client.join("r")
        joined_at = h.clock.monotonic()
        while not stats_of(host):
            await h.advance(0.05)
        # A host who joins gets the figures at once (first_after_ms), not an interval later.
        assert h.clock.monotonic() - joined_at < 0.5
        first = host.of_type("dashboard.stats")
        moderator = await h.connect("mod", role="moderator")
        await moderator.join("r")
        assert first[0]["seq"] is None and first[0]["data"]["room"] == "r"

        await ann.command("danmaku.send", {"room": "r", "text": "好看 好看 tea"})
        await bob.command("danmaku.send", {"room": "r", "text": "我要好看的 tea"})
        await ann.command("like.send", {"room": "r", "count": 7})
        poll = {"room": "r", "question": "Red?", "options": ["y", "n"], "duration_s": 60}
        await host.command("poll.create", poll)
        starts_at = int(h.clock.now_ms()) + 300
        sale = await host.command(
            "sale.schedule",
            {
                "room": "r",
                "sku": "t",
                "title": "Tea",
                "price": 9.9,
                "stock": 5,
                "starts_at": starts_at,
                "duration_s": 60,
            },
        )
        drop = await host.command("coupon.drop", {"room": "r", "title": "5 off", "count": 9})
        assert (await ann.command("coupon.grab", {"room": "r", "rule": drop["rule"]}))["ok"]
        assert (await ann.command("coupon.claim", {"room": "r", "rule": drop["rule"]}))["ok"]
        await h.advance(0.5)
        assert bob.of_type("sale.started")
        for fan in (ann, bob):
            buy = {"room": "r", "sale": sale["sale"], "qty": 1, "request_id": "r1"}
            assert (await fan.command("sale.buy", buy))["ok"]
        await ann.command("danmaku.send", {"room": "r", "text": "bye"})
        await h.advance(1.5)
        assert stats_of(host)[-1]["online"] == 4
        await ann.vanish()  # Ann leaves: online drops to 3, the peak stays 4.
        await h.advance(1.5)
        data = stats_of(host)[-1]
        figures = data["figures"]
        assert (data["online"], data["peak_online"], data["viewers"]) == (3, 4, 2)
        assert data["conversion"] == 1.0  # two buyers among two viewers
        assert figures["danmaku"]["total"] == 3 and sum(figures["danmaku"]["per_second"]) >= 2
        hot = {entry["word"]: entry["count"] for entry in figures["danmaku"]["hot"]}
        assert hot["好看"] == 2 and hot["tea"] == 2
        assert figures["like"]["total"] == 7 and figures["like"]["peak"]["count"] == 7
        assert figures["poll"]["question"] == "Red?" and figures["poll"]["open"] is True
        assert {k: figures["sale"][k] for k in ("orders", "units", "gmv", "buyers")} == {
            "orders": 2,
            "units": 2,
            "gmv": "19.80",
            "buyers": 2,
        }
        assert figures["sale"]["sales"][0]["remaining"] == 3
        assert (figures["coupon"]["issued"], figures["coupon"]["claimed"]) == (1, 1)
        assert stats_of(moderator), "moderators watch too"
        # At most one a second: the host's items are spaced by the interval.
        stamps = [stats["at"] for stats in stats_of(host)]
        assert all(later - earlier >= 1000 for earlier, later in itertools.pairwise(stamps[1:]))
        assert stats_of(bob) == [] and bob.of_type("dashboard.stats") == []

        body = await h.node.interactions.query("r", host.identity, "dashboard", {})
        assert body["figures"]["sale"]["orders"] == 2 and body["peak_online"] == 4
