"""Danmaku (bullet comments) with moderation.

Sending passes a chain: length, the per-user token bucket, ban / mute / slow mode, then
the banned-word filter. Moderators and hosts mute, unmute, ban and unban (10 s to 24 h),
set slow mode, pin and unpin, and delete (`danmaku.deleted`). Every moderation action is
a durable record (`danmaku.moderation`); a room's state is rebuilt from them on first use
after a restart. Hot words over a sliding window are served to the dashboard.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound, RateLimited
from liveroom.plugin import Activity, CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import RequestId, RoomId
from liveroom.ratelimit import TokenBucket
from liveroom.record import Record, derived_id

from .danmaku_filter import BannedWords
from .danmaku_rules import HotWords, Moderation, PerSecond, RecentMessages

__all__ = ["DanmakuConfig", "DanmakuPlugin", "SendPayload"]

ACTION_KIND = "danmaku.moderation"
UserId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Duration = Annotated[int, msgspec.Meta(ge=10, le=86_400)]  # 10 s to 24 h


@dataclass(frozen=True, slots=True)
class DanmakuConfig:
    max_length: int = 200
    # Per user: a message every 1/rate_per_s seconds on average, `burst` in a row.
    rate_per_s: float = 1.0
    burst: int = 5
    banned_words: tuple[str, ...] = ()
    banned_words_file: str = ""  # one term per line, UTF-8; tens of thousands are fine
    recent_messages: int = 500  # kept per room for pin and delete
    hot_window_s: float = 300.0
    dashboard_hot_words: int = 15  # how many hot words the live dashboard shows


@dataclass(frozen=True, slots=True)
class SendPayload:
    room: RoomId
    # Bounded here too so an absurd string fails validation before any work.
    text: Annotated[str, msgspec.Meta(max_length=10_000)]
    # Idempotency: a send retried with the same request_id (after `outcome_unknown`) is
    # published at most once and answered with the same message id.
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class PunishPayload:
    room: RoomId
    user: UserId
    duration_s: Duration
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class UserPayload:
    room: RoomId
    user: UserId
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class SlowPayload:
    room: RoomId
    interval_s: Annotated[float, msgspec.Meta(ge=0, le=300)]  # 0 turns slow mode off
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class MessagePayload:
    room: RoomId
    id: MessageId
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class RoomOnly:
    room: RoomId
    request_id: RequestId | None = None


class TooLong(CommandError):
    code = "too_long"


class DanmakuPlugin(Plugin):
    name = "danmaku"
    config_type = DanmakuConfig
    item_types = (
        "danmaku.message",
        "danmaku.deleted",
        "danmaku.pinned",
        "danmaku.unpinned",
        "danmaku.slow_mode",
        "danmaku.muted",
        "danmaku.banned",
    )
    config: DanmakuConfig

    def __init__(self, config: DanmakuConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        terms = list(config.banned_words)
        if config.banned_words_file:
            terms += Path(config.banned_words_file).read_text(encoding="utf-8").splitlines()
        self._filter = BannedWords(terms)
        self._buckets: dict[str, TokenBucket] = {}
        self._rooms: dict[str, Moderation] = {}
        self._recent: dict[str, RecentMessages] = {}
        self._hot: dict[str, HotWords] = {}
        self._rates: dict[str, PerSecond] = {}

    def commands(self) -> Sequence[CommandSpec[Any]]:
        staff = [
            ("mute", PunishPayload, self.mute, "Mute a user for duration_s"),
            ("unmute", UserPayload, self.unmute, "Unmute a user"),
            ("ban", PunishPayload, self.ban, "Ban a user from the room for duration_s"),
            ("unban", UserPayload, self.unban, "Lift a ban"),
            ("slow", SlowPayload, self.slow, "Set slow mode (0: off)"),
            ("pin", MessagePayload, self.pin, "Pin a recent message"),
            ("unpin", RoomOnly, self.unpin, "Unpin"),
            ("delete", MessagePayload, self.delete, "Delete a message"),
        ]
        return (
            CommandSpec("danmaku.send", SendPayload, self.send, summary="Send a message"),
            *(CommandSpec(f"danmaku.{v}", p, h, True, s) for v, p, h, s in staff),  # type: ignore[arg-type]
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (
            QuerySpec("danmaku/hot", self.hot_words, "Hot words over the sliding window"),
            QuerySpec("danmaku/moderation", self.actions, "The moderation log of the room"),
        )

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
        state = self._rooms.get(room)
        if state is None or (state.pinned is None and not state.slow_s):
            return None
        return {"pinned": state.pinned, "slow_mode_s": state.slow_s}

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        (await self._room(ctx.room)).check_join(ctx.caller.user_id, ctx.now_ms)
        return None

    async def send(self, ctx: CommandContext, payload: SendPayload) -> Mapping[str, Any]:
        text = payload.text.strip()
        if not text:
            raise BadRequest("text is empty")
        if len(text) > self.config.max_length:
            raise TooLong(f"text is longer than {self.config.max_length} characters")
        if not self._bucket(ctx.caller.user_id).take(self.host.clock.monotonic()):
            raise RateLimited(f"at most {self.config.rate_per_s:g} messages a second")
        state = await self._room(ctx.room)
        state.check_send(ctx.caller.user_id, ctx.now_ms, ctx.caller.is_staff)
        if self._filter.contains(text):
            raise CommandError("the message contains a blocked word", "blocked")
        request = payload.request_id
        message_id = (
            secrets.token_hex(8) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        message = {"id": message_id, "user": {"id": ctx.caller.user_id, "name": ctx.caller.name}}
        message["text"] = text
        publication = await ctx.publish(
            "danmaku.message", message, once=None if request is None else message_id
        )
        if publication.repeated:  # a retry of a send already published: the same answer
            return {"id": message_id}
        self._recent.setdefault(ctx.room, RecentMessages(self.config.recent_messages)).add(message)
        self._hot.setdefault(ctx.room, HotWords(self.config.hot_window_s)).add(text, ctx.now_ms)
        self._rates.setdefault(ctx.room, PerSecond()).add(ctx.now_ms)
        await self.host.signals.emit(Activity(ctx.room, ctx.caller, "danmaku", 1, ctx.now_ms))
        return {"id": message["id"]}

    async def mute(self, ctx: CommandContext, payload: PunishPayload) -> Mapping[str, Any]:
        until = int(ctx.now_ms + payload.duration_s * 1000)
        action = {"action": "mute", "user": payload.user, "until": until}
        until = (await self._act(ctx, action, payload.request_id))["until"]  # a retry: the first one's
        ctx.send_to(payload.user, "danmaku.muted", {"until": until})
        return {"until": until}

    async def unmute(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        await self._act(ctx, {"action": "unmute", "user": payload.user}, payload.request_id)
        return {"action": "unmute"}

    async def ban(self, ctx: CommandContext, payload: PunishPayload) -> Mapping[str, Any]:
        until = int(ctx.now_ms + payload.duration_s * 1000)
        action = {"action": "ban", "user": payload.user, "until": until}
        until = (await self._act(ctx, action, payload.request_id))["until"]
        removed = await ctx.services.remove_user(ctx.room, payload.user, "danmaku.banned", {"until": until})
        return {"until": until, "removed": removed}

    async def unban(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        await self._act(ctx, {"action": "unban", "user": payload.user}, payload.request_id)
        return {"action": "unban"}

    async def slow(self, ctx: CommandContext, payload: SlowPayload) -> Mapping[str, Any]:
        await self._act(ctx, {"action": "slow", "interval_s": payload.interval_s}, payload.request_id)
        await ctx.publish("danmaku.slow_mode", {"interval_s": payload.interval_s}, priority=True)
        return {"interval_s": payload.interval_s}

    async def pin(self, ctx: CommandContext, payload: MessagePayload) -> Mapping[str, Any]:
        message = self._message(ctx.room, payload.id)
        await self._act(ctx, {"action": "pin", "message": message}, payload.request_id)
        await ctx.publish("danmaku.pinned", message, priority=True)
        return {"id": payload.id}

    async def unpin(self, ctx: CommandContext, payload: RoomOnly) -> Mapping[str, Any]:
        if (await self._room(ctx.room)).pinned is None:
            raise NotFound("nothing is pinned")
        await self._act(ctx, {"action": "unpin"}, payload.request_id)
        await ctx.publish("danmaku.unpinned", {}, priority=True)
        return {}

    async def delete(self, ctx: CommandContext, payload: MessagePayload) -> Mapping[str, Any]:
        self._message(ctx.room, payload.id)
        await self._act(ctx, {"action": "delete", "id": payload.id}, payload.request_id)
        await ctx.publish("danmaku.deleted", {"id": payload.id}, priority=True)
        return {"id": payload.id}

    async def hot_words(self, query: QueryContext) -> Any:
        limit = max(1, min(int(query.params.get("limit", "20") or 20), 100))
        return {"words": self._top(query.room, limit, query.now_ms)}

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """Messages sent through this node: the total, per second (the last 60 s), hot words."""
        rates = self._rates.get(room) or PerSecond()
        hot = self._top(room, self.config.dashboard_hot_words, now_ms)
        return {"total": rates.total, "per_second": rates.series(now_ms), "hot": hot}

    def _top(self, room: str, limit: int, now_ms: float) -> list[dict[str, Any]]:
        hot = self._hot.get(room)
        return [] if hot is None else hot.top(limit, now_ms)

    async def actions(self, query: QueryContext) -> Any:
        after = int(query.params.get("after", "0") or 0)
        records = await self.host.store.list_records(ACTION_KIND, query.room, after, 500)
        return {"actions": [{**r.data, "at": r.created_ms, "position": r.position} for r in records]}

    async def _act(self, ctx: CommandContext, action: dict[str, Any], request: str | None) -> dict[str, Any]:
        """Make the action durable, then apply it: a restart replays the same log. The same
        `request_id` again writes nothing more (the record's key comes from it) and gets the
        action first stored back."""
        state = await self._room(ctx.room)
        action = {**action, "by": ctx.caller.user_id}
        key = (
            secrets.token_hex(8) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        stored, _ = await ctx.store.put_record(Record(ACTION_KIND, key, ctx.room, action, int(ctx.now_ms)))
        state.apply(dict(stored.data))
        return dict(stored.data)

    def _message(self, room: str, message_id: str) -> dict[str, Any]:
        recent = self._recent.get(room)
        message = None if recent is None else recent.get(message_id)
        if message is None or message_id in self._rooms[room].deleted:
            raise NotFound(f"no recent message {message_id!r}")
        return message

    async def _room(self, room: str) -> Moderation:
        state = self._rooms.get(room)
        if state is None:
            state, after = Moderation(), 0
            while page := await self.host.store.list_records(ACTION_KIND, room, after, 500):
                for record in page:
                    state.apply(dict(record.data))
                after = page[-1].position
            state = self._rooms.setdefault(room, state)
        return state

    def _bucket(self, user_id: str) -> TokenBucket:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            if len(self._buckets) > 100_000:  # bound memory: idle users' buckets are full anyway
                self._buckets.clear()
            now = self.host.clock.monotonic()
            bucket = self._buckets[user_id] = TokenBucket(self.config.rate_per_s, self.config.burst, now)
        return bucket
