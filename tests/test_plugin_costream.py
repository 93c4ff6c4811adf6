"""Co-streaming: the stage rules, then real clients, and the publish token the media module checks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from liveroom.plugins.costream_rules import Stage
from plugin_support import api, code, joined, room_name
from support import SECRET, ServerProcess, Viewer

from liveroom.errors import CommandError, Unauthorized
from liveroom.publish_token import PublishTokens


def test_stage_rules() -> None:
    stage = Stage(max_guests=2, max_queue=2)
    assert stage.request("a", "A") == 1 and stage.request("b", "B") == 2
    with pytest.raises(CommandError, match="queue is full"):
        stage.request("c", "C")
    assert stage.accept("b") == 1 and stage.accept("a") == 2
    assert stage.remove("b") == 1
    stage.request("c", "C")
    assert stage.accept("c") == 1  # the lowest free slot
    assert [g["id"] for g in stage.guests()] == ["c", "a"]


@pytest.fixture(scope="module")
def stage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"LIVEROOM_PLUGINS_COSTREAM_MAX_GUESTS": "1"}
    process = ServerProcess(tmp_path_factory.mktemp("costream"), env=env).start()
    yield process
    process.stop()


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


async def test_a_guest_who_disconnects_leaves_the_stage(server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    host = await joined(server, viewers, "host-" + room, room, "host")
    ann = await joined(server, viewers, "ann-" + room, room)
    await ann.call("costream.request", {"room": room})
    status, ack = api(server, "POST", f"/api/rooms/{room}/commands/costream.accept", {"user": ann.user})
    assert status == 200 and ack["slot"] == 1
    await ann.close()
    await host.wait_for(lambda i: i["type"] == "costream.stage" and i["data"]["guests"] == [])
