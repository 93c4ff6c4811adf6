"""The FAQ bot's rules, pure: normalised text, fuzzy matching, repeats, unanswered questions.

Normalising: NFKC (full-width letters, digits and punctuation to half-width), casefold,
punctuation and symbols dropped; each CJK character is a token of its own and Latin words
are tokens, so "优惠券怎么用" and "怎么使用优惠券" share their tokens as "how do I use a
coupon" and "coupon: how do I use it" do. A few filler tokens (请问, 吗, 呀, please...) are
left out. Matching is rapidfuzz's `token_sort_ratio` (0..100) of the normalised texts, computed
as `fuzz.ratio` of their tokens sorted once per text (`match_key`): an edit-distance ratio,
so word order and small changes cost little and an unrelated message scores under 50.
Time is passed in (`now_ms`).
"""

from __future__ import annotations

import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz import fuzz, process

__all__ = ["FaqIndex", "Unanswered", "is_question", "match_key", "normalize"]

# Tokens that carry no meaning for matching (CJK ones are single characters: tokens are).
ENGLISH_FILLERS = "please pls plz hi hello hey the a an"
FILLERS = frozenset("请问吗呢吧啊呀哦嘛哈了的哇") | frozenset(ENGLISH_FILLERS.split())
QUESTION_CJK = ("吗", "呢", "什么", "怎么", "多少", "几", "哪", "为什么", "如何", "是否", "能不能", "有没有")
ENGLISH_QUESTION = "how what when where why who which can could is are do does will would any anyone"
QUESTION_WORDS = frozenset(ENGLISH_QUESTION.split())


def _is_cjk(ch: str) -> bool:
    return "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"


def tokens(text: str) -> list[str]:
    """Latin words and single CJK characters, folded, without punctuation or symbols."""
    found: list[str] = []
    word: list[str] = []
    for ch in unicodedata.normalize("NFKC", text).casefold():
        if unicodedata.category(ch)[0] in ("L", "N") and not _is_cjk(ch):
            word.append(ch)
            continue
        if word:
            found.append("".join(word))
            word = []
        if _is_cjk(ch):
            found.append(ch)
    if word:
        found.append("".join(word))
    return found


def normalize(text: str) -> str:
    """The text as matched: its tokens without fillers, space-separated."""
    return " ".join(token for token in tokens(text) if token not in FILLERS)


def match_key(text: str) -> str:
    """The normalised tokens sorted: `ratio` of two keys is rapidfuzz's `token_sort_ratio` of the
    texts, with the sorting done once per text instead of once per comparison."""
    return " ".join(sorted(normalize(text).split()))


def is_question(text: str) -> bool:
    """A message that asks something: a question mark, a Chinese question word or particle,
    or an English question word first."""
    folded = unicodedata.normalize("NFKC", text).strip()
    if folded.endswith("?") or any(word in folded for word in QUESTION_CJK):
        return True
    words = tokens(folded)
    return bool(words) and words[0] in QUESTION_WORDS


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    questions: tuple[str, ...]
    answer: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "questions": list(self.questions), "answer": self.answer}


