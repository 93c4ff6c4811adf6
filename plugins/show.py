"""The run of show, on the server: a plan of stages per room, started and advanced by the
host, run on the server's clock (it goes on when the host's tab closes, and after a restart
or a takeover of the room).

Each stage has a name, a duration and actions: staff commands (open a poll, drop a coupon,
schedule a sale, pin a message, a lucky draw...) run as the host who started the show
when the stage begins, each with a request id of its own, so running them again (after a
restart) does nothing twice. The plan, the start, every move to a stage, the end, and
"this stage's actions ran" are durable events (`show.event`) written before anything else
happens; a room's show is folded from them when the room is loaded. Clients see
`show.stage` (priority) and the current stage in `join`'s state.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from liveroom.auth import Identity
from liveroom.errors import BadRequest, CommandError
from liveroom.plugin import (
    CommandContext,
    CommandSpec,
    Plugin,
    PluginHost,
    QueryContext,
    QuerySpec,
    RoomContext,
)
from liveroom.protocol import RequestId, RoomId, RoomRequest, decode_payload
from liveroom.record import Record, derived_id
from liveroom.store import records_of

from .show_rules import DEFAULT_PLAN, Action, Run, Stage, stages_from

__all__ = ["ShowConfig", "ShowPlugin"]

log = logging.getLogger(__name__)
EVENT_KIND = "show.event"
RETRY_MS = 1000.0  # a stage's actions whose "done" could not be written run again this soon


@dataclass(frozen=True, slots=True)
class ShowConfig:  # [plugins.show]
    max_stages: int = 20


@dataclass(frozen=True, slots=True)
class PlanPayload:
    room: RoomId
    stages: Annotated[list[Stage], msgspec.Meta(min_length=1, max_length=100)]
    request_id: RequestId | None = None


@dataclass(slots=True)
class RoomShow:
    plan: list[Stage]
    run: Run | None = None
    done: set[int] = field(default_factory=set)  # stages of the run whose actions ran

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.ended_ms is None


class ShowPlugin(Plugin):
    name = "show"
    config_type = ShowConfig
    item_types = ("show.stage", "show.ended", "show.action")
    config: ShowConfig

    def __init__(self, config: ShowConfig, host: PluginHost) -> None:
        super().__init__(config, host)
        self._rooms: dict[str, RoomShow] = {}

    def commands(self) -> Sequence[CommandSpec[Any]]:
        return (
            CommandSpec("show.plan", PlanPayload, self.plan, True, "Set the room's run of show", "show/plan"),
            CommandSpec(
                "show.start", RoomRequest, self.start_show, True, "Start the show at its first stage"
            ),
            CommandSpec("show.next", RoomRequest, self.next_stage, True, "Move to the next stage now"),
            CommandSpec("show.stop", RoomRequest, self.stop_show, True, "End the show"),
        )

    def queries(self) -> Sequence[QuerySpec]:
        return (QuerySpec("show", self.query, "The plan and the running show"),)

    # -- the room's life --------------------------------------------------------------

    async def load_room(self, ctx: RoomContext) -> None:
        state = RoomShow(list(DEFAULT_PLAN))
        async for record in records_of(ctx.store, EVENT_KIND, ctx.room):
            _fold(state, record.data)
        self._rooms[ctx.room] = state
        if state.running:
            assert state.run is not None
            at = ctx.now_ms if state.run.index not in state.done else state.run.ends_ms
            ctx.schedule(_timer(ctx.room), at, self._ticker(ctx.room))

    def release_room(self, room: str) -> None:
        self._rooms.pop(room, None)

    async def snapshot(self, room: str) -> Mapping[str, Any] | None:
        state = self._rooms[room]
        plan = [{"name": stage.name, "duration_s": stage.duration_s} for stage in state.plan]
        return {"plan": plan, "stage": state.run.view() if state.running and state.run else None}

    async def on_join(self, ctx: CommandContext) -> Mapping[str, Any] | None:
        if not ctx.caller.is_staff:
            return None
        return {"plan": [stage.wire() for stage in self._rooms[ctx.room].plan]}

    # -- commands -----------------------------------------------------------------------

    async def plan(self, ctx: CommandContext, payload: PlanPayload) -> Mapping[str, Any]:
        if len(payload.stages) > self.config.max_stages:
            raise BadRequest(f"at most {self.config.max_stages} stages")
        for stage in payload.stages:
            for action in stage.actions:
                self._check(ctx.room, action)
        stages = [stage.wire() for stage in payload.stages]
        await self._write(ctx, self._key(ctx, payload.request_id, "plan"), {"op": "plan", "stages": stages})
        return {"stages": len(stages)}

    async def start_show(self, ctx: CommandContext, payload: RoomRequest) -> Mapping[str, Any]:
        state = self._rooms[ctx.room]
        run_id = self._key(ctx, payload.request_id, "run")
        if state.running and state.run is not None and state.run.id != run_id:
            raise CommandError("a show is running: stop it first", "show_running")
        by = {"id": ctx.caller.user_id, "name": ctx.caller.name}
        event = {
            "op": "start",
            "run": run_id,
            "by": by,
            "stages": [s.wire() for s in state.plan],
            "at": ctx.now_ms,
        }
        await self._write(ctx, f"{run_id}/start", event)
        await self._begin(ctx, 0)
        return self._view(ctx.room)

    async def next_stage(self, ctx: CommandContext, payload: RoomRequest) -> Mapping[str, Any]:
        run = self._running(ctx.room)
        if run.index + 1 >= len(run.stages):
            await self._end(ctx, run)
            return {"ended": True}
        await self._move(ctx, run, run.index + 1)
        return self._view(ctx.room)

    async def stop_show(self, ctx: CommandContext, payload: RoomRequest) -> Mapping[str, Any]:
        await self._end(ctx, self._running(ctx.room))
        return {"ended": True}

    async def query(self, query: QueryContext) -> Any:
        state = self._rooms[query.room]
        return {
            "plan": [stage.wire() for stage in state.plan],
            "stage": state.run.view() if state.running and state.run else None,
        }

    # -- running ------------------------------------------------------------------------

    def _ticker(self, room: str) -> Any:
        async def tick(now_ms: float) -> None:
            state = self._rooms.get(room)
            if state is None or not state.running or state.run is None:
                return
            ctx = self.host.room(room)
            run = state.run
            if run.index not in state.done:
                await self._act(ctx, run, run.index)
            due = run.due(now_ms)
            if due == "next":
                await self._move(ctx, run, run.index + 1)
            elif due == "end":
                await self._end(ctx, run)
            else:
                ctx.schedule(_timer(room), run.ends_ms, self._ticker(room))

        return tick

    async def _move(self, ctx: RoomContext, run: Run, index: int) -> None:
        """Write the move (once per run and stage), then begin the stage."""
        await self._write(
            ctx, f"{run.id}/stage/{index}", {"op": "stage", "run": run.id, "index": index, "at": ctx.now_ms}
        )
        await self._begin(ctx, index)

    async def _begin(self, ctx: RoomContext, index: int) -> None:
        run = self._rooms[ctx.room].run
        assert run is not None
        ctx.schedule(_timer(ctx.room), run.ends_ms, self._ticker(ctx.room))
        await ctx.publish("show.stage", run.view(), priority=True, once=f"{run.id}/stage/{index}")
        await self._act(ctx, run, index)

    async def _end(self, ctx: RoomContext, run: Run) -> None:
        await self._write(ctx, f"{run.id}/end", {"op": "end", "run": run.id, "at": ctx.now_ms})
        ctx.cancel(_timer(ctx.room))
        await ctx.publish(
            "show.ended", {"run": run.id, "at": int(ctx.now_ms)}, priority=True, once=f"{run.id}/end"
        )

    async def _act(self, ctx: RoomContext, run: Run, index: int) -> None:
        """Run the stage's actions as the host (each contained: one failing does not stop the
        others or the show; staff hear of each), then note that they ran."""
        caller = Identity(run.by["id"], run.by["name"], "host")
        for n, action in enumerate(run.stages[index].actions):
            request = f"{run.id}.{index}.{n}"
            try:
                ack = await self._perform(ctx.room, caller, action, request, run.started_ms)
                result: dict[str, Any] = {"ok": True, "ack": ack}
            except CommandError as error:
                log.warning("show %s stage %d: %s failed: %s", run.id, index, action.command, error)
                result = {"ok": False, "error": error.as_error()}
            self._tell_staff(ctx, {"run": run.id, "stage": index, "command": action.command, **result})
        try:
            await self._write(ctx, f"{run.id}/done/{index}", {"op": "done", "run": run.id, "index": index})
        except CommandError:  # not noted: the actions run again (each once by its request id) soon
            log.warning("show %s stage %d: could not note its actions ran; trying again", run.id, index)
            ctx.schedule(_timer(ctx.room), ctx.now_ms + RETRY_MS, self._ticker(ctx.room))

    async def _perform(
        self, room: str, caller: Identity, action: Action, request: str, start_ms: float
    ) -> Any:
        payload = _payload(action, start_ms)
        if action.command == "danmaku.pin" and "text" in payload:  # say it, then pin it
            said = await self.host.command(
                room, caller, "danmaku.send", {"text": payload["text"], "request_id": request + "s"}
            )
            return await self.host.command(
                room, caller, "danmaku.pin", {"id": said["id"], "request_id": request}
            )
        return await self.host.command(room, caller, action.command, {**payload, "request_id": request})

    # -- helpers ------------------------------------------------------------------------

    def _check(self, room: str, action: Action) -> None:
        """A plan's action names a staff command whose payload is valid (checked when the plan is set)."""
        _, spec = self.host.command_spec(action.command)
        if not spec.staff_only:
            raise BadRequest(f"{action.command} is not a staff command")
        payload = _payload(action, self.host.clock.now_ms())
        if action.command == "danmaku.pin" and "text" in payload:
            if not str(payload["text"]).strip():
                raise BadRequest("a pinned text is not empty")
            return
        decode_payload(spec.payload, {**payload, "room": room})

    async def _write(self, ctx: RoomContext, key: str, event: dict[str, Any]) -> None:
        """Durable first (once per key: a repeat gets the first back), then folded in."""
        stored, _ = await ctx.store.put_record(Record(EVENT_KIND, key, ctx.room, event, int(ctx.now_ms)))
        _fold(self._rooms[ctx.room], stored.data)

    def _running(self, room: str) -> Run:
        state = self._rooms[room]
        if not state.running or state.run is None:
            raise CommandError("no show is running", "not_running")
        return state.run

    def _view(self, room: str) -> dict[str, Any]:
        run = self._rooms[room].run
        return {} if run is None else run.view()

    def _key(self, ctx: CommandContext, request: str | None, what: str) -> str:
        if request is None:
            return f"show-{what}-{secrets.token_hex(6)}"
        return f"show-{what}-" + derived_id("", ctx.room, ctx.caller.user_id, request)

    def _tell_staff(self, ctx: RoomContext, data: Mapping[str, Any]) -> None:
        for member in ctx.members():
            if member.is_staff:
                ctx.send_to(member.user_id, "show.action", data)


def _fold(state: RoomShow, event: Mapping[str, Any]) -> None:
    op = event["op"]
    if op == "plan":
        state.plan = stages_from(event["stages"])
    elif op == "start":
        state.run = Run(event["run"], stages_from(event["stages"]), event["by"], 0, float(event["at"]))
        state.done = set()
    elif state.run is not None and event.get("run") == state.run.id:
        if op == "done":
            state.done.add(int(event["index"]))
        else:
            state.run.apply(event)


def _payload(action: Action, start_ms: float) -> dict[str, Any]:
    payload = dict(action.payload)
    if "starts_in_s" in payload:
        payload["starts_at"] = int(start_ms + float(payload.pop("starts_in_s")) * 1000)
    return payload


def _timer(room: str) -> str:
    return f"show:{room}"
