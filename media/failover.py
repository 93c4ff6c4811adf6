"""Which of the host's two ingest paths feeds the viewers: pure logic over injected time.

The host publishes the same program twice (`POST /whip/{room}` and `?path=backup`). Each
path's health comes from its frames as they arrive: silence (no frame of some kind for
`silence_s`), and optionally too few video frames or too few bits in the last second.
The rule is told of every frame (`frame`) and answers what to do:

* on the primary: switch to the backup as soon as the primary has a problem and the
  backup has none (the glue then starts the backup on its latest keyframe if it is
  recent, else asks for one and waits for it); halfway to the silence threshold a
  keyframe is already asked of the backup, so one is usually at hand at the switch;
* on the backup: go back to the primary once it has been healthy for `return_after_s`,
  exactly at one of its keyframes (a keyframe is asked of it when that time is reached),
  so the return shows no gap; go back at once if the backup itself fails;
* a path that ends (`remove`) hands over to the other one, but only while that one is
  sending: a path is eligible only while it sends. With none sending the program is off
  air (`active` is None): the first path that sends again is taken up (at a keyframe, by
  the glue), and a program off air for `end_after_s` has ended (`ended`);
* a failed primary off air may be replaced (`primary_replaceable`): a host that restarts
  its encoder publishes a new primary, which is judged afresh and returned to as above.

A path is silent when a kind of its frames stops for `silence_s`; it has stopped, sooner,
when nothing at all (no frame, no RTP packet: `packet`) has come from it for its own cadence
(cadence.py: one frame interval plus its jitter, about 45 ms at 30 fps on a LAN). The
glue checks the path on air at that moment (`deadline`, `check`): no frame of the other
path need arrive to notice that this one stopped.

Nothing here reads a clock or touches the network: tests drive it with a fake clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from .cadence import CLOCK_RATES, Cadence

__all__ = ["BACKUP", "PRIMARY", "Decision", "FailoverPolicy", "FailoverRule", "PathHealth", "Switch"]

PRIMARY, BACKUP = "primary", "backup"
WINDOW_S = 1.0  # frame rate and bitrate are measured over the last second
# A kind whose packets come but whose frames do not (the receiver holds them behind a hole)
# is silent after this many silence_s: a lossy, jittery link's short holds are not failures.
FRAME_STALL = 5


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    silence_s: float = 0.1
    return_after_s: float = 2.0
    min_fps: float = 0.0  # 0: frame rate is not checked
    min_bitrate_bps: float = 0.0  # 0: bitrate is not checked
    end_after_s: float = 1.0  # off air (no path sending) this long: the program has ended
    cadence: bool = True  # a path silent for its own frame cadence (not only silence_s) fails


@dataclass(frozen=True, slots=True)
class Switch:
    from_path: str
    to_path: str
    reason: str  # "primary_silence", "primary_low_fps", "primary_ended", "primary_recovered", ...


@dataclass(frozen=True, slots=True)
class Decision:
    switch: Switch | None = None
    request_keyframe_from: str | None = None  # ask this path for a keyframe now


NOTHING = Decision()


class PathHealth:
    """One path's recent frames: when each kind last arrived, the last second of video."""

    def __init__(self, policy: FailoverPolicy) -> None:
        self._policy = policy
        self.last_frame: dict[str, float] = {}
        self.first_frame_at: float | None = None
        self.healthy_since: float | None = None  # start of the current run without a problem
        self._video: collections.deque[tuple[float, int]] = collections.deque()  # (time, bytes)
        self._arrivals: collections.deque[float] = collections.deque()  # any kind, last second
        self._cadence: dict[str, Cadence] = {}
        self.last_packet: dict[str, float] = {}  # kind -> when its last RTP packet came

    def packet(self, kind: str, now: float) -> None:
        """An RTP packet arrived (a frame may still be incomplete: the path is alive)."""
        if self.healthy_since is not None and self.problem(now) is not None:
            self.healthy_since = now  # it stalled past its cadence: healthy from now only
        self.last_packet[kind] = now

    def overdue_at(self) -> float | None:
        """When every kind of this path is overdue by its own cadence (nothing, no frame and
        no packet, for its interval plus jitter); None while a kind's cadence is unknown."""
        if not self._policy.cadence or not self.last_frame:
            return None
        overdue = []
        for kind, last in self.last_frame.items():
            wait = self._cadence[kind].wait_s()
            if wait is None:
                return None
            heard = max(last, self.last_packet.get(kind, last))
            overdue.append(heard + min(wait, self._policy.silence_s))
        return max(overdue)

    def deadline(self, cadence: bool = True) -> float | None:
        """When this path will be silent if nothing more comes from it."""
        if not self.last_frame:
            return None
        silent = min(
            self.silent_since() + self._policy.silence_s,
            min(self.last_frame.values()) + FRAME_STALL * self._policy.silence_s,
        )
        overdue = self.overdue_at() if cadence else None
        return silent if overdue is None else min(silent, overdue)

    def frame(self, kind: str, now: float, size: int, timestamp: int | None = None) -> None:
        cadence = self._cadence.get(kind)
        if cadence is None:
            cadence = self._cadence[kind] = Cadence(CLOCK_RATES.get(kind))
        cadence.frame(now, timestamp)
        if self.first_frame_at is None:
            self.first_frame_at = now
        if self.healthy_since is None or self.problem(now) is not None:
            self.healthy_since = now
        self.last_frame[kind] = now
        self._arrivals.append(now)
        while self._arrivals[0] <= now - WINDOW_S:
            self._arrivals.popleft()
        if kind == "video":
            self._video.append((now, size))
            while self._video and self._video[0][0] <= now - WINDOW_S:
                self._video.popleft()

    def problem(self, now: float, cadence: bool = True) -> str | None:
        """What is wrong with this path now ("silence", "low_fps", "low_bitrate"), or None;
        with `cadence`, "stopped" when nothing at all (no frame, no packet) came for its own
        cadence (`overdue_at`), before `silence_s`."""
        if not self.last_frame:
            return "silence"
        if now - self.silent_since() > self._policy.silence_s:
            return "silence"
        if now - min(self.last_frame.values()) > FRAME_STALL * self._policy.silence_s:
            return "silence"  # packets come, but no frame is made of them: the picture stopped
        overdue = self.overdue_at() if cadence else None
        if overdue is not None and now > overdue:
            return "stopped"
        if "video" not in self.last_frame or self.first_frame_at is None:
            return None
        if now - self.first_frame_at < WINDOW_S:  # too young to judge a rate
            return None
        recent = [size for at, size in self._video if at > now - WINDOW_S]
        if self._policy.min_fps and len(recent) / WINDOW_S < self._policy.min_fps:
            return "low_fps"
        if self._policy.min_bitrate_bps and sum(recent) * 8 / WINDOW_S < self._policy.min_bitrate_bps:
            return "low_bitrate"
        return None

    def silent_since(self) -> float:
        """When the kind heard from least recently was last heard: its last frame, or its
        last RTP packet if later (a frame waiting for a retransmission is not a silence)."""
        heard = (max(at, self.last_packet.get(kind, at)) for kind, at in self.last_frame.items())
        return min(heard, default=float("-inf"))

    def kept_sending_since(self, since: float, now: float, for_s: float) -> bool:
        """Frames arrived from after `since` for at least `for_s` until now.

        A silence counts only if the other path kept sending through it: after a stall
        of the server's own event loop both paths' frames are late, and the first one
        read must not make the other path look dead.
        """
        first = next((at for at in self._arrivals if at > since), None)
        return first is not None and now - first >= for_s

    def figures(self, now: float) -> dict[str, Any]:
        """What the host console shows of this path: video frame rate and bitrate over the
        last second, and what is wrong with it now (None: healthy)."""
        recent = [size for at, size in self._video if at > now - WINDOW_S]
        return {
            "fps": round(len(recent) / WINDOW_S, 1),
            "video_bitrate_bps": round(sum(recent) * 8 / WINDOW_S),
            "problem": self.problem(now),
        }

    def sending(self, now: float) -> bool:
        """Eligible to go on air: no kind silent past the threshold, and not stopped by its
        cadence (a rate too low still counts as sending: better a poor picture than none)."""
        return self.problem(now) not in ("silence", "stopped")

    def healthy_for(self, now: float) -> float:
        if self.problem(now) is not None or self.healthy_since is None:
            return 0.0
        return now - self.healthy_since


