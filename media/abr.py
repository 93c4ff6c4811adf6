"""Adaptive bitrate: which rung of the ladder one viewer should get. Pure logic over injected time.

A viewer's link is described by what its RTCP says: the receiver's bandwidth estimate
(REMB), the fraction of packets lost and the round-trip time. The controller steps
**down** at once when the current rung no longer fits the estimate (to the highest rung
that does) or when loss / RTT say the link is congested (one rung per `down_every_s`),
and steps **up** one rung only after the next rung has fitted with room to spare, with
low loss, for `up_hold_s`: stepping down is cheap for the viewer, oscillating is not.
A viewer may pin a rung (its page's `quality` choice); the controller then only reports it.

The switch itself happens at the next keyframe of the target rung (the caller's job),
so a decision here is a wish, not a cut.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LADDER", "AbrPolicy", "LinkReport", "Rung", "RungController", "parse_ladder"]


@dataclass(frozen=True, slots=True)
class Rung:
    name: str  # "720p"
    height: int
    bitrate_bps: int


DEFAULT_LADDER = ("720p:2500000", "480p:1200000", "360p:700000", "180p:250000")


def parse_ladder(entries: tuple[str, ...]) -> tuple[Rung, ...]:
    """`media.abr_ladder` ("720p:2500000", ...) as rungs, highest bitrate first."""
    rungs = []
    for entry in entries:
        name, _, bitrate = entry.partition(":")
        if not name.endswith("p") or not name[:-1].isdigit() or not bitrate.isdigit():
            raise ValueError(f"a ladder rung is written like 720p:2500000, not {entry!r}")
        rungs.append(Rung(name, int(name[:-1]), int(bitrate)))
    if not rungs:
        raise ValueError("the ladder needs at least one rung")
    return tuple(sorted(rungs, key=lambda rung: -rung.bitrate_bps))


@dataclass(frozen=True, slots=True)
class LinkReport:
    estimate_bps: float | None  # REMB from the viewer; None when it sends none
    loss: float = 0.0  # fraction lost since the last report (RTCP RR), 0..1
    rtt_s: float | None = None


@dataclass(frozen=True, slots=True)
class AbrPolicy:
    fit: float = 0.95  # a rung fits while its bitrate is at most this share of the estimate...
    up_fit: float = 0.8  # ...and the next one up must fit within this share (hysteresis)
    up_hold_s: float = 4.0
    down_every_s: float = 1.0  # congestion (loss, RTT) steps down at most this often
    congested_loss: float = 0.08
    clean_loss: float = 0.02
    congested_rtt_s: float = 0.4


class RungController:
    def __init__(self, ladder: tuple[Rung, ...], policy: AbrPolicy, start: int = 0) -> None:
        self.ladder = ladder
        self.policy = policy
        self.current = min(start, len(ladder) - 1)  # index into the ladder, 0 = highest
        self.pinned: int | None = None
        self._up_since: float | None = None
        self._last_down: float | None = None

    def pin(self, name: str | None) -> None:
        """Pin a rung by name (the viewer's choice), or None for automatic."""
        if name is None:
            self.pinned = None
            return
        names = [rung.name for rung in self.ladder]
        if name not in names:
            raise ValueError(f"no rung {name!r} in the ladder {names}")
        self.pinned = names.index(name)

    @property
    def rung(self) -> Rung:
        return self.ladder[self.current]

    def update(self, report: LinkReport, now: float) -> Rung:
        """The viewer's latest RTCP figures: returns the rung it should be on."""
        if self.pinned is not None:
            self.current = self.pinned
            return self.rung
        if self._congested(report) and self._may_step_down(now):
            self._down(min(self.current + 1, len(self.ladder) - 1), now)
        elif report.estimate_bps is not None:
            fitting = self._highest_fitting(report.estimate_bps * self.policy.fit)
            if fitting > self.current:
                self._down(fitting, now)
            else:
                self._maybe_up(report, now)
        return self.rung

    def _congested(self, report: LinkReport) -> bool:
        slow = report.rtt_s is not None and report.rtt_s > self.policy.congested_rtt_s
        return report.loss > self.policy.congested_loss or slow

    def _may_step_down(self, now: float) -> bool:
        return self._last_down is None or now - self._last_down >= self.policy.down_every_s

    def _highest_fitting(self, budget_bps: float) -> int:
        for index, rung in enumerate(self.ladder):
            if rung.bitrate_bps <= budget_bps:
                return index
        return len(self.ladder) - 1  # nothing fits: the lowest rung

    def _down(self, index: int, now: float) -> None:
        if index != self.current:
            self._last_down = now
        self.current = index
        self._up_since = None

    def _maybe_up(self, report: LinkReport, now: float) -> None:
        assert report.estimate_bps is not None
        if self.current == 0 or report.loss > self.policy.clean_loss:
            self._up_since = None
            return
        if self.ladder[self.current - 1].bitrate_bps > report.estimate_bps * self.policy.up_fit:
            self._up_since = None
            return
        if self._up_since is None:
            self._up_since = now
        elif now - self._up_since >= self.policy.up_hold_s:
            self.current -= 1
            self._up_since = None
