"""Danmaku moderation, hot words and message rates, pure: state rebuilt from the durable action log."""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from liveroom.auth import RANK
from liveroom.errors import CommandError

__all__ = ["ACTIONS", "Action", "HotWords", "Moderation", "PerSecond", "RecentMessages", "words_of"]

ACTIONS = ("mute", "unmute", "ban", "unban", "slow", "pin", "unpin", "delete")
MAX_DELETED = 1000  # deleted message ids remembered (only recent messages can be pinned)
MAX_SLOW_SENDERS = 100_000  # users whose last send is remembered for slow mode


@dataclass(frozen=True, slots=True)
class Action:
    """One moderation action, as stored (`danmaku.moderation` records) and applied."""

    action: str  # one of ACTIONS
    by: str
    user: str = ""  # mute, unmute, ban, unban
    until: int = 0  # mute, ban: server ms
    interval_s: float = 0.0  # slow
    message: dict[str, Any] | None = None  # pin
    id: str = ""  # delete: the message id
    by_role: str = ""  # the actor's role: a mute or ban holds only on users of its rank or below

    @property
    def rank(self) -> int:
        """The actor's rank (auth.RANK); actions stored before roles were kept hold on all."""
        return RANK.get(self.by_role, max(RANK.values()))

    def record(self) -> dict[str, Any]:
        """The record's data: only the fields the action uses."""
        data: dict[str, Any] = {"action": self.action, "by": self.by}
        for name in ("user", "until", "interval_s", "message", "id", "by_role"):
            value = getattr(self, name)
            if value:
                data[name] = value
        return data

    @classmethod
    def from_record(cls, data: Any) -> Action:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(slots=True)
class Moderation:
    """One room's moderation state, rebuilt by applying its stored actions in order."""

    muted: dict[str, float] = field(default_factory=dict)  # user -> until (server ms)
    banned: dict[str, float] = field(default_factory=dict)
    # user -> the rank of whoever muted / banned them: it binds only users of that rank or below
    # (a moderator's ban of someone who joins as a host does not keep the host out).
    rank_of: dict[tuple[str, str], int] = field(default_factory=dict)
    slow_s: float = 0.0
    pinned: dict[str, Any] | None = None
    deleted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    last_sent: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def apply(self, action: Action) -> None:
        kind, user = action.action, action.user
        if kind in ("mute", "ban"):
            (self.muted if kind == "mute" else self.banned)[user] = action.until
            self.rank_of[(kind, user)] = action.rank
        elif kind in ("unmute", "unban"):
            (self.muted if kind == "unmute" else self.banned).pop(user, None)
            self.rank_of.pop((kind[2:], user), None)
        elif kind == "slow":
            self.slow_s = action.interval_s
        elif kind == "pin":
            self.pinned = action.message
        elif kind == "unpin":
            self.pinned = None
        elif kind == "delete":
            self.deleted[action.id] = None
            if len(self.deleted) > MAX_DELETED:
                self.deleted.popitem(last=False)
            if self.pinned is not None and self.pinned["id"] == action.id:
                self.pinned = None

    def expire(self, now_ms: float) -> None:
        """Forget mutes and bans that are over (bounded state: only the ones in force)."""
        for kind, punished in (("mute", self.muted), ("ban", self.banned)):
            for user in [u for u, until in punished.items() if until <= now_ms]:
                del punished[user]
                self.rank_of.pop((kind, user), None)

    def _binds(self, kind: str, user: str, role: str, now_ms: float) -> bool:
        until = (self.muted if kind == "mute" else self.banned).get(user, 0)
        return until > now_ms and self.rank_of.get((kind, user), 0) >= RANK.get(role, 0)

    def check_join(self, user: str, now_ms: float, role: str = "viewer") -> None:
        if self._binds("ban", user, role, now_ms):
            raise CommandError("you are banned from this room", "banned")

    def check_send(self, user: str, now_ms: float, staff: bool, role: str = "viewer") -> None:
        """Raise the reason `user` may not send now; otherwise note the send for slow mode."""
        self.check_join(user, now_ms, role)
        if self._binds("mute", user, role, now_ms):
            raise CommandError(f"you are muted until {int(self.muted[user])}", "muted")
        last = self.last_sent.get(user)
        if not staff and self.slow_s > 0 and last is not None and now_ms - last < self.slow_s * 1000:
            wait = (self.slow_s * 1000 - (now_ms - last)) / 1000
            raise CommandError(f"slow mode: wait {wait:.1f} s", "slow_mode")
        if self.slow_s > 0:
            self.last_sent.pop(user, None)
            self.last_sent[user] = now_ms  # most recent last
            if len(self.last_sent) > MAX_SLOW_SENDERS:
                self.last_sent.popitem(last=False)


