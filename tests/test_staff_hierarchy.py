"""The staff hierarchy (issue 17): moderators may not mute, ban or take off stage a host or an
admin; hosts may not act on admins. On the in-process harness, with real plugins."""

from __future__ import annotations

from typing import Any

from liveroom.plugins.danmaku_rules import Action, Moderation

from liveroom.auth import Role
from liveroom.testing import NodeHarness

_CAST: tuple[tuple[str, Role], ...] = (("h", "host"), ("a", "admin"), ("m", "moderator"), ("f", "viewer"))


def error(ack: dict[str, Any]) -> str:
    assert ack["ok"] is False, ack
    return str(ack["error"]["code"])


async def test_a_moderator_cannot_ban_or_mute_the_host_or_an_admin() -> None:
    async with NodeHarness() as h:
        host, admin, mod, fan = [await h.connect(user, role) for user, role in _CAST]
        for client in (host, admin, mod, fan):
            assert (await client.join("r"))["ok"]
        for verb in ("ban", "mute"):
            for target in ("h", "a"):
                ack = await mod.command(f"danmaku.{verb}", {"room": "r", "user": target, "duration_s": 60})
                assert error(ack) == "outranked", (verb, target)
            ack = await host.command(f"danmaku.{verb}", {"room": "r", "user": "a", "duration_s": 60})
            assert error(ack) == "outranked"
        # The host is still in the room and may still talk; below them, the rules apply.
        assert (await host.command("danmaku.send", {"room": "r", "text": "still on air"}))["ok"]
        assert (await mod.command("danmaku.mute", {"room": "r", "user": "f", "duration_s": 60}))["ok"]
        assert (await host.command("danmaku.ban", {"room": "r", "user": "m", "duration_s": 60}))["ok"]
        assert (await admin.command("danmaku.ban", {"room": "r", "user": "h", "duration_s": 60}))["ok"]


async def test_a_moderator_cannot_lift_what_a_host_set() -> None:
    async with NodeHarness() as h:
        host, admin, mod, fan = [await h.connect(user, role) for user, role in _CAST]
        for client in (host, admin, mod, fan):
            assert (await client.join("r"))["ok"]
        for verb in ("mute", "ban"):
            ack = await host.command(f"danmaku.{verb}", {"room": "r", "user": "f", "duration_s": 60})
            assert ack["ok"], ack
            assert error(await mod.command(f"danmaku.un{verb}", {"room": "r", "user": "f"})) == "outranked"
            assert (await admin.command(f"danmaku.un{verb}", {"room": "r", "user": "f"}))["ok"]
        # what a moderator set, a moderator lifts
        assert (await mod.command("danmaku.mute", {"room": "r", "user": "f", "duration_s": 60}))["ok"]
        assert (await mod.command("danmaku.unmute", {"room": "r", "user": "f"}))["ok"]


async def test_a_ban_made_while_the_host_was_away_does_not_keep_them_out() -> None:
    async with NodeHarness() as h:
        mod = await h.connect("m", "moderator")
        await mod.join("r")
        assert (await mod.command("danmaku.ban", {"room": "r", "user": "h", "duration_s": 600}))["ok"]
        assert (await mod.command("danmaku.mute", {"room": "r", "user": "h", "duration_s": 600}))["ok"]
        host = await h.connect("h", "host")
        assert (await host.join("r"))["ok"]
        assert (await host.command("danmaku.send", {"room": "r", "text": "hello"}))["ok"]
        viewer_of_same_id = await h.connect("h", "viewer")  # the same user id as a viewer: banned
        assert error(await viewer_of_same_id.command("join", {"room": "r"})) == "banned"


async def test_a_moderator_cannot_take_a_host_off_stage() -> None:
    async with NodeHarness() as h:
        host, mod, cohost = (
            await h.connect("h", "host"),
            await h.connect("m", "moderator"),
            await h.connect("c", "host"),
        )
        for client in (host, mod, cohost):
            await client.join("r")
        assert (await cohost.command("costream.request", {"room": "r"}))["ok"]
        assert error(await mod.command("costream.reject", {"room": "r", "user": "c"})) == "outranked"
        assert (await host.command("costream.accept", {"room": "r", "user": "c"}))["ok"]
        assert error(await mod.command("costream.remove", {"room": "r", "user": "c"})) == "outranked"
        assert (await host.command("costream.remove", {"room": "r", "user": "c"}))["ok"]


def test_a_stored_ban_binds_by_the_rank_of_who_made_it() -> None:
    state = Moderation()
    state.apply(Action("ban", "m", user="x", until=10_000, by_role="moderator"))
    state.check_join("x", 0, "host")
    state.check_join("x", 0, "admin")
    for role in ("viewer", "moderator"):
        try:
            state.check_join("x", 0, role)
        except Exception as exc:
            assert "banned" in str(exc)
        else:
            raise AssertionError(f"a {role} passed a moderator's ban")
    state.apply(Action("ban", "old", user="y", until=10_000))  # stored before roles were kept
    try:
        state.check_join("y", 0, "admin")
    except Exception as exc:
        assert "banned" in str(exc)
