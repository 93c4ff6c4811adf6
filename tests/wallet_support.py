"""A merchant's wallet for the gift tests: a real aiohttp server on a free port.

It debits each Idempotency-Key once (a repeat answers what the first did), keeps balances
per user, and can be told to hold its answer to the first call of a key (`delay_first_s`:
the debit is made at once, the answer is late, as a slow wallet's would be)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from http_support import post_endpoint


@dataclass
class WalletServer:
    balances: dict[str, int] = field(default_factory=dict)
    default_balance: int = 1_000_000
    delay_first_s: float = 0.0
    down: bool = False  # answer 503 to everything
    calls: list[tuple[str, int]] = field(default_factory=list)  # (key, attempt)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # key -> answer
    url: str = ""
    _served: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def debits(self, key: str | None = None) -> int:
        """How many debits were made (for one key: 0 or 1)."""
        return sum(1 for k, (status, _) in self.answers.items() if status == 200 and key in (None, k))

    async def _handle(self, request: web.Request) -> web.Response:
        key = request.headers["Idempotency-Key"]
        attempt = int(request.headers.get("X-Liveroom-Attempt", "1"))
        first = key not in self.answers and not any(k == key for k, _ in self.calls)
        self.calls.append((key, attempt))
        if self.down:
            return web.json_response({"status": "unavailable"}, status=503)
        body = await request.json()
        if key not in self.answers:  # the debit, once per key
            user, amount = str(body["user"]), int(body["amount_minor"])
            balance = self.balances.get(user, self.default_balance)
            if balance < amount:
                self.answers[key] = (402, {"status": "insufficient_funds", "balance_minor": balance})
            else:
                self.balances[user] = balance - amount
                self.answers[key] = (200, {"status": "ok", "balance_minor": balance - amount})
        if first and self.delay_first_s:
            await asyncio.sleep(self.delay_first_s)
        status, answer = self.answers[key]
        return web.json_response(answer, status=status)

    async def start(self) -> WalletServer:
        self.url = await self._served.enter_async_context(post_endpoint("/debit", self._handle))
        return self

    async def stop(self) -> None:
        await self._served.aclose()


_THREADED: WalletServer | None = None


def wallet_in_thread() -> WalletServer:
    """One wallet for the whole test process, served by a thread's own event loop (for tests
    that build their harness outside an event loop, as the conformance suite does)."""
    global _THREADED
    if _THREADED is None:
        import threading

        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="wallet", daemon=True).start()
        _THREADED = asyncio.run_coroutine_threadsafe(WalletServer().start(), loop).result(30)
    return _THREADED
