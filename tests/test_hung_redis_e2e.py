"""Honest outcomes with a hung Redis: a command answered as failed left no trace, and one whose
outcome is unknown converges on one outcome when retried with its request_id.

Redis is paused (SIGSTOP) for longer than a command's timeout while danmaku and purchases
are sent. A paused Redis still accepts bytes: what was sent to it runs when it resumes, so
the node must not call those commands failed. Every answer is then checked against what
Redis holds once it runs again."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

from plugin_support import api, code, server_ms
from redis_support import RedisServer
from support import ServerProcess, Viewer

HONEST = {"ok", "outcome_unknown", "unavailable"}


async def test_commands_during_a_hung_redis_tell_the_truth(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=True).start()
    env = {
        "LIVEROOM_BROKER_KIND": "redis",
        "LIVEROOM_STORE_KIND": "redis",
        "LIVEROOM_REDIS_URL": redis.url,
        "LIVEROOM_PLUGINS_DANMAKU_RATE_PER_S": "50",
        "LIVEROOM_PLUGINS_DANMAKU_BURST": "50",
        # Shorter deadlines than the defaults, in the same order: Redis's below the command's.
        "LIVEROOM_COMMAND_TIMEOUT_S": "2",
        "LIVEROOM_REDIS_SOCKET_TIMEOUT_S": "0.5",
        "LIVEROOM_REDIS_POOL_TIMEOUT_S": "0.5",
        "LIVEROOM_REDIS_CONNECT_TIMEOUT_S": "0.5",
    }
    node = ServerProcess(tmp_path / "node", env=env).start()
    room = "hung-" + uuid.uuid4().hex[:6]
    buyers = [Viewer(node.url, f"buyer{i}") for i in range(6)]
    # Three talkers: one connection's commands run one after another, each waiting out its deadline.
    talkers = [Viewer(node.url, f"talker{n}") for n in range(3)]
    talker = talkers[0]
    try:
        for viewer in (*buyers, *talkers):
            await viewer.connect()
            await viewer.join(room)
        now = await server_ms(talker)
        status, body = api(
            node,
            "POST",
            f"/api/rooms/{room}/commands/sale.schedule",
            {"sku": "k", "title": "T", "price": 1, "stock": 100, "starts_at": int(now), "duration_s": 600},
        )
        assert status == 200, body
        sale = body["sale"]
        # One purchase each before the pause: the node knows the pool (no read needed later).
        for buyer in buyers[:1]:
            assert (
                code(await buyer.call("sale.buy", {"room": room, "sale": sale, "request_id": "warm"})) == "ok"
            )

        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            buys = asyncio.gather(
                *(
                    b.call("sale.buy", {"room": room, "sale": sale, "request_id": f"r-{b.user}"}, timeout=30)
                    for b in buyers[1:]
                )
            )
            sends = await asyncio.gather(
                *(
                    t.call("danmaku.send", {"room": room, "text": f"t{n}", "request_id": f"d{n}"}, timeout=30)
                    for n, t in enumerate(talkers)
                )
            )
            bought = await buys
            await asyncio.sleep(2.5)  # longer than [limits] command_timeout_s
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)

        answers = [code(a) for a in (*sends, *bought)]
        assert set(answers) <= HONEST, answers  # never internal_error, never a silent ok
        assert "outcome_unknown" in answers, answers  # sent to a paused Redis: unknown, not failed

        # Retried with their request ids, the unknown ones converge; the failed ones left nothing.
        texts_expected = set()
        for n, ack in enumerate(sends):
            if code(ack) != "unavailable":
                retry = await talkers[n].call(
                    "danmaku.send", {"room": room, "text": f"t{n}", "request_id": f"d{n}"}
                )
                assert retry["ok"], retry
                if ack["ok"]:
                    assert retry["id"] == ack["id"]
                texts_expected.add(f"t{n}")
        history = await Viewer(node.url, "reader").connect()
        try:
            missed = (await history.join(room, since=0))["missed"]
        finally:
            await history.close()
        said = [m["data"]["text"] for m in missed if m["type"] == "danmaku.message"]
        assert sorted(said) == sorted(texts_expected), said  # each once; the failed ones never

        ordered = set()
        for buyer, ack in zip(buyers[1:], bought, strict=True):
            if code(ack) != "unavailable":
                retry = await buyer.call(
                    "sale.buy", {"room": room, "sale": sale, "request_id": f"r-{buyer.user}"}
                )
                assert retry["ok"], retry
                ordered.add(buyer.user)
        status, orders = api(node, "GET", f"/api/rooms/{room}/sales/{sale}/orders")
        assert status == 200
        users = [o["user"] for o in orders["orders"]]
        assert sorted(users) == sorted({buyers[0].user, *ordered}), users  # one order each, no more

        # Redis gone (nothing listens): what needed it is answered unavailable and left no trace,
        # even once Redis is back with everything it had.
        late = Viewer(node.url, "late-buyer")
        await late.connect()
        await late.join(room)
        redis.stop()
        failed_buy = await late.call("sale.buy", {"room": room, "sale": sale, "request_id": "gone"})
        failed_send = await talker.call("danmaku.send", {"room": room, "text": "lost", "request_id": "gone"})
        redis.start()
        assert code(failed_buy) == "unavailable", failed_buy
        assert failed_send["ok"] or code(failed_send) == "unavailable", failed_send
        await late.close()
        status, orders = api(node, "GET", f"/api/rooms/{room}/sales/{sale}/orders")
        assert "late-buyer" not in [o["user"] for o in orders["orders"]]
        reader = await Viewer(node.url, "reader2").connect()
        try:
            missed = (await reader.join(room, since=0))["missed"]
        finally:
            await reader.close()
        # Sent while Redis was down: delivered to this node's members only, never in history.
        assert "lost" not in [m["data"]["text"] for m in missed if m["type"] == "danmaku.message"]
    finally:
        for viewer in (*buyers, *talkers):
            await viewer.close()
        node.stop()
        redis.stop()
    assert "internal_error" not in node.log()
