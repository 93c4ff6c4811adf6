"""One room, any node (issue 15): interaction state has one authority, the room's owner node,
whichever node a client is connected to. Real node processes on a real redis-server and on a
3-master Redis Cluster; SIGKILL of the owner in the middle of a poll."""

from __future__ import annotations

import asyncio
import functools
import signal
from pathlib import Path
from typing import Any

import pytest
from cluster_support import Cluster, until_ok
from plugin_support import api, code
from redis_support import RedisCluster
from support import Viewer, token


@pytest.fixture(params=["redis", "redis-cluster"])
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    shared: RedisCluster | None = (
        request.getfixturevalue("redis_cluster") if request.param == "redis-cluster" else None
    )
    made = Cluster(tmp_path, 3, shared, {"LIVEROOM_CLUSTER_LEASE_S": "1.5"})
    yield made
    made.stop()


async def test_a_poll_mutes_and_the_stage_are_the_same_on_every_node(nodes: Cluster) -> None:
    a, b, c = nodes.nodes
    host = Viewer(a.url, "host", role="host")
    ann, bob = Viewer(b.url, "ann"), Viewer(c.url, "bob")
    clients = (host, ann, bob)
    try:
        for client in clients:
            await client.connect()
            assert (await client.join("show"))["ok"]
        create = {"room": "show", "question": "Which colour?", "options": ["red", "blue"], "duration_s": 60}
        poll = (await host.call("poll.create", create))["poll"]
        # Voted through B and C: the poll opened through A is there (before: not_found).
        assert code(await ann.call("poll.vote", {"room": "show", "poll": poll, "option": 1})) == "ok"
        assert code(await bob.call("poll.vote", {"room": "show", "poll": poll, "option": 1})) == "ok"
        assert (
            code(await bob.call("poll.vote", {"room": "show", "poll": poll, "option": 0})) == "already_voted"
        )
        tally = await host.wait_for(lambda i: i["type"] == "poll.tally" and i["data"]["total"] == 2)
        assert tally[-1]["data"]["counts"] == [0, 2]
        # A mute made through A holds for the user through C.
        assert (await host.call("danmaku.mute", {"room": "show", "user": "bob", "duration_s": 60}))["ok"]
        assert code(await bob.call("danmaku.send", {"room": "show", "text": "hi"})) == "muted"
        # A co-stream request through B reaches the host's queue through A.
        assert (await ann.call("costream.request", {"room": "show"}))["ok"]
        assert (await host.call("costream.accept", {"room": "show", "user": "ann"}))["ok"]
        # A join through any node gets the same state.
        late = Viewer(c.url, "late")
        await late.connect()
        joined = await late.join("show")
        assert joined["state"]["poll"]["counts"] == [0, 2]
        await late.close()
    finally:
        for client in clients:
            await client.close()


async def test_the_owner_killed_mid_poll_loses_no_vote_mute_or_stage(nodes: Cluster) -> None:
    a, b, c = nodes.nodes
    host = Viewer(a.url, "host", role="host")
    await host.connect()
    await host.join("kill")  # through A: A owns the room (the first node to need it)
    voters = [Viewer((b, c)[n % 2].url, f"v{n}") for n in range(6)]
    try:
        for voter in voters:
            await voter.connect()
            await voter.join("kill")
        create = {"room": "kill", "question": "Go?", "options": ["yes", "no"], "duration_s": 120}
        poll = (await host.call("poll.create", create))["poll"]
        for voter in voters[:3]:
            assert code(await voter.call("poll.vote", {"room": "kill", "poll": poll, "option": 0})) == "ok"
        # A mute with time left, a guest on stage and one in the queue, all through A.
        assert (await host.call("danmaku.mute", {"room": "kill", "user": "v5", "duration_s": 600}))["ok"]
        for voter in voters[3:5]:
            assert (await voter.call("costream.request", {"room": "kill"}))["ok"]
        assert (await host.call("costream.accept", {"room": "kill", "user": "v3"}))["ok"]
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        # Inside the lease: `unavailable`, retry later (never a wrong answer); then a survivor
        # takes the room and rebuilds it from its durable records.
        for voter in voters[3:]:
            vote = {"room": "kill", "poll": poll, "option": 1, "request_id": voter.user}
            ack = await until_ok(functools.partial(voter.call, "poll.vote", vote))
            assert ack["ok"], ack
        for voter in voters[:2]:  # the same answers on both survivors
            joined = await voter.join("kill")
            assert joined["state"]["poll"]["counts"] == [3, 3], joined["state"]["poll"]
            stage = joined["state"]["costream"]
            assert [g["id"] for g in stage["guests"]] == ["v3"], stage
            assert [r["id"] for r in stage["queue"]] == ["v4"], stage
        muted = await until_ok(lambda: voters[5].call("danmaku.send", {"room": "kill", "text": "still?"}))
        assert code(muted) == "muted"
    finally:
        await host.close()
        for voter in voters:
            await voter.close()


