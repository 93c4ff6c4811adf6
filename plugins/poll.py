"""Polls: hosts and moderators ask, viewers vote once, the server's clock closes.

Tallies go out as `poll.tally` at most every `tally_interval_ms`; the final result
(`poll.ended`) goes on the priority lane and is a durable record (`poll.result`).
One open poll per room at a time, like Twitch. The open poll and every vote are durable
records too (a vote is acknowledged once written, and counted only then), so loading the
room again (after a restart, or on the node that took the room over) resumes the poll
with its counts, and closes it at once if its deadline passed meanwhile.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound
from liveroom.plugin import (
    Activity,
    CommandContext,
    CommandSpec,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
    rate_limited,
)
from liveroom.protocol import RequestId, RoomId
from liveroom.ratelimit import UserRate
from liveroom.record import Record, derived_id
from liveroom.store import records_of

from .poll_rules import Poll

__all__ = ["ClosePayload", "CreatePayload", "PollConfig", "PollPlugin", "VotePayload"]

RESULT_KIND, OPEN_KIND, VOTE_KIND = "poll.result", "poll.open", "poll.vote"
RETRY_FINISH_MS = 1000  # a result that could not be written is tried again this much later
Option = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
PollId = Annotated[str, msgspec.Meta(max_length=64)]


@dataclass(frozen=True, slots=True)
class PollConfig:
    allow_change: bool = False  # may a viewer change their vote while the poll is open?
    # Per user and room, for the commands that publish to the room (create, vote, close):
    # `publish_burst` in a row, then `publish_rate_per_s` a second (else rate_limited).
    publish_rate_per_s: float = 2.0
    publish_burst: int = 20
    tally_interval_ms: int = 500
    min_duration_s: int = 15
    max_duration_s: int = 1800


@dataclass(frozen=True, slots=True)
class CreatePayload:
    room: RoomId
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    options: Annotated[list[Option], msgspec.Meta(min_length=2, max_length=10)]
    duration_s: int
    # Idempotency: the same request_id opens one poll, however often it is sent.
    request_id: RequestId | None = None


@dataclass(frozen=True, slots=True)
class VotePayload:
    room: RoomId
    poll: PollId
    option: int


@dataclass(frozen=True, slots=True)
class ClosePayload:
    room: RoomId
    poll: PollId


@dataclass(slots=True)
class RoomPolls:
    """A room's polls as this node holds them: the open one, and the last result."""

    open: Poll | None = None
    changes: dict[str, int] = field(default_factory=dict)  # user -> votes written for the open poll
    last: dict[str, Any] | None = None


