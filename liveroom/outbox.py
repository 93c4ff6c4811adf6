"""The outbox: durable records handed to a merchant's system by webhook, each until it lands.

Records of one kind (e.g. `sale.order`) are already durable when they are acknowledged; the
outbox reads them back in write order and POSTs each to the configured URL:

* headers: `Idempotency-Key` (the record's key: the receiver drops repeats),
  `X-Liveroom-Attempt`, and, with a secret, `X-Liveroom-Signature: t=<unix s>,v1=<hex>`
  where `v1` is HMAC-SHA256(secret, "<t>.<body>") (docs/protocol.md says how to verify it);
* done when the receiver answers 2xx: a receipt (`outbox.delivered`) is written, then the
  outbox's cursor (a counter: the position of the last record done) moves past it;
* a record refused or unreachable is retried with exponential backoff, at most
  `max_attempts` times; then it becomes a dead letter (`outbox.dead`, with the last error)
  and the records after it go on. Dead letters are listed and sent again on demand
  (`redeliver`); one that lands gets its receipt.

After a restart the outbox resumes at its durable cursor, and a record whose receipt
exists (delivered just before the crash, the cursor not yet moved) is not sent again. One
deliverer runs per outbox: on a cluster, the node holding the outbox's lease in the store
(`outbox:<name>`, renewed every third of `lease_ms` while it delivers, given up on a clean
stop); the others look every third of `lease_ms` and take over once it runs out. Records
written through other nodes wake no one here, so the holder also looks that often.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from liveroom.record import Record
from liveroom.store import Store, records_of

Body = Callable[[Record], Mapping[str, Any]]

__all__ = ["DEAD_KIND", "DELIVERED_KIND", "WebhookOutbox", "WebhookSettings", "outbox_from", "signature"]

log = logging.getLogger(__name__)
DELIVERED_KIND = "outbox.delivered"
DEAD_KIND = "outbox.dead"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Liveroom-Signature` value of a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The `webhook_*` keys of a plugin section whose records go out through an outbox (its
    config dataclass derives from this one, so every such section has the same keys and defaults)."""

    webhook_url: str = ""  # records POSTed here (with an Idempotency-Key); empty: no webhook
    webhook_timeout_s: float = 5.0
    webhook_max_backoff_s: float = 30.0
    # HMAC-SHA256 key of the X-Liveroom-Signature header (empty: unsigned; docs/protocol.md).
    webhook_secret: str = ""
    # A record still refused after this many attempts becomes a dead letter, and the
    # records after it go on.
    webhook_max_attempts: int = 10


def outbox_from(settings: WebhookSettings, store: Store, kind: str, body: Body) -> WebhookOutbox | None:
    """The outbox of one record kind as a plugin's `webhook_*` keys set it; None without a URL."""
    if not settings.webhook_url:
        return None
    return WebhookOutbox(
        store,
        kind,
        settings.webhook_url,
        body,
        settings.webhook_timeout_s,
        max_backoff_s=settings.webhook_max_backoff_s,
        secret=settings.webhook_secret,
        max_attempts=settings.webhook_max_attempts,
    )