_LATIN = re.compile(r"[a-z0-9]{2,}")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]+")
_STOP = frozenset(
    ["the", "and", "you", "for", "are", "this", "that", "with", "have", "not", "but", "was", "its"]
)


def words_of(text: str) -> set[str]:
    """Latin words, and CJK text as character bigrams (no word breaks needed)."""
    folded = text.casefold()
    words = {w for w in _LATIN.findall(folded) if w not in _STOP}
    for run in _CJK.findall(unicodedata.normalize("NFKC", folded)):
        if len(run) == 1:
            words.add(run)
        words.update(run[i : i + 2] for i in range(len(run) - 1))
    return words


class HotWords:
    """Counts per word over a sliding window, in buckets (a message counts a word once)."""

    def __init__(self, window_s: float, bucket_s: float = 10.0) -> None:
        self._bucket_ms = bucket_s * 1000
        self._keep = max(1, int(window_s / bucket_s))
        self._buckets: OrderedDict[int, Counter[str]] = OrderedDict()

    def add(self, text: str, now_ms: float) -> None:
        bucket = int(now_ms // self._bucket_ms)
        counter = self._buckets.get(bucket)
        if counter is None:
            counter = self._buckets[bucket] = Counter()
            while len(self._buckets) > self._keep + 1:
                self._buckets.popitem(last=False)
        counter.update(words_of(text))

    def top(self, n: int, now_ms: float) -> list[dict[str, Any]]:
        oldest = int(now_ms // self._bucket_ms) - self._keep + 1
        total: Counter[str] = Counter()
        for bucket, counter in self._buckets.items():
            if bucket >= oldest:
                total.update(counter)
        return [{"word": word, "count": count} for word, count in total.most_common(n)]


class RecentMessages:
    """The room's last messages by id, for pin and delete."""

    def __init__(self, keep: int) -> None:
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._keep = keep

    def add(self, message: dict[str, Any]) -> None:
        self._items[message["id"]] = message
        if len(self._items) > self._keep:
            self._items.popitem(last=False)

    def get(self, message_id: str) -> dict[str, Any] | None:
        return self._items.get(message_id)

    def latest(self, count: int) -> list[dict[str, Any]]:
        """The last `count` messages, oldest first."""
        return list(itertools.islice(reversed(self._items.values()), count))[::-1]


class PerSecond:
    """Messages per wall-clock second over the last `keep` seconds, and the total counted."""

    def __init__(self, keep: int = 60) -> None:
        self._keep = keep
        self._seconds: OrderedDict[int, int] = OrderedDict()
        self.total = 0

    def add(self, now_ms: float, count: int = 1) -> None:
        second = int(now_ms // 1000)
        self._seconds[second] = self._seconds.get(second, 0) + count
        self.total += count
        while len(self._seconds) > self._keep + 1:
            self._seconds.popitem(last=False)

    def series(self, now_ms: float) -> list[int]:
        """The last `keep` whole seconds, oldest first; the second under way is left out."""
        last = int(now_ms // 1000) - 1
        return [self._seconds.get(second, 0) for second in range(last - self._keep + 1, last + 1)]
