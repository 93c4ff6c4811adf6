"""The example third-party plugin (tests/example_plugin), loaded through its entry point.

Installed by the test command: `pip install -e tests/example_plugin`.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from plugin_support import code, joined, room_name
from support import ServerProcess, Viewer, module_server


def test_the_example_is_installed_through_its_entry_point() -> None:
    names = {entry.name for entry in entry_points(group="liveroom.plugins")}
    assert "raffle" in names, "run: pip install -e tests/example_plugin"


raffle_server = module_server("raffle_server", {"LIVEROOM_PLUGINS_RAFFLE_WINDOW_MINUTES": "1"})


async def test_a_raffle_draws_among_recent_commenters(
    raffle_server: ServerProcess, viewers: list[Viewer]
) -> None:
    room = room_name()
    host = await joined(raffle_server, viewers, "host", room, "host")
    fans = [await joined(raffle_server, viewers, f"fan{n}", room) for n in range(3)]
    lurker = await joined(raffle_server, viewers, "lurker", room)
    draw = {"room": room, "prize": "Tea", "winners": 2}
    assert code(await host.call("raffle.draw", draw)) == "no_entrants"
    for fan in fans:
        assert code(await fan.call("danmaku.send", {"room": room, "text": "me!"})) == "ok"
    assert code(await fans[0].call("raffle.draw", draw)) == "forbidden"
    ack = await host.call("raffle.draw", draw)
    assert ack["ok"] and ack["entrants"] == 3 and len(ack["winners"]) == 2
    assert {w["id"] for w in ack["winners"]} <= {f.user for f in fans}
    [won] = await lurker.wait_for(lambda i: i["type"] == "raffle.won")
    assert won["data"] == {"prize": "Tea", "winners": ack["winners"]}
