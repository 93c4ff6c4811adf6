"""Business events for a merchant's backend: what happened in the rooms, as signed webhooks.

Every event is read back from a durable record, so none is lost between "it happened" and
"it was sent" (the outbox pattern, `liveroom.outbox`). Most are the records the built-ins
write anyway; the others (a stream starting, a third-party plugin's own events) are written
by `EventLog.emit` as `webhook.event` records, and only when some subscription wants them.

| event type | from the records |
|---|---|
| `sale.order` | `sale.order`: an order taken |
| `coupon.granted` / `coupon.claimed` | `coupon.grant` / `coupon.claim` |
| `poll.closed` | `poll.result`: the counts, the winners, who closed it |
| `moderation.action` | `danmaku.moderation` (mute, ban, pin...), `danmaku.review` (approve, drop) |
| `luckybag.won` | `luckybag.result`: a lucky bag's winners, with its seed |
| `stream.started` / `stream.stopped` | emitted by the media module (the host slot) |
| any other `plugin.event` | emitted by a plugin: `await self.host.events.emit(...)` |

One body for all: `{"id", "type", "room", "at", "data"}`; `id` is also the
`Idempotency-Key` header, stable per event. The `webhooks` plugin (`plugins/webhooks.py`)
sends them, signed, to `[plugins.webhooks] url`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from liveroom.record import Record
from liveroom.store import Store

__all__ = [
    "EMITTED_KIND",
    "KNOWN_TYPES",
    "SOURCES",
    "TYPE_NAME",
    "EventLog",
    "EventSource",
    "event_body",
    "event_id",
    "stream_event",
]

EMITTED_KIND = "webhook.event"
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_.]{0,63}$")


@dataclass(frozen=True, slots=True)
class EventSource:
    """Record kind -> event: the event's type (None: not an event) and data, from a record."""

    kind: str
    types: tuple[str, ...]  # the event types this kind yields
    type_of: Callable[[Record], str | None]
    data_of: Callable[[Record], Mapping[str, Any]]


def _same(record: Record) -> Mapping[str, Any]:
    return record.data


def _grant(record: Record) -> Mapping[str, Any]:
    return {key: record.data.get(key) for key in ("id", "rule", "title", "user")}


def _order(record: Record) -> Mapping[str, Any]:
    return {key: record.data.get(key) for key in ("id", "sale", "qty", "user")}


def _claim(record: Record) -> Mapping[str, Any]:
    return {"grant": record.data.get("grant"), "key": record.key}


def _lucky(record: Record) -> Mapping[str, Any]:
    keys = ("bag", "prize", "winners", "entrants", "seed", "seed_hash", "algorithm", "drawn_at")
    return {key: record.data.get(key) for key in keys}


def _review(record: Record) -> Mapping[str, Any]:
    data = record.data
    return {"action": f"review.{data.get('decision')}", "by": data.get("by"), "id": data.get("id")}


SOURCES: tuple[EventSource, ...] = (
    EventSource("sale.order", ("sale.order",), lambda r: "sale.order", _order),
    EventSource("coupon.grant", ("coupon.granted",), lambda r: "coupon.granted", _grant),
    EventSource("coupon.claim", ("coupon.claimed",), lambda r: "coupon.claimed", _claim),
    EventSource("poll.result", ("poll.closed",), lambda r: "poll.closed", _same),
    EventSource("danmaku.moderation", ("moderation.action",), lambda r: "moderation.action", _same),
    EventSource("danmaku.review", ("moderation.action",), lambda r: "moderation.action", _review),
    EventSource("luckybag.result", ("luckybag.won",), lambda r: "luckybag.won", _lucky),
    EventSource(
        EMITTED_KIND,
        ("stream.started", "stream.stopped"),
        lambda r: str(r.data.get("type")),
        lambda r: r.data.get("data", {}),
    ),
)
KNOWN_TYPES = tuple(dict.fromkeys(t for source in SOURCES for t in source.types))


def event_body(source: EventSource, record: Record) -> dict[str, Any]:
    """The one webhook body: `{"id", "type", "room", "at", "data"}`."""
    return {
        "id": event_id(source, record),
        "type": source.type_of(record),
        "room": record.room,
        "at": record.created_ms,
        "data": dict(source.data_of(record)),
    }


def event_id(source: EventSource, record: Record) -> str:
    """Stable per event (the Idempotency-Key): its type and its record's key. (A claim's record
    has its grant's key: the type keeps the two events apart.)"""
    if source.kind == EMITTED_KIND:
        return record.key
    return f"{source.type_of(record)}:{record.key}"


class EventLog:
    """Shared by every plugin (`host.events`): which event types are wanted, and emitting one.

    Nothing is wanted until the `webhooks` plugin subscribes (`subscribe`), so without a
    webhook an `emit` writes nothing."""

    def __init__(self) -> None:
        self._wanted: frozenset[str] = frozenset()
        self._everything = False
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, types: frozenset[str] | None, written: Callable[[], None]) -> None:
        """`types`: the wanted event types (None: every type). `written` is called after an emit."""
        self._everything = types is None
        self._wanted = frozenset() if types is None else types
        self._listeners.append(written)

    def wants(self, event_type: str) -> bool:
        return self._everything or event_type in self._wanted

    async def emit(
        self, store: Store, room: str, event_type: str, data: Mapping[str, Any], key: str, now_ms: float
    ) -> bool:
        """Write an event for the backend, once per `key` (a repeat writes nothing more); False
        when no subscription wants the type. Durable when it returns (raises as the store does)."""
        if not TYPE_NAME.match(event_type):
            raise ValueError(f"an event type is 'plugin.event', not {event_type!r}")
        if not self.wants(event_type):
            return False
        record = Record(
            EMITTED_KIND, f"{event_type}:{key}", room, {"type": event_type, "data": dict(data)}, int(now_ms)
        )
        await store.put_record(record)
        for written in self._listeners:
            written()
        return True


async def stream_event(
    events: EventLog, store: Store, room: str, data: Mapping[str, Any], now_ms: float
) -> None:
    """A `media.publisher` item of the host slot as `stream.started` (connected) or
    `stream.stopped` (ended, lost): `{"session", "user", "reason"}`, once per session."""
    state = data.get("state")
    if data.get("slot") != "host" or state not in ("connected", "ended", "lost"):
        return
    event_type = "stream.started" if state == "connected" else "stream.stopped"
    body = {"session": data.get("session"), "user": data.get("user")}
    if state != "connected":
        body["reason"] = state
        if "on_air" in data:  # another path of the host keeps the program going: not the show's end
            body["on_air"] = data["on_air"]
    await events.emit(store, room, event_type, body, str(data.get("session")), now_ms)
