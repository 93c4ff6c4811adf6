"""Issue 20 end to end: real clients on two liveroom nodes sharing a real redis-server. A
product pinned through A shows through B and clicks through B are counted; a lucky bag entered
through both nodes is drawn once, and the draw re-run from the published seed and the entry
list gives the same winners."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import Cluster
from plugin_support import api
from support import Viewer


def rerun(entrants: list[str], seed: str, winners: int) -> list[str]:
    """sha256-rank-v1, from docs/plugins.md alone."""
    key = bytes.fromhex(seed)
    return sorted(set(entrants), key=lambda u: (hashlib.sha256(key + u.encode()).digest(), u))[:winners]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path, 2, None, {"LIVEROOM_PLUGINS_LUCKYBAG_MIN_DURATION_S": "1"})
    yield made
    made.stop()


async def test_a_product_pinned_through_a_is_clicked_through_b(nodes: Cluster) -> None:
    a, b = nodes.nodes
    host, fan = Viewer(a.url, "host", role="host"), Viewer(b.url, "fan")
    try:
        for client in (host, fan):
            await client.connect()
            assert (await client.join("shop"))["ok"]
        tea = {"sku": "tea", "title": "Tea set", "price_minor": 1990}
        tea |= {"image": "https://cdn.example/tea.jpg", "url": "https://shop.example/tea"}
        assert (await host.call("showcase.set", {"room": "shop", "products": [tea]}))["ok"]
        assert (await host.call("showcase.pin", {"room": "shop", "sku": "tea"}))["ok"]
        (pinned,) = await fan.wait_for(lambda i: i["type"] == "showcase.pinned")
        assert pinned["data"]["product"]["price"] == "19.90"
        late = Viewer(b.url, "late")
        await late.connect()
        assert (await late.join("shop"))["state"]["showcase"]["pinned"]["sku"] == "tea"
        for clicks, viewer in enumerate((fan, fan, late), start=1):
            ack = await viewer.call("showcase.click", {"room": "shop", "sku": "tea"})
            assert ack["ok"] and ack["clicks"] == clicks and ack["url"] == "https://shop.example/tea"
        await late.close()
        for node in (a, b):  # the same figures through either node
            status, shown = api(node, "GET", "/api/rooms/shop/showcase")
            assert status == 200 and shown["products"][0]["clicks"] == 3, shown
            assert shown["products"][0]["clickers"] == 2 and shown["pinned"] == "tea"
    finally:
        for client in (host, fan):
            await client.close()


async def test_a_lucky_draw_re_run_from_the_published_seed_gives_the_same_winners(nodes: Cluster) -> None:
    a, b = nodes.nodes
    host = Viewer(a.url, "host", role="host")
    fans = [Viewer((a, b)[n % 2].url, f"fan{n}") for n in range(8)]
    clients = [host, *fans]
    try:
        for client in clients:
            await client.connect()
            assert (await client.join("bag"))["ok"]
        start = {"room": "bag", "prize": "Lucky tea", "winners": 3, "duration_s": 10, "keyword": "福袋"}
        started = await host.call("luckybag.start", start)
        assert started["ok"], started
        for n, fan in enumerate(fans):
            if n % 3:  # the keyword in danmaku, through A or B
                assert (await fan.call("danmaku.send", {"room": "bag", "text": "福袋"}))["ok"]
                await fan.wait_for(lambda i: i["type"] == "luckybag.entered")
            else:  # the button is refused: this bag wants its keyword
                ack = await fan.call("luckybag.enter", {"room": "bag", "bag": started["bag"]})
                assert ack["error"]["code"] == "keyword_required"
        # fan1 again, on a second connection through the other node: still one entry.
        again = Viewer(a.url, "fan1")
        clients.append(again)
        await again.connect()
        assert (await again.join("bag"))["ok"]
        assert (await again.call("danmaku.send", {"room": "bag", "text": "福袋"}))["ok"]
        (entered,) = await again.wait_for(lambda i: i["type"] == "luckybag.entered")
        assert entered["data"]["entrants"] == 5
        drawn: dict[str, Any] = {}
        for client in clients:  # one draw, the same on every node
            (item,) = await client.wait_for(lambda i: i["type"] == "luckybag.drawn", timeout=30)
            assert not drawn or item["data"] == drawn
            drawn = item["data"]
        assert drawn["entrants"] == 5 and len(drawn["winners"]) == 3
        assert hashlib.sha256(bytes.fromhex(drawn["seed"])).hexdigest() == started["seed_hash"]
        entries = await fans[0].call("luckybag.entries", {"room": "bag", "bag": started["bag"]})
        assert entries["ok"] and entries["done"] and entries["drawn"]
        users = [entry["user"] for entry in entries["entries"]]
        assert sorted(users) == sorted(f"fan{n}" for n in range(8) if n % 3)
        assert [w["id"] for w in drawn["winners"]] == rerun(users, drawn["seed"], 3)
        for fan in fans:  # each winner told personally, wherever connected
            if fan.user in {w["id"] for w in drawn["winners"]}:
                (won,) = await fan.wait_for(lambda i: i["type"] == "luckybag.won")
                assert won["data"]["prize"] == "Lucky tea" and won["seq"] is None
    finally:
        for client in clients:
            await client.close()
