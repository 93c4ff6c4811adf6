"""`liveroom serve --workers 2` (issue 23): a real supervisor and two worker processes on one
port, real Socket.IO clients placed on each worker (read from the per-worker /metrics)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugin_support import api, room_name
from support import ServerProcess, Viewer
from test_flash_sale_load import schedule

WORKERS_ENV = {"LIVEROOM_SERVER_WORKERS": "2", "LIVEROOM_MEDIA_ENABLED": "false"}


def started(data_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    server = ServerProcess(data_dir, env={**WORKERS_ENV, **(env or {})}).launch()
    deadline = time.monotonic() + 120  # two workers boot side by side on a loaded machine
    try:
        while not ready(server):
            assert server.process is not None and server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
    except BaseException:
        server.stop(signal.SIGKILL)  # its workers stop when their supervisor's socket closes
        raise
    return server


def ready(server: ServerProcess) -> bool:
    try:
        with urllib.request.urlopen(server.url + "/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.HTTPError):
        return False


def connections_by_worker(server: ServerProcess) -> dict[int, int]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.finditer(r'^liveroom_connections\{worker="(\d+)"\} (\S+)$', text, re.MULTILINE)
    return {int(m.group(1)): int(float(m.group(2))) for m in found}


async def placed(
    server: ServerProcess, per_worker: int, prefix: str, role: str = "viewer"
) -> dict[int, list[Viewer]]:
    """Connect viewers one at a time until each worker holds `per_worker` of them; the
    worker whose connection count went up is the one a viewer landed on."""
    on: dict[int, list[Viewer]] = {0: [], 1: []}
    extra: list[Viewer] = []
    for n in range(200):
        if all(len(viewers) >= per_worker for viewers in on.values()):
            break
        before = await asyncio.to_thread(connections_by_worker, server)
        viewer = await Viewer(server.url, f"{prefix}{n}", role).connect()  # type: ignore[arg-type]
        after = await asyncio.to_thread(connections_by_worker, server)
        [worker] = [w for w in after if after[w] > before.get(w, 0)]
        (on[worker] if len(on[worker]) < per_worker else extra).append(viewer)
    for viewer in extra:
        await viewer.close()
    assert all(len(viewers) == per_worker for viewers in on.values()), on
    return on


def worker_pid(server: ServerProcess, index: int) -> int:
    """The pid of worker `index`, a child of the supervisor (its argv names its index)."""
    assert server.process is not None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = int(fields[1]) == server.process.pid and b"liveroom.worker_process" in argv
        if mine and int(argv[argv.index(b"liveroom.worker_process") + 2]) == index:
            return int(stat.parent.name)
    raise AssertionError(f"no worker {index}")


def danmaku_seqs(items: list[dict[str, Any]]) -> list[int]:
    return [item["seq"] for item in items if item["type"] == "danmaku.message"]


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ServerProcess]:
    """Two workers of a test's own (it kills one of them)."""
    server = started(tmp_path / "fresh")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = started(tmp_path_factory.mktemp("workers"))
    yield server
    server.stop()


async def test_viewers_on_both_workers_get_every_item_once_in_order(workers: ServerProcess) -> None:
    on = await placed(workers, 2, "order")
    everyone = on[0] + on[1]
    room = room_name()
    try:
        for viewer in everyone:
            await viewer.join(room)
        # Joined on one worker, sent from the other: five from a worker-0 viewer, five from
        # a worker-1 viewer, at once.
        sends = [
            on[w][0].call("danmaku.send", {"room": room, "text": f"{w}-{n}"})
            for w in (0, 1)
            for n in range(5)
        ]
        acks = await asyncio.gather(*sends)
        assert all(ack["ok"] for ack in acks), acks
        texts = {f"{w}-{n}" for w in (0, 1) for n in range(5)}
        seen = []
        for viewer in everyone:
            items = await viewer.wait_for(lambda i: i["type"] == "danmaku.message", count=10, timeout=60)
            assert {item["data"]["text"] for item in items} == texts
            seen.append(danmaku_seqs(viewer.items))
        assert all(seqs == seen[0] for seqs in seen), seen  # the same order on both workers
        assert seen[0] == sorted(set(seen[0])) and len(seen[0]) == 10  # once each, in seq order
        assert seen[0] == list(range(seen[0][0], seen[0][0] + 10))  # no gap
    finally:
        for viewer in everyone:
            await viewer.close()


