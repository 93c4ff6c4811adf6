"""Co-streaming stage rules, pure: a queue of requests and at most N guests in numbered slots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liveroom.errors import CommandError

__all__ = ["Stage"]


@dataclass(slots=True)
class Stage:
    max_guests: int
    max_queue: int
    queue: dict[str, str] = field(default_factory=dict)  # user id -> name, in request order
    slots: dict[int, tuple[str, str]] = field(default_factory=dict)  # slot -> (user id, name)

    def slot_of(self, user: str) -> int | None:
        return next((slot for slot, (who, _) in self.slots.items() if who == user), None)

    def request(self, user: str, name: str) -> int:
        """Queue a request; returns the 1-based position."""
        if self.slot_of(user) is not None:
            raise CommandError("you are already on stage", "on_stage")
        if user in self.queue:
            raise CommandError("you are already in the queue", "already_queued")
        if len(self.queue) >= self.max_queue:
            raise CommandError("the stage queue is full", "queue_full")
        self.queue[user] = name
        return len(self.queue)

    def withdraw(self, user: str) -> None:
        if self.queue.pop(user, None) is None:
            raise CommandError("this user is not in the queue", "not_queued")

    def accept(self, user: str) -> int:
        """Move a queued user to the lowest free slot; returns the slot (1..max_guests)."""
        if user not in self.queue:
            raise CommandError("this user is not in the queue", "not_queued")
        free = [n for n in range(1, self.max_guests + 1) if n not in self.slots]
        if not free:
            raise CommandError(f"the stage is full ({self.max_guests} guests)", "stage_full")
        self.slots[free[0]] = (user, self.queue.pop(user))
        return free[0]

    def remove(self, user: str) -> int:
        slot = self.slot_of(user)
        if slot is None:
            raise CommandError("this user is not on stage", "not_on_stage")
        del self.slots[slot]
        return slot

    def guests(self) -> list[dict[str, Any]]:
        return [{"slot": s, "id": u, "name": n} for s, (u, n) in sorted(self.slots.items())]

    def waiting(self) -> list[dict[str, Any]]:
        return [{"id": user, "name": name} for user, name in self.queue.items()]
