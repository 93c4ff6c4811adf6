"""The host slot's two ingest paths feeding one program: the glue around `FailoverRule`.

Viewers of the host slot subscribe to the *program* relays (the first primary's relays,
kept alive across switches). Both paths' receivers hand their frames to `DualPath.feed`;
only the path on air is pushed into the program. Viewers therefore stay connected
through a switch, and what must continue for their players to carry on does:

* RTP sequence numbers are per viewer already (the fast sender / aiortc's sender count
  their own), so they continue by construction;
* RTP timestamps are spliced here, once per program track rather than per viewer (every
  viewer shares the program's timeline): the new path's timestamps are offset so that its
  first frame follows the last forwarded one by the wall time that passed;
* a path that ends hands the program to the other only while that one sends; otherwise
  the program is off air, taken up again by the first path that sends, or ended
  (`on_ended`) once `end_after_s` has passed without one (a timer: no frame comes to say so);
* the path on air is watched by a timer at the moment it would count as silent
  (`FailoverRule.deadline`: its own frame cadence, see cadence.py), so a stop is noticed
  then, not at the other path's next frame; a timer that fires late says this loop was
  stalled, and the check waits a moment for the frames that were queued meanwhile;
* video resumes on a keyframe of the new path: a path off air keeps its frames since its
  latest keyframe (at most `STANDBY_FRAMES`; it is asked for a keyframe whenever
  `WARM_FRAMES` have passed without one, so one is always at hand), replayed at the switch
  a tick apart and ending where its live frames go on; without one, a keyframe is asked
  for at the switch; audio resumes at once; VP8
  picture ids and H.264 parameter sets are the program relay's own;
* the host's other cameras (cameras.py) are more paths (`camera:<name>`), fed here the same
  way: the program shows the camera the host cut to, and a camera cut is the same splice
  as a failover, on the target's keyframe. The failover rule goes on judging the main
  camera's two paths while another camera is on air; its switches then change which of
  them is on air when the program cuts back to the main camera, nothing else.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Protocol

from .bitstream import is_keyframe
from .cadence import CLOCK_RATES
from .cameras import DEFAULT_CAMERA, CameraDecision, CameraRule, Cut
from .failover import BACKUP, PRIMARY, Decision, FailoverPolicy, FailoverRule, PathHealth, Switch
from .relay import TrackRelay

__all__ = ["CAMERA_PREFIX", "DualPath", "IngestPath", "TimestampSplicer", "camera_path"]

Schedule = Callable[[float, Callable[[], None]], Any]  # loop.call_later

MASK = 0xFFFFFFFF
# "aac": an RTMP publisher's own AAC, kept beside the Opus for outputs that take AAC
# (restreams, recordings: program_aac.py); one AAC frame is 1024.
MIN_STEP = {"audio": 960, "video": 3000, "aac": 1024}  # one Opus frame (20 ms), one video frame at 30 fps
# A path off air keeps its video frames since its last keyframe, up to this many: at a
# switch they are replayed to start the viewers at once. A longer backlog would be a
# burst to every viewer; a path that can make keyframes on request (WHIP) is asked for
# one every WARM_FRAMES frames while off air (its uplink carries a keyframe about twice a
# second at 30 fps: the price of a switch that does not wait for one).
STANDBY_FRAMES = 20
WARM_FRAMES = 15
WARM_INTERVAL_S = 0.4  # at most this often
LOOP_LATE_S = 0.005  # a timer this late: the loop was busy; look again after RECHECK_S
RECHECK_S = 0.01
TIMER_SLACK_S = 0.0005
SOUND_KEPT = 10  # a path off air keeps its last 200 ms of sound: a switch fills its gap with it
CAMERA_PREFIX = "camera:"  # the path name of a camera other than the main one


def camera_path(camera: str) -> str:
    return CAMERA_PREFIX + camera


class IngestPath(Protocol):
    """What the glue needs of a publish session."""

    id: str
    mime_types: dict[str, str]

    def request_keyframe(self) -> None: ...


class TimestampSplicer:
    """Rewrites one program track's RTP timestamps so a change of source does not jump."""

    def __init__(self, kind: str) -> None:
        self._rate = CLOCK_RATES[kind]
        self._min_step = MIN_STEP[kind]
        self._source: str | None = None
        self._offset = 0  # 0 until the first splice: a single path's timestamps pass unchanged
        self._last_out: int | None = None
        self._last_at = 0.0

    def continue_with(self, source: str, timestamp: int) -> None:
        """From now on `source`, whose `timestamp` comes one frame after the last one out:
        no gap and no overlap in the timeline (the sound that fills a switch's gap)."""
        if self._last_out is not None:
            self._offset = (self._last_out + self._min_step - timestamp) & MASK
        self._source = source

    def rewrite(self, source: str, timestamp: int, now: float) -> int:
        if source != self._source:
            if self._last_out is not None:
                step = max(self._min_step, round((now - self._last_at) * self._rate))
                self._offset = (self._last_out + step - timestamp) & MASK
            self._source = source
        out = (timestamp + self._offset) & MASK
        self._last_out, self._last_at = out, now
        return out


