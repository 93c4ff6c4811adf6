"""When a track's next frame is due, from what its own frames say: pure, over injected time.

A live encoder sends at its frame rate (video: 30 fps is a frame every 33 ms; Opus: every
20 ms), and its RTP timestamps say how far apart the frames were meant to be. A path
whose frames stop (a crashed encoder, a cut link) is late long before a fixed silence
threshold of 100 ms has passed: `Cadence` learns each track's interval (from the RTP
timestamps, or the arrivals when there are none) and how much the arrivals wander around
it (interarrival jitter as RFC 3550 smooths it), and says when the track is overdue:
one interval after its last frame, plus four times its jitter, and never less than
`MARGIN_S`. A link with 30 ms of jitter therefore waits longer than a quiet LAN.
"""

from __future__ import annotations

__all__ = ["CLOCK_RATES", "MARGIN_S", "WARM_FRAMES", "Cadence"]

# RTP clock rates of the program's tracks ("aac": an RTMP publisher's own AAC, at 48 kHz)
CLOCK_RATES = {"audio": 48000, "video": 90000, "aac": 48000}

MARGIN_S = 0.012  # a frame this much later than its interval is not yet overdue
WARM_FRAMES = 10  # frames seen before the cadence is trusted (before: the fixed threshold)
MASK = 0xFFFFFFFF


class Cadence:
    """One track's frame interval and arrival jitter (seconds)."""

    def __init__(self, clock_rate: int | None) -> None:
        self._rate = clock_rate
        self.interval = 0.0
        self.jitter = 0.0
        self.frames = 0
        self.last_at: float | None = None
        self._last_timestamp: int | None = None

    def frame(self, now: float, timestamp: int | None) -> None:
        step = self._media_step(timestamp)
        if self.last_at is not None:
            arrival = now - self.last_at
            meant = step if step is not None and 0 < step < 1 else arrival
            if meant > 0:  # frames sharing a timestamp (a rendition's slices) say nothing
                self.interval = meant if self.frames <= 1 else self.interval + (meant - self.interval) / 8
                self.jitter += (abs(arrival - meant) - self.jitter) / 16
        self.frames += 1
        self.last_at = now
        if timestamp is not None:
            self._last_timestamp = timestamp

    def _media_step(self, timestamp: int | None) -> float | None:
        if timestamp is None or self._last_timestamp is None or not self._rate:
            return None
        return ((timestamp - self._last_timestamp) & MASK) / self._rate

    def wait_s(self) -> float | None:
        """How long after the last thing heard its next frame is overdue; None until the
        cadence is learnt."""
        if self.frames < WARM_FRAMES:
            return None
        return self.interval + max(MARGIN_S, 4 * self.jitter)
