"""The run of show on the server: a five-stage show whose third stage opens a poll on time,
through a restart with the host gone; on the harness, then with a real client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from liveroom.plugins.show_rules import DEFAULT_PLAN, Run, Stage
from plugin_support import api, room_name
from support import ServerProcess, Viewer

from liveroom.testing import HarnessConnection, NodeHarness

POLL = {"question": "Red or blue?", "options": ["Red", "Blue"], "duration_s": 15}
PLAN = [
    {
        "name": "Warm-up",
        "duration_s": 20,
        "actions": [{"command": "coupon.drop", "payload": {"title": "Hi", "count": 5}}],
    },
    {
        "name": "Product",
        "duration_s": 30,
        "actions": [{"command": "danmaku.pin", "payload": {"text": "Tea, 19.90"}}],
    },
    {"name": "Interaction", "duration_s": 40, "actions": [{"command": "poll.create", "payload": POLL}]},
    {
        "name": "Flash sale",
        "duration_s": 30,
        "actions": [
            {
                "command": "sale.schedule",
                "payload": {
                    "sku": "t1",
                    "title": "Tea",
                    "price": "19.90",
                    "stock": 9,
                    "starts_in_s": 5,
                    "duration_s": 20,
                },
            }
        ],
    },
    {"name": "Closing", "duration_s": 10},
]


def test_a_run_moves_on_the_clock_and_ends_after_its_last_stage() -> None:
    run = Run("r", [Stage("a", 10), Stage("b", 5)], {"id": "h", "name": "H"}, 0, 1000.0)
    assert run.due(10_999) is None and run.due(11_000) == "next"
    run.apply({"op": "stage", "index": 1, "at": 11_000})
    assert run.view()["name"] == "b" and run.view()["next"] is None and run.due(16_000) == "end"
    assert [stage.name for stage in DEFAULT_PLAN] == [
        "Warm-up",
        "Product introduction",
        "Interaction",
        "Flash sale",
        "Closing",
    ]


def stages(conn: HarnessConnection) -> list[str]:
    return [item["data"]["name"] for item in conn.of_type("show.stage")]


async def test_a_five_stage_show_opens_its_poll_on_time_through_a_restart_with_the_host_gone() -> None:
    async with NodeHarness() as h:
        host, fan = await h.connect("h1", role="host"), await h.connect("u1")
        await host.join("r1")
        await fan.join("r1")
        assert (await fan.command("show.start", {"room": "r1"}))["error"]["code"] == "forbidden"
        assert (await host.command("show.plan", {"room": "r1", "stages": PLAN}))["ok"]
        started = await host.command("show.start", {"room": "r1", "request_id": "go"})
        assert started["name"] == "Warm-up", started
        assert (await host.command("show.start", {"room": "r1", "request_id": "go"}))["run"] == started["run"]
        assert fan.of_type("coupon.drop") and stages(fan) == ["Warm-up"]
        await host.vanish()  # the host's tab closes
        await h.advance(25)
        assert stages(fan) == ["Warm-up", "Product"]
        assert fan.of_type("danmaku.pinned")[0]["data"]["text"] == "Tea, 19.90"
        await h.restart()  # 25 s in: the second stage ends at 50 s, the poll opens then
        fan = await h.connect("u1")
        state = (await fan.join("r1"))["state"]["show"]
        assert (
            state["stage"]["name"] == "Product"
            and state["stage"]["ends_at"] == started["started_at"] + 50_000
        )
        await h.advance(24)
        assert not fan.of_type("poll.started")
        await h.advance(1.1)
        polls = fan.of_type("poll.started")
        assert len(polls) == 1 and stages(fan) == ["Interaction"]
        assert polls[0]["ts"] - state["stage"]["ends_at"] < 200  # on time, on the server's clock
        await h.advance(41)
        assert fan.of_type("sale.scheduled") and stages(fan)[-1] == "Flash sale"
        await h.advance(45)
        assert stages(fan)[-1] == "Closing" and fan.of_type("show.ended")
        assert len(fan.of_type("coupon.drop")) == 0  # the warm-up's drop did not run again after the restart
        assert (await (await h.connect("h2", role="host")).join("r1"))["state"]["show"]["stage"] is None


async def test_bad_plans_are_refused_and_the_host_moves_and_stops_the_show() -> None:
    async with NodeHarness() as h:
        host = await h.connect("h1", role="host")
        await host.join("r1")
        for bad in (
            [{"name": "x", "duration_s": 10, "actions": [{"command": "like.send", "payload": {"count": 1}}]}],
            [
                {
                    "name": "x",
                    "duration_s": 10,
                    "actions": [{"command": "poll.create", "payload": {"question": "?"}}],
                }
            ],
            [{"name": "x", "duration_s": 0}],
        ):
            ack = await host.command("show.plan", {"room": "r1", "stages": bad})
            assert ack["error"]["code"] == "bad_request", ack
        assert (await host.command("show.next", {"room": "r1"}))["error"]["code"] == "not_running"
        state = (await host.join("r1"))["state"]["show"]
        assert state["plan"][0]["name"] == "Warm-up"  # the template by default
        await host.command("show.start", {"room": "r1"})
        assert (await host.command("show.start", {"room": "r1"}))["error"]["code"] == "show_running"
        moved = await host.command("show.next", {"room": "r1"})
        assert moved["name"] == "Product introduction"
        assert (await host.command("show.stop", {"room": "r1"}))["ended"]
        assert host.of_type("show.ended")


async def test_end_to_end_a_show_planned_over_http_runs_with_no_host_connected(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    fan = Viewer(server.url, "fan1")
    try:
        room = room_name()
        plan: list[dict[str, Any]] = [
            {"name": "Warm-up", "duration_s": 1},
            {
                "name": "Interaction",
                "duration_s": 30,
                "actions": [{"command": "poll.create", "payload": POLL}],
            },
        ]
        status, body = api(server, "POST", f"/api/rooms/{room}/show/plan", {"stages": plan})
        assert status == 200, body
        status, body = api(server, "POST", f"/api/rooms/{room}/commands/show.start", {})
        assert status == 200 and body["name"] == "Warm-up", body
        await fan.connect()
        joined = await fan.join(room)
        assert joined["state"]["show"]["stage"]["name"] in ("Warm-up", "Interaction")
        await fan.wait_for(lambda item: item["type"] == "poll.started")
        status, body = api(server, "GET", f"/api/rooms/{room}/show")
        assert body["stage"]["name"] == "Interaction", body
    finally:
        await fan.close()
        server.stop()
