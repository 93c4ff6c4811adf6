"""Danmaku (bullet comments) with moderation.

Sending passes a chain: length, the per-user token bucket, ban / mute / slow mode, then
the banned-word filter. Moderators and hosts mute, unmute, ban and unban (10 s to 24 h),
set slow mode, pin and unpin, and delete (`danmaku.deleted`). Every moderation action is
a durable record (`danmaku.moderation`, a typed `Action`); a room's moderation is rebuilt
from them when the room is loaded. Hot words over a sliding window and the message rate are
served to the dashboard (since the room was loaded here). Everything is per room and
bounded: released with the room.

Then the message hook (`liveroom.message_hook`): every plugin's `on_message`, in order,
may rewrite the message, answer it as a bot, reject it or hold it for review
(`danmaku_review`: staff `danmaku.review.approve` / `.drop`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec

from liveroom.auth import RANK, Identity, Outranked
from liveroom.errors import BadRequest, CommandError, NotFound, RateLimited
from liveroom.message_hook import FailurePolicy, Message, MessageHooks, Outcome
from liveroom.plugin import (
    MAX_POSITION,
    Activity,
    CommandContext,
    CommandSpec,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
    message_hook_plugins,
    rate_limited,
)
from liveroom.protocol import RequestId, RoomId, RoomRequest
from liveroom.ratelimit import KeyedBuckets, UserRate
from liveroom.record import Record, derived_id
from liveroom.store import records_of

from .danmaku_filter import BannedWords
from .danmaku_review import HELD_KIND, REVIEW_KIND, ReviewQueue, answer_data, held_record, load_queue
from .danmaku_rules import Action, HotWords, Moderation, PerSecond, RecentMessages

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
    staff_recent_messages: int = 100  # the latest of them in a staff member's join state
    hot_window_s: float = 300.0
    dashboard_hot_words: int = 15  # how many hot words the live dashboard shows
    max_senders: int = 100_000  # per room: users whose send rate is remembered (longest idle dropped)
    # Per user and room, for the staff commands (send has its own rate above):
    # `publish_burst` in a row, then `publish_rate_per_s` a second (else rate_limited).
    publish_rate_per_s: float = 2.0
    publish_burst: int = 20
    # The message hook: each plugin's budget, and what a failed (raising, slow) hook means:
    # "pass" (skipped, the message goes on) or "hold" (the message waits for review).
    hook_timeout_ms: float = 200.0
    hook_failure: str = "pass"
    review_max: int = 500  # held messages per room; one more is refused `review_full`
    answer_max_length: int = 500  # a bot's answer


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


class TooLong(CommandError):
    code = "too_long"


class AlreadyReviewed(CommandError):
    code = "already_reviewed"


@dataclass(slots=True)
class RoomDanmaku:
    """A room's danmaku state as this node holds it."""

    moderation: Moderation
    recent: RecentMessages
    hot: HotWords
    senders: KeyedBuckets
    review: ReviewQueue
    rates: PerSecond = field(default_factory=PerSecond)


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
        "danmaku.held",
        "danmaku.reviewed",
    )
    config: DanmakuConfig

    def __init__(self, config: DanmakuConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "danmaku commands")
        terms = list(config.banned_words)
        if config.banned_words_file:
            terms += Path(config.banned_words_file).read_text(encoding="utf-8").splitlines()
        self._filter = BannedWords(terms)
        self._rooms: dict[str, RoomDanmaku] = {}
        if config.hook_failure not in ("pass", "hold"):
            raise ValueError(f"hook_failure is 'pass' or 'hold', not {config.hook_failure!r}")
        self._hooks: MessageHooks | None = None  # built on first use: every plugin is loaded then

    def _limited(self, handler: Any) -> Any:
        """The handler under this plugin's per-user publish rate (`publish_rate_per_s`)."""
        return rate_limited(handler, self._publish_rate, self.host.clock)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        staff = [
            ("mute", PunishPayload, self.mute, "Mute a user for duration_s"),
            ("unmute", UserPayload, self.unmute, "Unmute a user"),
            ("ban", PunishPayload, self.ban, "Ban a user from the room for duration_s"),
            ("unban", UserPayload, self.unban, "Lift a ban"),
            ("slow", SlowPayload, self.slow, "Set slow mode (0: off)"),
            ("pin", MessagePayload, self.pin, "Pin a recent message"),
            ("unpin", RoomRequest, self.unpin, "Unpin"),
            ("delete", MessagePayload, self.delete, "Delete a message"),
            ("review.approve", MessagePayload, self.approve, "Publish a held message"),
            ("review.drop", MessagePayload, self.drop, "Drop a held message"),
            ("review.list", RoomRequest, self.review_list, "The held messages, oldest first"),
        ]
        return (
            CommandSpec("danmaku.send", SendPayload, self.send, summary="Send a message"),
            *(CommandSpec(f"danmaku.{v}", p, self._limited(h), True, s) for v, p, h, s in staff),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (
            QuerySpec("danmaku/hot", self.hot_words, "Hot words over the sliding window"),
            QuerySpec("danmaku/moderation", self.actions, "The moderation log of the room"),
            QuerySpec("danmaku/review", self.review_query, "The held messages, oldest first"),
        )

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        moderation = Moderation()
        async for record in records_of(ctx.store, ACTION_KIND, ctx.room):
            moderation.apply(Action.from_record(record.data))
        moderation.expire(ctx.now_ms)
        config = self.config
        self._rooms[ctx.room] = RoomDanmaku(
            moderation,
            RecentMessages(config.recent_messages),
            HotWords(config.hot_window_s),
            KeyedBuckets(config.rate_per_s, config.burst, config.max_senders),
            await load_queue(ctx, config.review_max),
        )

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        self._rooms.pop(room, None)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        state = self._rooms[room].moderation
        if state.pinned is None and not state.slow_s:
            return None
        return {"pinned": state.pinned, "slow_mode_s": state.slow_s}

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        state = self._rooms[ctx.room]
        state.moderation.check_join(ctx.caller.user_id, ctx.now_ms, ctx.caller.role)
        if not ctx.caller.is_staff:
            return None
        # A moderator who opens the console late sees what was said before.
        latest = state.recent.latest(self.config.staff_recent_messages)
        recent = [message for message in latest if message["id"] not in state.moderation.deleted]
        return {"recent": recent, "review": state.review.listed()}

    # -- commands -----------------------------------------------------------------------

    async def send(self, ctx: CommandContext, payload: SendPayload) -> Mapping[str, Any]:
        text = payload.text.strip()
        if not text:
            raise BadRequest("text is empty")
        if len(text) > self.config.max_length:
            raise TooLong(f"text is longer than {self.config.max_length} characters")
        room = self._rooms[ctx.room]
        if not room.senders.take(ctx.caller.user_id, self.host.clock.monotonic()):
            raise RateLimited(f"at most {self.config.rate_per_s:g} messages a second")
        room.moderation.check_send(ctx.caller.user_id, ctx.now_ms, ctx.caller.is_staff, ctx.caller.role)
        if self._filter.contains(text):
            raise CommandError("the message contains a blocked word", "blocked")
        request = payload.request_id
        message_id = (
            secrets.token_hex(8) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        outcome = await self._chain().run(Message(ctx.room, message_id, ctx.caller, text, ctx.now_ms))
        if outcome.status == "reject":
            raise CommandError(outcome.reason, outcome.code)
        message = {
            "id": message_id,
            "user": {"id": ctx.caller.user_id, "name": ctx.caller.name},
            "text": outcome.text,
        }
        if outcome.status == "hold":
            return await self._hold(ctx, room, message, outcome)
        await self._publish(
            ctx, room, message, [answer_data(a) for a in outcome.answers], request is not None
        )
        return {"id": message_id}

    async def _publish(
        self,
        ctx: CommandContext,
        room: RoomDanmaku,
        message: Mapping[str, Any],
        answers: Sequence[Mapping[str, Any]],
        once: bool,
    ) -> None:
        """Publish a message that passed (or was approved), then its bots' answers."""
        message_id = message["id"]
        publication = await ctx.publish("danmaku.message", message, once=message_id if once else None)
        if publication.repeated:  # a retry of a send already published: the same answer
            return
        room.recent.add(dict(message))
        room.hot.add(message["text"], ctx.now_ms)
        room.rates.add(ctx.now_ms)
        user = message["user"]
        for n, answer in enumerate(answers):
            reply_id = f"{message_id}-a{n}"
            reply = {"id": reply_id, "user": {**answer["bot"], "bot": True}, "text": answer["text"]}
            await ctx.publish("danmaku.message", {**reply, "reply_to": message_id}, once=reply_id)
            room.recent.add(reply)
        author = ctx.caller if ctx.caller.user_id == user["id"] else _identity(user)
        await self.host.signals.emit(Activity(ctx.room, author, "danmaku", 1, ctx.now_ms))

    # -- the message hook and the review queue ------------------------------------------

    def _chain(self) -> MessageHooks:
        if self._hooks is None:
            plugins = message_hook_plugins(self.host.plugins)
            config = self.config
            policy: FailurePolicy = "hold" if config.hook_failure == "hold" else "pass"
            self._hooks = MessageHooks(
                [(plugin.name, _hook(plugin)) for plugin in plugins],
                config.hook_timeout_ms / 1000,
                policy,
                config.max_length,
                config.answer_max_length,
            )
        return self._hooks

    async def _hold(
        self, ctx: CommandContext, room: RoomDanmaku, message: Mapping[str, Any], outcome: Outcome
    ) -> Mapping[str, Any]:
        """Write the held message, queue it, tell the staff present. A retry: the same answer."""
        message_id = message["id"]
        if message_id not in room.review.held and room.review.full:
            raise CommandError(f"the review queue is full ({self.config.review_max})", "review_full")
        data = held_record(message, outcome, ctx.now_ms)
        stored, _ = await ctx.store.put_record(Record(HELD_KIND, message_id, ctx.room, data, int(ctx.now_ms)))
        decided = await ctx.store.get_record(REVIEW_KIND, message_id)
        if decided is None and message_id not in room.review.held:
            room.review.add(stored.data)
            self._tell_staff(ctx, "danmaku.held", room.review.listed()[-1])
        return {"id": message_id, "held": True, "reason": stored.data["reason"]}

    async def approve(self, ctx: CommandContext, payload: MessagePayload) -> Mapping[str, Any]:
        room = self._rooms[ctx.room]
        item = await self._decide(ctx, room, payload.id, "approve")
        if item is not None:
            message = {key: item[key] for key in ("id", "user", "text")}
            await self._publish(ctx, room, message, item.get("answers", ()), True)
        return {"id": payload.id, "decision": "approve"}

    async def drop(self, ctx: CommandContext, payload: MessagePayload) -> Mapping[str, Any]:
        await self._decide(ctx, self._rooms[ctx.room], payload.id, "drop")
        return {"id": payload.id, "decision": "drop"}

    async def review_list(self, ctx: CommandContext, payload: RoomRequest) -> Mapping[str, Any]:
        return {"held": self._rooms[ctx.room].review.listed()}

    async def review_query(self, query: QueryContext) -> Any:
        return {"held": self._rooms[query.room].review.listed()}

    async def _decide(
        self, ctx: CommandContext, room: RoomDanmaku, message_id: str, decision: str
    ) -> dict[str, Any] | None:
        """Write the decision (once per message), then take the message off the queue. The
        held message, or None for a retry of a decision already taken (nothing more to do
        than an approve's `once` publish)."""
        item = room.review.held.get(message_id)
        held = item if item is not None else await self._held(ctx.room, message_id)
        data = {"id": message_id, "decision": decision, "by": ctx.caller.user_id}
        stored, _ = await ctx.store.put_record(
            Record(REVIEW_KIND, message_id, ctx.room, data, int(ctx.now_ms))
        )
        if stored.data["decision"] != decision:
            raise AlreadyReviewed(f"message {message_id!r} was already decided: {stored.data['decision']}")
        if room.review.pop(message_id) is not None:
            self._tell_staff(ctx, "danmaku.reviewed", {"id": message_id, "decision": decision})
        return held

    async def _held(self, room: str, message_id: str) -> dict[str, Any]:
        record = await self.host.store.get_record(HELD_KIND, message_id)
        if record is None or record.room != room:
            raise NotFound(f"no held message {message_id!r}")
        return dict(record.data)

    def _tell_staff(self, ctx: RoomContext, item_type: str, data: Mapping[str, Any]) -> None:
        for member in ctx.members():
            if member.is_staff:
                ctx.send_to(member.user_id, item_type, data)

    async def mute(self, ctx: CommandContext, payload: PunishPayload) -> Mapping[str, Any]:
        ctx.check_may_act_on(payload.user)
        until = int(ctx.now_ms + payload.duration_s * 1000)
        action = await self._act(ctx, Action("mute", "", user=payload.user, until=until), payload.request_id)
        ctx.send_to(payload.user, "danmaku.muted", {"until": action.until})  # a retry: the first one's
        return {"until": action.until}

    async def unmute(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        self._check_may_lift(ctx, "mute", payload.user)
        await self._act(ctx, Action("unmute", "", user=payload.user), payload.request_id)
        return {"action": "unmute"}

    async def ban(self, ctx: CommandContext, payload: PunishPayload) -> Mapping[str, Any]:
        ctx.check_may_act_on(payload.user)
        until = int(ctx.now_ms + payload.duration_s * 1000)
        action = await self._act(ctx, Action("ban", "", user=payload.user, until=until), payload.request_id)
        data = {"until": action.until}
        removed = await ctx.services.remove_user(ctx.room, payload.user, "danmaku.banned", data)
        return {"until": action.until, "removed": removed}

    async def unban(self, ctx: CommandContext, payload: UserPayload) -> Mapping[str, Any]:
        self._check_may_lift(ctx, "ban", payload.user)
        await self._act(ctx, Action("unban", "", user=payload.user), payload.request_id)
        return {"action": "unban"}

    def _check_may_lift(self, ctx: CommandContext, kind: str, user: str) -> None:
        """The hierarchy holds for lifting too: a moderator may not lift a host's or an admin's
        mute or ban (it would undo what outranks it)."""
        maker = self._rooms[ctx.room].moderation.rank_of.get((kind, user))
        if maker is not None and maker > RANK.get(ctx.caller.role, 0):
            raise Outranked(f"a {ctx.caller.role} may not lift a {kind} set by a higher role")

    async def slow(self, ctx: CommandContext, payload: SlowPayload) -> Mapping[str, Any]:
        await self._act(ctx, Action("slow", "", interval_s=payload.interval_s), payload.request_id)
        await ctx.publish("danmaku.slow_mode", {"interval_s": payload.interval_s}, priority=True)
        return {"interval_s": payload.interval_s}

    async def pin(self, ctx: CommandContext, payload: MessagePayload) -> Mapping[str, Any]:
        message = self._message(ctx.room, payload.id)
        await self._act(ctx, Action("pin", "", message=message), payload.request_id)
        await ctx.publish("danmaku.pinned", message, priority=True)
        return {"id": payload.id}

    async def unpin(self, ctx: CommandContext, payload: RoomRequest) -> Mapping[str, Any]:
        if self._rooms[ctx.room].moderation.pinned is None:
            raise NotFound("nothing is pinned")
        await self._act(ctx, Action("unpin", ""), payload.request_id)
        await ctx.publish("danmaku.unpinned", {}, priority=True)
        return {}

    async def delete(self, ctx: CommandContext, payload: MessagePayload) -> Mapping[str, Any]:
        self._message(ctx.room, payload.id)
        await self._act(ctx, Action("delete", "", id=payload.id), payload.request_id)
        await ctx.publish("danmaku.deleted", {"id": payload.id}, priority=True)
        return {"id": payload.id}

    # -- reads --------------------------------------------------------------------------

    async def hot_words(self, query: QueryContext) -> Any:
        limit = query.int_param("limit", 20, 1, 100)
        return {"words": self._rooms[query.room].hot.top(limit, query.now_ms)}

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """Messages sent: the total, per second (the last 60 s), hot words."""
        state = self._rooms[room]
        hot = state.hot.top(self.config.dashboard_hot_words, now_ms)
        return {"total": state.rates.total, "per_second": state.rates.series(now_ms), "hot": hot}

    async def actions(self, query: QueryContext) -> Any:
        after = query.int_param("after", 0, 0, MAX_POSITION)
        records = await self.host.store.list_records(ACTION_KIND, query.room, after, 500)
        return {"actions": [{**r.data, "at": r.created_ms, "position": r.position} for r in records]}

    # -- helpers ------------------------------------------------------------------------

    async def _act(self, ctx: CommandContext, action: Action, request: str | None) -> Action:
        """Make the action durable, then apply it: loading the room replays the same log. The
        same `request_id` again writes nothing more (the record's key comes from it) and gets
        the action first stored back."""
        moderation = self._rooms[ctx.room].moderation
        action = Action(**{**action.record(), "by": ctx.caller.user_id, "by_role": ctx.caller.role})
        key = (
            secrets.token_hex(8) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        stored, _ = await ctx.store.put_record(
            Record(ACTION_KIND, key, ctx.room, action.record(), int(ctx.now_ms))
        )
        action = Action.from_record(stored.data)
        moderation.expire(ctx.now_ms)
        moderation.apply(action)
        return action

    def _message(self, room: str, message_id: str) -> dict[str, Any]:
        state = self._rooms[room]
        message = state.recent.get(message_id)
        if message is None or message_id in state.moderation.deleted:
            raise NotFound(f"no recent message {message_id!r}")
        return message


def _hook(plugin: Plugin) -> Any:
    async def ask(message: Message) -> Any:
        return await plugin.on_message(plugin.host.room(message.room), message)

    return ask


def _identity(user: Mapping[str, Any]) -> Identity:
    return Identity(user["id"], user["name"], "viewer", None, None, None)
