"""The order outbox on a real node (the harness) POSTing to a real HTTP receiver.

Each order lands once, across restarts (before, every delivered order past the first page
of receipts was sent again after a restart: 450 delivered, 250 re-sent); a receiver that
keeps refusing one order holds up nothing after it; bodies are signed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from webhook_support import OrderReceiver, order_receiver

from liveroom.config import Config, LimitsConfig
from liveroom.outbox import WebhookOutbox
from liveroom.record import Record
from liveroom.store import MemoryStore
from liveroom.testing import NodeHarness

SECRET = "webhook-secret"


@pytest.fixture
async def receiver() -> AsyncIterator[OrderReceiver]:
    async with order_receiver(SECRET) as made:
        yield made


def harness(receiver: OrderReceiver, **sale: object) -> NodeHarness:
    config = {"webhook_url": receiver.url, "webhook_secret": SECRET, "webhook_max_backoff_s": 0.05, **sale}
    unlimited = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))
    return NodeHarness(unlimited, plugins={"sale": config})


async def open_sale(h: NodeHarness, stock: int) -> tuple[object, str]:
    buyer = await h.connect("buyer")
    await buyer.join("r")
    host = await h.connect("host", role="host")
    await host.join("r")
    payload = {"room": "r", "sku": "k", "title": "T", "price": 1, "stock": stock, "starts_at": 0}
    ack = await host.command("sale.schedule", {**payload, "duration_s": 3600, "per_user_limit": stock})
    return buyer, ack["sale"]


async def until(condition: object, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_each_order_lands_once_across_restarts(receiver: OrderReceiver) -> None:
    async with harness(receiver) as h:
        buyer, sale = await open_sale(h, 451)
        for n in range(450):
            ack = await buyer.command("sale.buy", {"room": "r", "sale": sale, "request_id": f"o{n}"})  # type: ignore[attr-defined]
            assert ack["ok"], ack
        await until(lambda: len(receiver.keys) == 450)
        last = (await h.store.list_records("sale.order", None, 0, 1000))[-1].position
        for _ in range(1000):  # its receipts written (a kill before that would send the last again)
            if await h.store.get_counter("outbox:sale.order:cursor") >= last:
                break
            await asyncio.sleep(0.02)
        await h.restart()
        more = await h.connect("buyer")
        await more.join("r")
        ack = await more.command("sale.buy", {"room": "r", "sale": sale, "request_id": "after"})
        assert ack["ok"], ack
        await until(lambda: len(receiver.keys) == 451)
        await asyncio.sleep(0.3)  # room for a repeat, were there one
    assert max(receiver.keys.values()) == 1 and receiver.bad_signatures == 0


async def test_a_refused_order_becomes_a_dead_letter_and_later_ones_go_on(receiver: OrderReceiver) -> None:
    async with harness(receiver, webhook_max_attempts=3) as h:
        buyer, sale = await open_sale(h, 10)
        first = await buyer.command("sale.buy", {"room": "r", "sale": sale, "request_id": "a"})  # type: ignore[attr-defined]
        await until(lambda: len(receiver.keys) == 1)
        receiver.refuse.add(next(iter(receiver.keys)).replace("/a", "/b"))
        for request in ("b", "c", "d"):
            await buyer.command("sale.buy", {"room": "r", "sale": sale, "request_id": request})  # type: ignore[attr-defined]
        await until(lambda: len(receiver.keys) == 3)  # a, c, d: b was given up on
        host = await h.connect("host2", role="host")
        await host.join("r")
        dead = await h.node.interactions.query("r", host.identity, "outbox/dead", {})
        assert [d["key"] for d in dead["dead"]] == [*receiver.refuse] and dead["dead"][0]["attempts"] == 3
        receiver.refuse.clear()
        ack = await host.command("sale.redeliver", {"room": "r", "key": dead["dead"][0]["key"]})
        assert ack["ok"], ack
        assert (
            len(receiver.keys) == 4
            and (await h.node.interactions.query("r", host.identity, "outbox/dead", {}))["dead"] == []
        )
    assert first["ok"]


async def test_two_nodes_outboxes_deliver_each_record_once_and_take_over(receiver: OrderReceiver) -> None:
    """Two nodes' outboxes over one shared store (the lease: one deliverer at a time); the
    holder stops cleanly and the other delivers what comes after, each record once. The
    lease's behaviour on Redis is the store conformance suite's."""
    store = MemoryStore()
    await store.start()

    def body(record: Record) -> dict[str, object]:
        return dict(record.data)

    nodes = [
        WebhookOutbox(store, "t.order", receiver.url, body, secret=SECRET, lease_ms=300) for _ in range(2)
    ]
    for outbox in nodes:
        await outbox.start()

    async def write(keys: range) -> None:
        for n in keys:
            await store.put_record(Record("t.order", f"k{n}", "r", {"n": n}, n))
        for outbox in nodes:
            outbox.notify()

    await write(range(60))
    await until(lambda: len(receiver.keys) == 60)
    await nodes[0].stop()  # whichever held the lease, the other carries on (at once or after it)
    await write(range(60, 90))
    await until(lambda: len(receiver.keys) == 90)
    await asyncio.sleep(0.5)  # room for a repeat, were there one
    await nodes[1].stop()
    assert max(receiver.keys.values()) == 1 and receiver.bad_signatures == 0
