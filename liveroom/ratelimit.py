"""Token bucket: pure, over the caller's monotonic time."""

from __future__ import annotations

from collections import OrderedDict

from liveroom.errors import RateLimited

__all__ = ["KeyedBuckets", "TokenBucket", "UserRate"]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up. `take` answers whether one may pass."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are available (0 if they are now)."""
        missing = cost - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate if self.rate > 0 else float("inf")


class KeyedBuckets:
    """A token bucket per key (a user), bounded: at most `max_keys` are kept, the longest idle
    dropped first. A dropped bucket is almost always full already (idle that long), and a
    full bucket is a fresh one, so dropping it changes nothing: no global reset."""

    __slots__ = ("_buckets", "_max_keys", "burst", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self._max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    def __len__(self) -> int:
        return len(self._buckets)

    def grant(self, key: str, wanted: float, now: float) -> int:
        """How many of `wanted` units pass now (whole units, as many as the bucket holds)."""
        tokens = self._refilled(key, now)
        granted = int(min(wanted, tokens))
        self._keep(key, tokens - granted, now)
        return granted

    def take(self, key: str, now: float, cost: int = 1) -> bool:
        """Whether `cost` units pass now, all or nothing."""
        tokens = self._refilled(key, now)
        passed = tokens >= cost
        self._keep(key, tokens - cost if passed else tokens, now)
        return passed

    def _refilled(self, key: str, now: float) -> float:
        tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - stamp) * self.rate)

    def _keep(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)  # most recently used last
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)


class UserRate:
    """A plugin's per-user rate for its commands that publish to a room: `rate_per_s` a
    second per user and room, `burst` in a row. Per room a `KeyedBuckets` (bounded), dropped
    with the room (`forget`, from the plugin's `release_room`)."""

    __slots__ = ("_max_keys", "_rooms", "burst", "rate", "what")

    def __init__(self, rate_per_s: float, burst: float, what: str, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.what, self._max_keys = rate_per_s, burst, what, max_keys
        self._rooms: dict[str, KeyedBuckets] = {}

    def check(self, room: str, user: str, now: float) -> None:
        """Raise `RateLimited` if `user` has used up their rate in `room`."""
        buckets = self._rooms.get(room)
        if buckets is None:
            buckets = self._rooms[room] = KeyedBuckets(self.rate, self.burst, self._max_keys)
        if not buckets.take(user, now):
            raise RateLimited(f"{self.what}: at most {self.rate:g} a second per user; wait a little")

    def forget(self, room: str) -> None:
        self._rooms.pop(room, None)
