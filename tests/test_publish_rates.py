"""Rate and size for every command that fans out (issue 17), on the in-process harness: a
user toggling the co-stream queue, or a staff member repeating a publishing command, costs
the other members a bounded number of items."""

from __future__ import annotations

from liveroom.testing import NodeHarness


async def test_a_queue_toggler_costs_the_room_a_bounded_number_of_updates() -> None:
    async with NodeHarness() as h:
        toggler, other, host = await h.connect("t"), await h.connect("o"), await h.connect("h", "host")
        for client in (toggler, other, host):
            await client.join("r")
        answered = []
        for n in range(200):  # 40 a second for 5 s
            verb = "costream.request" if n % 2 == 0 else "costream.cancel"
            ack = await toggler.command(verb, {"room": "r"})
            answered.append(ack["ok"] or ack["error"]["code"])
            await h.advance(0.025, step=0.025)
        await h.advance(1)
        queues = other.of_type("costream.queue")
        # request_burst 4, then 0.5 a second: 4 + 2.5 changes; the queue at most every 500 ms.
        assert answered.count(True) <= 4 + 3, answered
        assert set(answered) <= {True, "rate_limited", "not_queued", "already_queued"}
        assert len(queues) <= 5 / 0.5 + 2, len(queues)
        assert all(len(item["data"]["queue"]) <= 1 for item in queues)


async def test_a_staff_member_repeating_a_publishing_command_is_rate_limited() -> None:
    async with NodeHarness() as h:
        mod, fan = await h.connect("m", "moderator"), await h.connect("f")
        await mod.join("r")
        await fan.join("r")
        before = len(fan.items)
        codes = []
        for n in range(100):  # as fast as it can: no time passes
            ack = await mod.command("danmaku.slow", {"room": "r", "interval_s": n % 2})
            codes.append(ack["ok"] or ack["error"]["code"])
        assert codes.count(True) == 20 and codes.count("rate_limited") == 80  # publish_burst 20
        assert len(fan.items) - before <= 20
        await h.advance(1)
        assert (await mod.command("danmaku.slow", {"room": "r", "interval_s": 0}))["ok"]  # 2 a second again
