"""Co-streaming: the stage rules; a guest's disconnect and the VIP lane on a node without sockets
(NodeHarness); the stage end to end with real clients, and the publish token media checks."""

from __future__ import annotations

import jwt
import pytest
from liveroom.plugins.costream_rules import Stage, StagePolicy
from plugin_support import code, joined, room_name
from support import SECRET, ServerProcess, Viewer, module_server

from liveroom.auth import TokenAuthority
from liveroom.config import Config, LimitsConfig
from liveroom.errors import CommandError, Unauthorized
from liveroom.publish_token import PublishTokens
from liveroom.testing import FakeClock, NodeHarness


def test_stage_rules() -> None:
    stage = Stage(max_guests=2, max_queue=2)
    assert stage.request("a", "A", "viewer", None, 0) == 1 and stage.request("b", "B", "viewer", None, 0) == 2
    with pytest.raises(CommandError, match="queue is full"):
        stage.request("c", "C", "viewer", None, 0)
    assert stage.accept("b") == 1 and stage.accept("a") == 2
    assert stage.remove("b") == 1
    stage.request("c", "C", "viewer", None, 0)
    assert stage.accept("c") == 1  # the lowest free slot
    assert [g["id"] for g in stage.guests()] == ["c", "a"]


def test_policy_admits_listed_roles_or_tiers() -> None:
    assert StagePolicy().admits("viewer", None)
    policy = StagePolicy(allowed_roles=("moderator",), allowed_tiers=("vip", "fan"))
    assert policy.admits("moderator", None) and policy.admits("viewer", "fan")
    assert not policy.admits("viewer", None) and not policy.admits("viewer", "basic")
    with pytest.raises(ValueError, match="not a tier"):
        StagePolicy(lanes=("VIP",))
    with pytest.raises(ValueError, match="twice"):
        StagePolicy(lanes=("vip", "vip"))


def test_vip_lane_is_served_first_and_has_its_own_room() -> None:
    clock = FakeClock()
    stage = Stage(2, max_queue=2, policy=StagePolicy(lanes=("vip", "fan")))

    def ask(user: str, tier: str | None) -> int:
        position = stage.request(user, user.title(), "viewer", tier, clock.now_ms())
        clock.advance(1)
        return int(position)

    assert ask("ann", None) == 1 and ask("bob", "fan") == 1 and ask("cat", None) == 3
    with pytest.raises(CommandError, match="general stage queue is full") as full:
        ask("dan", None)
    assert full.value.code == "queue_full"
    assert ask("vic", "vip") == 1 and ask("val", "vip") == 2  # later, yet ahead of everyone
    waiting = stage.waiting()
    assert [(w["id"], w["lane"]) for w in waiting] == [
        ("vic", "vip"),
        ("val", "vip"),
        ("bob", "fan"),
        ("ann", "general"),
        ("cat", "general"),
    ]
    assert waiting[0]["since"] == waiting[3]["since"] + 3000  # the clock the requests were made at
    assert stage.next_in_line() == "vic" and stage.accept("vic") == 1
    assert stage.next_in_line() == "val" and stage.position("ann") == 3
    stage.withdraw("val")
    assert stage.next_in_line() == "bob"
    assert ask("dan", "vip") == 1  # the VIP lane had room while the general one was full
    for user in ("dan", "bob", "ann", "cat"):
        stage.withdraw(user)
    with pytest.raises(CommandError) as empty:
        stage.next_in_line()
    assert empty.value.code == "queue_empty"


def test_tier_claim_round_trips_and_is_checked() -> None:
    authority = TokenAuthority(SECRET)
    assert authority.verify(authority.mint("u", "U", "viewer", tier="vip")).tier == "vip"
    assert authority.verify(authority.mint("u", "U", "viewer")).tier is None
    with pytest.raises(ValueError, match="tier"):
        authority.mint("u", "U", "viewer", tier="Gold Member")
    forged = jwt.encode({"sub": "u", "exp": 2**31, "tier": 7}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized, match="tier"):
        authority.verify(forged)


stage_server = module_server("stage_server", {"LIVEROOM_PLUGINS_COSTREAM_MAX_GUESTS": "1"})
FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


