"""The workers' IPC beyond the Broker and Store contracts: several workers on one bus."""

from __future__ import annotations

import asyncio

from ipc_support import ipc_pair

from liveroom.broker import PresenceReport, Publication
from liveroom.ipc_client import IpcBroker, IpcDirectory
from liveroom.memory_broker import MemoryBroker
from liveroom.testing import FakeClock


async def until(predicate: object, tries: int = 500) -> None:
    for _ in range(tries):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached")


async def test_publications_from_every_worker_reach_every_worker_once_in_seq_order() -> None:
    async with ipc_pair(MemoryBroker(FakeClock(), 100, 60), None, workers=3) as (_, channels):
        brokers = [IpcBroker(channel) for channel in channels]
        received: list[list[Publication]] = [[] for _ in brokers]
        for broker, got in zip(brokers, received, strict=True):
            broker.set_handler(got.append)
            await broker.subscribe("r")
        await asyncio.gather(*(brokers[n % 3].publish("r", "t.x", {"n": n}) for n in range(60)))
        await until(lambda: all(len(got) == 60 for got in received))
        for got in received:
            assert [p.seq for p in got] == list(range(1, 61))
        assert received[0] == received[1] == received[2]


async def test_a_worker_that_goes_away_drops_out_of_presence_and_gives_its_rooms_up() -> None:
    async with ipc_pair(MemoryBroker(FakeClock(), 100, 60), None, workers=2) as (server, channels):
        one, two = IpcBroker(channels[0]), IpcBroker(channels[1])
        assert await one.report_presence({"r": PresenceReport(["u1", "u2"], [], 2)}) == {"r": 2}
        assert await two.report_presence({"r": PresenceReport(["u2", "u3"], [], 2)}) == {"r": 3}
        directory = IpcDirectory(channels[1])
        assert await directory.hold("r", channels[1].node_id, 60_000)
        assert not await IpcDirectory(channels[0]).hold("r", channels[0].node_id, 60_000)
        channels[1].close()
        await until(lambda: len(server.peers) == 1)
        assert await one.report_presence({"r": PresenceReport([], [], 2)}) == {"r": 2}
        assert await IpcDirectory(channels[0]).owner("r") is None


async def test_an_inbox_message_reaches_the_named_worker_only() -> None:
    async with ipc_pair(MemoryBroker(FakeClock(), 100, 60), None, workers=2) as (_, channels):
        heard: list[bytes] = []

        async def receive(message: bytes) -> None:
            heard.append(message)

        await IpcDirectory(channels[1]).listen(channels[1].node_id, receive)
        assert await IpcDirectory(channels[0]).send(channels[1].node_id, b"hello") == 1
        assert await IpcDirectory(channels[0]).send("nobody", b"lost") == 0
        await until(lambda: heard == [b"hello"])
