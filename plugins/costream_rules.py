"""Co-streaming stage rules, pure: who may ask, a queue in lanes, at most N guests in numbered slots.

Lanes. `StagePolicy.lanes` lists tiers (the token's `tier` claim) from the highest priority
down; each is a lane of its own, ahead of the general lane that holds everyone else. The
queue is shown and served lane by lane, first come first served within a lane, so a VIP
who asks later still comes before every general request. Each lane holds at most
`max_queue` requests, so a full general queue never closes the VIP lane.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liveroom.auth import TIER_PATTERN
from liveroom.errors import CommandError

__all__ = ["QueuedRequest", "Stage", "StagePolicy"]


@dataclass(frozen=True, slots=True)
class StagePolicy:
    """Who may ask to join the stage, and the order of the lanes."""

    allowed_roles: tuple[str, ...] = ()
    allowed_tiers: tuple[str, ...] = ()
    lanes: tuple[str, ...] = ()  # tiers, highest priority first

    def __post_init__(self) -> None:
        for tier in (*self.allowed_tiers, *self.lanes):
            if not TIER_PATTERN.fullmatch(tier):
                raise ValueError(f"{tier!r} is not a tier (a-z, 0-9, '_', '-'; at most 32 characters)")
        if len(set(self.lanes)) != len(self.lanes):
            raise ValueError("priority_tiers lists a tier twice")

    def admits(self, role: str, tier: str | None) -> bool:
        """Open to all when neither list is set; else to a listed role OR a listed tier."""
        if not self.allowed_roles and not self.allowed_tiers:
            return True
        return role in self.allowed_roles or (tier is not None and tier in self.allowed_tiers)

    def lane_of(self, tier: str | None) -> int:
        """0 for the first tier in `lanes`, ...; `len(lanes)` for the general lane."""
        return self.lanes.index(tier) if tier in self.lanes else len(self.lanes)

    def lane_name(self, lane: int) -> str:
        return self.lanes[lane] if lane < len(self.lanes) else "general"


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    user: str
    name: str
    tier: str | None
    lane: int
    since_ms: float
    order: int  # breaks ties between requests of the same millisecond


@dataclass(slots=True)
class Stage:
    max_guests: int
    max_queue: int  # per lane
    policy: StagePolicy = field(default_factory=StagePolicy)
    queue: dict[str, QueuedRequest] = field(default_factory=dict)  # user id -> request
    slots: dict[int, tuple[str, str]] = field(default_factory=dict)  # slot -> (user id, name)
    requests_made: int = field(default=0, init=False)

    def slot_of(self, user: str) -> int | None:
        return next((slot for slot, (who, _) in self.slots.items() if who == user), None)

    def request(self, user: str, name: str, role: str, tier: str | None, now_ms: float) -> int:
        """Queue a request in its lane; returns its 1-based position in the whole queue."""
        if not self.policy.admits(role, tier):
            raise CommandError("the stage is open to some roles or tiers only", "not_allowed")
        if self.slot_of(user) is not None:
            raise CommandError("you are already on stage", "on_stage")
        if user in self.queue:
            raise CommandError("you are already in the queue", "already_queued")
        lane = self.policy.lane_of(tier)
        if sum(r.lane == lane for r in self.queue.values()) >= self.max_queue:
            raise CommandError(f"the {self.policy.lane_name(lane)} stage queue is full", "queue_full")
        self.requests_made += 1
        self.queue[user] = QueuedRequest(user, name, tier, lane, now_ms, self.requests_made)
        return self.position(user)

    def ordered(self) -> list[QueuedRequest]:
        return sorted(self.queue.values(), key=lambda r: (r.lane, r.since_ms, r.order))

    def position(self, user: str) -> int:
        return 1 + next(n for n, r in enumerate(self.ordered()) if r.user == user)

    def next_in_line(self) -> str:
        """Who `accept` without a user takes: the head of the highest non-empty lane."""
        if not self.queue:
            raise CommandError("nobody is waiting to join the stage", "queue_empty")
        return self.ordered()[0].user

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
        self.slots[free[0]] = (user, self.queue.pop(user).name)
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
        """The queue in serving order, each request with its lane and when it was made."""
        return [
            {
                "id": r.user,
                "name": r.name,
                "tier": r.tier,
                "lane": self.policy.lane_name(r.lane),
                "since": int(r.since_ms),
            }
            for r in self.ordered()
        ]
