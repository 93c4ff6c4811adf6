"""A viewer that comes back with `since` is sent each item once: in `missed` or in a batch,
never both (on a node without sockets, NodeHarness). The page's side of the same promise is
checked in the browser (tests/test_pages.py: no page counts a duplicate over the show)."""

from __future__ import annotations

import asyncio
from typing import Any

from liveroom.config import Config, LimitsConfig
from liveroom.testing import HarnessConnection, NodeHarness

FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))
CHATTY = {"danmaku": {"rate_per_s": 1000, "burst": 1000}}


def received(client: HarnessConnection, ack: dict[str, Any]) -> list[int]:
    """Every seq a client was given after its join: `missed`, then its batches."""
    return [item["seq"] for item in ack["missed"]] + client.seqs()


async def test_a_viewer_back_with_since_gets_what_it_missed_once() -> None:
    async with NodeHarness(FAST, plugins=CHATTY) as h:
        sender, viewer = await h.connect("sender"), await h.connect("viewer")
        await sender.join("r")
        await viewer.join("r")
        for n in range(3):
            await sender.command("danmaku.send", {"room": "r", "text": f"before {n}"})
        since = viewer.seqs()[-1]
        await viewer.vanish()
        for n in range(2):
            await sender.command("danmaku.send", {"room": "r", "text": f"away {n}"})
        back = await h.connect("viewer")
        ack = await back.join("r", since=since)
        await sender.command("danmaku.send", {"room": "r", "text": "after"})
        await h.advance(1)
        assert [i["data"]["text"] for i in ack["missed"]] == ["away 0", "away 1"]
        seqs = received(back, ack)
        assert seqs == sorted(set(seqs)) and seqs[0] == since + 1 and len(seqs) == 3


async def test_items_published_while_a_resume_is_joining_arrive_once() -> None:
    async with NodeHarness(FAST, plugins=CHATTY) as h:
        sender, viewer = await h.connect("sender"), await h.connect("viewer")
        await sender.join("r")
        await viewer.join("r")
        await sender.command("danmaku.send", {"room": "r", "text": "seen"})
        since = viewer.seqs()[-1]
        await viewer.vanish()
        back = await h.connect("viewer")
        sends = [sender.command("danmaku.send", {"room": "r", "text": f"during {n}"}) for n in range(20)]
        ack, *acks = await asyncio.gather(back.join("r", since=since), *sends)
        assert all(a["ok"] for a in acks)
        await h.advance(1)
        seqs = received(back, ack)
        assert seqs == list(range(since + 1, since + 21)), (ack["missed"], back.seqs())
