"""Asking a publisher again for packets it lost: aiortc's receiver asks only when a new gap
shows (one loss, one NACK, unless another loss follows), so a retransmission lost on the
way leaves a hole that holds every later frame of the track in the jitter buffer, and the
program's picture stops (a failover's 100 ms rule then fires on a live path).

`ReaskingNacks` stands in for aiortc's `NackGenerator` (the same duck type: `add(packet)`
says whether to send a NACK now, `missing` is what it asks for): each missing packet is
asked for when the gap shows and again every `REASK_S` until it comes, while the sender
can still have it (aiortc's sender keeps the last 128 packets; a browser keeps more).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["KEPT_BY_SENDER", "REASK_S", "ReaskingNacks"]

REASK_S = 0.05  # about a round trip on a jittery link; a NACK is a few bytes
KEPT_BY_SENDER = 128


class ReaskingNacks:
    """`reask_s`: how long before asking again; `kept`: how far back the sender keeps packets
    (the ABR viewer of the load tests asks the server, which keeps more than aiortc)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        reask_s: float = REASK_S,
        kept: int = KEPT_BY_SENDER,
    ) -> None:
        self._clock = clock
        self._reask_s, self._kept = reask_s, kept
        self.max_seq: int | None = None
        self.missing: set[int] = set()  # what the next NACK asks for (aiortc reads it)
        self._asked: dict[int, float] = {}  # every missing packet -> when it was last asked for

    def add(self, packet: Any) -> bool:
        """A packet arrived: whether to send a NACK now (for `missing`)."""
        sequence, now = packet.sequence_number, self._clock()
        if self.max_seq is None:
            self.max_seq = sequence
            return False
        ahead = (sequence - self.max_seq) & 0xFFFF
        if 0 < ahead < 0x8000:
            for gap in range(1, ahead):
                self._asked[(self.max_seq + gap) & 0xFFFF] = float("-inf")
            self.max_seq = sequence
        else:
            self._asked.pop(sequence, None)
        oldest = (self.max_seq - self._kept) & 0xFFFF
        for seq in [s for s in self._asked if (s - oldest) & 0xFFFF >= 0x8000]:
            del self._asked[seq]
        self.missing = {seq for seq, at in self._asked.items() if now - at >= self._reask_s}
        for seq in self.missing:
            self._asked[seq] = now
        return bool(self.missing)

    def forget_before(self, origin: int) -> None:
        """A jitter buffer skipped to a keyframe at `origin`: older holes no longer matter."""
        self._asked = {seq: at for seq, at in self._asked.items() if (seq - origin) & 0xFFFF < 0x8000}
