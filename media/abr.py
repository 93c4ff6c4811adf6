"""Adaptive bitrate: which rung of the ladder one viewer should get. Pure logic over injected time.

A viewer's link is described by what its RTCP says: the receiver's bandwidth estimate
(REMB), the fraction of packets lost and the round-trip time, next to what we sent it.

* **Down, at once.** The link is congested when the receiver loses packets, the round
  trip grows, or its estimate *drops* to below what we send it: a receive-side estimator
  (aiortc's, as libwebrtc's) only ever lowers its estimate when it sees queues building,
  and then to ~85 % of the throughput it measured, a real figure for the link. (Its
  level alone says little: it climbs 8 % a second, so after a switch up it lags what we
  send for seconds.) Then the viewer steps down to the highest rung that fits the
  estimate (at least one rung), at most once per `down_every_s`.
* **Up, by trial.** A receive-side estimate is no ceiling to climb to: it only grows to
  1.5x what the viewer receives (no padding probes here), so a viewer on a low rung would
  never be seen to afford a higher one. After a clean spell (no congestion, low loss) of
  `up_hold_s` the viewer *tries* the next rung up for `trial_s`: congestion during the
  trial sends it back and doubles the wait before the next trial (up to `max_backoff_s`);
  a clean trial keeps the rung and resets the wait. Stepping down is cheap for the
  viewer, oscillating is not: that is what the backoff is for.
* A viewer may pin a rung (its page's `quality` choice); the controller then only reports it.

Without `sent_bps` (no send figures yet) the estimate is read as the link's capacity.
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
    sent_bps: float | None = None  # what we sent this viewer's video lately


@dataclass(frozen=True, slots=True)
class AbrPolicy:
    fit: float = 0.95  # a rung fits while its bitrate is at most this share of the estimate
    # Congestion: the estimate falls (under `drop` x the one before) to under `short` x what
    # we send. A receiver lowers it only when it sees queues building, to 85 % of the
    # throughput it measured over 1 s (a keyframe in that window can put that above our
    # 2 s average): so the first fall already lands at about what we send.
    drop: float = 0.97
    short: float = 1.1
    up_hold_s: float = 4.0  # a clean spell this long before trying the next rung up...
    trial_s: float = 3.0  # ...which must stay clean this long to be kept
    max_backoff_s: float = 32.0  # failed trials double the wait, up to this
    down_every_s: float = 1.0  # congestion steps down at most this often
    congested_loss: float = 0.08
    clean_loss: float = 0.02
    congested_rtt_s: float = 0.4
    settle_s: float = 0.3  # after a move, estimate falls this long are the move's keyframe


class RungController:
    def __init__(self, ladder: tuple[Rung, ...], policy: AbrPolicy, start: int = 0) -> None:
        self.ladder = ladder
        self.policy = policy
        self.current = min(start, len(ladder) - 1)  # index into the ladder, 0 = highest
        self.pinned: int | None = None
        self.backoff_s = policy.up_hold_s
        self._clean_since: float | None = None
        self._last_down: float | None = None
        self._trial: tuple[float, int] | None = None  # (started, the rung to go back to)
        self._last_estimate: float | None = None
        self._settled_at: float | None = None  # estimate falls before this are a move's own

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

    @property
    def trying(self) -> bool:
        return self._trial is not None

    def moved(self, now: float) -> None:
        """The viewer's move to its rung is done (the rung's keyframe went out): that keyframe
        is a burst the receiver's estimator reads as a queue, so a fall of its estimate in
        the next `settle_s` is not taken for congestion (loss and round trips still are)."""
        self._settled_at = now + self.policy.settle_s

    def update(self, report: LinkReport, now: float) -> Rung:
        """The viewer's latest RTCP figures: returns the rung it should be on."""
        if self.pinned is not None:
            self.current = self.pinned
        elif self._trial is not None:
            self._judge_trial(report, now)
        elif self._congested(report, now):
            if self._may_step_down(now):
                self._down(max(self.current + 1, self._fitting(report)), now)
        else:
            self._maybe_try_up(report, now)
        if report.estimate_bps is not None:
            self._last_estimate = report.estimate_bps
        return self.rung

    def _congested(self, report: LinkReport, now: float) -> bool:
        policy = self.policy
        slow = report.rtt_s is not None and report.rtt_s > policy.congested_rtt_s
        if report.loss > policy.congested_loss or slow:
            return True
        if report.estimate_bps is None or (self._settled_at is not None and now < self._settled_at):
            return False
        if report.sent_bps is None:  # no send figures: the estimate is the capacity
            return self.rung.bitrate_bps > report.estimate_bps * policy.fit
        last = self._last_estimate
        dropped = last is not None and report.estimate_bps < last * policy.drop
        return dropped and report.estimate_bps < report.sent_bps * policy.short

    def _fitting(self, report: LinkReport) -> int:
        """The highest rung the estimate affords (the lowest if none does)."""
        if report.estimate_bps is None:
            return self.current
        budget = report.estimate_bps * self.policy.fit
        for index, rung in enumerate(self.ladder):
            if rung.bitrate_bps <= budget:
                return index
        return len(self.ladder) - 1

    def _may_step_down(self, now: float) -> bool:
        return self._last_down is None or now - self._last_down >= self.policy.down_every_s

    def _down(self, index: int, now: float) -> None:
        index = min(index, len(self.ladder) - 1)
        if index != self.current:
            self._last_down = now
        self.current = index
        self._clean_since = None

    def _unaffordable(self, report: LinkReport) -> bool:
        """Without send figures the estimate is the capacity: no trial above it."""
        if report.sent_bps is not None or report.estimate_bps is None:
            return False
        return self.ladder[self.current - 1].bitrate_bps > report.estimate_bps * self.policy.fit

    def _judge_trial(self, report: LinkReport, now: float) -> None:
        assert self._trial is not None
        started, back_to = self._trial
        if self._congested(report, now):
            self._trial = None
            self.backoff_s = min(self.backoff_s * 2, self.policy.max_backoff_s)
            self._down(max(back_to, self._fitting(report)), now)
        elif now - started >= self.policy.trial_s:
            self._trial = None
            self.backoff_s = self.policy.up_hold_s
            self._clean_since = now

    def _maybe_try_up(self, report: LinkReport, now: float) -> None:
        if self.current == 0 or report.loss > self.policy.clean_loss or self._unaffordable(report):
            self._clean_since = None
            return
        if self._clean_since is None:
            self._clean_since = now
        elif now - self._clean_since >= self.backoff_s:
            self._trial = (now, self.current)
            self.current -= 1
            self._clean_since = None
