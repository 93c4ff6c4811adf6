"""The banned-word filter: normalise, then one Aho-Corasick pass over the text.

Normalising defeats the usual tricks: NFKC folds full-width to half-width (U+FF21 'A' to 'A') and
compatibility forms, `casefold` folds case, and everything that is not a letter or a
digit (spaces, punctuation, symbols, zero-width and other format characters) is dropped,
so "B a.d", "b\u200bad" and full-width "BAD" all read "bad". Terms are normalised the same way.
The automaton is built once; a check is linear in the text, whatever the number of terms.
"""

from __future__ import annotations

import unicodedata
from collections import deque
from collections.abc import Iterable

__all__ = ["BannedWords", "normalize"]

_KEEP = ("L", "N")  # Unicode major categories kept: letters and numbers


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in _KEEP)


class BannedWords:
    def __init__(self, terms: Iterable[str]) -> None:
        self._goto: list[dict[str, int]] = [{}]
        self._fail: list[int] = [0]
        self._hit: list[bool] = [False]
        self.size = 0
        for term in terms:
            self._add(normalize(term))
        self._link()

    def _add(self, term: str) -> None:
        if not term:
            return
        node = 0
        for ch in term:
            nxt = self._goto[node].get(ch)
            if nxt is None:
                nxt = len(self._goto)
                self._goto[node][ch] = nxt
                self._goto.append({})
                self._fail.append(0)
                self._hit.append(False)
            node = nxt
        if not self._hit[node]:
            self._hit[node] = True
            self.size += 1

    def _link(self) -> None:
        """Breadth-first failure links; a node is a hit if any suffix of it is a term."""
        queue = deque(self._goto[0].values())
        while queue:
            node = queue.popleft()
            for ch, child in self._goto[node].items():
                fallback = self._fail[node]
                while fallback and ch not in self._goto[fallback]:
                    fallback = self._fail[fallback]
                target = self._goto[fallback].get(ch, 0)
                self._fail[child] = target if target != child else 0
                self._hit[child] = self._hit[child] or self._hit[self._fail[child]]
                queue.append(child)

    def contains(self, text: str) -> bool:
        if self.size == 0:
            return False
        goto, fail, hit = self._goto, self._fail, self._hit
        node = 0
        for ch in normalize(text):
            while node and ch not in goto[node]:
                node = fail[node]
            node = goto[node].get(ch, 0)
            if hit[node]:
                return True
        return False