class FailoverRule:
    def __init__(self, policy: FailoverPolicy) -> None:
        self.policy = policy
        self.paths: dict[str, PathHealth] = {}
        self.active: str | None = PRIMARY  # None: off air, no path sending
        self.off_air_since: float | None = None
        self._last_active = PRIMARY
        self._on_air_since = float("-inf")  # when the path on air went on air (by a switch)
        self._return_asked_at: float | None = None
        self._warmed_for: float | None = None  # the primary silence a keyframe was asked for

    def add(self, path: str) -> None:
        self.paths[path] = PathHealth(self.policy)
        if path == PRIMARY and BACKUP not in self.paths:
            self.active = PRIMARY

    def remove(self, path: str, now: float) -> Switch | None:
        """`path` ended: if it was on air, the other path takes over if it is sending;
        if it is not (a crashed encoder whose session lingers), the program goes off air."""
        self.paths.pop(path, None)
        if self.active != path:
            return None
        other = BACKUP if path == PRIMARY else PRIMARY
        health = self.paths.get(other)
        if health is not None and health.sending(now):
            return self._switch(other, f"{path}_ended", now)
        self._last_active, self.active, self.off_air_since = path, None, now
        return None

    def ended(self, now: float) -> bool:
        """The program has been off air for `end_after_s`: nobody sends, it is over."""
        since = self.off_air_since
        return self.active is None and since is not None and now - since >= self.policy.end_after_s

    def primary_replaceable(self, now: float) -> bool:
        """Whether a new primary may take the current one's place: the backup is on air and
        the primary still has a problem (its session may outlive a crashed encoder)."""
        primary = self.paths.get(PRIMARY)
        return self.active != PRIMARY and (primary is None or primary.problem(now) is not None)

    def adopt(self, health: PathHealth) -> None:
        """Another camera's path becomes the primary (cameras.py: the main camera ended and
        had no backup), on air at once."""
        self.paths[PRIMARY] = health
        self.active = self._last_active = PRIMARY
        self.off_air_since = None

    def promote(self) -> None:
        """The primary is gone for good: the backup becomes the primary (no switch)."""
        if BACKUP in self.paths:
            self.paths[PRIMARY] = self.paths.pop(BACKUP)
        self._last_active = PRIMARY
        if self.active is not None:
            self.active = PRIMARY

    def packet(self, path: str, kind: str, now: float) -> None:
        health = self.paths.get(path)
        if health is not None:
            health.packet(kind, now)

    def deadline(self, now: float) -> float | None:
        """When the primary on air will count as silent unless more comes from it, if the
        backup is there to take over (the glue sets a timer for it). The cadence judges the
        primary only: the backup on air is judged by `silence_s` and its frames, so that a
        stall of a few frames does not make the program flap between two struggling paths;
        and only once it has been on air for `return_after_s` (the same reason)."""
        primary = self.paths.get(PRIMARY)
        if self.active != PRIMARY or primary is None or BACKUP not in self.paths:
            return None
        return primary.deadline(self._cadence_judges(now))

    def check(self, now: float) -> Decision:
        """The glue's timer at `deadline` (the glue makes sure its own loop was not stalled:
        then the other path's frames would be late too and prove nothing)."""
        if self.active == PRIMARY:
            return self._on_primary(now, guarded=False)
        return NOTHING

    def frame(
        self, path: str, kind: str, now: float, size: int, keyframe: bool, timestamp: int | None = None
    ) -> Decision:
        """A frame arrived on `path` (`keyframe`: a video keyframe; `timestamp`: its RTP one)."""
        health = self.paths.get(path)
        if health is None:
            return NOTHING
        health.frame(kind, now, size, timestamp)
        if self.active is None:
            return self._off_air(path, health, now)
        if self.active == PRIMARY:
            return self._on_primary(now)
        return self._on_backup(path, kind, now, keyframe)

    def _off_air(self, path: str, health: PathHealth, now: float) -> Decision:
        """Nobody was sending: the first path healthy again is taken up (the glue starts it
        on a keyframe it kept, or asks for one)."""
        if health.problem(now, cadence=False) is not None:
            return NOTHING
        self.off_air_since = None
        self.active = self._last_active
        return Decision(self._switch(path, f"{path}_recovered", now), path)

    def _on_primary(self, now: float, guarded: bool = True) -> Decision:
        primary, backup = self.paths.get(PRIMARY), self.paths.get(BACKUP)
        if backup is None or backup.problem(now, cadence=False) is not None:
            return NOTHING
        problem = primary.problem(now, self._cadence_judges(now)) if primary is not None else "ended"
        if problem is None and primary is not None:
            return self._warm_up(primary, now)
        if problem in ("silence", "stopped") and guarded and not self._outlived(backup, primary, now):
            return NOTHING
        return Decision(self._switch(BACKUP, f"primary_{problem}", now), BACKUP)

    def _on_backup(self, path: str, kind: str, now: float, keyframe: bool) -> Decision:
        primary, backup = self.paths.get(PRIMARY), self.paths.get(BACKUP)
        if primary is None or primary.problem(now) is not None:
            return NOTHING
        problem = backup.problem(now, cadence=False) if backup is not None else "ended"
        if problem == "silence" and not self._outlived(primary, backup, now):
            return NOTHING
        if problem is not None:
            return Decision(self._switch(PRIMARY, f"backup_{problem}", now), PRIMARY)
        if primary.healthy_for(now) < self.policy.return_after_s:
            return NOTHING
        at_keyframe = keyframe or "video" not in primary.last_frame
        if path == PRIMARY and at_keyframe:
            return Decision(self._switch(PRIMARY, "primary_recovered", now))
        if self._return_asked_at is None or now - self._return_asked_at >= self.policy.return_after_s:
            self._return_asked_at = now
            return Decision(request_keyframe_from=PRIMARY)
        return NOTHING

    def _cadence_judges(self, now: float) -> bool:
        return now - self._on_air_since >= self.policy.return_after_s

    def _warm_up(self, primary: PathHealth, now: float) -> Decision:
        """Half the silence threshold gone: ask the backup for a keyframe already, so that
        one is at hand if the switch comes (the glue keeps the backup's latest frames)."""
        quiet_since = primary.silent_since()
        if now - quiet_since < self.policy.silence_s / 2 or self._warmed_for == quiet_since:
            return NOTHING
        self._warmed_for = quiet_since
        return Decision(request_keyframe_from=BACKUP)

    def _outlived(self, alive: PathHealth, failing: PathHealth | None, now: float) -> bool:
        if failing is None:
            return True
        # From its oldest last frame (a frame stall's start; a silence's is no earlier)
        since = min(failing.last_frame.values(), default=float("-inf"))
        return alive.kept_sending_since(since, now, self.policy.silence_s / 2)

    def _switch(self, to_path: str, reason: str, now: float) -> Switch:
        switch = Switch(self.active or self._last_active, to_path, reason)
        self.active = to_path
        self._on_air_since = now
        self._return_asked_at = None
        return switch
