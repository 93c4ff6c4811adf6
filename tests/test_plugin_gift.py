"""Gifts: the rules, then the plugin on a node without sockets (NodeHarness) against a real
HTTP wallet: debits, refusals, a slow wallet retried with one debit, an unknown outcome told
as such, the leaderboard, and a PK between two rooms decided once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from liveroom.plugins.gift_rules import Pk, Tally, parse_catalogue, wallet_answer
from plugin_support import code
from wallet_support import WalletServer

from liveroom.config import Config, LimitsConfig
from liveroom.errors import ConfigError
from liveroom.testing import NodeHarness

FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


def test_the_catalogue_and_what_a_wallet_answer_means() -> None:
    assert parse_catalogue(["rose:100", " rocket:50000"]) == {"rose": 100, "rocket": 50000}
    with pytest.raises(ConfigError):
        parse_catalogue(["rose:1.5"])
    assert wallet_answer(200, {"status": "ok"}) == "ok" and wallet_answer(204, None) == "ok"
    assert wallet_answer(402, None) == "insufficient"
    assert wallet_answer(200, {"status": "insufficient_funds"}) == "insufficient"
    assert wallet_answer(403, {"status": "frozen"}) == "refused"
    assert wallet_answer(503, None) == "unknown" and wallet_answer(429, None) == "unknown"
    assert wallet_answer(200, {"status": "pending"}) == "unknown"


def test_the_leaderboard_and_a_pk_result() -> None:
    tally = Tally()
    for n, (user, value) in enumerate([("ann", 100), ("bob", 500), ("ann", 450)], 1):
        tally.add({"user": user, "name": user.title(), "gift": "rose", "count": 1, "value_minor": value}, n)
    assert [(row["id"], row["value_minor"]) for row in tally.leaderboard(5)] == [("ann", 550), ("bob", 500)]
    assert tally.totals()["total_minor"] == 1050 and tally.after == 3
    pk = Pk("pk-1", ("a", "b"), 1000, 2000)
    assert pk.counts(1000) and not pk.counts(2000) and pk.decide_at(500) == 2500
    assert pk.result({"a": 5, "b": 7})["winner"] == "b" and pk.result({"a": 5, "b": 5})["draw"]


@pytest.fixture
async def wallet() -> AsyncIterator[WalletServer]:
    server = await WalletServer().start()
    yield server
    await server.stop()


def harness(wallet: WalletServer, **gift: Any) -> NodeHarness:
    return NodeHarness(FAST, plugins={"gift": {"wallet_url": wallet.url, "wallet_timeout_s": 0.3, **gift}})


def send(room: str, gift: str, request_id: str, count: int = 1) -> dict[str, Any]:
    return {"room": room, "gift": gift, "count": count, "request_id": request_id}


async def test_a_gift_is_debited_once_recorded_and_shown(wallet: WalletServer) -> None:
    wallet.balances["poor"] = 50
    async with harness(wallet) as h:
        ann, bob, poor = await h.connect("ann"), await h.connect("bob"), await h.connect("poor")
        for client in (ann, bob, poor):
            await client.join("r")
        ack = await ann.command("gift.send", send("r", "rose", "g1", count=3))
        assert ack["ok"] and ack["gift"]["value_minor"] == 300 and ack["gift"]["user"]["id"] == "ann"
        again = await ann.command("gift.send", send("r", "rose", "g1", count=3))
        assert again["gift"] == ack["gift"] and wallet.debits() == 1 and len(wallet.calls) == 1
        assert wallet.balances["ann"] == 1_000_000 - 300
        assert code(await poor.command("gift.send", send("r", "rose", "p1"))) == "insufficient_funds"
        assert code(await bob.command("gift.send", send("r", "tulip", "b0"))) == "unknown_gift"
        assert code(await bob.command("gift.send", send("r", "heart", "b1"))) == "ok"
        await h.advance(0.6)
        assert [i["data"]["gift"] for i in bob.of_type("gift.sent")] == ["rose", "heart"]
        board = bob.of_type("gift.leaderboard")[-1]["data"]
        assert [row["id"] for row in board["leaderboard"]] == ["bob", "ann"] and board["total_minor"] == 1300
        await h.restart()
        cat = await h.connect("cat")
        state = (await cat.join("r"))["state"]["gift"]
        assert state["totals"]["total_minor"] == 1300 and state["leaderboard"][0]["value_minor"] == 1000
        assert {g["gift"] for g in state["catalogue"]} == {"rose", "heart", "rocket"}


async def test_a_slow_wallet_is_retried_with_the_same_key_and_debited_once(wallet: WalletServer) -> None:
    wallet.delay_first_s = 1.0  # past the 0.3 s timeout: the first attempt has no answer
    async with harness(wallet) as h:
        ann = await h.connect("ann")
        await ann.join("r")
        ack = await ann.command("gift.send", send("r", "rocket", "g1"))
        assert ack["ok"], ack
        [(key, first), (again, second)] = wallet.calls
        assert key == again and (first, second) == (1, 2)
        assert wallet.debits(key) == 1 and wallet.balances["ann"] == 1_000_000 - 50_000


async def test_a_wallet_that_never_answers_is_told_as_unknown_then_converges(wallet: WalletServer) -> None:
    wallet.down = True
    async with harness(wallet, wallet_attempts=2, wallet_backoff_ms=10) as h:
        ann = await h.connect("ann")
        await ann.join("r")
        assert code(await ann.command("gift.send", send("r", "rose", "g1"))) == "outcome_unknown"
        assert not ann.of_type("gift.sent") and len(wallet.calls) == 2
        wallet.down = False
        assert code(await ann.command("gift.send", send("r", "rose", "g1"))) == "ok"
        assert wallet.debits() == 1


async def test_a_gift_debited_but_not_recorded_is_unknown_and_its_retry_debits_nothing_more(
    wallet: WalletServer,
) -> None:
    async with harness(wallet) as h:
        ann = await h.connect("ann")
        await ann.join("r")
        h.store.fail_next_write("unavailable")
        assert code(await ann.command("gift.send", send("r", "rose", "g1"))) == "outcome_unknown"
        assert code(await ann.command("gift.send", send("r", "rose", "g1"))) == "ok"
        assert wallet.debits() == 1 and len(ann.of_type("gift.sent")) == 1


async def test_no_wallet_no_gifts() -> None:
    async with NodeHarness(FAST) as h:
        ann = await h.connect("ann")
        await ann.join("r")
        assert code(await ann.command("gift.send", send("r", "rose", "g1"))) == "not_configured"


async def test_a_pk_scores_both_rooms_and_announces_one_winner_in_both(wallet: WalletServer) -> None:
    async with harness(wallet) as h:
        host_a, host_b = await h.connect("ha", role="host"), await h.connect("hb", role="host")
        fan_a, fan_b = await h.connect("fa"), await h.connect("fb")
        for client, room in ((host_a, "a"), (fan_a, "a"), (host_b, "b"), (fan_b, "b")):
            await client.join(room)
        assert code(await fan_a.command("gift.send", send("a", "rocket", "before"))) == "ok"  # not counted
        await h.advance(1)
        start = {"room": "a", "opponent": "b", "duration_s": 30, "request_id": "pk1"}
        assert code(await fan_a.command("gift.pk.start", start)) == "forbidden"
        assert code(await host_a.command("gift.pk.start", {**start, "opponent": "a"})) == "bad_request"
        pk = (await host_a.command("gift.pk.start", start))["pk"]
        assert (
            code(await host_b.command("gift.pk.start", {**start, "room": "b", "opponent": "c"}))
            == "pk_active"
        )
        assert fan_b.of_type("gift.pk.started")[0]["data"]["id"] == pk["id"]
        assert code(await fan_a.command("gift.send", send("a", "heart", "a1", count=2))) == "ok"
        assert code(await fan_b.command("gift.send", send("b", "heart", "b1", count=3))) == "ok"
        await h.advance(1)
        assert fan_a.of_type("gift.pk.score")[-1]["data"]["scores"] == {"a": 2000, "b": 3000}
        await h.advance(29)
        assert code(await fan_a.command("gift.send", send("a", "rocket", "late"))) == "ok"  # after the end
        await h.advance(3)
        [ended_a], [ended_b] = fan_a.of_type("gift.pk.ended"), fan_b.of_type("gift.pk.ended")
        assert ended_a["data"] == ended_b["data"]
        assert ended_a["data"]["winner"] == "b" and ended_a["data"]["scores"] == {"a": 2000, "b": 3000}
        body = await h.node.interactions.query("b", host_b.identity, "gifts/pk/{pk}", {"pk": pk["id"]})
        assert body["result"]["winner"] == "b"


async def test_totals_are_the_current_shows_and_the_leaderboard_the_rooms(wallet: WalletServer) -> None:
    async with harness(wallet) as h:
        host, ann = await h.connect("host", role="host"), await h.connect("ann")
        await host.join("r")
        await ann.join("r")
        assert code(await ann.command("gift.send", send("r", "heart", "before"))) == "ok"
        await h.advance(1)
        assert code(await host.command("show.start", {"room": "r", "request_id": "run1"})) == "ok"
        await h.advance(1)
        assert code(await ann.command("gift.send", send("r", "rose", "during"))) == "ok"
        await h.advance(1)
        board = ann.of_type("gift.leaderboard")[-1]["data"]
        assert board["total_minor"] == 100 and board["by_gift"] == {"rose": 1} and board["show"]
        assert board["room_total_minor"] == 1100 and board["leaderboard"][0]["value_minor"] == 1100
        await h.restart()
        bob = await h.connect("bob")
        totals = (await bob.join("r"))["state"]["gift"]["totals"]
        assert totals["total_minor"] == 100 and totals["room_total_minor"] == 1100
