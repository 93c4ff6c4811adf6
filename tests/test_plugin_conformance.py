"""Every built-in plugin keeps the durability contract (liveroom.conformance), on the harness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from wallet_support import wallet_in_thread

from liveroom.conformance import PluginConformance, Run
from liveroom.testing import NodeHarness


class TestDanmaku(PluginConformance):
    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        mod, ann = await h.connect(f"mod-{room}", role="moderator"), await h.connect(f"ann-{room}")
        await run.join(mod, room)
        await run.join(ann, room)
        sent = await run(ann, "danmaku.send", {"room": room, "text": "hello", "request_id": "m1"})
        await run(mod, "danmaku.pin", {"room": room, "id": sent["id"], "request_id": "p1"})
        await run(mod, "danmaku.slow", {"room": room, "interval_s": 3, "request_id": "s1"})
        await run(
            mod, "danmaku.mute", {"room": room, "user": f"ann-{room}", "duration_s": 60, "request_id": "u1"}
        )
        await run(mod, "danmaku.ban", {"room": room, "user": "troll", "duration_s": 600, "request_id": "b1"})


class TestPoll(PluginConformance):
    settle_s = 20.0

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host = await h.connect(f"host-{room}", role="host")
        await run.join(host, room)
        created = await run(
            host,
            "poll.create",
            {"room": room, "question": "Which?", "options": ["a", "b"], "duration_s": 15, "request_id": "q1"},
        )
        for n in range(3):
            voter = await h.connect(f"v{n}-{room}")
            await run.join(voter, room)
            await run(voter, "poll.vote", {"room": room, "poll": created["poll"], "option": n % 2})


class TestSale(PluginConformance):
    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host, buyer = await h.connect(f"host-{room}", role="host"), await h.connect(f"buyer-{room}")
        await run.join(host, room)
        await run.join(buyer, room)
        schedule = {
            "sku": "k1",
            "title": "Tea",
            "price": "9.90",
            "stock": 5,
            "starts_at": 0,
            "duration_s": 60,
        }
        sale = await run(host, "sale.schedule", {"room": room, **schedule, "request_id": "s1"})
        await run(buyer, "sale.buy", {"room": room, "sale": sale["sale"], "request_id": "o1"})

    settle_s = 61.0


class TestCoupon(PluginConformance):
    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host, fan = await h.connect(f"host-{room}", role="host"), await h.connect(f"fan-{room}")
        await run.join(host, room)
        await run.join(fan, room)
        rule = {"title": "Chatty", "trigger": "activity", "activity": "danmaku", "count": 1, "budget": 10}
        await run(host, "coupon.rule", {"room": room, **rule, "request_id": "r1"})
        drop = await run(host, "coupon.drop", {"room": room, "title": "Drop", "count": 3, "request_id": "d1"})
        await run(fan, "coupon.grab", {"room": room, "rule": drop["rule"]})
        await run(fan, "coupon.claim", {"room": room, "rule": drop["rule"]})


class TestCostream(PluginConformance):
    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host, guest = await h.connect(f"host-{room}", role="host"), await h.connect(f"guest-{room}")
        waiting = await h.connect(f"waiting-{room}")
        for connection in (host, guest, waiting):
            await run.join(connection, room)
        await run(guest, "costream.request", {"room": room})
        await run(waiting, "costream.request", {"room": room})
        await run(host, "costream.accept", {"room": room, "user": f"guest-{room}"})


class TestLike(PluginConformance):
    volatile = frozenset({"dashboard", "like"})  # a like is stored within total_interval_ms, not at once

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        fan = await h.connect(f"fan-{room}")
        await run.join(fan, room)
        await run(fan, "like.send", {"room": room, "count": 30})
        await h.advance(1)  # the flush: likes stored

    async def test_a_restart_reproduces_what_clients_see(self) -> None:
        async with self.harness() as h:
            run = Run(h, frozenset({"dashboard"}))
            await self.scenario(h, "room-a", run)
            seen = await run.state("room-a")
            await h.restart()
            assert await Run(h, frozenset({"dashboard"})).state("room-a") == seen


class TestDanmakuReview(PluginConformance):
    """Held messages and decisions (a message hook's `Hold`) keep the contract too."""

    plugins: ClassVar[Mapping[str, Mapping[str, Any]]] = {"gate": {"load": "hook_plugins:GatePlugin"}}

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        mod, ann = await h.connect(f"mod-{room}", role="moderator"), await h.connect(f"ann-{room}")
        await run.join(mod, room)
        await run.join(ann, room)
        kept = await run(ann, "danmaku.send", {"room": room, "text": "see http://a", "request_id": "m1"})
        await run(ann, "danmaku.send", {"room": room, "text": "see http://b", "request_id": "m2"})
        await run(mod, "danmaku.review.approve", {"room": room, "id": kept["id"]})


class TestFaq(PluginConformance):
    plugins: ClassVar[Mapping[str, Mapping[str, Any]]] = {"faq": {}}

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host, fan = await h.connect(f"host-{room}", role="host"), await h.connect(f"fan-{room}")
        await run.join(host, room)
        await run.join(fan, room)
        pair = {"questions": ["when does it ship?"], "answer": "In two days", "request_id": "f1"}
        made = await run(host, "faq.set", {"room": room, **pair})
        await run(
            host, "faq.set", {"room": room, "questions": ["colour?"], "answer": "Red", "request_id": "f2"}
        )
        await run(host, "faq.remove", {"room": room, "id": made["id"], "request_id": "f3"})
        await run(fan, "danmaku.send", {"room": room, "text": "which colour?"})


class TestShow(PluginConformance):
    settle_s = 10.0  # the show's two stages (a running show keeps its room awake)

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host = await h.connect(f"host-{room}", role="host")
        await run.join(host, room)
        drop = {"command": "coupon.drop", "payload": {"title": "Hi", "count": 3}}
        stages = [{"name": "One", "duration_s": 2, "actions": [drop]}, {"name": "Two", "duration_s": 3}]
        await run(host, "show.plan", {"room": room, "stages": stages, "request_id": "p1"})
        await run(host, "show.start", {"room": room, "request_id": "s1"})


class TestShowcase(PluginConformance):
    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host, fan = await h.connect(f"host-{room}", role="host"), await h.connect(f"fan-{room}")
        await run.join(host, room)
        await run.join(fan, room)
        tea = {"sku": "tea", "title": "Tea", "price_minor": 990}
        tea |= {"image": "https://cdn.example/tea.jpg", "url": "https://shop.example/tea"}
        await run(host, "showcase.set", {"room": room, "products": [tea], "request_id": "l1"})
        await run(host, "showcase.pin", {"room": room, "sku": "tea", "request_id": "p1"})
        await run(fan, "showcase.click", {"room": room, "sku": "tea"})


class TestLuckyBag(PluginConformance):
    settle_s = 31.0  # the deadline: the draw

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host = await h.connect(f"host-{room}", role="host")
        await run.join(host, room)
        bag = await run(
            host, "luckybag.start", {"room": room, "prize": "Tea", "duration_s": 30, "request_id": "b1"}
        )
        for n in range(3):
            fan = await h.connect(f"fan{n}-{room}")
            await run.join(fan, room)
            await run(fan, "luckybag.enter", {"room": room, "bag": bag["bag"]})


class TestAuction(PluginConformance):
    settle_s = 61.0  # the auction's end (an open auction keeps its room awake)

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host = await h.connect(f"host-{room}", role="host")
        await run.join(host, room)
        terms = {"title": "Vase", "start_price": "10", "increment": "1", "duration_s": 60, "request_id": "o1"}
        opened = await run(host, "auction.open", {"room": room, **terms})
        for n in range(3):
            bidder = await h.connect(f"b{n}-{room}")
            await run.join(bidder, room)
            amount = str(10 + n)
            await run(
                bidder,
                "auction.bid",
                {"room": room, "auction": opened["auction"], "amount": amount, "request_id": "x"},
            )


class TestGift(PluginConformance):
    settle_s = 15.0  # the PK's end and its decision (a PK keeps its rooms awake)

    def harness(self) -> NodeHarness:  # a real wallet, served by a thread of its own
        return NodeHarness(plugins={"gift": {"wallet_url": wallet_in_thread().url, "pk_settle_ms": 500}})

    async def scenario(self, h: NodeHarness, room: str, run: Run) -> None:
        host, fan = await h.connect(f"host-{room}", role="host"), await h.connect(f"fan-{room}")
        await run.join(host, room)
        await run.join(fan, room)
        await run(fan, "gift.send", {"room": room, "gift": "rose", "count": 2, "request_id": "g1"})
        pk = {"room": room, "opponent": f"{room}-rival", "duration_s": 10, "request_id": "pk1"}
        await run(host, "gift.pk.start", pk)
        await run(fan, "gift.send", {"room": room, "gift": "heart", "request_id": "g2"})
