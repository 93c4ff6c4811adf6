"""Delivery lanes through the real server: the per-viewer cap, priority, merged counters."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid

from support import ServerProcess, Viewer, module_server

CAP = 25  # the default [delivery] normal_per_s


lanes_server = module_server(
    "lanes_server",
    {
        "LIVEROOM_PLUGINS_BENCH_ENABLED": "true",
        "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "10000",
        "LIVEROOM_PLUGINS_DANMAKU_BURST": "10000",
        "LIVEROOM_COMMANDS_PER_S": "10000",
        "LIVEROOM_COMMANDS_BURST": "10000",
    },
)


def metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(server.url + "/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def test_normal_items_are_capped_and_sampled_priority_items_all_pass(
    lanes_server: ServerProcess,
) -> None:
    room = "cap-" + uuid.uuid4().hex[:8]
    watcher = await Viewer(lanes_server.url, "watcher").connect()
    senders = [await Viewer(lanes_server.url, f"sender{n}", role="host").connect() for n in range(2)]
    try:
        for viewer in (watcher, *senders):
            await viewer.join(room)
        started = time.monotonic()
        sends = []
        for n in range(100):
            for sender in senders:
                sends.append(sender.call("danmaku.send", {"room": room, "text": f"{sender.user} {n}"}))
            if n % 25 == 0:
                sends.append(
                    senders[0].call("bench.publish", {"room": room, "text": f"p{n}", "priority": True})
                )
        acks = await asyncio.gather(*sends)
        assert all(ack["ok"] for ack in acks), [a for a in acks if not a["ok"]][:3]
        await watcher.wait_for(lambda i: i["type"] == "bench.priority", count=4)
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        normal = watcher.of_type("danmaku.message")
        # A second's burst, then CAP a second; never the 200 that were sent.
        assert 10 <= len(normal) <= CAP + CAP * elapsed + 2, (len(normal), elapsed)
        assert {item["data"]["user"]["id"] for item in normal} == {s.user for s in senders}
        assert [i["data"]["text"] for i in watcher.of_type("bench.priority")] == ["p0", "p25", "p50", "p75"]
        seqs = [item["seq"] for item in watcher.items if item["seq"] is not None]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert metric(lanes_server, "liveroom_items_sampled_out_total") >= 200 - len(normal)
    finally:
        for viewer in (watcher, *senders):
            await viewer.close()


async def test_online_counter_goes_out_at_most_twice_a_second(lanes_server: ServerProcess) -> None:
    room = "online-" + uuid.uuid4().hex[:8]
    watcher = await Viewer(lanes_server.url, "counter-watcher").connect()
    await watcher.join(room)
    guests = [await Viewer(lanes_server.url, f"guest{n}").connect() for n in range(6)]
    try:
        started = time.monotonic()
        for _ in range(3):  # the online count changes many times a second
            for guest in guests:
                await guest.join(room)
            for guest in guests:
                await guest.call("leave", {"room": room})
        await guests[0].join(room)
        [last] = await watcher.wait_for(
            lambda i: i["type"] == "room.online" and i["data"]["count"] == 2, timeout=5
        )
        elapsed = time.monotonic() - started
        updates = watcher.of_type("room.online")
        assert len(updates) <= 2 * elapsed + 2, (len(updates), elapsed)
        assert updates[-1] is last
    finally:
        for viewer in (watcher, *guests):
            await viewer.close()
