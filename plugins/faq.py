"""The FAQ bot (智能客服): the host keeps question -> answer pairs per room; a viewer's
danmaku that matches one is answered in the room by the bot, through the message hook.

Entries are durable changes (`faq.change` records, replayed when the room is loaded), set
and removed by staff (`faq.set`, `faq.remove`; over HTTP too). The hook (priority 10:
after moderation hooks, so it answers what will be shown) matches the normalised text with
rapidfuzz (`faq_rules`), answers as `bot_id` / `bot_name` unless the same entry answered
within `repeat_interval_s`, and counts questions nothing matched: one asked
`surface_after` times within `unanswered_window_s` is sent to the staff present
(`faq.unanswered`, "asked 12 times in 5 min"). Those counts are the room's memory on the
node that holds it (not durable: a restart starts them again).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import CommandError, NotFound
from liveroom.plugin import (
    Answer,
    Bot,
    CommandContext,
    CommandSpec,
    Message,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
    Verdict,
)
from liveroom.protocol import RequestId, RoomId, RoomPayload
from liveroom.record import Record, derived_id
from liveroom.store import records_of

from .faq_rules import FaqIndex, Unanswered, is_question

__all__ = ["FaqConfig", "FaqPlugin"]

CHANGE_KIND = "faq.change"
Question = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
EntryId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


@dataclass(frozen=True, slots=True)
class FaqConfig:  # [plugins.faq]
    threshold: float = 70.0  # rapidfuzz token_sort_ratio (0..100) of the normalised texts
    repeat_interval_s: float = 60.0  # an entry answers at most once per interval per room
    bot_id: str = "bot:faq"
    bot_name: str = "FAQ"
    max_entries: int = 100  # per room
    answer_max_length: int = 500  # at most [plugins.danmaku] answer_max_length
    answer_staff: bool = False  # staff messages are not answered unless true
    unanswered_window_s: float = 300.0
    surface_after: int = 3  # times a question is asked in the window before staff hear of it
    surface_interval_s: float = 30.0  # at most once per interval per question, when it grew
    max_unanswered: int = 200  # distinct unanswered questions remembered per room


@dataclass(frozen=True, slots=True)
class SetPayload:
    room: RoomId
    questions: Annotated[list[Question], msgspec.Meta(min_length=1, max_length=10)]
    answer: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    id: EntryId | None = None  # an existing entry's: replaced
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class RemovePayload:
    room: RoomId
    id: EntryId
    request_id: RequestId | None = None


@dataclass(slots=True)
class RoomFaq:
    index: FaqIndex
    unanswered: Unanswered


class FaqPlugin(Plugin):
    name = "faq"
    config_type = FaqConfig
    item_types = ("faq.entries", "faq.unanswered")
    message_priority = 10
    config: FaqConfig

    def __init__(self, config: FaqConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        if not 0 < config.threshold <= 100:
            raise ValueError(f"threshold is a score in (0, 100], not {config.threshold}")
        self.bot = Bot(config.bot_id, config.bot_name)
        self._rooms: dict[str, RoomFaq] = {}

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("faq.set", SetPayload, self.set, True, "Add or replace a question -> answer pair"),
            CommandSpec("faq.remove", RemovePayload, self.remove, True, "Remove a pair"),
            CommandSpec(
                "faq.list", RoomPayload, self.listing, True, "The pairs and the unanswered questions"
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (
            QuerySpec("faq", self.entries_query, "The room's question -> answer pairs"),
            QuerySpec("faq/unanswered", self.unanswered_query, "Questions asked often that nothing answered"),
        )

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        config = self.config
        state = RoomFaq(
            FaqIndex(config.threshold, config.repeat_interval_s * 1000),
            Unanswered(
                config.unanswered_window_s * 1000,
                config.threshold,
                config.surface_after,
                config.surface_interval_s * 1000,
                config.max_unanswered,
            ),
        )
        async for record in records_of(ctx.store, CHANGE_KIND, ctx.room):
            state.index.apply(record.data)
        self._rooms[ctx.room] = state

    def release_room(self, room: str) -> None:
        self._rooms.pop(room, None)

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        if not ctx.caller.is_staff:
            return None
        return self._listing(ctx.room, ctx.now_ms)

    # -- the message hook ---------------------------------------------------------------

    async def on_message(self, ctx: RoomContext, message: Message) -> Verdict:
        if message.user.is_staff and not self.config.answer_staff:
            return None
        state = self._rooms.get(ctx.room)
        if state is None:
            return None
        found = state.index.match(message.text)
        if found is not None:  # answered, unless the same entry did within the interval
            entry = found[0]
            return Answer(entry.answer, self.bot) if state.index.due(entry, message.now_ms) else None
        if is_question(message.text):
            surfaced = state.unanswered.add(message.text, message.now_ms)
            if surfaced is not None:
                self._tell_staff(ctx, "faq.unanswered", surfaced)
        return None

    # -- commands -----------------------------------------------------------------------

    async def set(self, ctx: CommandContext, payload: SetPayload) -> Mapping[str, Any]:
        state = self._rooms[ctx.room]
        if len(payload.answer) > self.config.answer_max_length:
            raise CommandError(f"an answer is at most {self.config.answer_max_length} characters", "too_long")
        entry_id = payload.id or self._key(ctx, payload.request_id, "e")
        if entry_id not in state.index.entries and len(state.index.entries) >= self.config.max_entries:
            raise CommandError(f"at most {self.config.max_entries} entries in a room", "faq_full")
        change = {"op": "set", "id": entry_id, "questions": list(payload.questions), "answer": payload.answer}
        stored = await self._write(ctx, change, payload.request_id)
        state.unanswered.forget(stored["questions"])
        self._changed(ctx)
        return {"id": stored["id"], "entry": state.index.entries[stored["id"]].public()}

    async def remove(self, ctx: CommandContext, payload: RemovePayload) -> Mapping[str, Any]:
        if payload.id not in self._rooms[ctx.room].index.entries:
            raise NotFound(f"no entry {payload.id!r}")
        await self._write(ctx, {"op": "remove", "id": payload.id}, payload.request_id)
        self._changed(ctx)
        return {"id": payload.id}

    async def listing(self, ctx: CommandContext, payload: RoomPayload) -> Mapping[str, Any]:
        return self._listing(ctx.room, ctx.now_ms)

    async def entries_query(self, query: QueryContext) -> Any:
        return {"entries": self._rooms[query.room].index.listed()}

    async def unanswered_query(self, query: QueryContext) -> Any:
        return {"unanswered": self._rooms[query.room].unanswered.top(query.now_ms)}

    # -- helpers ------------------------------------------------------------------------

    async def _write(
        self, ctx: CommandContext, change: dict[str, Any], request: str | None
    ) -> Mapping[str, Any]:
        """Write the change first, then apply it (a retry with the same request_id: the first)."""
        record = Record(CHANGE_KIND, self._key(ctx, request, "c"), ctx.room, change, int(ctx.now_ms))
        stored, _ = await ctx.store.put_record(record)
        self._rooms[ctx.room].index.apply(stored.data)
        return stored.data

    def _key(self, ctx: CommandContext, request: str | None, kind: str) -> str:
        if request is None:
            return secrets.token_hex(8)
        return derived_id(kind, ctx.room, ctx.caller.user_id, request)

    def _listing(self, room: str, now_ms: float) -> dict[str, Any]:
        state = self._rooms[room]
        return {"entries": state.index.listed(), "unanswered": state.unanswered.top(now_ms)}

    def _changed(self, ctx: CommandContext) -> None:
        self._tell_staff(ctx, "faq.entries", {"entries": self._rooms[ctx.room].index.listed()})

    def _tell_staff(self, ctx: RoomContext, item_type: str, data: Mapping[str, Any]) -> None:
        for member in ctx.members():
            if member.is_staff:
                ctx.send_to(member.user_id, item_type, data)