async def test_a_backend_grant_and_the_faq_bot_work_through_any_node(tmp_path: Path) -> None:
    """Issue 19's pieces on a cluster: a grant made over HTTP on node A reaches the user
    connected through B at once; an FAQ entry set through A answers a question asked through B."""
    cluster = Cluster(tmp_path, 2, None, {"LIVEROOM_PLUGINS_FAQ_ENABLED": "true"})
    a, b = cluster.nodes
    host, fan = Viewer(a.url, "host", role="host"), Viewer(b.url, "fan")
    try:
        for client in (host, fan):
            await client.connect()
            assert (await client.join("shop"))["ok"]
        backend = token("shop-backend", "admin")
        rule = {"title": "Prize", "trigger": "grant", "budget": 10}
        status, made = api(a, "POST", "/api/rooms/shop/commands/coupon.rule", rule, bearer=backend)
        assert status == 200, made
        grant = {"user": "fan", "rule": made["rule"], "request_id": "prize-1"}
        status, granted = api(a, "POST", "/api/rooms/shop/coupons/grants", grant, bearer=backend)
        assert status == 200, granted
        (item,) = await fan.wait_for(lambda i: i["type"] == "coupon.granted")
        assert item["data"]["rule"] == made["rule"]
        pair = {"room": "shop", "questions": ["什么时候发货"], "answer": "48小时内发货", "request_id": "q1"}
        assert (await host.call("faq.set", pair))["ok"]
        assert (await fan.call("danmaku.send", {"room": "shop", "text": "请问什么时候发货呀"}))["ok"]
        answered = await host.wait_for(
            lambda i: i["type"] == "danmaku.message" and i["data"]["user"]["id"] == "bot:faq"
        )
        assert answered[0]["data"]["text"] == "48小时内发货"
    finally:
        for client in (host, fan):
            await client.close()
        cluster.stop()


async def test_a_watch_coupon_goes_on_after_its_owner_is_killed(tmp_path: Path) -> None:
    """The owner SIGKILLed while a watch-time rule runs: a node with members of the room takes
    it within a lease (no command needs to come), every node tells the new owner who is
    connected through it, and the watch timers start again there: the viewers get their
    coupon. (Before: the new owner started with nobody present and nobody got one.)"""
    cluster = Cluster(tmp_path, 3, None, {"LIVEROOM_CLUSTER_LEASE_S": "1.5"})
    a, b, c = cluster.nodes
    host = Viewer(a.url, "host", role="host")
    viewers = [Viewer(b.url, "ann"), Viewer(c.url, "bob")]
    try:
        await host.connect()
        await host.join("watch")  # through A: A owns the room
        for viewer in viewers:
            await viewer.connect()
            await viewer.join("watch")
        rule = {"room": "watch", "title": "Thanks", "trigger": "watch_time", "minutes": 0.1, "budget": 10}
        assert (await host.call("coupon.rule", rule))["ok"]
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        for viewer in viewers:
            (granted,) = await viewer.wait_for(lambda i: i["type"] == "coupon.granted", timeout=60)
            assert granted["data"]["user"] == viewer.user
    finally:
        for client in (host, *viewers):
            await client.close()
        cluster.stop()


async def test_the_run_of_show_goes_on_after_its_owner_is_killed(tmp_path: Path) -> None:
    """Issue 19's run of show on a cluster: started through A, A SIGKILLed during the first
    stage; a survivor takes the room and moves to the next stage on time, running its action
    (a poll) once."""
    cluster = Cluster(tmp_path, 3, None, {"LIVEROOM_CLUSTER_LEASE_S": "1.5"})
    a, b, c = cluster.nodes
    host = Viewer(a.url, "host", role="host")
    fans = [Viewer(b.url, "ann"), Viewer(c.url, "bob")]
    poll = {"question": "Next?", "options": ["tea", "cake"], "duration_s": 60}
    plan = [
        {"name": "One", "duration_s": 4},
        {"name": "Two", "duration_s": 60, "actions": [{"command": "poll.create", "payload": poll}]},
    ]
    try:
        for client in (host, *fans):
            await client.connect()
            assert (await client.join("showtime"))["ok"]
        assert (await host.call("show.plan", {"room": "showtime", "stages": plan}))["ok"]
        assert (await host.call("show.start", {"room": "showtime", "request_id": "go"}))["name"] == "One"
        assert a.process is not None
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        for fan in fans:
            await fan.wait_for(lambda i: i["type"] == "show.stage" and i["data"]["name"] == "Two", timeout=60)
            await fan.wait_for(lambda i: i["type"] == "poll.started", timeout=60)
        await asyncio.sleep(1.0)  # room for a second poll, were the action run twice
        for fan in fans:
            assert len(fan.of_type("poll.started")) == 1
    finally:
        for client in (host, *fans):
            await client.close()
        cluster.stop()


@pytest.mark.timeout(180)
async def test_a_guest_on_a_killed_node_leaves_the_stage(tmp_path: Path) -> None:
    """The users of an edge node that dies leave the rooms at their owner (once the node's
    inbox has had no listener for a lease): a guest on stage through C, C SIGKILLed, the stage
    is free again. (Before: the guest stayed on stage until the room was released.)"""
    cluster = Cluster(tmp_path, 3, None, {"LIVEROOM_CLUSTER_LEASE_S": "1.5"})
    a, b, c = cluster.nodes
    host, fan, guest = Viewer(a.url, "host", role="host"), Viewer(b.url, "fan"), Viewer(c.url, "guest")
    try:
        for client in (host, fan, guest):
            await client.connect()
            assert (await client.join("edge"))["ok"]
        assert (await guest.call("costream.request", {"room": "edge"}))["ok"]
        assert (await host.call("costream.accept", {"room": "edge", "user": "guest"}))["ok"]
        await fan.wait_for(lambda i: i["type"] == "costream.stage" and i["data"]["guests"])
        assert c.process is not None
        c.process.send_signal(signal.SIGKILL)
        c.process.wait(10)
        await fan.wait_for(lambda i: i["type"] == "costream.stage" and not i["data"]["guests"], timeout=60)
        # The fan, through B (alive), is still present at the owner: a watch rule reaches it.
        rule = {"room": "edge", "title": "Stay", "trigger": "watch_time", "minutes": 0.1, "budget": 10}
        assert (await host.call("coupon.rule", rule))["ok"]
        await fan.wait_for(lambda i: i["type"] == "coupon.granted", timeout=60)
    finally:
        for client in (host, fan, guest):
            await client.close()
        cluster.stop()
