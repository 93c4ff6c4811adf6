"""Flash sales: the clock opens and closes, stock is exact (on a node without sockets, NodeHarness);
through real clients, start times, the HTTP API, orders through a SIGKILL and the webhook."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from aiohttp import web
from http_support import post_endpoint
from plugin_support import api, code, joined, room_name, server_ms
from support import ServerProcess, Viewer

from liveroom.config import Config, LimitsConfig
from liveroom.testing import NodeHarness


def sale_body(
    room: str, starts_at: float, stock: int = 3, limit: int = 2, duration_s: int = 2
) -> dict[str, Any]:
    return {
        "room": room,
        "sku": "sku-1",
        "title": "Tea set",
        "price": 19.9,
        "stock": stock,
        "per_user_limit": limit,
        "starts_at": int(starts_at),
        "duration_s": duration_s,
    }


FAST = Config(limits=LimitsConfig(commands_per_s=1e6, commands_burst=1_000_000))


async def test_a_flash_sale_from_schedule_to_end() -> None:
    async with NodeHarness(FAST) as h:
        host, ann, bob = await h.connect("host", role="host"), await h.connect("ann"), await h.connect("bob")
        for client in (host, ann, bob):
            await client.join("r")
        now = h.clock.now_ms()
        assert code(await ann.command("sale.schedule", sale_body("r", now + 700))) == "forbidden"
        assert code(await host.command("sale.schedule", {**sale_body("r", now), "stock": 0})) == "bad_request"
        sale = (await host.command("sale.schedule", sale_body("r", now + 700)))["sale"]
        [scheduled] = ann.of_type("sale.scheduled")
        assert scheduled["data"]["id"] == sale and scheduled["data"]["starts_at"] == int(now + 700)
        assert isinstance(scheduled["data"]["server_time"], float)

        buy = {"room": "r", "sale": sale, "qty": 1, "request_id": "a1"}
        assert code(await ann.command("sale.buy", buy)) == "not_started"
        state = (await bob.join("r"))["state"]["sale"]["sales"]
        assert state[0]["phase"] == "scheduled" and state[0]["remaining"] == 3
        await h.advance(0.7)
        assert ann.of_type("sale.started")

        first = await ann.command("sale.buy", buy)
        assert first["ok"] and first["order"]["sale"] == sale and first["order"]["qty"] == 1
        assert first["order"]["user"] == ann.user
        assert (await ann.command("sale.buy", buy))["order"] == first["order"]  # same request_id
        assert code(await ann.command("sale.buy", {**buy, "request_id": "a2", "qty": 2})) == "limit_reached"
        assert code(await ann.command("sale.buy", {**buy, "request_id": "a3"})) == "ok"
        assert code(await ann.command("sale.buy", {**buy, "request_id": "a4"})) == "limit_reached"
        assert code(await bob.command("sale.buy", {**buy, "request_id": "b1", "qty": 2})) == "sold_out"
        assert code(await bob.command("sale.buy", {**buy, "request_id": "b2"})) == "ok"
        assert code(await bob.command("sale.buy", {**buy, "request_id": "b3"})) == "sold_out"
        assert code(await bob.command("sale.buy", {**buy, "sale": "s-nope"})) == "not_found"
        await h.advance(0.6)
        assert bob.of_type("sale.sold_out")
        stock = [i for i in bob.of_type("sale.stock") if i["data"]["remaining"] == 0]
        assert stock and all(i["seq"] is not None for i in stock)
        await h.advance(1.5)
        [ended] = bob.of_type("sale.ended")
        assert ended["data"] == {"sale": sale, "sold": 3, "remaining": 0}
        assert code(await bob.command("sale.buy", {**buy, "request_id": "b9"})) == "ended"
        assert (await ann.command("sale.buy", buy))["order"] == first["order"]  # retries still answer

        body = await h.node.interactions.query("r", host.identity, "sales/{sale}/orders", {"sale": sale})
        assert body["orders"][0]["id"] == first["order"]["id"]
        assert sorted(o["user"] for o in body["orders"]) == sorted([ann.user, ann.user, bob.user])
        stamps = [i["ts"] for i in ann.items if i["type"].startswith("sale.")]
        assert stamps == sorted(stamps)


async def test_a_start_computed_from_server_time_is_accepted(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    """`time` answers a float: what a client computes from it (`server_time + 3000`) is a start."""
    room = room_name()
    host = await joined(server, viewers, "host-" + room, room, "host")
    starts_at = await server_ms(host) + 3000.6
    assert not float(starts_at).is_integer()
    ack = await host.call("sale.schedule", {**sale_body(room, 0), "starts_at": starts_at})
    assert ack["ok"], ack
    [scheduled] = await host.wait_for(lambda i: i["type"] == "sale.scheduled")
    assert scheduled["data"]["starts_at"] == round(starts_at)


def test_orders_api_needs_a_host_or_admin_token(server: ServerProcess) -> None:
    path = f"/api/rooms/{room_name()}/sales/s-x/orders"
    status, body = api(server, "GET", path, bearer="")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert api(server, "GET", path, role="viewer")[0] == 403
    assert api(server, "GET", path, role="admin")[1]["error"]["code"] == "not_found"


def test_sales_are_scheduled_over_http(server: ServerProcess) -> None:
    room = room_name()
    status, ack = api(server, "POST", f"/api/rooms/{room}/commands/sale.schedule", sale_body(room, 0))
    assert status == 200 and ack["ok"] and ack["sale"].startswith("s-")
    status, body = api(server, "POST", f"/api/rooms/{room}/commands/sale.schedule", {"stock": -1})
    assert status == 400 and body["error"]["code"] == "bad_request"
    status, body = api(server, "POST", f"/api/rooms/{room}/commands/sale.buy", {})
    assert status == 404
    status, doc = api(server, "GET", "/api/openapi.json")
    assert status == 200 and "/api/rooms/{room}/commands/sale.schedule" in doc["paths"]
    assert "/api/rooms/{room}/sales/{sale}/orders" in doc["paths"]
    assert "price" in doc["components"]["schemas"]["SchedulePayload"]["properties"]


async def test_orders_survive_sigkill_and_stock_is_rebuilt(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    room = room_name()
    viewers: list[Viewer] = []
    try:
        host = await joined(server, viewers, "host", room, "host")
        sale = (await host.call("sale.schedule", sale_body(room, 0, stock=5, limit=1, duration_s=60)))["sale"]
        buyers = [await joined(server, viewers, f"u{n}", room) for n in range(8)]
        acks = await asyncio.gather(
            *(b.call("sale.buy", {"room": room, "sale": sale, "qty": 1, "request_id": "x"}) for b in buyers)
        )
        acked = {a["order"]["id"] for a in acks if a["ok"]}
        assert len(acked) == 5 and {code(a) for a in acks} == {"ok", "sold_out"}
        server.stop(signal.SIGKILL)
        for viewer in viewers:
            await viewer.close()
        server.start()
        orders = api(server, "GET", f"/api/rooms/{room}/sales/{sale}/orders")[1]["orders"]
        assert {o["id"] for o in orders} == acked
        again = await joined(server, viewers, "u0", room)
        retry = await again.call("sale.buy", {"room": room, "sale": sale, "qty": 1, "request_id": "x"})
        late = await joined(server, viewers, "late", room)
        assert (
            code(await late.call("sale.buy", {"room": room, "sale": sale, "qty": 1, "request_id": "y"}))
            == "sold_out"
        )
        if acks[0]["ok"]:
            assert retry["order"] == acks[0]["order"]
        assert (await late.call("join", {"room": room}))["state"]["sale"]["sales"][0]["remaining"] == 0
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()


async def webhook_receiver(calls: list[dict[str, Any]]) -> AsyncGenerator[str, None]:
    async def receive(request: web.Request) -> web.Response:
        calls.append({"key": request.headers["Idempotency-Key"], "body": json.loads(await request.read())})
        return web.Response(status=500 if len(calls) == 1 else 200)

    async with post_endpoint("/orders", receive) as url:
        yield url


async def test_orders_reach_the_merchant_webhook_with_retries(tmp_path: Path) -> None:
    calls: list[dict[str, Any]] = []
    receiver = webhook_receiver(calls)
    url = await receiver.__anext__()
    server = ServerProcess(tmp_path, env={"LIVEROOM_PLUGINS_SALE_WEBHOOK_URL": url}).start()
    viewers: list[Viewer] = []
    try:
        room = room_name()
        host = await joined(server, viewers, "host", room, "host")
        sale = (await host.call("sale.schedule", sale_body(room, 0, duration_s=60)))["sale"]
        buyer = await joined(server, viewers, "ann", room)
        order = (await buyer.call("sale.buy", {"room": room, "sale": sale, "qty": 1, "request_id": "r"}))[
            "order"
        ]
        for _ in range(100):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.05)
        assert len(calls) == 2 and calls[0]["key"] == calls[1]["key"]  # retried, same key
        assert calls[1]["body"] == {"type": "sale.order", "order": order}
    finally:
        for viewer in viewers:
            await viewer.close()
        server.stop()
        await receiver.aclose()
