"""One conformance suite for every Store: records, counters, and atomic stock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ipc_support import ipc_pair
from redis_support import redis_for

from liveroom.ipc_client import IpcStore
from liveroom.record import Record
from liveroom.redis_store import RedisStore
from liveroom.sqlite_store import EmbeddedStore
from liveroom.stock import StockRequest
from liveroom.store import MemoryStore, Store


@pytest.fixture(params=["memory", "embedded", "ipc", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store
    if request.param == "ipc":  # workers: SQLite in the supervisor (its one writer), over a Unix socket
        embedded = EmbeddedStore(tmp_path / "s.db")
        await embedded.start()
        async with ipc_pair(None, embedded) as (_, channels):
            made = IpcStore(channels[0])
            await made.start()
            yield made
            await made.close()
        await embedded.close()
        return
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "embedded":
        made = EmbeddedStore(tmp_path / "s.db")
    else:
        client, prefix = redis_for(request, tmp_path)
        made = RedisStore(client, prefix)
    await made.start()
    yield made
    await made.close()


def buy(pool: str, user: str, request_id: str, qty: int = 1) -> StockRequest:
    return StockRequest(pool, user, qty, request_id, {"sale": pool}, 1)


async def test_counters_are_atomic(store: Store) -> None:
    await asyncio.gather(*(store.incr("c") for _ in range(200)))
    assert await store.get_counter("c") == 200
    assert await store.incr("c", 5) == 205


async def test_records_are_written_once_per_key(store: Store) -> None:
    first, created = await store.put_record(Record("k", "a", "r1", {"v": 1}, 10))
    again, created_again = await store.put_record(Record("k", "a", "r1", {"v": 2}, 11))
    assert created and not created_again and again.data == {"v": 1} and again.position == first.position
    await store.put_record(Record("k", "b", "r2", {"v": 3}, 12))
    assert [r.key for r in await store.list_records("k", "r1")] == ["a"]
    assert [r.key for r in await store.list_records("k", None)] == ["a", "b"]
    assert [r.key for r in await store.list_records("k", None, after=first.position)] == ["b"]
    assert await store.get_record("k", "zz") is None


async def test_stock_never_oversells_under_a_storm(store: Store) -> None:
    await store.define_stock("p1", "room", 10, 1, "order", 1)
    outcomes = await asyncio.gather(*(store.take_stock(buy("p1", f"u{n}", "x")) for n in range(100)))
    assert sum(o.status == "ok" for o in outcomes) == 10
    assert {o.status for o in outcomes} == {"ok", "sold_out"}
    assert await store.stock_remaining("p1") == 0
    assert len(await store.list_records("order", "room")) == 10


async def test_stock_per_user_limit_and_idempotency(store: Store) -> None:
    await store.define_stock("p2", "room", 10, 2, "order", 1)
    first = await store.take_stock(buy("p2", "ann", "r1"))
    assert first.status == "ok" and first.order is not None and first.remaining == 9
    same = await asyncio.gather(*(store.take_stock(buy("p2", "ann", "r2")) for _ in range(5)))
    assert {o.status for o in same} == {"ok", "duplicate"} and len(
        {o.order.key for o in same if o.order}
    ) == 1
    assert (await store.take_stock(buy("p2", "ann", "r3"))).status == "limit_reached"
    repeat = await store.take_stock(buy("p2", "ann", "r1"))
    assert repeat.status == "duplicate" and repeat.order == first.order
    assert (await store.take_stock(buy("p2", "bob", "r1", qty=3))).status == "limit_reached"
    assert (await store.take_stock(buy("nope", "bob", "r1"))).status == "unknown_pool"
    assert await store.stock_remaining("p2") == 8


async def test_define_stock_is_idempotent(store: Store) -> None:
    await store.define_stock("p3", "room", 1, 1, "order", 1)
    await store.define_stock("p3", "room", 99, 1, "order", 1)
    assert await store.stock_remaining("p3") == 1


async def test_embedded_stock_is_rebuilt_after_restart(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "r.db")
    await first.start()
    await first.define_stock("p", "room", 3, 1, "order", 1)
    ok = await first.take_stock(buy("p", "ann", "a"))
    await first.close()
    second = EmbeddedStore(tmp_path / "r.db")
    await second.start()
    try:
        assert await second.stock_remaining("p") == 2
        again = await second.take_stock(buy("p", "ann", "a"))
        assert again.status == "duplicate" and again.order == ok.order
        assert (await second.take_stock(buy("p", "ann", "b"))).status == "limit_reached"
    finally:
        await second.close()


def order(key: str, room: str = "r1", qty: int = 1) -> Record:
    return Record("order", key, room, {"qty": qty, "user": "u1"}, created_ms=1000)


async def test_concurrent_writers_of_one_key_get_one_record(store: Store) -> None:
    outcomes = await asyncio.gather(*(store.put_record(order("same", qty=n)) for n in range(20)))
    assert sum(created for _, created in outcomes) == 1
    assert len({record.data["qty"] for record, _ in outcomes}) == 1
    assert await store.get_record("coupon", "same") is None  # keys are per kind


async def test_listing_by_room_in_write_order_with_paging(store: Store) -> None:
    for n in range(5):
        await store.put_record(order(f"a{n}", room="r1", qty=n))
        await store.put_record(order(f"b{n}", room="r2", qty=n))
    page = await store.list_records("order", "r1", limit=3)
    assert [r.key for r in page] == ["a0", "a1", "a2"]
    rest = await store.list_records("order", "r1", after=page[-1].position)
    assert [r.key for r in rest] == ["a3", "a4"]
    assert await store.list_records("coupon", "r1") == []


async def test_embedded_records_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    store = EmbeddedStore(path)
    await store.start()
    await asyncio.gather(*(store.put_record(order(f"k{n}")) for n in range(100)))
    await store.close()
    reopened = EmbeddedStore(path, synchronous="full")
    await reopened.start()
    try:
        assert len(await reopened.list_records("order", "r1", limit=1000)) == 100
        _, created = await reopened.put_record(order("k5"))
        assert not created
    finally:
        await reopened.close()


async def test_embedded_counters_survive_a_reopen(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "counters.db")
    await store.start()
    await asyncio.gather(*(store.incr("likes", 3) for _ in range(50)))
    await store.close()
    reopened = EmbeddedStore(tmp_path / "counters.db")
    await reopened.start()
    try:
        assert await reopened.get_counter("likes") == 150
        assert await reopened.incr("likes", 1) == 151
        assert await reopened.get_counter("other") == 0
    finally:
        await reopened.close()


async def test_embedded_store_refuses_a_path_it_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = EmbeddedStore(blocker / "x.db")
    with pytest.raises(OSError):
        await store.start()


async def test_counters_can_be_set_and_reset(store: Store) -> None:
    await store.incr("c", 5)
    await store.set_counter("c", 2)
    assert await store.get_counter("c") == 2
    await store.set_counter("c", 0)
    assert await store.incr("c") == 1


async def test_the_awake_index(store: Store) -> None:
    assert await store.awake_rooms() == []
    await store.set_awake("r2", True)
    await store.set_awake("r1", True)
    await store.set_awake("r1", True)  # idempotent
    await store.set_awake("r3", False)  # unmarking an unmarked room is fine
    assert await store.awake_rooms() == ["r1", "r2"]
    await store.set_awake("r2", False)
    assert await store.awake_rooms() == ["r1"]


async def test_a_lease_has_one_holder_until_it_runs_out_or_is_given_up(store: Store) -> None:
    assert await store.hold_lease("job", "a", 200)
    assert await store.hold_lease("job", "a", 200)  # renewed by its holder
    assert not await store.hold_lease("job", "b", 200)
    await store.release_lease("job", "b")  # not b's to give up
    assert not await store.hold_lease("job", "b", 200)
    await store.release_lease("job", "a")
    assert await store.hold_lease("job", "b", 60)
    for _ in range(100):  # b stops renewing: a takes it once it runs out
        if await store.hold_lease("job", "a", 200):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the lease never ran out")
    assert await store.hold_lease("other", "b", 200)  # leases are by name
