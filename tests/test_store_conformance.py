"""The Store contract (see liveroom/store.py), run against every implementation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from liveroom.sqlite_store import EmbeddedStore
from liveroom.store import MemoryStore, Record, Store


@pytest.fixture(params=["memory", "embedded"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else EmbeddedStore(tmp_path / "s.db")
    await made.start()
    yield made
    await made.close()


def order(key: str, room: str = "r1", qty: int = 1) -> Record:
    return Record("order", key, room, {"qty": qty, "user": "u1"}, created_ms=1000)


async def test_counters_are_atomic(store: Store) -> None:
    results = await asyncio.gather(*(store.incr("likes:r1", 2) for _ in range(50)))
    assert sorted(results) == list(range(2, 102, 2))
    assert await store.get_counter("likes:r1") == 100
    assert await store.get_counter("never") == 0
    assert await store.incr("likes:r1", -10) == 90


async def test_records_are_written_exactly_once_per_key(store: Store) -> None:
    first, created = await store.put_record(order("k1", qty=1))
    assert created and first.data == {"qty": 1, "user": "u1"} and first.position > 0
    again, created = await store.put_record(order("k1", qty=99))
    assert not created and again.data == {"qty": 1, "user": "u1"} and again.position == first.position
    assert await store.get_record("order", "k1") == first
    assert await store.get_record("order", "nope") is None
    assert await store.get_record("coupon", "k1") is None  # keys are per kind


async def test_concurrent_writers_of_one_key_get_one_record(store: Store) -> None:
    outcomes = await asyncio.gather(*(store.put_record(order("same", qty=n)) for n in range(20)))
    assert sum(created for _, created in outcomes) == 1
    assert len({record.data["qty"] for record, _ in outcomes}) == 1


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


async def test_embedded_store_refuses_a_path_it_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        store = EmbeddedStore(blocker / "x.db")
        await store.start()
