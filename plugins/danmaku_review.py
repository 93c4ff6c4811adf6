"""Danmaku's review queue: messages a message hook held, waiting for staff to approve or drop.

A held message is a durable record (`danmaku.held`, keyed by the message id) written before
anyone hears of it; a decision is another (`danmaku.review`, the same key: one decision per
message, a retry gets the first one back). A room's queue is the held records without a
decision, rebuilt when the room is loaded, and bounded (`[plugins.danmaku] review_max`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from liveroom.message_hook import Answer, Outcome
from liveroom.plugin import RoomContext
from liveroom.store import records_of

__all__ = ["HELD_KIND", "REVIEW_KIND", "ReviewQueue", "answer_data", "held_record", "load_queue"]

HELD_KIND = "danmaku.held"
REVIEW_KIND = "danmaku.review"


@dataclass(slots=True)
class ReviewQueue:
    """The held messages of one room, oldest first."""

    limit: int
    held: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        return len(self.held) >= self.limit

    def add(self, item: Mapping[str, Any]) -> None:
        self.held[item["id"]] = dict(item)

    def pop(self, message_id: str) -> dict[str, Any] | None:
        return self.held.pop(message_id, None)

    def listed(self) -> list[dict[str, Any]]:
        """What staff see: each held message without its pending answers."""
        return [{k: v for k, v in item.items() if k != "answers"} for item in self.held.values()]


def held_record(message: Mapping[str, Any], outcome: Outcome, now_ms: float) -> dict[str, Any]:
    """A held message's record: the message as the hooks left it, why, and the answers to
    publish after it if it is approved."""
    return {
        **message,
        "text": outcome.text,
        "reason": outcome.reason,
        "by": outcome.by,
        "at": int(now_ms),
        "answers": [answer_data(answer) for answer in outcome.answers],
    }


def answer_data(answer: Answer) -> dict[str, Any]:
    return {"text": answer.text, "bot": {"id": answer.bot.id, "name": answer.bot.name}}


async def load_queue(ctx: RoomContext, limit: int) -> ReviewQueue:
    """The room's queue from its records: held and not decided (the newest `limit`)."""
    decided = {record.key async for record in records_of(ctx.store, REVIEW_KIND, ctx.room)}
    queue = ReviewQueue(limit)
    async for record in records_of(ctx.store, HELD_KIND, ctx.room):
        if record.key not in decided:
            queue.add(record.data)
    while len(queue.held) > limit:
        queue.held.pop(next(iter(queue.held)))
    return queue
