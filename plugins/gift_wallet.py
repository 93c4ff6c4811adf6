"""The merchant's wallet, over HTTP: one debit, retried with the same idempotency key.

`debit(key, body)` POSTs the body as JSON with `Idempotency-Key: key` (and, with a secret,
`X-Liveroom-Signature` as the outbox signs its webhooks). An attempt with no definite
answer (a timeout, a 5xx, a dropped connection) is tried again with the same key, at most
`attempts` times: the wallet applies a key once, so a retry never debits twice. The result
says what is known: `ok` (debited), `insufficient` / `refused` (not debited), `unknown`
(some attempt may have debited: the caller must say so), `unreachable` (no attempt got a
connection: nothing was sent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import aiohttp
import orjson

from liveroom.outbox import signature

from .gift_rules import WalletAnswer, wallet_answer

__all__ = ["Debit", "Wallet"]

log = logging.getLogger(__name__)
Debit = WalletAnswer | Literal["unreachable"]


class Wallet:
    def __init__(
        self,
        url: str,
        timeout_s: float,
        attempts: int,
        backoff_ms: int,
        secret: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._url, self._secret = url, secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._attempts, self._backoff_s, self._sleep = max(1, attempts), backoff_ms / 1000.0, sleep
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def debit(self, key: str, body: Mapping[str, Any]) -> Debit:
        sent = False  # whether any attempt may have reached the wallet
        for attempt in range(1, self._attempts + 1):
            try:
                answer = await self._attempt(key, body, attempt)
            except aiohttp.ClientConnectorError as exc:  # no connection: nothing was sent
                log.warning("wallet: attempt %d for %s could not connect: %s", attempt, key, exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                sent = True
                log.warning("wallet: attempt %d for %s has no answer: %r", attempt, key, exc)
            else:
                if answer != "unknown":
                    return answer
                sent = True
            if attempt < self._attempts:
                await self._sleep(self._backoff_s * attempt)
        return "unknown" if sent else "unreachable"

    async def _attempt(self, key: str, body: Mapping[str, Any], attempt: int) -> WalletAnswer:
        if self._session is None:
            raise aiohttp.ClientConnectionError("the wallet client is not started")
        payload = orjson.dumps(body)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Liveroom-Attempt": str(attempt),
        }
        if self._secret:
            headers["X-Liveroom-Signature"] = signature(self._secret, payload, int(time.time()))
        async with self._session.post(self._url, data=payload, headers=headers) as response:
            raw = await response.read()
            try:
                parsed = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                parsed = None
            return wallet_answer(response.status, parsed if isinstance(parsed, dict) else None)
