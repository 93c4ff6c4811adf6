"""Webhooks: the rooms' business events, signed, to the merchant's backend (`liveroom.events`).

On when the config has a `[plugins.webhooks]` section with a `url`. For each record kind that
yields a subscribed event type it runs an outbox (`liveroom.outbox.WebhookOutbox`, named
`webhooks.KIND`: its own cursor, receipts and dead letters), which POSTs
`{"id", "type", "room", "at", "data"}` with `Idempotency-Key: <id>` and
`X-Liveroom-Signature: t=<unix s>,v1=<HMAC-SHA256 of "<t>.<body>">`, in write order per kind,
retried with backoff, dead-lettered after `max_attempts`. Outboxes are woken when a plugin
emits an event and otherwise look for new records every `poll_interval_ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import CommandError, NotFound
from liveroom.events import EMITTED_KIND, KNOWN_TYPES, SOURCES, TYPE_NAME, EventSource, event_body, event_id
from liveroom.outbox import WebhookOutbox
from liveroom.plugin import CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import RoomId
from liveroom.record import Record

__all__ = ["WebhooksConfig", "WebhooksPlugin"]


@dataclass(frozen=True, slots=True)
class WebhooksConfig:  # [plugins.webhooks]
    url: str = ""  # where events are POSTed (required)
    secret: str = ""  # the HMAC-SHA256 key of X-Liveroom-Signature (empty: unsigned)
    events: tuple[str, ...] = ()  # the event types sent (empty: every type)
    timeout_s: float = 5.0
    max_backoff_s: float = 30.0
    max_attempts: int = 10  # then a dead letter; the events after it go on
    poll_interval_ms: float = 1000.0  # how often the built-ins' records are looked at


@dataclass(frozen=True, slots=True)
class RedeliverPayload:
    room: RoomId
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]


class WebhooksPlugin(Plugin):
    name = "webhooks"
    config_type = WebhooksConfig
    config: WebhooksConfig

    def __init__(self, config: WebhooksConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        if not config.url.startswith(("http://", "https://")):
            raise ValueError("url: an http(s) URL to POST events to")
        bad = [t for t in config.events if t not in KNOWN_TYPES and not TYPE_NAME.match(t)]
        if bad:
            raise ValueError(f"events: unknown event types {bad} (known: {', '.join(KNOWN_TYPES)})")
        wanted = frozenset(config.events) or None
        self._outboxes = [self._outbox(source) for source in SOURCES if _feeds(source, wanted)]
        host.events.subscribe(wanted, self._wake)
        self._poller: asyncio.Task[None] | None = None

    def _outbox(self, source: EventSource) -> WebhookOutbox:
        config, events = self.config, self.host.events
        return WebhookOutbox(
            self.host.store,
            source.kind,
            config.url,
            lambda record: event_body(source, record),
            config.timeout_s,
            max_backoff_s=config.max_backoff_s,
            secret=config.secret,
            max_attempts=config.max_attempts,
            name=f"webhooks.{source.kind}",
            key=lambda record: event_id(source, record),
            wanted=lambda record: _wants(events.wants, source, record),
        )

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec(
                "webhooks.redeliver", RedeliverPayload, self.redeliver, True, "Send a dead letter again"
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("webhooks/dead", self.dead_letters, "Events the webhook gave up on"),)

    async def start(self) -> None:
        for outbox in self._outboxes:
            await outbox.start()
        self._poller = asyncio.create_task(self._poll(), name="webhooks-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for outbox in self._outboxes:
            await outbox.stop()

    async def dead_letters(self, query: QueryContext) -> Any:
        dead = [letter for outbox in self._outboxes for letter in await outbox.dead_letters(query.room)]
        return {"dead": dead}

    async def redeliver(self, ctx: CommandContext, payload: RedeliverPayload) -> Mapping[str, Any]:
        for outbox in self._outboxes:
            if any(letter["key"] == payload.key for letter in await outbox.dead_letters(ctx.room)):
                if not await outbox.redeliver(payload.key):
                    raise CommandError("the webhook refused it again", "not_delivered")
                return {"key": payload.key, "delivered": True}
        raise NotFound(f"no dead letter {payload.key!r} in this room")

    def _wake(self) -> None:
        for outbox in self._outboxes:
            outbox.notify()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval_ms / 1000)
            self._wake()


def _feeds(source: EventSource, wanted: frozenset[str] | None) -> bool:
    """Whether a record kind yields any wanted event (emitted ones: any type may be wanted)."""
    return wanted is None or source.kind == EMITTED_KIND or bool(wanted & set(source.types))


def _wants(wants: Any, source: EventSource, record: Record) -> bool:
    event_type = source.type_of(record)
    return event_type is not None and bool(wants(event_type))
