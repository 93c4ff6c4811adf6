"""Every built-in plugin, whichever node its clients are on (issue 15's Tests): the same rules
on one node on embedded defaults, on three nodes over one redis-server and on three nodes over
a 3-master Redis Cluster.

The nodes start once per topology for the whole module; each test has a room of its own and
places its clients with a `random.Random` seeded per test: the host on one node, the viewers
on the others (everyone on the one node of "one"). The seed is printed with the placement
(shown with a failure); `LIVEROOM_TEST_SEED=<seed>` places the clients the same way again.
Timers are seconds long (durations in the payloads, the lucky bag's minimum through env)."""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cluster_support import Cluster, until_ok
from plugin_support import api, code, room_name
from support import ServerProcess, Viewer
from wallet_support import wallet_in_thread

from liveroom.auth import Role

Item = dict[str, Any]

ENV = {
    "LIVEROOM_PLUGINS_DANMAKU_BURST": "50",
    "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "50",
    "LIVEROOM_PLUGINS_LUCKYBAG_MIN_DURATION_S": "1",
    # Three wallet attempts and their backoffs stay under [limits] command_timeout_s (5 s).
    "LIVEROOM_PLUGINS_GIFT_WALLET_TIMEOUT_S": "1",
}
# A forwarded command waits as long as its owner may run it ([limits] command_timeout_s): a
# late answer on a loaded machine is the answer, not `outcome_unknown`.
CLUSTER_ENV = {"LIVEROOM_CLUSTER_FORWARD_TIMEOUT_S": "6"}


