"""MediaLocator over a real redis-server: which host sessions hold a room here, and the key the
other nodes read (the two-node redirect itself is in test_media_locator_e2e.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from liveroom.media.locator import MediaLocator
from redis_support import RedisServer

from liveroom.redis_client import connect_redis

A, B = "http://10.0.0.1:8080", "http://10.0.0.2:8080"


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[MediaLocator, MediaLocator]]:
    prefix = "loc" + uuid.uuid4().hex[:8]
    a = MediaLocator(connect_redis(redis_server.url), prefix, A)
    b = MediaLocator(connect_redis(redis_server.url), prefix, B + "/")
    yield a, b
    await a.stop()
    await b.stop()


def event(session: str, state: str, slot: str = "host") -> dict[str, str]:
    return {"slot": slot, "state": state, "session": session}


async def test_the_host_going_live_claims_the_room_and_ending_releases_it(
    pair: tuple[MediaLocator, MediaLocator],
) -> None:
    a, b = pair
    assert await b.where("r1") is None  # nobody holds it: served where it lands
    await a.publisher_event("r1", event("s1", "connecting"))
    assert await b.where("r1") is None
    await a.publisher_event("r1", event("s1", "connected"))
    assert a.holds("r1") and await b.where("r1") == A
    assert await a.where("r1") is None  # the holder serves it itself
    await a.publisher_event("r1", event("s1", "ended"))
    assert not a.holds("r1") and await b.where("r1") is None


async def test_a_guest_slot_does_not_claim_and_a_promoted_backup_keeps_the_room(
    pair: tuple[MediaLocator, MediaLocator],
) -> None:
    a, b = pair
    await a.publisher_event("r2", event("g1", "connected", slot="1"))
    assert not a.holds("r2")
    await a.publisher_event("r2", event("primary", "connected"))
    await a.publisher_event("r2", event("backup", "promoted"))
    await a.publisher_event("r2", event("primary", "lost"))
    assert await b.where("r2") == A  # the backup carries the program on
    await a.publisher_event("r2", event("backup", "ended"))
    assert await b.where("r2") is None


async def test_releasing_leaves_a_room_another_node_took_since(
    pair: tuple[MediaLocator, MediaLocator],
) -> None:
    a, b = pair
    await a.publisher_event("r3", event("s1", "connected"))
    await b.publisher_event("r3", event("s2", "connected"))  # a later claim wins the key
    await a.publisher_event("r3", event("s1", "ended"))
    assert await a.where("r3") == B.rstrip("/")
