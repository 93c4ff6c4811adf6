"""The run of show, pure: a plan of stages, and a run folded from its durable events.

A run starts at stage 0 and moves to the next stage when the current one's `duration_s` is
over (or the host says next); after the last stage it ends. Every move is an event with a
key of its own (`run/stage/N`), written once: two timers (a restart, a takeover) cannot
move the run twice. `due(now_ms)` says what the server's clock calls for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

__all__ = ["DEFAULT_PLAN", "Action", "Run", "Stage"]

CommandName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_.]*$", max_length=64)]


@dataclass(frozen=True, slots=True)
class Action:
    """A staff command run when the stage begins, as the host who started the show.
    `starts_in_s` in a payload becomes `starts_at` (the stage's start + that); a
    `danmaku.pin` with `text` (not `id`) says the text as the host and pins it."""

    command: CommandName
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stage:
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)]
    actions: Annotated[list[Action], msgspec.Meta(max_length=5)] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


def stages_from(data: Any) -> list[Stage]:
    return msgspec.convert(data, list[Stage])


# The seeds' five-stage template: every room's plan until its host sets another.
DEFAULT_PLAN: tuple[Stage, ...] = (
    Stage("Warm-up", 180, [Action("coupon.drop", {"title": "Welcome coupon", "count": 100})]),
    Stage(
        "Product introduction",
        1800,
        [
            Action(
                "danmaku.pin",
                {"text": "Ask anything about today's products: the FAQ bot and the host answer"},
            )
        ],
    ),
    Stage(
        "Interaction",
        600,
        [
            Action(
                "poll.create",
                {
                    "question": "Which colour do you like?",
                    "options": ["Red", "Blue", "Green"],
                    "duration_s": 60,
                },
            )
        ],
    ),
    Stage(
        "Flash sale",
        900,
        [
            Action(
                "sale.schedule",
                {
                    "sku": "tea-1",
                    "title": "Tea set",
                    "price": "19.90",
                    "stock": 100,
                    "per_user_limit": 1,
                    "starts_in_s": 10,
                    "duration_s": 300,
                },
            )
        ],
    ),
    Stage("Closing", 120),
)


@dataclass(slots=True)
class Run:
    """A running (or ended) show: its plan as it was at the start, where it is, who runs it."""

    id: str
    stages: list[Stage]
    by: Mapping[str, str]  # {"id", "name"}: the actions run as this host
    index: int = 0
    started_ms: float = 0.0  # the current stage's start
    ended_ms: float | None = None

    @property
    def stage(self) -> Stage:
        return self.stages[self.index]

    @property
    def ends_ms(self) -> float:
        return self.started_ms + self.stage.duration_s * 1000

    def apply(self, event: Mapping[str, Any]) -> None:
        """A durable event of this run: `stage` (moved to `index` at `at`) or `end`."""
        if event["op"] == "stage":
            self.index, self.started_ms = int(event["index"]), float(event["at"])
        elif event["op"] == "end":
            self.ended_ms = float(event["at"])

    def due(self, now_ms: float) -> str | None:
        """What the clock calls for now: "next", "end", or None."""
        if self.ended_ms is not None or now_ms < self.ends_ms:
            return None
        return "next" if self.index + 1 < len(self.stages) else "end"

    def view(self) -> dict[str, Any]:
        """What clients see (`show.stage`, join state)."""
        following = self.stages[self.index + 1].name if self.index + 1 < len(self.stages) else None
        return {
            "run": self.id,
            "index": self.index,
            "name": self.stage.name,
            "started_at": int(self.started_ms),
            "ends_at": int(self.ends_ms),
            "count": len(self.stages),
            "next": following,
        }
