"""Product showcase: its pure rules, then on the harness (fake clock): the list and the pin in
join state and live, clicks counted per product, click -> order conversion with a flash sale
(and a VIP-only sale), a restart, a store failure."""

from __future__ import annotations

from typing import Any

from liveroom.plugins.showcase_rules import ClickTally, Showcase
from plugin_support import code

from liveroom.config import Config, LimitsConfig
from liveroom.testing import NodeHarness

FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


def product(sku: str, price: int = 990) -> dict[str, Any]:
    return {
        "sku": sku,
        "title": f"Product {sku}",
        "price_minor": price,
        "image": f"https://cdn.example/{sku}.jpg",
        "url": f"https://shop.example/checkout/{sku}",
    }


def test_the_list_and_the_pin_follow_the_changes_in_order() -> None:
    showcase = Showcase()
    showcase.apply({"op": "set", "products": [product("a"), product("b", 12345)]})
    showcase.apply({"op": "pin", "sku": "b"})
    assert showcase.pinned_product() == {**product("b", 12345), "price": "123.45"}
    showcase.apply({"op": "pin", "sku": "gone"})  # not listed: nothing changes
    assert showcase.pinned == "b"
    showcase.apply({"op": "set", "products": [product("a")]})  # b no longer listed: unpinned
    assert showcase.pinned is None and [p["sku"] for p in showcase.state()["products"]] == ["a"]


def test_conversion_is_the_share_of_clickers_who_ordered_where_there_is_a_sale() -> None:
    tally = ClickTally()
    for user in ("ann", "bob", "cat", "dan"):
        tally.click("a", user)
    tally.click("b", "ann")
    tally.sale("s1", "a")
    tally.order("s1", "ann")
    tally.order("s1", "eve")  # ordered without clicking: an order, not a conversion
    tally.order("s-unknown", "ann")
    assert tally.figures("a") == {"clicks": 0, "clickers": 4, "orders": 2, "conversion": 0.25}
    assert tally.figures("b") == {"clicks": 0, "clickers": 1, "orders": None, "conversion": None}


async def test_pin_click_and_the_dashboard_figures() -> None:
    async with NodeHarness(FAST) as h:
        host, ann, bob = await h.connect("host", role="host"), await h.connect("ann"), await h.connect("bob")
        for client in (host, ann, bob):
            await client.join("r")
        products = {"room": "r", "products": [product("tea"), product("cup", 500)], "request_id": "list1"}
        assert code(await ann.command("showcase.set", products)) == "forbidden"
        bad = {**products, "products": [{**product("x"), "url": "javascript:alert(1)"}]}
        assert code(await host.command("showcase.set", bad)) == "bad_request"
        dup = {**products, "products": [product("x"), product("x")]}
        assert code(await host.command("showcase.set", dup)) == "bad_request"
        assert (await host.command("showcase.set", products))["products"] == 2
        [listed] = ann.of_type("showcase.products")
        assert [p["sku"] for p in listed["data"]["products"]] == ["tea", "cup"] and listed["data"][
            "pinned"
        ] is None
        assert code(await host.command("showcase.pin", {"room": "r", "sku": "nope"})) == "not_found"
        assert code(await host.command("showcase.pin", {"room": "r", "sku": "tea"})) == "ok"
        [pinned] = ann.of_type("showcase.pinned")
        assert pinned["data"]["product"]["price"] == "9.90" and pinned["seq"] is not None

        click = {"room": "r", "sku": "tea"}
        first = await ann.command("showcase.click", click)
        assert first == {"ok": True, "sku": "tea", "url": "https://shop.example/checkout/tea", "clicks": 1}
        assert (await ann.command("showcase.click", click))["clicks"] == 2
        assert (await bob.command("showcase.click", click))["clicks"] == 3
        assert code(await bob.command("showcase.click", {"room": "r", "sku": "gone"})) == "not_found"
        sale = {"room": "r", "sku": "tea", "title": "Tea", "price": "9.90", "stock": 10, "starts_at": 0}
        made = await host.command("sale.schedule", {**sale, "duration_s": 60})
        assert (
            code(await ann.command("sale.buy", {"room": "r", "sale": made["sale"], "request_id": "o1"}))
            == "ok"
        )

        late = await h.connect("late")
        state = (await late.join("r"))["state"]["showcase"]
        assert state["pinned"]["sku"] == "tea" and len(state["products"]) == 2
        await h.advance(1.5)
        figures = host.of_type("dashboard.stats")[-1]["data"]["figures"]["showcase"]
        by_sku = {p["sku"]: p for p in figures["products"]}
        assert by_sku["tea"] | {"title": None} == {
            "sku": "tea",
            "title": None,
            "clicks": 3,
            "clickers": 2,
            "orders": 1,
            "conversion": 0.5,
        }
        assert by_sku["cup"]["conversion"] is None and figures["pinned"] == "tea"
        assert not ann.of_type("dashboard.stats")  # staff only

        assert code(await host.command("showcase.unpin", {"room": "r"})) == "ok"
        assert code(await host.command("showcase.unpin", {"room": "r"})) == "not_found"
        assert ann.of_type("showcase.unpinned")
        await h.restart()
        again = await h.connect("ann")
        state = (await again.join("r"))["state"]["showcase"]
        assert state["pinned"] is None and [p["sku"] for p in state["products"]] == ["tea", "cup"]
        assert (await again.command("showcase.click", click))["clicks"] == 4  # the store's count


async def test_a_failed_pin_leaves_no_trace() -> None:
    async with NodeHarness(FAST) as h:
        host, fan = await h.connect("host", role="host"), await h.connect("fan")
        await host.join("r")
        await fan.join("r")
        await host.command("showcase.set", {"room": "r", "products": [product("tea")]})
        h.store.fail_next_write("unavailable")
        assert code(await host.command("showcase.pin", {"room": "r", "sku": "tea"})) == "unavailable"
        assert not fan.of_type("showcase.pinned")
        assert (await fan.join("r"))["state"]["showcase"]["pinned"] is None
        assert code(await host.command("showcase.pin", {"room": "r", "sku": "tea"})) == "ok"


async def test_a_vip_only_sale_sells_to_its_tiers_alone() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        vip, fan = await h.connect("vip", tier="vip"), await h.connect("fan")
        for client in (host, vip, fan):
            await client.join("r")
        sale = {"room": "r", "sku": "tea", "title": "Tea", "price": 5, "stock": 3, "starts_at": 0}
        assert code(await host.command("sale.schedule", {**sale, "duration_s": 60, "tiers": ["VIP!"]})) == (
            "bad_request"
        )
        made = await host.command("sale.schedule", {**sale, "duration_s": 60, "tiers": ["vip", "gold"]})
        [scheduled] = fan.of_type("sale.scheduled")
        assert scheduled["data"]["tiers"] == ["vip", "gold"]
        buy = {"room": "r", "sale": made["sale"], "request_id": "o1"}
        assert code(await fan.command("sale.buy", buy)) == "tier_required"
        assert code(await vip.command("sale.buy", buy)) == "ok"
        await h.restart()  # the tiers are the sale record's
        vip = await h.connect("vip", tier="vip")
        fan = await h.connect("fan")
        await vip.join("r")
        await fan.join("r")
        assert code(await fan.command("sale.buy", {**buy, "request_id": "o2"})) == "tier_required"
        assert code(await vip.command("sale.buy", buy)) == "ok"  # a retry: the same order
