"""The outbox: durable records handed to a merchant's system by webhook, at least once.

Records of one kind (e.g. `sale.order`) are already durable when they are acknowledged;
the outbox reads them back in write order and POSTs each to the configured URL with an
`Idempotency-Key` header (the record's key), so the receiver can drop repeats. A delivery
is done when the receiver answers 2xx; then an `outbox.delivered` record is written. Until
then it is retried with exponential backoff, in order (later records wait). After a
restart the outbox resumes with the first record that has no delivery receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from liveroom.record import Record
from liveroom.store import Store

__all__ = ["DELIVERED_KIND", "WebhookOutbox"]

log = logging.getLogger(__name__)
DELIVERED_KIND = "outbox.delivered"


class WebhookOutbox:
    def __init__(
        self,
        store: Store,
        kind: str,
        url: str,
        body: Callable[[Record], Mapping[str, Any]],
        timeout_s: float = 5.0,
        first_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._store, self._kind, self._url, self._body = store, kind, url, body
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._first_backoff_s, self._max_backoff_s = first_backoff_s, max_backoff_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """A new record may be waiting."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-{self._kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        cursor, delivered = 0, await self._receipts()
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            while True:
                self._wake.clear()
                page = await self._store.list_records(self._kind, None, cursor, 200)
                for record in page:
                    if record.key not in delivered:
                        await self._deliver(session, record)
                    cursor = record.position
                delivered.clear()  # receipts matter only for records before the cursor
                if not page:
                    await self._wake.wait()

    async def _receipts(self) -> set[str]:
        """Keys already delivered (read once at start, not once per record)."""
        keys: set[str] = set()
        after = 0
        while page := await self._store.list_records(DELIVERED_KIND, None, after, 1000):
            keys.update(record.key for record in page)
            after = page[-1].position
        return keys

    async def _deliver(self, session: aiohttp.ClientSession, record: Record) -> None:
        backoff = self._first_backoff_s
        payload = orjson.dumps(self._body(record))
        headers = {"Content-Type": "application/json", "Idempotency-Key": record.key}
        attempt = 0
        while True:
            attempt += 1
            headers["X-Liveroom-Attempt"] = str(attempt)
            try:
                async with session.post(self._url, data=payload, headers=headers) as response:
                    if 200 <= response.status < 300:
                        break
                    log.warning("outbox %s: %s answered %d", record.key, self._url, response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("outbox %s: %s failed: %s", record.key, self._url, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
        receipt = Record(DELIVERED_KIND, record.key, record.room, {"attempts": attempt}, record.created_ms)
        await self._store.put_record(receipt)
