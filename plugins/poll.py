"""Polls: hosts and moderators ask, viewers vote once, the server's clock closes.

Tallies go out as `poll.tally` at most every `tally_interval_ms`; the final result
(`poll.ended`) goes on the priority lane and is a durable record (`poll.result`).
One open poll per room at a time, like Twitch. The open poll and every vote are durable
records too (a vote is acknowledged once written), so a restart resumes the poll with its
counts, and closes it at once if its deadline passed meanwhile.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from liveroom.errors import BadRequest, CommandError, NotFound
from liveroom.plugin import Activity, CommandContext, CommandSpec, Plugin, PluginHost, QueryContext, QuerySpec
from liveroom.protocol import RequestId, RoomId
from liveroom.record import Record, derived_id
from liveroom.timers import Throttle

from .poll_rules import Poll

__all__ = ["ClosePayload", "CreatePayload", "PollConfig", "PollPlugin", "VotePayload"]

RESULT_KIND, OPEN_KIND, VOTE_KIND = "poll.result", "poll.open", "poll.vote"
MAX_RESULTS_KEPT = 10_000  # rooms whose last result the dashboard can show
Option = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
PollId = Annotated[str, msgspec.Meta(max_length=64)]


@dataclass(frozen=True, slots=True)
class PollConfig:
    allow_change: bool = False  # may a viewer change their vote while the poll is open?
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


class PollPlugin(Plugin):
    name = "poll"
    config_type = PollConfig
    item_types = ("poll.started", "poll.tally", "poll.ended")
    config: PollConfig

    def __init__(self, config: PollConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._open: dict[str, Poll] = {}  # room -> its open poll
        self._changes: dict[tuple[str, str], int] = {}  # (poll, user) -> votes written so far
        self._last: OrderedDict[str, dict[str, Any]] = OrderedDict()  # room -> its last result
        self._tally = Throttle(host.timers, config.tally_interval_ms, self._publish_tally)

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("poll.create", CreatePayload, self.create, True, "Open a poll"),
            CommandSpec("poll.vote", VotePayload, self.vote, summary="Vote for an option (0-based)"),
            CommandSpec("poll.close", ClosePayload, self.close, True, "Close a poll before its deadline"),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("polls/{poll}", self.result, "A closed poll's durable result"),)

    def snapshot(self, room: str) -> Mapping[str, Any] | None:
        poll = self._open.get(room)
        return None if poll is None else {**poll.describe(), **poll.tally()}

    async def figures(self, room: str, now_ms: float) -> Mapping[str, Any] | None:
        """The open poll with its counts, else the room's last result (since this node started)."""
        poll = self._open.get(room)
        if poll is not None:
            return {**poll.describe(), **poll.tally(), "open": True}
        last = self._last.get(room)
        return None if last is None else {**last, "open": False}

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        poll = self._open.get(ctx.room)
        vote = None if poll is None else poll.votes.get(ctx.caller.user_id)
        return None if vote is None else {"my_vote": vote}

    async def start(self) -> None:
        """Reopen polls that were open when the node stopped, with their durable votes."""
        after = 0
        while page := await self.host.store.list_records(OPEN_KIND, None, after, 500):
            for record in page:
                if await self.host.store.get_record(RESULT_KIND, record.key) is None:
                    await self._reopen(record)
            after = page[-1].position

    async def _reopen(self, record: Record) -> None:
        data = record.data
        poll = Poll(record.key, record.room, data["question"], tuple(data["options"]), data["ends_at"])
        votes, after = {}, 0
        while page := await self.host.store.list_records(VOTE_KIND, record.room, after, 1000):
            for vote in page:
                if vote.data["poll"] == poll.id:
                    user = vote.data["user"]
                    votes[user] = vote.data["option"]  # a later change wins
                    self._changes[(poll.id, user)] = self._changes.get((poll.id, user), 0) + 1
            after = page[-1].position
        for user, option in votes.items():
            poll.votes[user] = option
            poll.counts[option] += 1
        self._open[poll.room] = poll
        self._set_deadline(poll)

    def _set_deadline(self, poll: Poll) -> None:
        async def deadline(now_ms: float) -> None:
            await self._finish(poll, "deadline")

        self.host.timers.schedule(f"poll:{poll.id}", poll.ends_at, deadline)

    async def create(self, ctx: CommandContext, payload: CreatePayload) -> Mapping[str, Any]:
        low, high = self.config.min_duration_s, self.config.max_duration_s
        if not low <= payload.duration_s <= high:
            raise BadRequest(f"duration_s must be {low}..{high}")
        request = payload.request_id
        poll_id = "p-" + (
            secrets.token_hex(6) if request is None else derived_id("", ctx.room, ctx.caller.user_id, request)
        )
        current = self._open.get(ctx.room)
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
        self._open[ctx.room] = poll
        self._set_deadline(poll)
        await ctx.publish("poll.started", {**poll.describe(), **poll.tally()}, priority=True)
        return {"poll": poll.id, "ends_at": poll.ends_at}

    async def vote(self, ctx: CommandContext, payload: VotePayload) -> Mapping[str, Any]:
        poll, user = self._poll(ctx.room, payload.poll), ctx.caller.user_id
        changes = self._changes.get((poll.id, user), 0)
        if poll.accepts(user, payload.option, ctx.now_ms, self.config.allow_change):
            data = {"poll": poll.id, "user": user, "option": payload.option}
            key = f"{poll.id}/{user}/{changes}"  # write-once records: one per (change of) vote
            # Durable first, then counted: a vote whose write fails leaves no trace. (Two
            # at once from one user share the key: both count what was stored.)
            stored, _ = await ctx.store.put_record(Record(VOTE_KIND, key, ctx.room, data, int(ctx.now_ms)))
            if poll.vote(user, stored.data["option"], ctx.now_ms, self.config.allow_change):
                self._changes[(poll.id, user)] = changes + 1
            self._tally.touch(ctx.room)
            await self.host.signals.emit(Activity(ctx.room, ctx.caller, "vote", 1, ctx.now_ms))
        return {"poll": poll.id, "option": payload.option}

    async def close(self, ctx: CommandContext, payload: ClosePayload) -> Mapping[str, Any]:
        poll = self._poll(ctx.room, payload.poll)
        if not poll.is_open(ctx.now_ms):
            raise CommandError("the poll is closed", "poll_closed")
        ctx.cancel(f"poll:{poll.id}")
        return {"result": await self._finish(poll, "host")}

    async def result(self, query: QueryContext) -> Any:
        record = await self.host.store.get_record(RESULT_KIND, query.params["poll"])
        if record is None or record.room != query.room:
            raise NotFound("no closed poll by that id in this room")
        return dict(record.data)

    def _poll(self, room: str, poll_id: str) -> Poll:
        poll = self._open.get(room)
        if poll is None or poll.id != poll_id:
            raise NotFound(f"no open poll {poll_id!r} in this room")
        return poll

    async def _finish(self, poll: Poll, by: str) -> dict[str, Any]:
        poll.close(by)
        self._tally.forget(poll.room)
        if self._open.get(poll.room) is poll:
            del self._open[poll.room]
        for user in poll.votes:
            self._changes.pop((poll.id, user), None)
        result = poll.result()
        self._last[poll.room] = result
        self._last.move_to_end(poll.room)
        if len(self._last) > MAX_RESULTS_KEPT:
            self._last.popitem(last=False)
        now = int(self.host.clock.now_ms())
        await self.host.store.put_record(Record(RESULT_KIND, poll.id, poll.room, result, now))
        await self.host.services.publish(poll.room, "poll.ended", result, priority=True)
        return result

    async def _publish_tally(self, room: str) -> None:
        poll = self._open.get(room)
        if poll is not None:
            await self.host.services.publish(room, "poll.tally", poll.tally(), history=False)
