"""The core's rules on a real node without sockets (liveroom.testing.NodeHarness)."""

from __future__ import annotations

from liveroom.config import Config, DeliveryConfig, LimitsConfig, RoomConfig
from liveroom.testing import NodeHarness

FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


async def test_a_member_whose_write_raises_costs_no_other_member_an_item() -> None:
    async with NodeHarness(FAST, plugins={"danmaku": {"rate_per_s": 1000, "burst": 1000}}) as h:
        a, broken, c = [await h.connect(name) for name in ("a", "broken", "c")]
        for client in (a, broken, c):
            await client.join("r")
        broken.transport.fail_writes = True
        for n in range(5):
            assert (await a.command("danmaku.send", {"room": "r", "text": f"m{n}"}))["ok"]
        for client in (a, c):
            assert [i["data"]["text"] for i in client.of_type("danmaku.message")] == [
                f"m{n}" for n in range(5)
            ]
        assert "broken" not in {m.user_id for m in h.node.members("r")}  # dropped, as transport_error
        assert h.node.metrics.invariant_violations._value.get() == 0


async def test_a_viewer_who_vanishes_mid_command_leaves_every_room_at_once() -> None:
    async with NodeHarness(FAST) as h:
        stay, gone = await h.connect("stay"), await h.connect("gone")
        await stay.join("r")
        await gone.join("r")
        await gone.vanish()
        ack = await gone.command("join", {"room": "r2"})  # a command it had queued: it joins nothing
        assert ack["ok"] is False
        assert await stay.command("danmaku.send", {"room": "r", "text": "still here"})
        assert stay.of_type("danmaku.message") and h.node.hub.rooms["r"].members.keys() == {
            c for c in h.node.connections.by_sid.values() if c.identity.user_id == "stay"
        }


async def test_what_the_cap_leaves_out_is_stated_and_the_rest_arrives_in_order() -> None:
    config = Config(limits=FAST.limits, delivery=DeliveryConfig(normal_per_s=5.0))
    async with NodeHarness(config, plugins={"danmaku": {"rate_per_s": 1000, "burst": 1000}}) as h:
        viewer, sender = await h.connect("viewer"), await h.connect("sender")
        first = (await viewer.join("r"))["seq"]
        await sender.join("r")
        for n in range(40):
            await sender.command("danmaku.send", {"room": "r", "text": f"m{n}"})
        await h.advance(2)
        # What was left out is said with the next batch that goes out.
        await sender.command("danmaku.send", {"room": "r", "text": "last"})
        said = {s for b in viewer.batches for a, z in b.get("skipped", []) for s in range(a, z + 1)}
        assert sorted(set(viewer.seqs()) | said) == list(range(first + 1, first + 42))
        assert viewer.seqs() == sorted(viewer.seqs()) and said


async def test_a_fresh_join_misses_nothing_published_while_its_state_was_taken() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        opened = await host.command(
            "poll.create", {"room": "r", "question": "Q", "options": ["a", "b"], "duration_s": 20}
        )
        viewer = await h.connect("viewer")
        ack = await viewer.join("r")
        assert ack["state"]["poll"]["poll"] == opened["poll"]
        await h.advance(21)  # the poll ends: the joiner hears it
        assert [i["data"]["poll"] for i in viewer.of_type("poll.ended")] == [opened["poll"]]


async def test_an_idle_room_is_released_and_rebuilt_from_its_records() -> None:
    config = Config(limits=FAST.limits, room=RoomConfig(idle_release_s=10))
    async with NodeHarness(config) as h:
        mod = await h.connect("mod", role="moderator")
        await mod.join("r")
        await mod.command("danmaku.mute", {"room": "r", "user": "troll", "duration_s": 600})
        await mod.command("danmaku.slow", {"room": "r", "interval_s": 5})
        await mod.vanish()
        await h.advance(15, step=1.0)
        assert "r" not in h.node.rooms  # released from every plugin's memory
        troll = await h.connect("troll")
        ack = await troll.join("r")
        assert ack["state"]["danmaku"]["slow_mode_s"] == 5  # rebuilt from the records
        sent = await troll.command("danmaku.send", {"room": "r", "text": "hi"})
        assert sent["error"]["code"] == "muted"


async def test_a_room_with_a_deadline_comes_back_after_a_restart_and_its_timer_fires() -> None:
    async with NodeHarness(FAST) as h:
        host = await h.connect("host", role="host")
        await host.join("r")
        await host.command(
            "poll.create", {"room": "r", "question": "Q", "options": ["a", "b"], "duration_s": 20}
        )
        await h.restart()  # nobody comes back: the awake index brings the room back
        assert "r" in h.node.rooms
        await h.advance(21)
        results = await h.store.list_records("poll.result", "r")
        assert len(results) == 1 and results[0].data["closed_by"] == "deadline"