@pytest.fixture(scope="module", params=["one", "redis", "redis-cluster"])
def nodes(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[list[ServerProcess]]:
    root = tmp_path_factory.mktemp("anynode")
    env = {**ENV, "LIVEROOM_PLUGINS_GIFT_WALLET_URL": wallet_in_thread().url}
    if request.param == "one":
        node = ServerProcess(root / "node", env=env).start()
        yield [node]
        node.stop()
        return
    shared = request.getfixturevalue("redis_cluster") if request.param == "redis-cluster" else None
    cluster = Cluster(root, 3, shared, {**env, **CLUSTER_ENV})
    yield cluster.nodes
    cluster.stop()


class Room:
    """A test's room, and where its clients connect: the nodes in an order drawn from the
    test's seed, the host's node first."""

    def __init__(self, nodes: list[ServerProcess], seed: int) -> None:
        self.name = room_name()
        self.seed = seed
        self.rng = random.Random(seed)
        self.order = self.rng.sample(nodes, len(nodes))
        self.clients: list[Viewer] = []

    def node(self, n: int) -> ServerProcess:
        """The nth node of the drawn order, wrapping: nodes 0, 1 and 2 are three nodes."""
        return self.order[n % len(self.order)]

    def other(self) -> ServerProcess:
        """A node other than the host's, drawn (the host's when there is one node)."""
        return self.rng.choice(self.order[1:] or self.order)

    def other_than(self, viewer: Viewer) -> ServerProcess:
        """A node other than `viewer`'s, drawn (its own when there is one node)."""
        return self.rng.choice([node for node in self.order if node.url != viewer.url] or self.order)

    async def client(self, user: str, role: Role = "viewer", node: ServerProcess | None = None) -> Viewer:
        """A client joined to the room: staff through the host's node, viewers through another
        unless `node` says where."""
        node = node or (self.order[0] if role != "viewer" else self.other())
        print(f"seed {self.seed}: {user} ({role}) on node {self.order.index(node)}, {node.url}")
        viewer = Viewer(node.url, user, role)
        self.clients.append(viewer)
        await viewer.connect()
        await self.join(viewer)
        return viewer

    async def join(self, viewer: Viewer) -> dict[str, Any]:
        """`join` (again), retried while the room's owner lease is being taken."""
        ack = await until_ok(functools.partial(viewer.call, "join", {"room": self.name}))
        assert ack["ok"], ack
        return ack

    async def call(self, viewer: Viewer, command: str, **payload: Any) -> dict[str, Any]:
        ack: dict[str, Any] = await viewer.call(command, {"room": self.name, **payload})
        return ack


@pytest.fixture
async def room(nodes: list[ServerProcess]) -> AsyncIterator[Room]:
    seed = int(os.environ.get("LIVEROOM_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"clients placed with seed {seed} (LIVEROOM_TEST_SEED={seed} places them so again)")
    made = Room(nodes, seed)
    yield made
    for client in made.clients:
        await client.close()


async def seen(client: Viewer, kind: str, test: Callable[[Item], bool] = lambda data: True) -> list[Item]:
    """The items of type `kind` whose data passes `test` that `client` received, once there is
    one (a generous bound: a loaded machine is slower, never wrong)."""
    return await client.wait_for(lambda item: item["type"] == kind and test(item["data"]), timeout=30)


async def caught_up(room: Room, sender: Viewer, clients: list[Viewer]) -> None:
    """Everything published to the room so far has reached `clients`: a danmaku sent now has
    the next seq, and every node delivers the room's items in seq order."""
    marker = await room.call(sender, "danmaku.send", text="caught up?")
    assert marker["ok"], marker
    for client in clients:
        await seen(client, "danmaku.message", lambda data: data["id"] == marker["id"])


async def test_danmaku_once_everywhere_and_moderation_on_every_node(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(3)]
    everyone = [host, *fans]
    sent = [await room.call(fan, "danmaku.send", text=f"hello from {fan.user}") for fan in fans]
    assert all(ack["ok"] for ack in sent), sent
    await caught_up(room, host, everyone)
    orders = []
    for client in everyone:  # each message once, in one order on every node
        messages = client.of_type("danmaku.message")
        assert [m["data"]["id"] for m in messages][:3] == [ack["id"] for ack in sent], messages
        assert len(messages) == 4 and len({m["seq"] for m in messages}) == 4, messages
        orders.append([(m["seq"], m["data"]["id"]) for m in messages])
    assert all(order == orders[0] for order in orders)
    # Pin and delete, through the host's node, of messages sent through others.
    assert code(await room.call(host, "danmaku.pin", id=sent[0]["id"])) == "ok"
    assert code(await room.call(host, "danmaku.delete", id=sent[1]["id"])) == "ok"
    for client in everyone:
        await seen(client, "danmaku.pinned", lambda data: data["id"] == sent[0]["id"])
        await seen(client, "danmaku.deleted", lambda data: data == {"id": sent[1]["id"]})
    late = await room.client("late")
    assert (await room.join(late))["state"]["danmaku"]["pinned"]["id"] == sent[0]["id"]
    # Slow mode set through the host's node holds for a viewer on another.
    assert code(await room.call(host, "danmaku.slow", interval_s=60)) == "ok"
    await seen(late, "danmaku.slow_mode", lambda data: data["interval_s"] == 60)
    assert code(await room.call(late, "danmaku.send", text="one")) == "ok"
    assert code(await room.call(late, "danmaku.send", text="two")) == "slow_mode"
    assert code(await room.call(host, "danmaku.send", text="staff are exempt")) == "ok"


async def test_like_totals_are_the_same_on_every_node(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(3)]
    for n, fan in enumerate(fans, start=1):
        ack = await room.call(fan, "like.send", count=10 * n)
        assert ack["ok"] and ack["accepted"] == 10 * n, ack
    for client in (host, *fans):
        await seen(client, "like.total", lambda data: data["total"] == 60)
    late = await room.client("late")
    assert (await room.join(late))["state"]["like"] == {"total": 60}
    for node in room.order:
        status, likes = api(node, "GET", f"/api/rooms/{room.name}/likes")
        assert status == 200 and likes["total"] == 60, (node.url, likes)


async def test_a_poll_is_voted_through_any_node_once_per_user(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(3)]
    created = await room.call(host, "poll.create", question="Tea?", options=["green", "black"], duration_s=60)
    assert created["ok"], created
    poll = created["poll"]
    for fan, option in zip(fans, (1, 1, 0), strict=True):
        assert code(await room.call(fan, "poll.vote", poll=poll, option=option)) == "ok"
    again = await room.client("fan0", node=room.other_than(fans[0]))
    assert code(await room.call(again, "poll.vote", poll=poll, option=0)) == "already_voted"
    for client in (host, *fans):
        await seen(client, "poll.tally", lambda data: data["counts"] == [1, 2])
    joined = await room.join(again)
    assert joined["state"]["poll"]["counts"] == [1, 2] and joined["state"]["poll"]["my_vote"] == 1
    closed = await room.call(host, "poll.close", poll=poll)
    assert closed["ok"] and closed["result"]["counts"] == [1, 2], closed
    for client in (host, *fans, again):
        [ended] = await seen(client, "poll.ended")
        assert ended["data"]["counts"] == [1, 2] and ended["data"]["winners"] == [1], ended


async def test_a_coupon_dropped_through_one_node_is_grabbed_through_others(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(3)]
    dropped = await room.call(host, "coupon.drop", title="Half off", count=2)
    assert dropped["ok"], dropped
    rule = dropped["rule"]
    for client in (host, *fans):
        await seen(
            client, "coupon.drop", lambda data: data == {"rule": rule, "title": "Half off", "count": 2}
        )
    acks = await asyncio.gather(*(room.call(fan, "coupon.grab", rule=rule) for fan in fans))
    assert sorted(code(ack) for ack in acks) == ["exhausted", "ok", "ok"], acks
    winner, ack = next((fan, ack) for fan, ack in zip(fans, acks, strict=True) if ack["ok"])
    # The winner again, through another node: the grant is pending on join, a grab repeats it.
    back = await room.client(winner.user, node=room.other_than(winner))
    pending = (await room.join(back))["state"]["coupon"]["pending"]
    assert [grant["id"] for grant in pending] == [ack["grant"]["id"]], pending
    assert (await room.call(back, "coupon.grab", rule=rule))["grant"] == ack["grant"]
    loser = next(fan for fan, ack in zip(fans, acks, strict=True) if not ack["ok"])
    assert code(await room.call(loser, "coupon.grab", rule=rule)) == "exhausted"


async def test_a_sale_scheduled_joined_and_bought_through_three_nodes(room: Room) -> None:
    host = await room.client("host", "host", room.node(0))
    buyer = await room.client("buyer", node=room.node(2))
    now = (await host.call("time", {}))["server_time"]
    # 8 s: the late join and the buys below land within it on a loaded machine too (with a
    # CPU hog, the late client's connect and join once took more than 3 s; its state then
    # had no sale, since an ended sale is not in it).
    terms = {"sku": "tea", "title": "Tea", "price": "9.90", "stock": 5, "per_user_limit": 2}
    scheduled = await room.call(host, "sale.schedule", **terms, starts_at=now, duration_s=8)
    assert scheduled["ok"], scheduled
    sale = scheduled["sale"]
    late = await room.client("late", node=room.node(1))
    [state] = (await room.join(late))["state"]["sale"]["sales"]
    assert (state["id"], state["phase"], state["remaining"], state["price"]) == (sale, "open", 5, "9.90")
    buy = {"sale": sale, "request_id": "r1"}
    assert code(await room.call(late, "sale.buy", **buy, qty=1)) == "ok"
    assert code(await room.call(buyer, "sale.buy", **buy, qty=2)) == "ok"
    assert code(await room.call(buyer, "sale.buy", **{**buy, "request_id": "r2"}, qty=1)) == "limit_reached"
    for client in (host, late, buyer):
        await seen(client, "sale.stock", lambda data: data["remaining"] == 2)
        [ended] = await seen(client, "sale.ended")
        assert ended["data"] == {"sale": sale, "sold": 3, "remaining": 2}, ended
    for node in room.order:
        status, body = api(node, "GET", f"/api/rooms/{room.name}/sales/{sale}/orders")
        assert status == 200 and sorted((o["user"], o["qty"]) for o in body["orders"]) == [
            ("buyer", 2),
            ("late", 1),
        ], body


async def test_a_costream_request_on_one_node_reaches_the_hosts_queue_on_another(room: Room) -> None:
    host = await room.client("host", "host")
    ann, bob = await room.client("ann"), await room.client("bob")
    watcher = await room.client("watcher")
    assert (await room.call(ann, "costream.request"))["position"] == 1
    assert (await room.call(bob, "costream.request"))["position"] == 2
    ids = ["ann", "bob"]
    await seen(host, "costream.queue", lambda data: [r["id"] for r in data["queue"]] == ids)
    accepted = await room.call(host, "costream.accept")  # the head of the queue
    assert accepted["ok"] and accepted["user"] == "ann", accepted
    for client in (host, ann, bob, watcher):
        await seen(client, "costream.stage", lambda data: [g["id"] for g in data["guests"]] == ["ann"])
    await seen(ann, "costream.accepted", lambda data: data["slot"] == accepted["slot"])
    stage = (await room.join(watcher))["state"]["costream"]
    assert [g["id"] for g in stage["guests"]] == ["ann"] and [r["id"] for r in stage["queue"]] == ["bob"]


async def test_a_showcase_pin_and_clicks_through_other_nodes(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(2)]
    tea = {"sku": "tea", "title": "Tea set", "price_minor": 1990}
    tea |= {"image": "https://cdn.example/tea.jpg", "url": "https://shop.example/tea"}
    assert (await room.call(host, "showcase.set", products=[tea]))["ok"]
    assert (await room.call(host, "showcase.pin", sku="tea"))["ok"]
    for client in (host, *fans):
        await seen(client, "showcase.pinned", lambda data: data["product"]["sku"] == "tea")
    for clicks, fan in enumerate((fans[0], fans[1], fans[0]), start=1):
        ack = await room.call(fan, "showcase.click", sku="tea")
        assert ack["ok"] and ack["clicks"] == clicks and ack["url"] == "https://shop.example/tea", ack
    for node in room.order:  # the same figures through every node
        status, shown = api(node, "GET", f"/api/rooms/{room.name}/showcase")
        assert status == 200 and shown["pinned"] == "tea", shown
        assert (shown["products"][0]["clicks"], shown["products"][0]["clickers"]) == (3, 2), shown


async def test_a_lucky_bag_entered_through_several_nodes_is_drawn_once(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(4)]
    again = await room.client("fan0", node=room.other_than(fans[0]))  # fan0's second connection
    # 3 s: the entries below land well within it on a loaded machine too.
    started = await room.call(host, "luckybag.start", prize="Tea", winners=2, duration_s=3)
    assert started["ok"], started
    bag = started["bag"]
    acks = await asyncio.gather(*(room.call(fan, "luckybag.enter", bag=bag) for fan in fans))
    assert all(ack["ok"] and ack["entered"] for ack in acks), acks
    repeat = await room.call(again, "luckybag.enter", bag=bag)
    assert repeat["ok"] and repeat["entrants"] == 4, repeat  # one entry per user
    assert code(await room.call(host, "luckybag.enter", bag=bag)) == "not_eligible"
    drawn: Item = {}
    for client in (host, *fans, again):  # one draw, announced the same on every node
        [item] = await seen(client, "luckybag.drawn")
        assert not drawn or item["data"] == drawn, (item, drawn)
        drawn = item["data"]
    assert drawn["entrants"] == 4 and len({w["id"] for w in drawn["winners"]}) == 2, drawn
    entries = await room.call(fans[1], "luckybag.entries", bag=bag)
    assert sorted(e["user"] for e in entries["entries"]) == [fan.user for fan in fans], entries
    for fan in fans:  # each winner told, on whichever node
        if fan.user in {w["id"] for w in drawn["winners"]}:
            await seen(fan, "luckybag.won", lambda data: data["bag"] == bag)


async def test_an_auction_bid_through_different_nodes_has_one_leader_everywhere(room: Room) -> None:
    host = await room.client("host", "host", room.node(0))
    ann, bob = await room.client("ann", node=room.node(1)), await room.client("bob", node=room.node(2))
    # Every bid is within extend_s (3 s) of a 2 s auction's end: each one moves the end.
    terms = {"title": "Vase", "start_price": "10", "increment": "1", "duration_s": 2, "extend_s": 3}
    opened = await room.call(host, "auction.open", **terms)
    assert opened["ok"], opened
    auction, first_end = opened["auction"], opened["ends_at"]
    bid = {"auction": auction}
    first = await room.call(ann, "auction.bid", **bid, amount="10", request_id="a1")
    assert first["ok"] and first["leading"] and first["ends_at"] > first_end, first
    low = await room.call(bob, "auction.bid", **bid, amount="10", request_id="b1")
    assert code(low) == "bid_too_low" and low["error"]["price"] == "10.00", low
    won = await room.call(bob, "auction.bid", **bid, amount="12", request_id="b2")
    assert won["ok"] and won["ends_at"] >= first["ends_at"], won
    late = await room.call(ann, "auction.bid", **bid, amount="12", request_id="a2")
    assert code(late) == "bid_too_low" and late["error"]["price"] == "12.00", late
    for client in (host, ann, bob):
        await seen(
            client,
            "auction.price",
            lambda data: (
                (data["leader"] or {}).get("id") == "bob"
                and data["price"] == "12.00"
                and data["ends_at"] == won["ends_at"]
            ),
        )
    ended = [await seen(client, "auction.ended") for client in (host, ann, bob)]
    assert all(len(e) == 1 and e[0]["data"] == ended[0][0]["data"] for e in ended), ended
    result = ended[0][0]["data"]
    assert result["winner"]["id"] == "bob" and result["price_minor"] == 1200 and result["bids"] == 2, result
    await seen(bob, "auction.won")


async def test_gifts_through_other_nodes_are_debited_once_and_ranked_everywhere(room: Room) -> None:
    wallet = wallet_in_thread()
    host = await room.client("host", "host", room.node(0))
    rose, heart = (
        await room.client("rose-fan", node=room.node(1)),
        await room.client("heart-fan", node=room.node(2)),
    )
    sent = await room.call(rose, "gift.send", gift="rose", count=2, request_id="g1")
    assert sent["ok"] and sent["gift"]["value_minor"] == 200, sent
    # The same request again through another node: the same gift, one debit.
    again = await room.client("rose-fan", node=room.node(0))
    assert (await room.call(again, "gift.send", gift="rose", count=2, request_id="g1"))["gift"] == sent[
        "gift"
    ]
    hearts = await room.call(heart, "gift.send", gift="heart", count=1, request_id="g1")
    assert hearts["ok"], hearts
    assert wallet.debits(sent["gift"]["id"]) == 1 and wallet.debits(hearts["gift"]["id"]) == 1
    clients = [host, rose, heart, again]
    await caught_up(room, host, clients)
    ranked = [("heart-fan", 1000), ("rose-fan", 200)]
    both = [sent["gift"]["id"], hearts["gift"]["id"]]
    for client, gifts in zip(clients, (both, both, both, both[1:]), strict=True):  # `again` came later
        assert [i["data"]["id"] for i in client.of_type("gift.sent")] == gifts, client.items  # each once
        await seen(
            client,
            "gift.leaderboard",
            lambda data: (
                [(e["id"], e["value_minor"]) for e in data["leaderboard"]] == ranked
                and data["total_minor"] == 1200
            ),
        )


async def test_the_dashboard_counts_every_nodes_viewers(room: Room) -> None:
    host = await room.client("host", "host")
    fans = [await room.client(f"fan{n}") for n in range(3)]
    for fan in fans:
        assert code(await room.call(fan, "like.send", count=5)) == "ok"
        assert code(await room.call(fan, "danmaku.send", text=f"hi from {fan.user}")) == "ok"

    def counted(data: Item) -> bool:
        likes, danmaku = (data["figures"].get(name) or {} for name in ("like", "danmaku"))
        return (data["online"], data["viewers"], likes.get("total"), danmaku.get("total")) == (4, 3, 15, 3)

    await seen(host, "dashboard.stats", counted)
    assert all(fan.of_type("dashboard.stats") == [] for fan in fans)  # staff only
    for node in room.order:
        status, body = api(node, "GET", f"/api/rooms/{room.name}/dashboard")
        assert status == 200 and (body["online"], body["viewers"]) == (4, 3), (node.url, body)
