"""The merchant's order webhook for the outbox tests: a real aiohttp server on a free port."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from http_support import post_endpoint

from liveroom.outbox import signature

__all__ = ["OrderReceiver", "order_receiver"]


@dataclass
class OrderReceiver:
    """Checks each signature (`bad_signatures` counts the wrong ones); counts each order that
    lands by its Idempotency-Key (`keys`) and its buyer (`users`); refuses, with a 422 (the
    outbox tries again, then gives up), an order whose key or buyer is in `refuse`, counting
    the refusals by buyer (`refused`)."""

    secret: str
    url: str = ""
    keys: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)
    refuse: set[str] = field(default_factory=set)
    refused: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0

    async def receive(self, request: web.Request) -> web.Response:
        body, key = await request.read(), request.headers["Idempotency-Key"]
        header = request.headers["X-Liveroom-Signature"]
        stamp = int(header.split(",")[0].removeprefix("t="))
        if header != signature(self.secret, body, stamp):
            self.bad_signatures += 1
        user = str(json.loads(body).get("order", {}).get("user", ""))  # records of no order: none
        if key in self.refuse or (user and user in self.refuse):
            self.refused[user] += 1
            return web.json_response({"error": "no such customer"}, status=422)
        self.keys[key] += 1
        if user:
            self.users[user] += 1
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def order_receiver(secret: str) -> AsyncIterator[OrderReceiver]:
    """An `OrderReceiver` for orders signed with `secret`, at `/orders` on a free port."""
    made = OrderReceiver(secret)
    async with post_endpoint("/orders", made.receive) as url:
        made.url = url
        yield made
