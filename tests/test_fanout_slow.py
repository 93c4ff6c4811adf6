"""The slow-consumer rule for real: a client that stops reading is cut off, others are not."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid

from liveroom.loadtest.sioclient import connect_client
from liveroom.loadtest.stats import Snapshot
from support import ServerProcess, Viewer, module_server, token

ITEMS = 2500  # x ~700 bytes: past the default 1 MB outbound limit plus the kernel's buffers
TEXT = "弹" * 200


flood_server = module_server(
    "flood_server",
    {
        "LIVEROOM_DELIVERY_NORMAL_PER_S": "0",  # the cap would keep the stalled buffer small
        "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "100000",
        "LIVEROOM_PLUGINS_DANMAKU_BURST": "100000",
        "LIVEROOM_COMMANDS_PER_S": "100000",
        "LIVEROOM_COMMANDS_BURST": "100000",
    },
)


def slow_disconnects(server: ServerProcess) -> float:
    with urllib.request.urlopen(server.url + "/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith('liveroom_server_disconnects_total{reason="slow_consumer"}'):
                return float(line.split()[1])
    return 0.0


async def test_a_stalled_reader_is_closed_as_slow_consumer(flood_server: ServerProcess) -> None:
    room = "slow-" + uuid.uuid4().hex[:8]
    stats = Snapshot()
    stalled = await connect_client(flood_server.url, stats, token("stalled"), receive_buffer=4096)
    assert (await stalled.call("join", {"room": room}))["ok"]
    stalled.stop_reading()
    healthy = await Viewer(flood_server.url, "healthy").connect()
    sender = await Viewer(flood_server.url, "flooder").connect()
    try:
        await healthy.join(room)
        await sender.join(room)
        for start in range(0, ITEMS, 250):
            payload = {"room": room, "text": TEXT}
            acks = await asyncio.gather(
                *(sender.call("danmaku.send", payload) for _ in range(start, start + 250))
            )
            assert all(ack["ok"] for ack in acks)
        # The healthy viewer gets everything while the stalled one is cut off.
        await healthy.wait_for(lambda i: i["type"] == "danmaku.message", count=ITEMS, timeout=30)
        for _ in range(100):
            if slow_disconnects(flood_server) >= 1:
                break
            await asyncio.sleep(0.1)
        assert slow_disconnects(flood_server) == 1
        assert healthy.client.connected and sender.client.connected
        # Reading again, the stalled client finds its connection gone.
        assert stalled.transport is not None
        stalled.transport.underlying_transport.resume_reading()
        await asyncio.wait_for(stalled.transport.wait_disconnected(), 10)
        assert stats.dropped == 1
    finally:
        stalled.close()
        for viewer in (healthy, sender):
            await viewer.close()
