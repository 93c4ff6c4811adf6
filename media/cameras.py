"""Which of the host's cameras the program shows: pure logic over injected time.

A host may publish several cameras into its slot (`POST /whip/{room}?camera=close`, or
`?camera=close` on the RTMP URL). The first one (or one published without `camera`) is
the *main* camera: its primary and `?path=backup` paths are judged by `FailoverRule` as
before, and together they count as one camera here (sending while either path sends).
Every other camera is one more ingest path of the program. The host picks the camera on
air (`cut`) and the rule answers what the glue (dualpath.py) must do:

* a cut to a camera that is not published is refused (`no_such_camera`), to one that is
  not sending too (`camera_not_sending`); a cut to the camera on air changes nothing;
* a cut is made on the target's keyframe: at once when one is at hand (the glue keeps
  every camera off air warm: its frames since its latest keyframe), otherwise the cut is
  *pending*: the camera on air stays on air (no freeze) while the target is asked for a
  keyframe, again every `ASK_AGAIN_S`, and the cut is made on the first that comes
  (`keyframe`); a pending cut is given up after `PENDING_S` or when the target stops;
* the camera on air that stops (nothing of some kind for `CAMERA_SILENCE_S` once it has sent: one still
  starting is waited for; and only while the camera taken instead kept sending through
  that time: a stall of the server's own loop delays every camera) or ends hands the
  program to the main camera if it sends, else to the first other camera that sends
  (`camera_stopped`, `camera_ended`). The main camera on air is judged
  as a whole: its failover to the backup path comes first, and only when neither of its
  paths sends does the program fall back to another camera. A camera is judged over
  `CAMERA_SILENCE_S`, not the failover rule's 100 ms nor its frame cadence: a failover
  swaps two copies of one picture, a fallback shows another picture against the host's
  choice, so a hiccup (an encoder starved for a few frames, seen when a test's two
  cameras shared a loaded machine with Chromium) must not cost the camera the air;
* the camera the host chose, once it has been healthy again for `return_after_s`, is
  returned to on its next keyframe (asked for; `camera_recovered`), as the failover rule
  returns to a recovered primary.

Nothing here reads a clock or touches the network: tests drive it with a fake clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .failover import FailoverPolicy, PathHealth

__all__ = ["DEFAULT_CAMERA", "CameraDecision", "CameraRule", "Cut"]

DEFAULT_CAMERA = "main"  # the name of a main camera published without `camera`
CAMERA_SILENCE_S = 0.5  # a camera silent this long has stopped (see above)
ASK_AGAIN_S = 0.4  # a pending cut asks its target for a keyframe this often
PENDING_S = 3.0  # and is given up after this long without one


@dataclass(frozen=True, slots=True)
class Cut:
    from_camera: str
    to_camera: str
    reason: str  # "cut" (the host's), "camera_stopped", "camera_ended"


@dataclass(frozen=True, slots=True)
class CameraDecision:
    cut: Cut | None = None  # the program goes on from this camera now
    request_keyframe_from: str | None = None  # ask this camera for a keyframe now
    error: str | None = None  # a refused cut: "no_such_camera", "camera_not_sending"


NOTHING = CameraDecision()


class CameraRule:
    def __init__(self, main: str, policy: FailoverPolicy) -> None:
        self.main = main
        self.policy = policy
        self.cameras: dict[str, PathHealth] = {}  # the cameras other than the main one
        self.on_air = main
        self.chosen = main  # the camera the host cut to last (on air unless it stopped)
        self.pending: str | None = None  # a cut waiting for this camera's keyframe
        self._pending_reason = "cut"
        self._pending_since = 0.0
        self._asked_at = 0.0

    @property
    def names(self) -> list[str]:
        return [self.main, *self.cameras]

    def add(self, camera: str) -> None:
        self.cameras[camera] = PathHealth(self.policy)

    def packet(self, camera: str, kind: str, now: float) -> None:
        health = self.cameras.get(camera)
        if health is not None:
            health.packet(kind, now)

    def frame(self, camera: str, kind: str, now: float, size: int, timestamp: int | None = None) -> None:
        health = self.cameras.get(camera)
        if health is not None:
            health.frame(kind, now, size, timestamp)

    def sending(self, camera: str, now: float, main_paths: Sequence[PathHealth]) -> bool:
        """Whether `camera` may go on air (the main one: while either of its paths sends)."""
        return any(_sends(health, now) for health in self._healths(camera, main_paths))

    def cut(self, camera: str, now: float, main_paths: Sequence[PathHealth], at_hand: bool) -> CameraDecision:
        """The host asks for `camera` (`at_hand`: the glue holds a keyframe of it)."""
        if camera not in self.names:
            return CameraDecision(error="no_such_camera")
        if camera == self.on_air:
            self.chosen, self.pending = camera, None
            return NOTHING
        if not self.sending(camera, now, main_paths):
            return CameraDecision(error="camera_not_sending")
        self.chosen = camera
        if at_hand:
            return CameraDecision(self._cut(camera, "cut"))
        return self._wait_for(camera, "cut", now)

    def _wait_for(self, camera: str, reason: str, now: float) -> CameraDecision:
        self.pending, self._pending_reason, self._pending_since, self._asked_at = camera, reason, now, now
        return CameraDecision(request_keyframe_from=camera)

    def keyframe(self, camera: str) -> Cut | None:
        """A keyframe came from `camera`: the pending cut to it is made on it."""
        return self._cut(camera, self._pending_reason) if camera == self.pending else None

    def check(self, now: float, main_paths: Sequence[PathHealth]) -> CameraDecision:
        """On every frame of any camera: the camera on air still sends, or the program falls
        back; a pending cut is asked again or given up."""
        if not self.cameras:  # one camera (with its backup path, perhaps): nothing to judge
            return NOTHING
        since = self._quiet_since(self.on_air, main_paths)
        # a camera that has not sent yet is starting, not stopped: the program waits for it
        if since > float("-inf") and not self.sending(self.on_air, now, main_paths):
            for camera in self.names:
                if camera != self.on_air and self._kept_sending(camera, since, now, main_paths):
                    return CameraDecision(self._cut(camera, "camera_stopped"))
        pending, chosen = self.pending, self.chosen
        if pending is None and chosen != self.on_air:
            healthy = max((h.healthy_for(now) for h in self._healths(chosen, main_paths)), default=0.0)
            if healthy >= self.policy.return_after_s:  # back to the host's choice, on its keyframe
                return self._wait_for(chosen, "camera_recovered", now)
        if pending is None:
            return NOTHING
        if now - self._pending_since > PENDING_S or not self.sending(pending, now, main_paths):
            self.pending = None
            return NOTHING
        if now - self._asked_at >= ASK_AGAIN_S:
            self._asked_at = now
            return CameraDecision(request_keyframe_from=pending)
        return NOTHING

    def remove(self, camera: str, now: float, main_paths: Sequence[PathHealth]) -> Cut | None:
        """A camera other than the main one ended: if it was on air, the program goes on from
        the main camera if it sends, else from another camera that sends, else the main one
        (whose own rule then takes the program off air, and ends it)."""
        self.cameras.pop(camera, None)
        if self.pending == camera:
            self.pending = None
        if self.chosen == camera:
            self.chosen = self.on_air if self.on_air != camera else self.main
        if camera != self.on_air:
            return None
        others = [name for name in self.names if self.sending(name, now, main_paths)]
        cut = self._cut(others[0] if others else self.main, "camera_ended", from_camera=camera)
        self.chosen = cut.to_camera
        return cut

    def promote(self, camera: str) -> PathHealth:
        """The main camera ended for good (no backup path): `camera` becomes the main one.
        Its health goes to the failover rule, as its primary path."""
        health = self.cameras.pop(camera)
        if self.on_air == self.main:
            self.on_air = camera
        if self.chosen == self.main:
            self.chosen = camera
        if self.pending == camera:
            self.pending = None
        self.main = camera
        return health

    def _kept_sending(self, camera: str, since: float, now: float, main_paths: Sequence[PathHealth]) -> bool:
        return any(
            _sends(health, now) and health.kept_sending_since(since, now, self.policy.silence_s)
            for health in self._healths(camera, main_paths)
        )

    def _quiet_since(self, camera: str, main_paths: Sequence[PathHealth]) -> float:
        """When the camera last sent every kind (the latest of its paths)."""
        last = [min(h.last_frame.values(), default=float("-inf")) for h in self._healths(camera, main_paths)]
        return max(last, default=float("-inf"))

    def _healths(self, camera: str, main_paths: Sequence[PathHealth]) -> Sequence[PathHealth]:
        if camera == self.main:
            return main_paths
        health = self.cameras.get(camera)
        return [] if health is None else [health]

    def _cut(self, camera: str, reason: str, from_camera: str | None = None) -> Cut:
        cut = Cut(from_camera or self.on_air, camera, reason)
        self.on_air, self.pending = camera, None
        return cut


def _sends(health: PathHealth, now: float) -> bool:
    """Heard from (a frame or a packet of every kind) within `CAMERA_SILENCE_S`."""
    return bool(health.last_frame) and now - health.silent_since() <= CAMERA_SILENCE_S