async def test_stage_end_to_end(stage_server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    host = await joined(stage_server, viewers, "host", room, "host")
    ann = await joined(stage_server, viewers, "ann", room)
    bob = await joined(stage_server, viewers, "bob", room)
    assert (await ann.call("costream.request", {"room": room}))["position"] == 1
    assert code(await ann.call("costream.request", {"room": room})) == "already_queued"
    assert (await bob.call("costream.request", {"room": room}))["position"] == 2
    await host.wait_for(lambda i: i["type"] == "costream.queue" and len(i["data"]["queue"]) == 2)
    assert code(await bob.call("costream.accept", {"room": room, "user": "ann"})) == "forbidden"

    accepted = await host.call("costream.accept", {"room": room, "user": "ann"})
    assert accepted == {"ok": True, "user": "ann", "slot": 1}
    [grant] = await ann.wait_for(lambda i: i["type"] == "costream.accepted")
    assert grant["seq"] is None and bob.of_type("costream.accepted") == []
    verified = PublishTokens(SECRET).verify(grant["data"]["token"], room)
    assert (verified.user_id, verified.room, verified.slot) == ("ann", room, 1)
    with pytest.raises(Unauthorized):
        PublishTokens(SECRET).verify(grant["data"]["token"], "another-room")
    [stage] = await bob.wait_for(lambda i: i["type"] == "costream.stage")
    assert stage["data"]["guests"] == [{"slot": 1, "id": "ann", "name": "Ann"}]

    assert code(await host.call("costream.accept", {"room": room, "user": "bob"})) == "stage_full"
    assert code(await ann.call("costream.request", {"room": room})) == "on_stage"
    assert (await ann.call("costream.token", {"room": room}))["slot"] == 1
    assert code(await bob.call("costream.token", {"room": room})) == "not_on_stage"
    assert code(await host.call("costream.reject", {"room": room, "user": "bob"})) == "ok"
    await bob.wait_for(lambda i: i["type"] == "costream.rejected")
    assert code(await host.call("costream.reject", {"room": room, "user": "bob"})) == "not_queued"
    assert code(await bob.call("costream.cancel", {"room": room})) == "not_queued"
    state = (await bob.call("join", {"room": room}))["state"]["costream"]
    assert state["guests"][0]["id"] == "ann" and state["queue"] == []
    assert code(await host.call("costream.remove", {"room": room, "user": "ann"})) == "ok"
    await ann.wait_for(lambda i: i["type"] == "costream.removed")
    assert code(await host.call("costream.remove", {"room": room, "user": "ann"})) == "not_on_stage"
    await bob.wait_for(lambda i: i["type"] == "costream.stage" and i["data"]["guests"] == [])


async def test_a_guest_who_disconnects_leaves_the_stage() -> None:
    async with NodeHarness(FAST) as h:
        host, ann = await h.connect("host", role="host"), await h.connect("ann")
        await host.join("r")
        await ann.join("r")
        await ann.command("costream.request", {"room": "r"})
        ack = await host.command("costream.accept", {"room": "r", "user": "ann"})
        assert ack["ok"] and ack["slot"] == 1
        await ann.vanish()
        await h.advance(1)
        assert host.of_type("costream.stage")[-1]["data"]["guests"] == []


VIP = {
    "costream": {
        "allowed_roles": ("moderator",),
        "allowed_tiers": ("vip", "fan"),
        "priority_tiers": ("vip",),
        "max_queue": 1,
    }
}


async def test_vip_lane() -> None:
    async with NodeHarness(FAST, plugins=VIP) as h:
        host, plain = await h.connect("host", role="host"), await h.connect("plain")
        fan, fan2 = await h.connect("fan", tier="fan"), await h.connect("fan2", tier="fan")
        vip = await h.connect("vip", tier="vip")
        for client in (host, plain, fan, fan2, vip):
            await client.join("r")
        refused = await plain.command("costream.request", {"room": "r"})
        assert code(refused) == "not_allowed" and "tiers" in refused["error"]["message"]
        assert await fan.command("costream.request", {"room": "r"}) == {
            "ok": True,
            "position": 1,
            "lane": "general",
        }
        assert code(await fan2.command("costream.request", {"room": "r"})) == "queue_full"
        assert await vip.command("costream.request", {"room": "r"}) == {
            "ok": True,
            "position": 1,
            "lane": "vip",
        }
        await h.advance(1)
        queue = host.of_type("costream.queue")[-1]
        assert [(q["id"], q["tier"], q["lane"]) for q in queue["data"]["queue"]] == [
            ("vip", "vip", "vip"),
            ("fan", "fan", "general"),
        ]
        assert (await host.command("costream.accept", {"room": "r"}))["user"] == "vip"  # the next in line
        assert vip.of_type("costream.accepted")
        ack = await host.command("costream.accept", {"room": "r"})
        assert ack["user"] == "fan" and ack["slot"] == 2
        assert code(await host.command("costream.accept", {"room": "r"})) == "queue_empty"
