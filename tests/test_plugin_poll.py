"""Polls: pure rules, then real clients against a real server (and a restart)."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import pytest
from liveroom.plugins.poll_rules import Poll
from plugin_support import api, code, joined, room_name
from support import ServerProcess, Viewer, module_server

from liveroom.errors import CommandError


def test_poll_rules() -> None:
    poll = Poll("p", "r", "Best?", ("a", "b", "c"), ends_at=1000)
    assert poll.vote("ann", 0, 10, allow_change=False)
    assert not poll.vote("ann", 0, 10, allow_change=False)
    with pytest.raises(CommandError, match="already voted"):
        poll.vote("ann", 1, 10, allow_change=False)
    assert poll.vote("ann", 1, 10, allow_change=True) and poll.counts == [0, 1, 0]
    with pytest.raises(CommandError) as bad:
        poll.vote("bob", 3, 10, allow_change=False)
    assert bad.value.code == "invalid_option"
    with pytest.raises(CommandError) as late:
        poll.vote("bob", 0, 1000, allow_change=False)
    assert late.value.code == "poll_closed"
    poll.close("host")
    assert poll.result()["winners"] == [1] and poll.result()["closed_by"] == "host"


poll_server = module_server("poll_server", {"LIVEROOM_PLUGINS_POLL_MIN_DURATION_S": "1"})


async def test_a_poll_end_to_end(poll_server: ServerProcess, viewers: list[Viewer]) -> None:
    room = room_name()
    host = await joined(poll_server, viewers, "host", room, "host")
    ann = await joined(poll_server, viewers, "ann", room)
    bob = await joined(poll_server, viewers, "bob", room)
    create = {"room": room, "question": "Which colour?", "options": ["red", "blue"], "duration_s": 2}
    assert code(await ann.call("poll.create", create)) == "forbidden"
    assert code(await host.call("poll.create", {**create, "options": ["one"]})) == "bad_request"
    assert code(await host.call("poll.create", {**create, "options": ["x"] * 11})) == "bad_request"
    assert code(await host.call("poll.create", {**create, "duration_s": 3600})) == "bad_request"
    poll = (await host.call("poll.create", create))["poll"]
    assert code(await host.call("poll.create", create)) == "poll_active"
    [started] = await ann.wait_for(lambda i: i["type"] == "poll.started")
    assert started["data"]["options"] == ["red", "blue"] and started["data"]["counts"] == [0, 0]

    vote = {"room": room, "poll": poll, "option": 1}
    assert code(await ann.call("poll.vote", vote)) == "ok"
    assert code(await ann.call("poll.vote", {**vote, "option": 0})) == "already_voted"
    assert code(await bob.call("poll.vote", {**vote, "option": 5})) == "invalid_option"
    assert code(await bob.call("poll.vote", {**vote, "poll": "p-nope"})) == "not_found"
    assert code(await bob.call("poll.vote", vote)) == "ok"
    await host.wait_for(lambda i: i["type"] == "poll.tally" and i["data"]["counts"] == [0, 2])
    rejoin = await ann.call("join", {"room": room})
    assert rejoin["state"]["poll"]["my_vote"] == 1 and rejoin["state"]["poll"]["counts"] == [0, 2]

    [ended] = await bob.wait_for(lambda i: i["type"] == "poll.ended", timeout=5)
    assert ended["seq"] is not None and ended["data"]["closed_by"] == "deadline"
    assert ended["data"]["counts"] == [0, 2] and ended["data"]["winners"] == [1]
    assert code(await bob.call("poll.vote", vote)) == "not_found"
    tallies = [i["ts"] for i in host.of_type("poll.tally")]
    assert all(b - a >= 450 for a, b in itertools.pairwise(tallies))


async def test_the_host_closes_a_poll_and_the_result_is_durable(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    viewers: list[Viewer] = []
    room = room_name()
    try:
        host = await joined(server, viewers, "host", room, "host")
        ann = await joined(server, viewers, "ann", room)
        create = {"room": room, "question": "Q", "options": ["a", "b", "c"], "duration_s": 60}
        poll = (await host.call("poll.create", create))["poll"]
        await ann.call("poll.vote", {"room": room, "poll": poll, "option": 2})
        closed = await host.call("poll.close", {"room": room, "poll": poll})
        assert closed["result"]["closed_by"] == "host" and closed["result"]["counts"] == [0, 0, 1]
        await ann.wait_for(lambda i: i["type"] == "poll.ended")
        assert code(await host.call("poll.close", {"room": room, "poll": poll})) == "not_found"
        server.stop(signal.SIGKILL)
        server.start()
        status, result = api(server, "GET", f"/api/rooms/{room}/polls/{poll}")
        assert status == 200 and result["counts"] == [0, 0, 1] and result["winners"] == [2]
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()


def test_polls_over_http(server: ServerProcess) -> None:
    room = room_name()
    body = {"question": "Q", "options": ["a", "b"], "duration_s": 30}
    status, ack = api(server, "POST", f"/api/rooms/{room}/commands/poll.create", body)
    assert status == 200 and ack["poll"].startswith("p-")
    status, ack = api(server, "POST", f"/api/rooms/{room}/commands/poll.close", {"poll": ack["poll"]})
    assert status == 200 and ack["result"]["closed_by"] == "host"


async def test_an_open_poll_survives_sigkill_with_its_votes(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"LIVEROOM_PLUGINS_POLL_ALLOW_CHANGE": "true"}).start()
    viewers: list[Viewer] = []
    room = room_name()
    try:
        host = await joined(server, viewers, "host", room, "host")
        ann = await joined(server, viewers, "ann", room)
        bob = await joined(server, viewers, "bob", room)
        create = {"room": room, "question": "Q", "options": ["a", "b"], "duration_s": 60}
        poll = (await host.call("poll.create", create))["poll"]
        await ann.call("poll.vote", {"room": room, "poll": poll, "option": 0})
        await ann.call("poll.vote", {"room": room, "poll": poll, "option": 1})  # changed
        await bob.call("poll.vote", {"room": room, "poll": poll, "option": 1})
        server.stop(signal.SIGKILL)
        for viewer in viewers:
            await viewer.close()
        server.start()
        ann = await joined(server, viewers, "ann", room)
        state = (await ann.call("join", {"room": room}))["state"]["poll"]
        assert state["poll"] == poll and state["counts"] == [0, 2] and state["my_vote"] == 1
        assert code(await ann.call("poll.vote", {"room": room, "poll": poll, "option": 0})) == "ok"
        host = await joined(server, viewers, "host", room, "host")
        result = (await host.call("poll.close", {"room": room, "poll": poll}))["result"]
        assert result["counts"] == [1, 1]
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()
