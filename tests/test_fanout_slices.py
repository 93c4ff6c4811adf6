"""Big flushes written in slices (fanout.py), through a real server whose slice is 3
members: every viewer still gets every item once, in seq order, priority items included."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from support import ServerProcess, Viewer, module_server

sliced_server = module_server(
    "sliced_server",
    {
        "LIVEROOM_DELIVERY_WRITES_PER_SLICE": "3",
        "LIVEROOM_DELIVERY_NORMAL_PER_S": "0",
        "LIVEROOM_PLUGINS_BENCH_ENABLED": "true",
        "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "10000",
        "LIVEROOM_PLUGINS_DANMAKU_BURST": "10000",
        "LIVEROOM_COMMANDS_PER_S": "10000",
        "LIVEROOM_COMMANDS_BURST": "10000",
    },
)


def is_type(item_type: str, item: dict[str, Any]) -> bool:
    return bool(item["type"] == item_type)


async def test_every_member_gets_every_item_in_order(sliced_server: ServerProcess) -> None:
    viewers = [await Viewer(sliced_server.url, f"v{n}").connect() for n in range(10)]
    host = await Viewer(sliced_server.url, "host", role="host").connect()
    try:
        for viewer in (*viewers, host):
            assert (await viewer.join("sliced"))["ok"] is True
        sends = []
        for n in range(60):
            sends.append(host.call("danmaku.send", {"room": "sliced", "text": f"m{n}"}))
            if n % 10 == 0:
                sends.append(host.call("bench.publish", {"room": "sliced", "text": "p", "priority": True}))
        acks = await asyncio.gather(*sends)
        assert all(ack["ok"] for ack in acks), acks
        wanted = {"danmaku.message": 60, "bench.priority": 6}
        for viewer in viewers:
            for item_type, count in wanted.items():
                await viewer.wait_for(partial(is_type, item_type), count)
            seqs = [item["seq"] for item in viewer.items if item["seq"] is not None]
            assert seqs == sorted(set(seqs)), "out of order or twice"
            assert [i["data"]["text"] for i in viewer.of_type("danmaku.message")] == [
                f"m{n}" for n in range(60)
            ]
    finally:
        for viewer in (*viewers, host):
            await viewer.close()
