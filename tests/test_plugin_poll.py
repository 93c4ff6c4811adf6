"""Polls: pure rules; a poll's life on a node without sockets (NodeHarness, fake clock); real
clients against a real server over HTTP and through a SIGKILL."""

from __future__ import annotations

import itertools
import signal
from pathlib import Path

import pytest
from liveroom.plugins.poll_rules import Poll
from plugin_support import api, code, joined, room_name
from support import ServerProcess, Viewer

from liveroom.config import Config, LimitsConfig
from liveroom.errors import CommandError
from liveroom.testing import NodeHarness


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


FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


async def test_a_poll_from_start_to_deadline() -> None:
    async with NodeHarness(FAST, plugins={"poll": {"min_duration_s": 1}}) as h:
        host, ann, bob = await h.connect("host", role="host"), await h.connect("ann"), await h.connect("bob")
        for client in (host, ann, bob):
            await client.join("r")
        create = {"room": "r", "question": "Which colour?", "options": ["red", "blue"], "duration_s": 2}
        assert code(await ann.command("poll.create", create)) == "forbidden"
        assert code(await host.command("poll.create", {**create, "options": ["one"]})) == "bad_request"
        assert code(await host.command("poll.create", {**create, "options": ["x"] * 11})) == "bad_request"
        assert code(await host.command("poll.create", {**create, "duration_s": 3600})) == "bad_request"
        poll = (await host.command("poll.create", create))["poll"]
        assert code(await host.command("poll.create", create)) == "poll_active"
        [started] = ann.of_type("poll.started")
        assert started["data"]["options"] == ["red", "blue"] and started["data"]["counts"] == [0, 0]

        vote = {"room": "r", "poll": poll, "option": 1}
        assert code(await ann.command("poll.vote", vote)) == "ok"
        assert code(await ann.command("poll.vote", {**vote, "option": 0})) == "already_voted"
        assert code(await bob.command("poll.vote", {**vote, "option": 5})) == "invalid_option"
        assert code(await bob.command("poll.vote", {**vote, "poll": "p-nope"})) == "not_found"
        assert code(await bob.command("poll.vote", vote)) == "ok"
        await h.advance(0.6)
        assert [i["data"]["counts"] for i in host.of_type("poll.tally")][-1] == [0, 2]
        rejoin = await ann.join("r")
        assert rejoin["state"]["poll"]["my_vote"] == 1 and rejoin["state"]["poll"]["counts"] == [0, 2]

        await h.advance(2)
        [ended] = bob.of_type("poll.ended")
        assert ended["seq"] is not None and ended["data"]["closed_by"] == "deadline"
        assert ended["data"]["counts"] == [0, 2] and ended["data"]["winners"] == [1]
        assert code(await bob.command("poll.vote", vote)) == "not_found"
        tallies = [i["ts"] for i in host.of_type("poll.tally")]  # at most one per tally_interval_ms
        assert all(b - a >= 500 for a, b in itertools.pairwise(tallies))


async def test_the_host_closes_a_poll_and_the_result_is_durable() -> None:
    async with NodeHarness(FAST) as h:
        host, ann = await h.connect("host", role="host"), await h.connect("ann")
        await host.join("r")
        await ann.join("r")
        create = {"room": "r", "question": "Q", "options": ["a", "b", "c"], "duration_s": 60}
        poll = (await host.command("poll.create", create))["poll"]
        await ann.command("poll.vote", {"room": "r", "poll": poll, "option": 2})
        closed = await host.command("poll.close", {"room": "r", "poll": poll})
        assert closed["result"]["closed_by"] == "host" and closed["result"]["counts"] == [0, 0, 1]
        assert ann.of_type("poll.ended")
        assert code(await host.command("poll.close", {"room": "r", "poll": poll})) == "not_found"
        await h.restart()
        result = await h.node.interactions.query("r", host.identity, "polls/{poll}", {"poll": poll})
        assert result["counts"] == [0, 0, 1] and result["winners"] == [2]


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