class FaqIndex:
    """A room's question -> answer pairs, and when each was last answered."""

    def __init__(self, threshold: float, repeat_interval_ms: float) -> None:
        self.threshold = threshold
        self.repeat_interval_ms = repeat_interval_ms
        self.entries: dict[str, Entry] = {}
        self._questions: list[str] = []  # normalised, each phrasing of every entry...
        self._owners: list[str] = []  # ...and the entry it belongs to
        self._answered: dict[str, float] = {}

    def apply(self, change: Mapping[str, Any]) -> None:
        """A durable change (`faq.change` record data): set or remove an entry."""
        if change["op"] == "remove":
            self.entries.pop(change["id"], None)
            self._answered.pop(change["id"], None)
        else:
            self.entries[change["id"]] = Entry(change["id"], tuple(change["questions"]), change["answer"])
        pairs = [(match_key(q), entry.id) for entry in self.entries.values() for q in entry.questions]
        self._questions = [question for question, _ in pairs]
        self._owners = [owner for _, owner in pairs]

    def match(self, text: str) -> tuple[Entry, float] | None:
        """The best entry for `text` at or above the threshold, with its score."""
        query = match_key(text)
        if not query or not self._questions:
            return None
        found = process.extractOne(query, self._questions, scorer=fuzz.ratio, score_cutoff=self.threshold)
        if found is None:
            return None
        _, score, index = found
        return self.entries[self._owners[index]], float(score)

    def answer(self, text: str, now_ms: float) -> Entry | None:
        """The entry to answer with now, or None (no match, or answered within the interval)."""
        found = self.match(text)
        return None if found is None or not self.due(found[0], now_ms) else found[0]

    def due(self, entry: Entry, now_ms: float) -> bool:
        """Whether `entry` may answer now (not within the interval); if so, it is answering."""
        last = self._answered.get(entry.id)
        if last is not None and now_ms - last < self.repeat_interval_ms:
            return False
        self._answered[entry.id] = now_ms
        return True

    def listed(self) -> list[dict[str, Any]]:
        return [entry.public() for entry in self.entries.values()]


@dataclass(slots=True)
class _Asked:
    question: str  # as first asked
    times: deque[float] = field(default_factory=deque)
    surfaced_ms: float | None = None
    surfaced_count: int = 0


class Unanswered:
    """Questions no entry matched, grouped by similarity, counted over a sliding window;
    bounded (the least recently asked dropped). `add` says when one should be surfaced."""

    def __init__(
        self, window_ms: float, threshold: float, surface_after: int, surface_every_ms: float, limit: int
    ) -> None:
        self.window_ms = window_ms
        self.threshold = threshold
        self.surface_after = surface_after
        self.surface_every_ms = surface_every_ms
        self.limit = limit
        self._asked: dict[str, _Asked] = {}  # normalised -> counts, least recently asked first

    def add(self, text: str, now_ms: float) -> dict[str, Any] | None:
        """Count one asking; the question's figures if staff should hear of it now."""
        key = self._group(match_key(text))
        if not key:
            return None
        asked = self._asked.pop(key, None) or _Asked(text.strip())
        self._asked[key] = asked  # now the most recently asked
        asked.times.append(now_ms)
        self._trim(asked, now_ms)
        while len(self._asked) > self.limit:
            self._asked.pop(next(iter(self._asked)))
        count = len(asked.times)
        due = asked.surfaced_ms is None or now_ms - asked.surfaced_ms >= self.surface_every_ms
        if count < self.surface_after or not due or count <= asked.surfaced_count:
            return None
        asked.surfaced_ms, asked.surfaced_count = now_ms, count
        return self._figures(asked)

    def top(self, now_ms: float, limit: int = 20) -> list[dict[str, Any]]:
        """The questions asked at least `surface_after` times in the window, most asked first."""
        for asked in self._asked.values():
            self._trim(asked, now_ms)
        counted = [a for a in self._asked.values() if len(a.times) >= self.surface_after]
        counted.sort(key=lambda asked: -len(asked.times))
        return [self._figures(asked) for asked in counted[:limit]]

    def forget(self, questions: Iterable[str]) -> None:
        """Questions an entry now answers leave the list."""
        for question in questions:
            key = self._group(match_key(question))
            self._asked.pop(key, None)

    def _group(self, key: str) -> str:
        if not key or key in self._asked:
            return key
        found = process.extractOne(key, list(self._asked), scorer=fuzz.ratio, score_cutoff=self.threshold)
        return key if found is None else str(found[0])

    def _trim(self, asked: _Asked, now_ms: float) -> None:
        while asked.times and asked.times[0] <= now_ms - self.window_ms:
            asked.times.popleft()

    def _figures(self, asked: _Asked) -> dict[str, Any]:
        count, minutes = len(asked.times), round(self.window_ms / 60_000, 1)
        return {
            "question": asked.question,
            "count": count,
            "window_s": self.window_ms / 1000,
            "summary": f"asked {count} times in {minutes:g} min",
            "last_at": int(asked.times[-1]) if asked.times else None,
        }