class WebhookOutbox:
    def __init__(
        self,
        store: Store,
        kind: str,
        url: str,
        body: Body,
        timeout_s: float = 5.0,
        first_backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        *,
        secret: str = "",
        max_attempts: int = 10,
        name: str = "",
        key: Callable[[Record], str] | None = None,
        wanted: Callable[[Record], bool] | None = None,
        lease_ms: int = 3000,
    ) -> None:
        """`name`: this outbox's own (its cursor, receipts and dead letters), when several read
        one kind (default: the kind); `key`: a record's Idempotency-Key (default: its key);
        `wanted`: records it skips (no POST, the cursor moves on) answer False."""
        self._store, self._kind, self._url, self._body = store, kind, url, body
        self._name = name or kind
        self._key: Callable[[Record], str] = key or (lambda record: record.key)
        self._wanted = wanted
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._first_backoff_s, self._max_backoff_s = first_backoff_s, max_backoff_s
        self._secret, self._max_attempts = secret, max(1, max_attempts)
        self._cursor_key = f"outbox:{self._name}:cursor"
        self._lease, self._holder = f"outbox:{self._name}", secrets.token_hex(8)
        self._lease_ms, self._look_s = lease_ms, lease_ms / 3000.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def notify(self) -> None:
        """A new record may be waiting."""
        self._wake.set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self._run(), name=f"outbox-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            with contextlib.suppress(Exception):  # unreachable: the lease runs out by itself
                await self._store.release_lease(self._lease, self._holder)
        if self._session is not None:
            await self._session.close()

    # -- dead letters -------------------------------------------------------------------

    async def dead_letters(self, room: str | None) -> list[dict[str, Any]]:
        """Records given up on and not delivered since (the room's, or every room's)."""
        found = []
        async for dead in records_of(self._store, DEAD_KIND, room):
            if (
                dead.data["kind"] == self._name
                and await self._store.get_record(DELIVERED_KIND, dead.key) is None
            ):
                found.append({"key": dead.data.get("record", dead.key), **dead.data, "at": dead.created_ms})
        return found

    async def redeliver(self, key: str) -> bool:
        """Send a dead letter once more, now; True if it landed (a receipt is written)."""
        record = await self._store.get_record(self._kind, key)
        if record is None or await self._store.get_record(DEAD_KIND, self._own(record)) is None:
            return False
        error = await self._attempt(record, 1)
        if error is not None:
            return False
        await self._receipt(record, 1)
        return True

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if await self._store.hold_lease(self._lease, self._holder, self._lease_ms):
                    await self._drain_holding()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store unreachable: try again shortly
                log.warning("outbox %s: paused, the store failed", self._kind, exc_info=True)
                await asyncio.sleep(self._first_backoff_s)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._look_s):
                    await self._wake.wait()

    async def _drain_holding(self) -> None:
        """Drain while renewing the lease; a lease lost meanwhile stops the drain (the record
        under way may reach the receiver twice: its Idempotency-Key tells it so)."""
        drain = asyncio.ensure_future(self._drain())
        try:
            while not drain.done():
                await asyncio.wait({drain}, timeout=self._look_s)
                if not drain.done() and not await self._store.hold_lease(
                    self._lease, self._holder, self._lease_ms
                ):
                    log.warning("outbox %s: lost its lease to another node; it delivers now", self._name)
                    break
        finally:
            if not drain.done():
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
        if not drain.cancelled():
            drain.result()

    async def _drain(self) -> None:
        """Deliver everything after the cursor, in order."""
        cursor = await self._store.get_counter(self._cursor_key)
        while True:
            self._wake.clear()
            page = await self._store.list_records(self._kind, None, cursor, 200)
            if not page:
                return
            for record in page:
                skip = self._wanted is not None and not self._wanted(record)
                if not skip and await self._store.get_record(DELIVERED_KIND, self._own(record)) is None:
                    await self._deliver(record)
                cursor = record.position
                await self._store.set_counter(self._cursor_key, cursor)

    async def _deliver(self, record: Record) -> None:
        backoff, error = self._first_backoff_s, ""
        for attempt in range(1, self._max_attempts + 1):
            failure = await self._attempt(record, attempt)
            if failure is None:
                await self._receipt(record, attempt)
                return
            error = failure
            if attempt < self._max_attempts:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        log.warning("outbox %s: %s given up after %d attempts (%s)", self._name, record.key, attempt, error)
        dead = {"kind": self._name, "attempts": attempt, "error": error, "record": record.key}
        await self._store.put_record(
            Record(DEAD_KIND, self._own(record), record.room, dead, record.created_ms)
        )

    async def _attempt(self, record: Record, attempt: int) -> str | None:
        """One POST; None when it landed, else why not."""
        assert self._session is not None
        payload = orjson.dumps(self._body(record))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": self._key(record),
            "X-Liveroom-Attempt": str(attempt),
        }
        if self._secret:
            headers["X-Liveroom-Signature"] = signature(self._secret, payload, int(time.time()))
        try:
            async with self._session.post(self._url, data=payload, headers=headers) as response:
                if 200 <= response.status < 300:
                    return None
                return f"answered {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"failed: {exc!r}"

    async def _receipt(self, record: Record, attempts: int) -> None:
        receipt = Record(
            DELIVERED_KIND, self._own(record), record.room, {"attempts": attempts}, record.created_ms
        )
        await self._store.put_record(receipt)

    def _own(self, record: Record) -> str:
        """The key of this outbox's receipt or dead letter for a record (the record's own key
        for the outbox named after its kind, as before: receipts already written stay valid)."""
        return record.key if self._name == self._kind else f"{self._name}/{record.key}"
