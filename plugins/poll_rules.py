"""Poll rules, pure: one vote per user (changing it if allowed), tallies, the deadline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from liveroom.errors import CommandError

__all__ = ["Poll"]


@dataclass(slots=True)
class Poll:
    id: str
    room: str
    question: str
    options: tuple[str, ...]
    ends_at: int  # server ms; the server's clock closes the poll
    votes: dict[str, int] = field(default_factory=dict)
    counts: list[int] = field(default_factory=list)
    closed_by: str | None = None

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.options)

    def is_open(self, now_ms: float) -> bool:
        return self.closed_by is None and now_ms < self.ends_at

    def accepts(self, user: str, option: int, now_ms: float, allow_change: bool) -> bool:
        """Whether `user`'s vote would change anything (False: the same option again), without
        counting it; raises what the vote is refused with."""
        if not self.is_open(now_ms):
            raise CommandError("the poll is closed", "poll_closed")
        if not 0 <= option < len(self.options):
            raise CommandError(f"option must be 0..{len(self.options) - 1}", "invalid_option")
        previous = self.votes.get(user)
        if previous is not None and previous != option and not allow_change:
            raise CommandError("you have already voted", "already_voted")
        return previous != option

    def vote(self, user: str, option: int, now_ms: float, allow_change: bool) -> bool:
        """Count `user`'s vote. Returns False when it changes nothing (same option again)."""
        if not self.accepts(user, option, now_ms, allow_change):
            return False
        previous = self.votes.get(user)
        if previous is not None:
            self.counts[previous] -= 1
        self.votes[user] = option
        self.counts[option] += 1
        return True

    def restore(self, user: str, option: int) -> None:
        """Count a vote read back from the records (a later one of the same user replaces it)."""
        previous = self.votes.get(user)
        if previous is not None:
            self.counts[previous] -= 1
        self.votes[user] = option
        self.counts[option] += 1

    def close(self, by: str) -> None:
        if self.closed_by is None:
            self.closed_by = by

    def tally(self) -> dict[str, Any]:
        return {"poll": self.id, "counts": list(self.counts), "total": sum(self.counts)}

    def result(self) -> dict[str, Any]:
        top = max(self.counts) if self.counts else 0
        winners = [i for i, n in enumerate(self.counts) if n == top and top > 0]
        return {
            **self.describe(),
            **self.tally(),
            "winners": winners,
            "closed_by": self.closed_by,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "poll": self.id,
            "question": self.question,
            "options": list(self.options),
            "ends_at": self.ends_at,
        }
