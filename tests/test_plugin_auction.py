"""Auctions: the rules over a passed-in time, then the plugin on a node without sockets
(NodeHarness, fake clock): bids, anti-snipe, equal bids, the end, a restart, failed writes."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest
from liveroom.plugins.auction_rules import Auction, Terms
from plugin_support import code

from liveroom.config import Config, DeliveryConfig, LimitsConfig
from liveroom.errors import CommandError
from liveroom.testing import NodeHarness

FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))
T0 = 1_000_000


def terms(reserve: int = 0, extend_ms: int = 10_000) -> Terms:
    return Terms("a-1", "r", "Vase", 1000, 100, reserve, T0, T0 + 60_000, extend_ms)


def test_the_first_bid_is_at_least_the_start_then_price_plus_increment() -> None:
    auction = Auction(terms())
    with pytest.raises(CommandError) as low:
        auction.next_bid("ann", "Ann", 999, T0, "q1")
    assert low.value.code == "bid_too_low" and low.value.details["min_bid_minor"] == 1000
    auction.accept(auction.next_bid("ann", "Ann", 1000, T0, "q1"))
    with pytest.raises(CommandError) as equal:
        auction.next_bid("bob", "Bob", 1000, T0, "q2")
    assert equal.value.details["price_minor"] == 1000 and equal.value.details["min_bid_minor"] == 1100
    auction.accept(auction.next_bid("bob", "Bob", 1100, T0, "q2"))
    assert auction.leader is not None and auction.leader.user == "bob" and auction.bids == 2


def test_a_late_bid_pushes_the_end_to_now_plus_the_window() -> None:
    auction = Auction(terms())
    early = auction.next_bid("ann", "Ann", 1000, T0 + 49_999, "q1")
    assert early.ends_at == T0 + 60_000  # 10.001 s before the end: not late
    auction.accept(early)
    late = auction.next_bid("bob", "Bob", 1100, T0 + 55_000, "q2")
    assert late.ends_at == T0 + 65_000
    auction.accept(late)
    assert auction.ends_at == T0 + 65_000 and auction.phase(T0 + 64_999) == "open"
    assert auction.phase(T0 + 65_000) == "ended"
    with pytest.raises(CommandError) as ended:
        auction.next_bid("cat", "Cat", 5000, T0 + 65_000, "q3")
    assert ended.value.code == "auction_ended"
    assert Auction(terms(extend_ms=0)).end_after_bid(T0 + 59_999) == T0 + 60_000  # no window


def test_the_reserve_decides_whether_it_is_sold() -> None:
    auction = Auction(terms(reserve=1500))
    assert not auction.outcome().sold and auction.outcome().wire()["price_minor"] is None
    auction.accept(auction.next_bid("ann", "Ann", 1400, T0, "q1"))
    assert not auction.outcome().sold and auction.outcome().wire()["winner"] is None
    auction.accept(auction.next_bid("bob", "Bob", 1500, T0, "q2"))
    assert auction.outcome().wire()["winner"] == {"id": "bob", "name": "Bob"}


def open_body(room: str, **extra: Any) -> dict[str, Any]:
    return {
        "room": room,
        "title": "Jade vase",
        "start_price": "10.00",
        "increment": "1.00",
        "duration_s": 60,
        "extend_s": 10,
        **extra,
    }


def bid(room: str, auction: str, amount: str, request_id: str) -> dict[str, Any]:
    return {"room": room, "auction": auction, "amount": amount, "request_id": request_id}


async def test_a_big_rooms_price_goes_out_less_often() -> None:
    """`[delivery] throttled_writes_per_s`: the price is one write to every member, so a room
    of N online gets it at most every N / throttled_writes_per_s seconds (here 4 / 10: 0.4 s)."""
    config = dataclasses.replace(FAST, delivery=DeliveryConfig(throttled_writes_per_s=10))
    async with NodeHarness(config) as h:
        host, *bidders = [await h.connect("host", role="host")] + [await h.connect(f"u{n}") for n in range(3)]
        for client in (host, *bidders):
            await client.join("r")
        auction = (await host.command("auction.open", open_body("r")))["auction"]
        for n in range(20):  # a bid every 0.05 s for a second
            await bidders[n % 3].command("auction.bid", bid("r", auction, str(10 + n), f"q{n}"))
            await h.advance(0.05)
        await h.advance(0.5)
        sent = [item["data"]["server_time"] for item in host.of_type("auction.price")]
        assert [item["data"]["price"] for item in host.of_type("auction.price")][-1] == "29.00"
        assert len(sent) >= 2 and all(b - a >= 400 for a, b in itertools.pairwise(sent))


async def test_an_auction_from_open_to_its_extended_end() -> None:
    async with NodeHarness(FAST) as h:
        host, ann, bob = await h.connect("host", role="host"), await h.connect("ann"), await h.connect("bob")
        for client in (host, ann, bob):
            await client.join("r")
        assert code(await ann.command("auction.open", open_body("r"))) == "forbidden"
        opened = await host.command("auction.open", open_body("r", reserve="12.00", request_id="o1"))
        auction, first_end = opened["auction"], opened["ends_at"]
        assert code(await host.command("auction.open", open_body("r"))) == "auction_active"
        assert (await host.command("auction.open", open_body("r", request_id="o1")))["auction"] == auction
        [item] = bob.of_type("auction.opened")
        assert item["data"]["min_bid"] == "10.00" and "reserve_minor" not in item["data"]

        low = await ann.command("auction.bid", bid("r", auction, "9.99", "a1"))
        assert low["error"]["code"] == "bid_too_low" and low["error"]["min_bid_minor"] == 1000
        first = await ann.command("auction.bid", bid("r", auction, "10", "a2"))
        assert first["ok"] and first["bid"] == 1 and first["leading"] and first["ends_at"] == first_end
        assert (await ann.command("auction.bid", bid("r", auction, "10", "a2")))["bid"] == 1  # a retry
        refused = await bob.command("auction.bid", bid("r", auction, "10.50", "b1"))
        assert refused["error"]["price"] == "10.00" and refused["error"]["min_bid"] == "11.00"
        await h.advance(0.2)
        price = bob.of_type("auction.price")[-1]["data"]
        assert price["price"] == "10.00" and price["leader"] == {"id": "ann", "name": "Ann"}

        await h.advance(55)  # 5 s left: a bid now extends
        late = await bob.command("auction.bid", bid("r", auction, "11", "b2"))
        extended = late["ends_at"]
        assert extended == int(h.clock.now_ms()) + 10_000
        await h.advance(0.2)
        assert bob.of_type("auction.price")[-1]["data"]["ends_at"] == extended
        await h.advance(6)  # past the first end: still open
        assert not bob.of_type("auction.ended")
        assert code(await ann.command("auction.bid", bid("r", auction, "12", "a3"))) == "ok"
        await h.advance(11)
        [ended] = bob.of_type("auction.ended")
        assert ended["data"]["sold"] and ended["data"]["winner"] == {"id": "ann", "name": "Ann"}
        assert ended["data"]["price_minor"] == 1200 and ended["data"]["bids"] == 3
        assert ann.of_type("auction.won") and not bob.of_type("auction.won")
        assert code(await bob.command("auction.bid", bid("r", auction, "20", "b3"))) == "auction_ended"
        body = await h.node.interactions.query("r", host.identity, "auctions/{auction}", {"auction": auction})
        assert [b["amount_minor"] for b in body["bids"]] == [1000, 1100, 1200]
        assert body["result"]["order"] == "o-" + auction
        order = await h.store.get_record("auction.order", auction)
        assert order is not None and order.data["user"] == "ann" and order.data["price_minor"] == 1200


async def test_simultaneous_equal_bids_make_one_leader() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        auction = (await host.command("auction.open", open_body("r")))["auction"]
        bidders = [await h.connect(f"u{n}") for n in range(20)]
        for bidder in bidders:
            await bidder.join("r")
        acks = await asyncio.gather(
            *(b.command("auction.bid", bid("r", auction, "15", "x")) for b in bidders)
        )
        assert sorted(code(a) for a in acks) == ["bid_too_low"] * 19 + ["ok"]
        assert all(a["error"]["price"] == "15.00" for a in acks if not a["ok"])


async def test_a_restart_keeps_bids_and_the_extended_end() -> None:
    async with NodeHarness(FAST) as h:
        host, ann = await h.connect("host", role="host"), await h.connect("ann")
        await host.join("r")
        await ann.join("r")
        auction = (await host.command("auction.open", open_body("r", duration_s=20)))["auction"]
        await h.advance(15)
        extended = (await ann.command("auction.bid", bid("r", auction, "10", "a1")))["ends_at"]
        await h.restart()
        bob = await h.connect("bob")
        state = (await bob.join("r"))["state"]["auction"]
        assert state["ends_at"] == extended and state["leader"]["id"] == "ann" and state["bids"] == 1
        assert code(await bob.command("auction.bid", bid("r", auction, "10", "b1"))) == "bid_too_low"
        await h.advance(11)  # nobody else came: the timer set again on load ends it
        [ended] = bob.of_type("auction.ended")
        assert ended["data"]["winner"]["id"] == "ann"


async def test_a_bid_whose_write_fails_leaves_no_trace_and_an_unknown_one_converges() -> None:
    async with NodeHarness(FAST) as h:
        host, ann, bob = await h.connect("host", role="host"), await h.connect("ann"), await h.connect("bob")
        for client in (host, ann, bob):
            await client.join("r")
        auction = (await host.command("auction.open", open_body("r")))["auction"]
        h.store.fail_next_write("unavailable")
        assert code(await ann.command("auction.bid", bid("r", auction, "10", "a1"))) == "unavailable"
        h.store.fail_next_write("unknown_done")  # written, the answer lost
        assert code(await ann.command("auction.bid", bid("r", auction, "10", "a1"))) == "outcome_unknown"
        # Bob's bid finds place 1 taken by Ann's written bid: it is counted first, then Bob's decided.
        assert code(await bob.command("auction.bid", bid("r", auction, "10", "b1"))) == "bid_too_low"
        assert (await ann.command("auction.bid", bid("r", auction, "10", "a1")))["bid"] == 1  # same answer
        assert (await bob.command("auction.bid", bid("r", auction, "11", "b2")))["bid"] == 2


def test_the_benchmark_checks_the_books_it_is_given() -> None:
    from liveroom.loadtest.auction_bench import check_books

    auction = {"ends_at": 10_000}
    bids = [
        {"n": 1, "user": "a", "amount_minor": 100, "at": 1_000, "ends_at": 11_000},
        {"n": 2, "user": "b", "amount_minor": 200, "at": 5_000, "ends_at": 15_000},
    ]
    result = {"ends_at": 15_000, "winner": {"id": "b"}, "price_minor": 200}
    acked = [{"bid": 1, "amount_minor": 100}, {"bid": 2, "amount_minor": 200}]
    good = check_books({"auction": auction, "bids": bids, "result": result}, acked, 10_000)
    assert all(good[key] for key in good if isinstance(good[key], bool)), good
    assert good["final_end_extension_ms"] == 5_000
    bad = check_books({"auction": auction, "bids": [bids[1], bids[0]], "result": result}, acked, 10_000)
    assert not bad["strictly_higher"] and not bad["numbered_in_order"]


async def test_a_new_auction_waits_for_the_last_ones_end_to_be_written() -> None:
    async with NodeHarness(FAST, plugins={"dashboard": {"enabled": False}}) as h:  # no other writes
        host, ann = await h.connect("host", role="host"), await h.connect("ann")
        await host.join("r")
        await ann.join("r")
        auction = (await host.command("auction.open", open_body("r", duration_s=5, extend_s=0)))["auction"]
        assert code(await ann.command("auction.bid", bid("r", auction, "10", "a1"))) == "ok"
        h.store.fail_next_write("unavailable")  # the end's order cannot be written: it is retried
        await h.advance(5.1)
        assert not ann.of_type("auction.ended")
        assert code(await host.command("auction.open", open_body("r"))) == "auction_active"
        await h.advance(1.1)
        assert ann.of_type("auction.ended") and await h.store.get_record("auction.order", auction)
        assert code(await host.command("auction.open", open_body("r"))) == "ok"
