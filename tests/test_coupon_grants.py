"""Backend grants and activities fired by name: on the harness, then over HTTP with real clients."""

from __future__ import annotations

from pathlib import Path

from plugin_support import api, room_name
from support import ServerProcess, Viewer, token

from liveroom.auth import Identity
from liveroom.config import Config, LimitsConfig
from liveroom.plugin import Activity
from liveroom.testing import NodeHarness


async def test_a_grant_reaches_a_connected_user_at_once_and_an_absent_one_on_join() -> None:
    async with NodeHarness() as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        rule = {"room": "r1", "title": "Follow gift", "trigger": "grant", "budget": 2, "request_id": "r"}
        made = await host.command("coupon.rule", rule)
        grant = {"room": "r1", "user": "u1", "rule": made["rule"], "request_id": "g1"}
        assert (await fan.command("coupon.grant", grant))["error"]["code"] == "forbidden"
        first = await host.command("coupon.grant", grant)
        assert first["ok"] and first["grant"]["user"] == "u1", first
        assert await host.command("coupon.grant", grant) == first  # idempotent
        assert [i["data"] for i in fan.of_type("coupon.granted")] == [first["grant"]]  # told once
        later = await host.command("coupon.grant", {**grant, "user": "u2", "request_id": "g2"})
        late = await h.connect("u2")
        assert (await late.join("r1"))["state"]["coupon"]["pending"] == [later["grant"]]
        spent = await host.command("coupon.grant", {**grant, "user": "u3", "request_id": "g3"})
        assert spent["error"]["code"] == "exhausted"
        missing = await host.command("coupon.grant", {**grant, "rule": "nope"})
        assert missing["error"]["code"] == "not_found"
        await h.restart()
        again = await h.connect("u2")
        assert (await again.join("r1"))["state"]["coupon"]["pending"] == [later["grant"]]


async def test_activities_fired_by_name_by_a_backend_or_a_plugin_count_for_rules() -> None:
    async with NodeHarness() as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        rule = {"room": "r1", "title": "Thanks for following", "trigger": "activity", "activity": "follow"}
        made = await host.command("coupon.rule", {**rule, "budget": 10, "count": 2})
        assert made["ok"], made
        fired = {"room": "r1", "user": "u1", "kind": "follow", "request_id": "a1"}
        assert (await host.command("coupon.activity", fired))["repeated"] is False
        assert (await host.command("coupon.activity", fired))["repeated"] is True  # counted once
        assert not fan.of_type("coupon.granted")
        coupon = next(plugin for plugin in h.node.plugins if plugin.name == "coupon")
        user = Identity("u1", "U1", "viewer")
        await coupon.host.signals.emit(Activity("r1", user, "follow", 1, h.clock.now_ms()))  # a plugin's
        await h.settle()
        assert [i["data"]["rule"] for i in fan.of_type("coupon.granted")] == [made["rule"]]
        bad = await host.command("coupon.activity", {**fired, "kind": "Not A Name"})
        assert bad["error"]["code"] == "bad_request"


async def test_end_to_end_a_backend_grants_over_http(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    viewers: list[Viewer] = []
    try:
        room = room_name()
        backend = token("shop-backend", "admin")  # a service token: admin, no room, never joins
        rule = {"title": "Mini-game prize", "trigger": "grant", "budget": 100}
        status, made = api(server, "POST", f"/api/rooms/{room}/commands/coupon.rule", rule, bearer=backend)
        assert status == 200, made
        fan = Viewer(server.url, "fan1")
        viewers.append(fan)
        await fan.connect()
        await fan.join(room)
        body = {"user": "fan1", "rule": made["rule"], "request_id": "prize-1"}
        status, granted = api(server, "POST", f"/api/rooms/{room}/coupons/grants", body, bearer=backend)
        assert status == 200 and granted["grant"]["user"] == "fan1", granted
        await fan.wait_for(lambda item: item["type"] == "coupon.granted")
        status, again = api(server, "POST", f"/api/rooms/{room}/coupons/grants", body, bearer=backend)
        assert again == granted
        body = {"user": "fan2", "rule": made["rule"], "request_id": "prize-2"}
        status, other = api(server, "POST", f"/api/rooms/{room}/coupons/grants", body, bearer=backend)
        latecomer = Viewer(server.url, "fan2")
        viewers.append(latecomer)
        await latecomer.connect()
        assert (await latecomer.join(room))["state"]["coupon"]["pending"] == [other["grant"]]
        status, refused = api(server, "POST", f"/api/rooms/{room}/coupons/grants", body, role="viewer")
        assert status == 403, refused
        fired = {"user": "fan1", "kind": "follow", "request_id": "f1"}
        status, ack = api(server, "POST", f"/api/rooms/{room}/activities", fired, bearer=backend)
        assert status == 200 and ack["repeated"] is False, ack
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()


async def test_a_grant_whose_command_timed_out_is_still_told_and_kept() -> None:
    """A like that earns a coupon while the store is slow: like.send runs past the command
    timeout and is answered outcome_unknown, but the grant being written is finished, told
    to the user and kept as theirs (once the store answers)."""
    config = Config(limits=LimitsConfig(command_timeout_s=0.2))
    async with NodeHarness(config) as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        rule = {"room": "r1", "title": "Thanks for the like", "trigger": "activity", "activity": "like"}
        made = await host.command("coupon.rule", {**rule, "budget": 10, "count": 1, "request_id": "r"})
        assert made["ok"], made
        h.store.hold_writes()
        liked = await fan.command("like.send", {"room": "r1", "count": 1})
        assert liked["error"]["code"] == "outcome_unknown", liked
        assert not fan.of_type("coupon.granted")
        h.store.release_writes()
        for _ in range(20):  # the grant's writes, then its send, each a few steps of the loop
            await h.settle()
        [granted] = [i["data"] for i in fan.of_type("coupon.granted")]
        assert granted["rule"] == made["rule"]
        assert (await fan.join("r1"))["state"]["coupon"]["pending"] == [granted]
