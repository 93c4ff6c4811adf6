"""One restream destination's state, over injected time: pure.

connecting --(first packet written)--> live --(a write or the connect fails)--> retrying
retrying --(after the backoff)--> connecting;  `max_failures` failures in a row without
ever reaching live, or a URL we will not push to, --> failed (no more attempts).

The backoff starts at `initial_s` and doubles per failure up to `max_s`; a destination
that was live for at least `max_s` starts again from `initial_s` (it was healthy).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONNECTING", "FAILED", "LIVE", "RETRYING", "RestreamPolicy", "RestreamState"]

CONNECTING, LIVE, RETRYING, FAILED = "connecting", "live", "retrying", "failed"


@dataclass(frozen=True, slots=True)
class RestreamPolicy:
    initial_s: float = 1.0
    max_s: float = 30.0
    max_failures: int = 10  # in a row, never live in between; 0 = retry for ever


class RestreamState:
    def __init__(self, policy: RestreamPolicy, now: float) -> None:
        self.policy = policy
        self.state = CONNECTING
        self.since = now
        self.failures = 0  # in a row
        self.attempts = 1
        self.error: str | None = None
        self.retry_at: float | None = None
        self._live_since: float | None = None

    def live(self, now: float) -> bool:
        """A packet reached the destination; True if that changed the state."""
        if self.state == LIVE:
            return False
        self.state, self.since, self.error, self.retry_at = LIVE, now, None, None
        self._live_since = now
        return True

    def failed(self, error: str, now: float, permanent: bool = False) -> float | None:
        """The connection failed or broke: when to try again (None: never, `failed`)."""
        if self._live_since is not None and now - self._live_since >= self.policy.max_s:
            self.failures = 0  # it had been healthy: start the backoff afresh
        self._live_since = None
        self.failures += 1
        self.error = error
        limit = self.policy.max_failures
        if permanent or (limit and self.failures >= limit):
            self.state, self.since, self.retry_at = FAILED, now, None
            return None
        delay = min(self.policy.max_s, self.policy.initial_s * 2 ** (self.failures - 1))
        self.state, self.since, self.retry_at = RETRYING, now, now + delay
        return self.retry_at

    def retry(self, now: float) -> None:
        self.state, self.since = CONNECTING, now
        self.attempts += 1