class DualPath:
    def __init__(
        self,
        program: dict[str, TrackRelay],
        policy: FailoverPolicy,
        on_switch: Callable[[Switch], None],
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
        on_ended: Callable[[], None] = lambda: None,
        main_camera: str = DEFAULT_CAMERA,
        on_cut: Callable[[Cut], None] = lambda cut: None,
    ) -> None:
        self.program = program
        self.rule = FailoverRule(policy)
        self.cameras = CameraRule(main_camera, policy)
        self._on_cut = on_cut
        self.paths: dict[str, IngestPath] = {}
        self.switches = 0
        self._on_switch = on_switch
        self._clock = clock
        self._schedule = schedule
        self._on_ended = on_ended
        self._splicers = {kind: TimestampSplicer(kind) for kind in program}
        self._video_waits_for_keyframe = False
        self._standby: dict[str, list[tuple[bytes, int]]] = {}  # path -> video since its keyframe
        self._timer_due: float | None = None  # when the armed watch timer should fire
        self._warm_asked: dict[str, float] = {}  # path -> when it was last asked for a keyframe
        self._sound: dict[tuple[str, str], collections.deque[tuple[bytes, int, float]]] = {}
        self._pushed_at: dict[str, float] = {}  # kind -> when the program last got a frame of it
        for relay in program.values():
            relay.request_keyframe = self.request_keyframe  # viewers' PLIs go to the path on air

    def attach(self, name: str, path: IngestPath) -> None:
        self.paths[name] = path
        if name.startswith(CAMERA_PREFIX):
            self.cameras.add(name.removeprefix(CAMERA_PREFIX))
        else:
            self.rule.add(name)

    @property
    def on_air(self) -> str | None:
        """The path the program shows: the camera cut to, or the main camera's path on air."""
        camera = self.cameras.on_air
        return self.rule.active if camera == self.cameras.main else camera_path(camera)

    def _main_on_air(self) -> bool:
        return self.cameras.on_air == self.cameras.main

    def detach(self, name: str) -> None:
        """A path ended; if it was on air the other one takes over at once."""
        self._forget(name)
        now = self._clock()
        if name.startswith(CAMERA_PREFIX):
            cut = self.cameras.remove(name.removeprefix(CAMERA_PREFIX), now, self._main_paths())
            if cut is not None:
                self._cut(cut, now)
            if cut is not None and self.rule.active is None and self._schedule is not None:
                self._schedule(self.rule.policy.end_after_s, self._check_ended)  # back to nothing
            return
        switch = self.rule.remove(name, now)
        if self.rule.active is None and self.paths and self._schedule is not None:
            self._schedule(self.rule.policy.end_after_s, self._check_ended)
        if switch is not None and not self._main_on_air():
            self._switched(switch, off_program=True)
        elif switch is not None:
            if self._start_from_standby(switch.to_path, self._clock()):
                self._switched(switch, at_keyframe=True)
                return
            self._switched(switch)
            self.request_keyframe()

    def _check_ended(self) -> None:
        now, since = self._clock(), self.rule.off_air_since
        if not self._main_on_air():  # another camera is on air: the program goes on
            return
        if self.rule.ended(now):
            self._on_ended()
        elif self.rule.active is None and since is not None and self._schedule is not None:
            # asyncio may run a timer up to its clock's resolution early: look again
            self._schedule(since + self.rule.policy.end_after_s - now + TIMER_SLACK_S, self._check_ended)

    def hand_main_to(self, camera: str) -> None:
        """The main camera's last path ended (no backup): `camera` becomes the main camera,
        its path the primary; the program goes on from it (a cut if it was not on air)."""
        old_main, main_was_on_air = self.cameras.main, self._main_on_air()
        self._forget(PRIMARY)
        self.rule.paths.pop(PRIMARY, None)
        self.rule.adopt(self.cameras.promote(camera))
        name = camera_path(camera)
        self.paths[PRIMARY] = self.paths.pop(name)
        if name in self._standby:
            self._standby[PRIMARY] = self._standby.pop(name)
        for path, kind in [key for key in self._sound if key[0] == name]:
            self._sound[(PRIMARY, kind)] = self._sound.pop((path, kind))
        if main_was_on_air:
            self._cut(Cut(old_main, camera, "camera_ended"), self._clock())

    def _forget(self, name: str) -> None:
        self.paths.pop(name, None)
        self._standby.pop(name, None)
        for key in [key for key in self._sound if key[0] == name]:
            del self._sound[key]

    def promote(self) -> None:
        """The primary ended for good: the backup is now the primary (no switch)."""
        if BACKUP in self.paths:
            self.paths[PRIMARY] = self.paths.pop(BACKUP)
        self.rule.promote()

    def primary_replaceable(self) -> bool:
        """A new primary may replace the current one (failover.py)."""
        return self.rule.primary_replaceable(self._clock())

    @property
    def active(self) -> str | None:
        return self.rule.active

    def figures(self) -> dict[str, Any]:
        """Both paths' health for the host console (in `media.stats` of the host slot)."""
        now = self._clock()
        paths = {name: health.figures(now) for name, health in self.rule.paths.items()}
        for camera, health in self.cameras.cameras.items():
            paths[camera_path(camera)] = health.figures(now)
        return {
            "active": self.rule.active,
            "switches": self.switches,
            "paths": paths,
            "camera": self.cameras.on_air,
            "cameras": self.camera_list(),
        }

    def camera_list(self) -> list[dict[str, Any]]:
        """Every camera, the main one first: its name, whether it is on air, whether it sends."""
        now, main, on_air = self._clock(), self._main_paths(), self.cameras.on_air
        sending = self.cameras.sending
        return [
            {"name": name, "on_air": name == on_air, "sending": sending(name, now, main)}
            for name in self.cameras.names
        ]

    def cut_to(self, camera: str) -> CameraDecision:
        """The host cuts the program to `camera`: at once on a keyframe at hand, or on its
        next one (asked for here); the decision says which, or why not (`error`)."""
        now = self._clock()
        name = self._path_of(camera)
        at_hand = "video" not in self.program or (name is not None and bool(self._standby.get(name)))
        decision = self.cameras.cut(camera, now, self._main_paths(), at_hand)
        self._act_camera(decision, now)
        return decision

    def packet(self, name: str, kind: str) -> None:
        """An RTP packet from one path (before its frame is complete): it is alive."""
        if name.startswith(CAMERA_PREFIX):
            self.cameras.packet(name.removeprefix(CAMERA_PREFIX), kind, self._clock())
        else:
            self.rule.packet(name, kind, self._clock())

    def feed(self, name: str, kind: str, data: bytes, timestamp: int) -> None:
        """A frame from one path's receiver."""
        path = self.paths.get(name)
        relay = self.program.get(kind)
        if path is None or relay is None:
            return
        keyframe = kind == "video" and is_keyframe(path.mime_types[kind], data)
        now = self._clock()
        if name.startswith(CAMERA_PREFIX):
            self.cameras.frame(name.removeprefix(CAMERA_PREFIX), kind, now, len(data), timestamp)
        else:
            decision = self.rule.frame(name, kind, now, len(data), keyframe, timestamp)
            self._act(decision, name if keyframe else None, now)
        pending = self.cameras.pending
        if keyframe and pending is not None and name == self._path_of(pending):
            cut = self.cameras.keyframe(pending)  # the pending cut, on this keyframe
            if cut is not None:
                self._cut(cut, now, at_keyframe=True)
        self._act_camera(self.cameras.check(now, self._main_paths()), now)
        self._watch(now)
        # A path that keeps its whole group of pictures (RTMP) keeps it on air too: when it
        # goes off air (a return to the primary) it is ready at once, not at its next keyframe.
        long_standby = getattr(path, "standby_frames", STANDBY_FRAMES) > STANDBY_FRAMES
        if kind == "video" and (name != self.on_air or long_standby):
            self._keep_standby(name, data, timestamp, keyframe, now)
        if name != self.on_air:
            if kind != "video":
                kept = self._sound.setdefault((name, kind), collections.deque(maxlen=SOUND_KEPT))
                kept.append((data, timestamp, now))
            return
        if kind == "video" and self._video_waits_for_keyframe:
            if not keyframe:
                return
            self._video_waits_for_keyframe = False
        self._pushed_at[kind] = now
        relay.push(data, self._splicers[kind].rewrite(path.id, timestamp, now))

    def _watch(self, now: float) -> None:
        """Arm the timer for the moment the path on air would count as silent."""
        if self._schedule is None or self._timer_due is not None:
            return
        deadline = self.rule.deadline(now)
        # A little after: "silent" is strictly past the deadline. One already past was
        # judged by the frame that just came (rule.frame): no timer for it.
        if deadline is not None and deadline + TIMER_SLACK_S > now:
            self._timer_due = deadline + TIMER_SLACK_S
            self._schedule(self._timer_due - now, self._on_timer)

    def _on_timer(self) -> None:
        now, due = self._clock(), self._timer_due
        self._timer_due = None
        deadline = self.rule.deadline(now)
        if deadline is None or due is None:
            return
        if now < deadline:  # it sent meanwhile: watch its new deadline
            self._watch(now)
            return
        if now - due > LOOP_LATE_S and self._schedule is not None:  # stalled: read what was queued
            self._timer_due = now + RECHECK_S
            self._schedule(RECHECK_S, self._on_timer)
            return
        self._act(self.rule.check(now), None, now)  # the next frame arms the timer again

    def request_keyframe(self) -> None:
        path = self.paths.get(self.on_air or "")
        if path is not None:
            path.request_keyframe()

    def _keep_standby(self, name: str, data: bytes, timestamp: int, keyframe: bool, now: float) -> None:
        kept, path = self._standby.setdefault(name, []), self.paths.get(name)
        limit = getattr(path, "standby_frames", STANDBY_FRAMES)
        if keyframe:
            kept[:] = [(data, timestamp)]
        elif kept and len(kept) < limit:
            kept.append((data, timestamp))
        else:
            kept.clear()
        if path is None or limit > STANDBY_FRAMES or name == self.on_air or keyframe:
            return
        stale = not kept or len(kept) >= WARM_FRAMES
        if stale and now - self._warm_asked.get(name, float("-inf")) >= WARM_INTERVAL_S:
            self._warm_asked[name] = now
            path.request_keyframe()  # keep a keyframe at hand for a switch

    def _start_from_standby(self, name: str, now: float) -> bool:
        """Start the viewers on the new path's kept keyframe and the frames after it."""
        kept, path = self._standby.pop(name, []), self.paths.get(name)
        if not kept or path is None or "video" not in self.program:
            return False
        # Replayed a tick apart, ending where its live frames go on, so the viewers'
        # decoders catch up at once and no latency is added.
        last = self._splicers["video"].rewrite(path.id, kept[-1][1], now)
        for back, (data, _) in enumerate(kept):
            self.program["video"].push(data, (last - (len(kept) - 1 - back)) & MASK)
        return True

    def _act(self, decision: Decision, keyframe_from: str | None, now: float) -> None:
        if decision.switch is not None and not self._main_on_air():
            self._switched(decision.switch, off_program=True)  # another camera is on air
        elif decision.switch is not None:
            at_keyframe = keyframe_from == decision.switch.to_path
            if not at_keyframe and self._start_from_standby(decision.switch.to_path, now):
                self._switched(decision.switch, at_keyframe=True)
                return  # no keyframe needed from the new path
            self._switched(decision.switch, at_keyframe)
        if decision.request_keyframe_from is not None:
            path = self.paths.get(decision.request_keyframe_from)
            if path is not None:
                path.request_keyframe()

    def _fill_sound(self, name: str) -> None:
        """Sound goes on without a hole: the new path's sound that arrived since the program's
        last (the switch's gap: the old path was silent that long) is sent at once, its
        timestamps following the last ones out exactly, and its live frames go on from there."""
        path = self.paths.get(name)
        for kind, relay in self.program.items():
            kept = self._sound.pop((name, kind), None)
            since = self._pushed_at.get(kind)
            if kind == "video" or path is None or not kept or since is None:
                continue
            fill = [(data, timestamp) for data, timestamp, at in kept if at > since]
            if fill:
                now = self._clock()
                self._splicers[kind].continue_with(path.id, fill[0][1])
                for data, timestamp in fill:
                    relay.push(data, self._splicers[kind].rewrite(path.id, timestamp, now))
                self._pushed_at[kind] = now

    def _switched(self, switch: Switch, at_keyframe: bool = False, off_program: bool = False) -> None:
        """`off_program`: the main camera's path changed while another camera is on air."""
        if not off_program:
            self._fill_sound(switch.to_path)
            self._video_waits_for_keyframe = "video" in self.program and not at_keyframe
        self.switches += 1
        self._on_switch(switch)

    # -- the host's cameras (cameras.py) ----------------------------------------------------

    def _main_paths(self) -> list[PathHealth]:
        return list(self.rule.paths.values())

    def _path_of(self, camera: str) -> str | None:
        return self.rule.active if camera == self.cameras.main else camera_path(camera)

    def _act_camera(self, decision: CameraDecision, now: float) -> None:
        if decision.cut is not None:
            self._cut(decision.cut, now)
        if decision.request_keyframe_from is not None:
            path = self.paths.get(self._path_of(decision.request_keyframe_from) or "")
            if path is not None:
                path.request_keyframe()

    def _cut(self, cut: Cut, now: float, at_keyframe: bool = False) -> None:
        """The program goes on from `cut.to_camera` (the rule made it the camera on air):
        on the keyframe being fed (`at_keyframe`), or on the one it kept, or on the next."""
        name = self.on_air
        if name is not None and not at_keyframe:
            at_keyframe = self._start_from_standby(name, now)
        elif name is not None and getattr(self.paths.get(name), "standby_frames", 0) <= STANDBY_FRAMES:
            self._standby.pop(name, None)  # its kept frames are older than this keyframe
        if name is not None:
            self._fill_sound(name)
        self._video_waits_for_keyframe = "video" in self.program and not at_keyframe
        if not at_keyframe:
            self.request_keyframe()
        self._on_cut(cut)