async def test_long_polling_and_upgrading_clients_keep_their_session_across_workers(
    workers: ServerProcess,
) -> None:
    """Each HTTP request of a long-polling client may come on a new connection, which the
    kernel may give to either worker: the session's own worker gets it (handoff.py)."""
    room = room_name()
    polling = [Viewer(workers.url, f"poll{n}") for n in range(6)]
    upgrading = [Viewer(workers.url, f"up{n}") for n in range(6)]
    try:
        for viewer in polling:
            await viewer.connect(transports=["polling"])
        for viewer in upgrading:
            await viewer.connect(transports=["polling", "websocket"])
        for viewer in polling + upgrading:
            await viewer.join(room)
        for n in range(3):
            assert (await polling[n].call("danmaku.send", {"room": room, "text": f"p{n}"}))["ok"]
        for viewer in polling + upgrading:
            items = await viewer.wait_for(lambda i: i["type"] == "danmaku.message", count=3, timeout=60)
            assert [item["data"]["text"] for item in items] == ["p0", "p1", "p2"]
    finally:
        for viewer in polling + upgrading:
            await viewer.close()


async def test_a_poll_and_a_sale_are_decided_once_across_workers(workers: ServerProcess) -> None:
    on = await placed(workers, 3, "decide")
    everyone = on[0] + on[1]
    room = room_name()
    host = Viewer(workers.url, "host", role="host")
    try:
        await host.connect()
        await host.join(room)
        for viewer in everyone:
            await viewer.join(room)
        create = {"room": room, "question": "Which?", "options": ["a", "b"], "duration_s": 60}
        poll = (await host.call("poll.create", create))["poll"]
        votes = [
            v.call("poll.vote", {"room": room, "poll": poll, "option": n % 2}) for n, v in enumerate(everyone)
        ]
        assert all(ack["ok"] for ack in await asyncio.gather(*votes))
        again = await on[1][0].call("poll.vote", {"room": room, "poll": poll, "option": 0})
        assert not again["ok"] and again["error"]["code"] == "already_voted", again
        for viewer in everyone:  # one authority: the same tally on every worker
            await viewer.wait_for(lambda i: i["type"] == "poll.tally" and i["data"]["total"] == 6, timeout=60)
        sale = await schedule(workers, room, 2)
        buys = [
            v.call("sale.buy", {"room": room, "sale": sale, "qty": 1, "request_id": "x"}) for v in everyone
        ]
        acks = await asyncio.gather(*buys)
        assert sum(1 for ack in acks if ack["ok"]) == 2, acks
        assert {ack["error"]["code"] for ack in acks if not ack["ok"]} == {"sold_out"}, acks
        status, body = await asyncio.to_thread(api, workers, "GET", f"/api/rooms/{room}/sales/{sale}/orders")
        assert status == 200 and len(body["orders"]) == 2, body
    finally:
        await host.close()
        for viewer in everyone:
            await viewer.close()


async def test_a_killed_worker_is_restarted_and_its_viewers_resume_without_a_gap(
    fresh: ServerProcess,
) -> None:
    server = fresh
    on = await placed(server, 3, "k")
    victim, senders = on[0][0], on[1]
    room = room_name()
    try:
        for viewer in (victim, *senders):
            await viewer.join(room)
        assert (await senders[0].call("danmaku.send", {"room": room, "text": "before"}))["ok"]
        [before] = await victim.wait_for(lambda i: i["type"] == "danmaku.message", timeout=60)
        old = worker_pid(server, 0)
        victim.client.reconnection_delay = 0.2
        os.kill(old, signal.SIGKILL)
        # Sent while the victim's worker is dead: the victim is told them when it comes back.
        during = [f"during {n}" for n in range(4)]
        for n, text in enumerate(during):
            # The room's owner may have been the dead worker: `unavailable` (or `outcome_unknown`
            # if it was asked just as it died) until another worker takes the room; the same
            # request_id keeps a retried send to one item.
            payload = {"room": room, "text": text, "request_id": text.replace(" ", "-")}
            ack = await until_decided(lambda s=senders[n % 3], p=payload: s.call("danmaku.send", p))
            assert ack["ok"], ack
        await until(lambda: victim.client.connected and victim.client.namespaces)
        ack = await victim.join(room, since=before["seq"])
        assert [item["data"]["text"] for item in ack["missed"] if item["type"] == "danmaku.message"] == during
        live = len(victim.items)
        assert (await senders[1].call("danmaku.send", {"room": room, "text": "after"}))["ok"]
        await victim.wait_for(
            lambda i: i["type"] == "danmaku.message" and i["data"]["text"] == "after", timeout=60
        )
        seqs = danmaku_seqs(ack["missed"]) + danmaku_seqs(victim.items[live:])
        assert seqs == list(range(before["seq"] + 1, before["seq"] + 6)), seqs  # no gap, none twice
        # The supervisor started worker 0 again: the node is whole (ready) once it is up.
        await until(lambda: worker_alive(server, old) and ready(server))
        assert set(await asyncio.to_thread(connections_by_worker, server)) == {0, 1}
    finally:
        for viewer in on[0] + on[1]:
            await viewer.close()


