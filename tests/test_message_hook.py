"""The message hook: order, rewrite, answer, reject, hold and review, contained failures;
on the harness, then once over a real server and Socket.IO clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hook_plugins
import pytest
from plugin_support import room_name
from support import ServerProcess, Viewer

from liveroom.message_hook import Bot
from liveroom.testing import HarnessConnection, NodeHarness

HOOKS = {name: {"load": f"hook_plugins:{name.title()}Plugin"} for name in ("mask", "gate", "broken", "echo")}


def harness(**danmaku: Any) -> NodeHarness:
    hook_plugins.SEEN.clear()
    return NodeHarness(plugins={**HOOKS, "danmaku": {"rate_per_s": 100.0, "burst": 100, **danmaku}})


async def room_with(h: NodeHarness) -> tuple[HarnessConnection, HarnessConnection]:
    host, fan = await h.connect("h1", role="host"), await h.connect("u1")
    await host.join("r1")
    await fan.join("r1")
    return host, fan


def texts(conn: HarnessConnection) -> list[tuple[str, str]]:
    return [(m["data"]["user"]["id"], m["data"]["text"]) for m in conn.of_type("danmaku.message")]


async def send(conn: HarnessConnection, text: str, **extra: Any) -> dict[str, Any]:
    return await conn.command("danmaku.send", {"room": "r1", "text": text, **extra})


async def test_hooks_run_in_priority_then_load_order_and_rewrite_and_answer() -> None:
    async with harness() as h:
        host, fan = await room_with(h)
        ack = await send(fan, "darn, when is the sale?")
        assert ack["ok"], ack
        masked = "****, when is the sale?"
        assert [name for name, _ in hook_plugins.SEEN] == ["mask", "broken", "gate", "echo"]
        assert {text for _, text in hook_plugins.SEEN[1:]} == {masked}  # later hooks see the rewrite
        await h.tick()
        assert texts(host) == [("u1", masked), ("bot:echo", f"you asked: {masked}")]
        answer = fan.of_type("danmaku.message")[1]["data"]
        assert answer["user"] == {"id": "bot:echo", "name": "Echo", "bot": True}
        assert answer["reply_to"] == ack["id"]


async def test_a_hook_that_waits_within_its_budget_is_heard() -> None:
    async with harness(hook_timeout_ms=5000) as h:
        host, fan = await room_with(h)
        assert (await send(fan, "please wait?"))["ok"]
        await h.tick()
        assert texts(host) == [("u1", "please w***?"), ("bot:echo", "you asked: please w***?")]


async def test_a_reject_answers_the_sender_with_the_hooks_code_and_publishes_nothing() -> None:
    async with harness() as h:
        host, fan = await room_with(h)
        ack = await send(fan, "spoiler: he dies?")
        assert ack == {"ok": False, "error": {"code": "off_topic", "message": "no spoilers here"}}
        assert "echo" not in [name for name, _ in hook_plugins.SEEN]  # the chain stopped
        await h.tick()
        assert texts(host) == [] and texts(fan) == []


async def test_a_held_message_waits_for_staff_then_approve_publishes_it_once() -> None:
    async with harness() as h:
        host, fan = await room_with(h)
        ack = await send(fan, "buy at http://x.example", request_id="q1")
        assert ack["ok"] and ack["held"] and ack["reason"] == "link", ack
        assert await send(fan, "buy at http://x.example", request_id="q1") == ack  # a retry
        await h.tick()
        assert texts(fan) == [] and texts(host) == []
        held = host.of_type("danmaku.held")
        assert len(held) == 1 and held[0]["data"]["by"] == "gate" and "answers" not in held[0]["data"]
        assert not fan.of_type("danmaku.held")  # staff only
        listed = await host.command("danmaku.review.list", {"room": "r1"})
        assert [item["id"] for item in listed["held"]] == [ack["id"]]
        assert (await fan.command("danmaku.review.approve", {"room": "r1", "id": ack["id"]}))["error"][
            "code"
        ] == "forbidden"
        approved = await host.command("danmaku.review.approve", {"room": "r1", "id": ack["id"]})
        assert approved == {"ok": True, "id": ack["id"], "decision": "approve"}
        assert await host.command("danmaku.review.approve", {"room": "r1", "id": ack["id"]}) == approved
        dropped = await host.command("danmaku.review.drop", {"room": "r1", "id": ack["id"]})
        assert dropped["error"]["code"] == "already_reviewed"
        await h.tick()
        assert texts(fan) == [("u1", "buy at http://x.example")]
        assert host.of_type("danmaku.reviewed")[0]["data"] == {"id": ack["id"], "decision": "approve"}
        assert (await host.command("danmaku.review.list", {"room": "r1"}))["held"] == []
        missing = await host.command("danmaku.review.drop", {"room": "r1", "id": "nope"})
        assert missing["error"]["code"] == "not_found"


async def test_the_review_queue_survives_a_restart_and_a_dropped_message_is_never_published() -> None:
    async with harness() as h:
        _, fan = await room_with(h)
        first = await send(fan, "see http://a.example")
        second = await send(fan, "see http://b.example")
        await h.restart()
        host, fan = await room_with(h)
        review = (await host.join("r1"))["state"]["danmaku"]["review"]
        assert [item["id"] for item in review] == [first["id"], second["id"]]
        assert (await host.command("danmaku.review.drop", {"room": "r1", "id": first["id"]}))["ok"]
        await h.restart()
        host, fan = await room_with(h)
        review = (await host.join("r1"))["state"]["danmaku"]["review"]
        assert [item["id"] for item in review] == [second["id"]]
        await h.tick()
        assert texts(fan) == []


async def test_a_failed_review_write_leaves_no_trace() -> None:
    async with harness() as h:
        host, fan = await room_with(h)
        held = await send(fan, "see http://a.example")
        h.store.fail_next_write("unavailable")
        failed = await host.command("danmaku.review.approve", {"room": "r1", "id": held["id"]})
        assert failed["error"]["code"] == "unavailable"
        assert len((await host.command("danmaku.review.list", {"room": "r1"}))["held"]) == 1
        assert (await host.command("danmaku.review.approve", {"room": "r1", "id": held["id"]}))["ok"]
        await h.tick()
        assert len(texts(fan)) == 1


async def test_a_full_review_queue_refuses_with_a_code() -> None:
    async with harness(review_max=1) as h:
        _, fan = await room_with(h)
        assert (await send(fan, "see http://a.example"))["held"]
        assert (await send(fan, "see http://b.example"))["error"]["code"] == "review_full"


@pytest.mark.parametrize("text", ["boom now", "slow now", "blank now"])
async def test_a_raising_slow_or_invalid_hook_is_skipped_by_default(text: str) -> None:
    async with harness(hook_timeout_ms=50) as h:
        host, fan = await room_with(h)
        assert (await send(fan, text))["ok"]
        assert [name for name, _ in hook_plugins.SEEN] == ["mask", "broken", "gate", "echo"]
        await h.tick()
        assert texts(host) == [("u1", text)]


async def test_with_hook_failure_hold_a_failed_hook_holds_the_message() -> None:
    async with harness(hook_failure="hold") as h:
        host, fan = await room_with(h)
        ack = await send(fan, "boom?")
        assert ack["held"] and ack["reason"] == "hook_failed"
        assert host.of_type("danmaku.held")[0]["data"]["by"] == "broken"
        await h.tick()
        assert texts(fan) == []


async def test_bad_hook_settings_stop_start_up() -> None:
    with pytest.raises(Exception, match="hook_failure"):
        async with harness(hook_failure="maybe"):
            pass
    with pytest.raises(ValueError, match="bot:"):
        Bot("echo", "Echo")


async def test_end_to_end_hooks_over_socketio(tmp_path: Path) -> None:
    """A real server with the hook plugins: rewrite and answer, reject, hold then approve."""
    env = {
        "PYTHONPATH": str(Path(__file__).parent),
        **{f"LIVEROOM_PLUGINS_{name.upper()}_LOAD": spec["load"] for name, spec in HOOKS.items()},
    }
    server = ServerProcess(tmp_path, env=env).start()
    viewers: list[Viewer] = []
    try:
        room = room_name()
        host = Viewer(server.url, "host1", "host")
        fan = Viewer(server.url, "fan1")
        viewers += [host, fan]
        for viewer in viewers:
            await viewer.connect()
            await viewer.join(room)
        assert (await fan.call("danmaku.send", {"room": room, "text": "darn, price?"}))["ok"]
        answer = await fan.wait_for(lambda i: i["data"].get("user", {}).get("id") == "bot:echo")
        assert answer[0]["data"]["text"] == "you asked: ****, price?"
        refused = await fan.call("danmaku.send", {"room": room, "text": "spoiler"})
        assert refused["error"]["code"] == "off_topic"
        held = await fan.call("danmaku.send", {"room": room, "text": "go to http://x.example"})
        assert held["held"], held
        await host.wait_for(lambda i: i["type"] == "danmaku.held")
        assert (await host.call("danmaku.review.approve", {"room": room, "id": held["id"]}))["ok"]
        await fan.wait_for(lambda i: i["data"].get("text") == "go to http://x.example")
        assert (await fan.call("danmaku.send", {"room": room, "text": "boom"}))["ok"]  # a raising hook
        await host.wait_for(lambda i: i["data"].get("text") == "boom")
        assert "message hook of broken failed" in server.log()
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()
