"""When to ask a publisher for a keyframe: pure logic over injected time.

Every joining or lagging viewer wants a keyframe, and each PLI/FIR a viewer sends is a
wish for one too. Forwarding them all would let a join storm make the publisher's
encoder emit keyframe after keyframe (each one several times the size of a delta frame).
The gate lets one request through per interval; a keyframe arriving inside the interval
satisfies everyone who was waiting.

A viewer moving to another rendition (ABR) is the exception: a keyframe that came just
before it asked is of no use to it, and it should not wait out a whole interval. Its
requests only keep `move_interval_s` from the last request (bounding what moves cost the
encoder: at most one extra keyframe per `move_interval_s`, however many viewers move).
"""

from __future__ import annotations

__all__ = ["KeyframeGate"]


class KeyframeGate:
    def __init__(self, interval_s: float, move_interval_s: float | None = None) -> None:
        self.interval_s = interval_s
        self.move_interval_s = interval_s if move_interval_s is None else move_interval_s
        self._last_request: float | None = None
        self._last_keyframe: float | None = None
        self.requests_sent = 0
        self.requests_absorbed = 0

    def want(self, now: float, for_move: bool = False) -> bool:
        """A keyframe is wanted now (`for_move`: by a viewer moving onto this rendition, who
        needs one after `now`): True if a request should go upstream."""
        if for_move:
            recent, interval = [self._last_request], self.move_interval_s
        else:
            recent, interval = [self._last_request, self._last_keyframe], self.interval_s
        times = [t for t in recent if t is not None]
        if times and now - max(times) < interval:
            self.requests_absorbed += 1
            return False
        self._last_request = now
        self.requests_sent += 1
        return True

    def keyframe_seen(self, now: float) -> None:
        self._last_keyframe = now