async def test_the_owner_worker_killed_mid_poll_loses_no_vote(fresh: ServerProcess) -> None:
    server = fresh
    hosts = await placed(server, 1, "h", role="host")
    voters = await placed(server, 4, "v")
    room = room_name()
    host = hosts[0][0]
    try:
        await host.join(room)  # first to need the room: worker 0 owns it
        for voter in voters[0] + voters[1]:
            await voter.join(room)
        create = {"room": room, "question": "Go?", "options": ["yes", "no"], "duration_s": 120}
        poll = (await host.call("poll.create", create))["poll"]
        for voter in voters[0][:2] + voters[1][:2]:
            assert (await voter.call("poll.vote", {"room": room, "poll": poll, "option": 0}))["ok"]
        os.kill(worker_pid(server, 0), signal.SIGKILL)
        # The owner's rooms are released as its socket closes: a survivor takes the room at its
        # next command and rebuilds it from the votes on record.
        for voter in voters[1][2:]:
            vote = {"room": room, "poll": poll, "option": 1, "request_id": voter.user}
            ack = await until_decided(lambda v=voter, p=vote: v.call("poll.vote", p))
            assert ack["ok"], ack
        joined = await voters[1][0].join(room)
        assert joined["state"]["poll"]["counts"] == [4, 2], joined["state"]["poll"]
        again = await voters[1][0].call("poll.vote", {"room": room, "poll": poll, "option": 1})
        assert not again["ok"] and again["error"]["code"] == "already_voted", again
    finally:
        for viewer in hosts[0] + hosts[1] + voters[0] + voters[1]:
            await viewer.close()


async def test_with_redis_configured_the_workers_are_cluster_nodes(tmp_path: Path, redis_server: Any) -> None:
    """Redis configured: each worker is a node of the cluster (the supervisor holds only
    readiness and metrics); a room still has one order on both workers."""
    env = {
        "LIVEROOM_BROKER_KIND": "redis",
        "LIVEROOM_STORE_KIND": "redis",
        "LIVEROOM_REDIS_URL": redis_server.url,
        "LIVEROOM_REDIS_KEY_PREFIX": "w" + room_name(),
    }
    server = started(tmp_path / "redis", env)
    try:
        on = await placed(server, 2, "r")
        room = room_name()
        for viewer in on[0] + on[1]:
            await viewer.join(room)
        for n, sender in enumerate((on[0][0], on[1][0], on[0][1])):
            assert (await sender.call("danmaku.send", {"room": room, "text": f"r{n}"}))["ok"]
        for viewer in on[0] + on[1]:
            items = await viewer.wait_for(lambda i: i["type"] == "danmaku.message", count=3, timeout=60)
            assert [item["data"]["text"] for item in items] == ["r0", "r1", "r2"]
            assert [item["seq"] for item in items] == [1, 2, 3]
        for viewer in on[0] + on[1]:
            await viewer.close()
    finally:
        server.stop()


async def until_decided(call: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ack: dict[str, Any] = await call()
        if ack["ok"] or ack["error"]["code"] not in ("unavailable", "outcome_unknown"):
            return ack
        assert asyncio.get_running_loop().time() < deadline, ack
        await asyncio.sleep(0.2)


def worker_alive(server: ServerProcess, old: int) -> bool:
    try:
        return worker_pid(server, 0) != old
    except AssertionError:
        return False


async def until(predicate: Any, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(predicate):
        assert asyncio.get_running_loop().time() < deadline, "not reached"
        await asyncio.sleep(0.1)