class PollPlugin(Plugin):
    name = "poll"
    config_type = PollConfig
    item_types = ("poll.started", "poll.tally", "poll.ended")
    config: PollConfig

    def __init__(self, config: PollConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._publish_rate = UserRate(config.publish_rate_per_s, config.publish_burst, "poll commands")
        self._rooms: dict[str, RoomPolls] = {}
        self._tally = host.throttle(config.tally_interval_ms, self._publish_tally)

    def _limited(self, handler: Any) -> Any:
        """The handler under this plugin's per-user publish rate (`publish_rate_per_s`)."""
        return rate_limited(handler, self._publish_rate, self.host.clock)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("poll.create", CreatePayload, self._limited(self.create), True, "Open a poll"),
            CommandSpec(
                "poll.vote", VotePayload, self._limited(self.vote), summary="Vote for an option (0-based)"
            ),
            CommandSpec(
                "poll.close",
                ClosePayload,
                self._limited(self.close),
                True,
                "Close a poll before its deadline",
            ),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("polls/{poll}", self.result, "A closed poll's durable result"),)

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        """The room's open poll with its durable votes (and its last result, for the dashboard)."""
        polls, store, opened = RoomPolls(), ctx.store, None
        async for record in records_of(store, OPEN_KIND, ctx.room):
            opened = record  # one open poll at a time: the latest is the only candidate
        async for record in records_of(store, RESULT_KIND, ctx.room):
            polls.last = dict(record.data)
        if opened is not None and (polls.last is None or polls.last["poll"] != opened.key):
            data = opened.data
            poll = Poll(opened.key, ctx.room, data["question"], tuple(data["options"]), data["ends_at"])
            async for vote in records_of(store, VOTE_KIND, ctx.room, page=1000):
                if vote.data["poll"] == poll.id:
                    user = vote.data["user"]
                    poll.restore(user, vote.data["option"])  # a later change wins
                    polls.changes[user] = polls.changes.get(user, 0) + 1
            polls.open = poll
            self._set_deadline(ctx, poll, poll.ends_at)
        self._rooms[ctx.room] = polls

    def release_room(self, room: str) -> None:
        self._publish_rate.forget(room)
        self._rooms.pop(room, None)
        self._tally.forget(room)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        poll = self._rooms[room].open
        return None if poll is None else {**poll.describe(), **poll.tally()}

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """The open poll with its counts, else the room's last result."""
        polls = self._rooms[room]
        if polls.open is not None:
            return {**polls.open.describe(), **polls.open.tally(), "open": True}
        return None if polls.last is None else {**polls.last, "open": False}

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        poll = self._rooms[ctx.room].open
        vote = None if poll is None else poll.votes.get(ctx.caller.user_id)
        return None if vote is None else {"my_vote": vote}

    # -- commands -----------------------------------------------------------------------

    async def create(self, ctx: CommandContext, payload: CreatePayload) -> Mapping[str, Any]:
        low, high = self.config.min_duration_s, self.config.max_duration_s
        if not low <= payload.duration_s <= high:
            raise BadRequest(f"duration_s must be {low}..{high}")
        polls, request = self._rooms[ctx.room], payload.request_id
        poll_id = "p-" + (
            secrets.token_hex(6) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        current = polls.open
        if current is not None and current.id == poll_id:  # a retry of the create that opened it
            return {"poll": current.id, "ends_at": current.ends_at}
        if current is not None and current.is_open(ctx.now_ms):
            raise CommandError(f"poll {current.id} is still open", "poll_active")
        ends_at = int(ctx.now_ms) + payload.duration_s * 1000
        poll = Poll(poll_id, ctx.room, payload.question, tuple(payload.options), ends_at)
        # Durable first: a failed write leaves no open poll behind.
        stored, created = await ctx.store.put_record(
            Record(OPEN_KIND, poll.id, ctx.room, poll.describe(), int(ctx.now_ms))
        )
        if not created:  # a retry whose first attempt wrote the poll: open that one
            if await ctx.store.get_record(RESULT_KIND, poll_id) is not None:
                return {"poll": poll_id, "ends_at": stored.data["ends_at"]}
            data = stored.data
            poll = Poll(poll_id, ctx.room, data["question"], tuple(data["options"]), data["ends_at"])
        polls.open, polls.changes = poll, {}
        self._set_deadline(ctx, poll, poll.ends_at)
        await ctx.publish("poll.started", {**poll.describe(), **poll.tally()}, priority=True)
        return {"poll": poll.id, "ends_at": poll.ends_at}

    async def vote(self, ctx: CommandContext, payload: VotePayload) -> Mapping[str, Any]:
        polls, user = self._rooms[ctx.room], ctx.caller.user_id
        poll = self._poll(polls, payload.poll)
        changes = polls.changes.get(user, 0)
        if poll.accepts(user, payload.option, ctx.now_ms, self.config.allow_change):
            data = {"poll": poll.id, "user": user, "option": payload.option}
            key = f"{poll.id}/{user}/{changes}"  # write-once records: one per (change of) vote
            # Durable first, then counted: a vote whose write fails leaves no trace. (Two
            # at once from one user share the key: both count what was stored.)
            stored, _ = await ctx.store.put_record(Record(VOTE_KIND, key, ctx.room, data, int(ctx.now_ms)))
            if poll.vote(user, stored.data["option"], ctx.now_ms, self.config.allow_change):
                polls.changes[user] = changes + 1
            self._tally.touch(ctx.room, room=ctx.room)
            await self.host.signals.emit(Activity(ctx.room, ctx.caller, "vote", 1, ctx.now_ms))
        return {"poll": poll.id, "option": payload.option}

    async def close(self, ctx: CommandContext, payload: ClosePayload) -> Mapping[str, Any]:
        poll = self._poll(self._rooms[ctx.room], payload.poll)
        if not poll.is_open(ctx.now_ms):
            raise CommandError("the poll is closed", "poll_closed")
        return {"result": await self._finish(ctx, poll, "host")}

    async def result(self, query: QueryContext) -> Any:
        record = await self.host.store.get_record(RESULT_KIND, query.params["poll"])
        if record is None or record.room != query.room:
            raise NotFound("no closed poll by that id in this room")
        return dict(record.data)

    # -- the deadline and the result ------------------------------------------------------

    @staticmethod
    def _poll(polls: RoomPolls, poll_id: str) -> Poll:
        poll = polls.open
        if poll is None or poll.id != poll_id:
            raise NotFound(f"no open poll {poll_id!r} in this room")
        return poll

    def _set_deadline(self, ctx: RoomContext, poll: Poll, at_ms: float) -> None:
        async def deadline(now_ms: float) -> None:
            try:
                await self._finish(self.host.room(poll.room), poll, "deadline")
            except CommandError:  # the store unreachable: the poll stays open until it is written
                self._set_deadline(ctx, poll, now_ms + RETRY_FINISH_MS)

        ctx.schedule(f"poll:{poll.id}", at_ms, deadline)

    async def _finish(self, ctx: RoomContext, poll: Poll, by: str) -> dict[str, Any]:
        """Write the result, then close the poll here, then announce it."""
        result = {**poll.result(), "closed_by": by}
        await ctx.store.put_record(Record(RESULT_KIND, poll.id, poll.room, result, int(ctx.now_ms)))
        ctx.cancel(f"poll:{poll.id}")
        poll.close(by)
        polls = self._rooms.get(poll.room)
        if polls is not None:
            if polls.open is poll:
                polls.open, polls.changes = None, {}
            polls.last = result
        self._tally.forget(poll.room)
        await ctx.publish("poll.ended", result, priority=True)
        return result

    async def _publish_tally(self, room: str) -> None:
        polls = self._rooms.get(room)
        if polls is not None and polls.open is not None:
            await self.host.services.publish(room, "poll.tally", polls.open.tally(), history=False)
