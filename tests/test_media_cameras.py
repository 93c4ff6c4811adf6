"""The host's cameras: the cut rule and its glue in DualPath, driven by a fake clock."""

from __future__ import annotations

import itertools
from typing import Any

from liveroom.media.cameras import ASK_AGAIN_S, CAMERA_SILENCE_S, PENDING_S, CameraDecision, CameraRule, Cut
from liveroom.media.dualpath import DualPath, camera_path
from liveroom.media.failover import BACKUP, PRIMARY, FailoverPolicy, PathHealth
from test_media_failover_rule import DELTA, FRAME_S, KEY, FakePath, program

from liveroom.testing import FakeClock

CLOSE = camera_path("close")


def sending(health: PathHealth, clock: FakeClock, frames: int = 10) -> None:
    for _ in range(frames):
        health.frame("video", clock.monotonic(), 100)
        clock.advance(FRAME_S)


def two_cameras() -> tuple[CameraRule, PathHealth, FakeClock]:
    policy = FailoverPolicy(silence_s=0.1, cadence=False)
    rule, main, clock = CameraRule("wide", policy), PathHealth(policy), FakeClock()
    rule.add("close")
    for _ in range(10):
        main.frame("video", clock.monotonic(), 100)
        rule.frame("close", "video", clock.monotonic(), 100)
        clock.advance(FRAME_S)
    return rule, main, clock


def test_a_cut_is_refused_for_an_unknown_camera_or_one_not_sending() -> None:
    rule, main, clock = two_cameras()
    assert rule.cut("far", clock.monotonic(), [main], True).error == "no_such_camera"
    assert rule.cut("wide", clock.monotonic(), [main], True) == CameraDecision()  # on air already
    rule.add("far")  # published, nothing received yet
    assert rule.cut("far", clock.monotonic(), [main], True).error == "camera_not_sending"
    assert rule.on_air == "wide" and rule.names == ["wide", "close", "far"]


def test_a_cut_with_a_keyframe_at_hand_is_made_at_once() -> None:
    rule, main, clock = two_cameras()
    decision = rule.cut("close", clock.monotonic(), [main], at_hand=True)
    assert decision.cut == Cut("wide", "close", "cut") and rule.on_air == "close"
    assert rule.cut("wide", clock.monotonic(), [main], at_hand=True).cut == Cut("close", "wide", "cut")


def test_a_cut_without_a_keyframe_waits_for_one_asked_again_then_given_up() -> None:
    rule, main, clock = two_cameras()
    decision = rule.cut("close", clock.monotonic(), [main], at_hand=False)
    assert decision == CameraDecision(request_keyframe_from="close")
    assert rule.on_air == "wide" and rule.pending == "close"  # the wide camera stays on air
    asked, started = 0, clock.monotonic()
    while rule.pending is not None:
        main.frame("video", clock.monotonic(), 100)
        rule.frame("close", "video", clock.monotonic(), 100)
        asked += rule.check(clock.monotonic(), [main]).request_keyframe_from == "close"
        clock.advance(FRAME_S)
    assert asked in (int(PENDING_S / ASK_AGAIN_S) - 1, int(PENDING_S / ASK_AGAIN_S))
    assert clock.monotonic() - started > PENDING_S
    assert rule.on_air == "wide" and rule.keyframe("close") is None  # given up: a late keyframe does nothing
    rule.cut("close", clock.monotonic(), [main], at_hand=False)
    assert rule.keyframe("close") == Cut("wide", "close", "cut") and rule.on_air == "close"


def test_the_camera_on_air_that_stops_hands_the_program_back_after_the_silence() -> None:
    rule, main, clock = two_cameras()
    rule.cut("close", clock.monotonic(), [main], at_hand=True)
    stopped_at = clock.monotonic() - FRAME_S  # its last frame
    decision = CameraDecision()
    while decision.cut is None:  # only the wide camera sends now
        main.frame("video", clock.monotonic(), 100)
        decision = rule.check(clock.monotonic(), [main])
        clock.advance(0.01)
    assert decision.cut == Cut("close", "wide", "camera_stopped")
    assert CAMERA_SILENCE_S <= clock.monotonic() - stopped_at <= CAMERA_SILENCE_S + 0.05


def test_the_chosen_camera_back_from_a_stop_is_returned_to_on_its_keyframe() -> None:
    rule, main, clock = two_cameras()
    rule.cut("close", clock.monotonic(), [main], at_hand=True)
    decision = CameraDecision()
    for _ in range(20):  # the close camera stops for 0.66 s: the program falls back
        main.frame("video", clock.monotonic(), 100)
        decision = rule.check(clock.monotonic(), [main]) if decision.cut is None else decision
        clock.advance(FRAME_S)
    assert decision.cut == Cut("close", "wide", "camera_stopped")
    back_at, decision = clock.monotonic(), CameraDecision()
    while decision.request_keyframe_from is None:  # it sends again: after return_after_s of health
        main.frame("video", clock.monotonic(), 100)
        rule.frame("close", "video", clock.monotonic(), 100)
        decision = rule.check(clock.monotonic(), [main])
        clock.advance(FRAME_S)
    assert decision.cut is None and 2.0 <= clock.monotonic() - back_at <= 2.1 and rule.on_air == "wide"
    assert rule.keyframe("close") == Cut("wide", "close", "camera_recovered") and rule.chosen == "close"


def test_a_main_camera_that_has_not_sent_yet_is_waited_for() -> None:
    policy = FailoverPolicy(silence_s=0.1, cadence=False)
    rule, main, clock = CameraRule("wide", policy), PathHealth(policy), FakeClock()
    rule.add("close")  # the close camera's encoder starts first
    for _ in range(30):
        rule.frame("close", "video", clock.monotonic(), 100)
        assert rule.check(clock.monotonic(), [main]) == CameraDecision()
        clock.advance(FRAME_S)
    assert rule.on_air == "wide"


def test_a_stall_of_the_servers_loop_is_not_a_stop() -> None:
    rule, main, clock = two_cameras()
    rule.cut("close", clock.monotonic(), [main], at_hand=True)
    clock.advance(0.5)  # nothing read for half a second: every camera's frames are late
    main.frame("video", clock.monotonic(), 100)
    assert rule.check(clock.monotonic(), [main]).cut is None  # the wide camera proved nothing yet


def test_the_camera_on_air_that_ends_hands_over_to_one_that_sends() -> None:
    rule, main, clock = two_cameras()
    rule.add("far")
    for _ in range(5):
        main.frame("video", clock.monotonic(), 100)
        for camera in ("close", "far"):
            rule.frame(camera, "video", clock.monotonic(), 100)
        clock.advance(FRAME_S)
    rule.cut("close", clock.monotonic(), [main], at_hand=True)
    assert rule.remove("close", clock.monotonic(), [main]) == Cut("close", "wide", "camera_ended")
    rule.cut("far", clock.monotonic(), [main], at_hand=True)
    clock.advance(1.0)  # the wide camera has gone silent meanwhile
    rule.frame("far", "video", clock.monotonic(), 100)
    assert rule.remove("far", clock.monotonic(), [main]) == Cut("far", "wide", "camera_ended")  # nobody else


def cameras_program(
    policy: FailoverPolicy | None = None,
) -> tuple[FakeClock, list[Any], list[Cut], Any, DualPath, FakePath, FakePath]:
    """The program fed by the wide camera (its primary path) and the close camera."""
    clock, switches, cuts = FakeClock(), list[Any](), list[Cut]()
    relays = program()
    viewer = relays["video"].subscribe()
    dual = DualPath(
        relays,
        policy or FailoverPolicy(),
        switches.append,
        clock.monotonic,
        main_camera="wide",
        on_cut=cuts.append,
    )
    wide, close = FakePath("wide"), FakePath("close")
    dual.attach(PRIMARY, wide)
    dual.attach(CLOSE, close)
    return clock, switches, cuts, viewer, dual, wide, close


def feed_both(dual: DualPath, clock: FakeClock, frames: range, close_key_at: int | None = 0) -> None:
    for n in frames:
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(CLOSE, "video", KEY if n == close_key_at else DELTA, 5000 + n * 3000)
        clock.advance(FRAME_S)


def sent(viewer: Any) -> list[Any]:
    return [frame for frame in viewer._frames if frame is not None]


def test_the_glue_cuts_on_the_kept_keyframe_and_the_timeline_goes_on() -> None:
    clock, _, cuts, viewer, dual, wide, close = cameras_program()
    feed_both(dual, clock, range(10))
    assert len(sent(viewer)) == 10  # the wide camera's frames only
    decision = dual.cut_to("close")
    assert decision.cut == Cut("wide", "close", "cut") and cuts == [decision.cut]
    frames = sent(viewer)
    assert len(frames) == 20 and frames[10].keyframe  # the close camera's keyframe and deltas, at once
    assert 0 < frames[10].timestamp - frames[9].timestamp < 90000 * 0.1
    assert all(0 < b.timestamp - a.timestamp <= 3000 for a, b in itertools.pairwise(frames[10:]))
    feed_both(dual, clock, range(10, 15))
    assert len(sent(viewer)) == 25  # now the close camera's frames only
    assert dual.figures()["camera"] == "close"
    assert dual.camera_list() == [
        {"name": "wide", "on_air": False, "sending": True},
        {"name": "close", "on_air": True, "sending": True},
    ]
    assert close.keyframes_asked == 0  # its keyframe was at hand
    asked = wide.keyframes_asked  # off air, kept warm: asked for a keyframe
    assert asked >= 1 and dual.cut_to("wide").request_keyframe_from == "wide"  # none came yet
    assert wide.keyframes_asked == asked + 1
    dual.feed(PRIMARY, "video", KEY, 15 * 3000)
    assert [c.to_camera for c in cuts] == ["close", "wide"] and sent(viewer)[-1].keyframe


def test_the_glue_keeps_the_camera_on_air_until_the_targets_keyframe() -> None:
    clock, _, cuts, viewer, dual, _, close = cameras_program()
    feed_both(dual, clock, range(3), close_key_at=None)  # the close camera sent no keyframe yet
    asked = close.keyframes_asked
    assert dual.cut_to("close").request_keyframe_from == "close" and close.keyframes_asked == asked + 1
    feed_both(dual, clock, range(3, 6), close_key_at=None)
    assert cuts == [] and len(sent(viewer)) == 6  # the wide camera goes on meanwhile: no freeze
    feed_both(dual, clock, range(6, 8), close_key_at=6)
    frames = sent(viewer)
    assert cuts == [Cut("wide", "close", "cut")] and len(frames) == 9  # wide's frame 6, then close's
    assert frames[7].keyframe and not frames[6].keyframe


def test_a_failover_of_the_main_camera_off_air_does_not_touch_the_program() -> None:
    clock, switches, cuts, viewer, dual, _, _ = cameras_program()
    backup = FakePath("backup")
    dual.attach(BACKUP, backup)
    for n in range(10):
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(BACKUP, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(CLOSE, "video", KEY if n == 0 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    dual.cut_to("close")
    count = len(sent(viewer))
    for n in range(10, 20):  # the wide camera's primary stops: its backup takes over, off air
        dual.feed(BACKUP, "video", DELTA, n * 3000)
        dual.feed(CLOSE, "video", DELTA, n * 3000)
        clock.advance(FRAME_S)
    assert [s.to_path for s in switches] == [BACKUP] and dual.on_air == CLOSE
    assert len(sent(viewer)) == count + 10  # the close camera's frames, uninterrupted
    dual.feed(BACKUP, "video", KEY, 20 * 3000)
    dual.cut_to("wide")  # back to the wide camera: its backup path
    assert dual.on_air == BACKUP and cuts[-1] == Cut("close", "wide", "cut")


def test_the_close_camera_takes_over_when_the_wide_one_ends() -> None:
    clock, _, cuts, viewer, dual, _, close = cameras_program()
    feed_both(dual, clock, range(10))
    dual.hand_main_to("close")  # the wide camera ended (no backup): close is the main camera now
    assert cuts == [Cut("wide", "close", "camera_ended")] and dual.on_air == PRIMARY
    assert dual.paths[PRIMARY] is close and dual.cameras.names == ["close"]
    assert sent(viewer)[10].keyframe  # from its kept keyframe
    for n in range(10, 15):
        dual.feed(PRIMARY, "video", DELTA, 5000 + n * 3000)
        clock.advance(FRAME_S)
    assert len(sent(viewer)) == 25


def test_a_camera_on_air_that_stops_falls_back_in_the_glue() -> None:
    clock, _, cuts, viewer, dual, _, _ = cameras_program()
    feed_both(dual, clock, range(10))
    dual.cut_to("close")
    for n in range(10, 30):  # only the wide camera sends (its keyframe, asked for off air, first)
        dual.feed(PRIMARY, "video", KEY if n == 10 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    assert [c.reason for c in cuts] == ["cut", "camera_stopped"] and dual.on_air == PRIMARY
    frames = sent(viewer)
    assert frames[20].keyframe and len(frames) == 40  # from the kept keyframe, then every frame


def test_the_program_on_another_camera_does_not_end_with_the_main_cameras_paths() -> None:
    clock, timers, ended = FakeClock(), list[Any](), list[bool]()
    relays = program()
    dual = DualPath(
        relays,
        FailoverPolicy(),
        lambda switch: None,
        clock.monotonic,
        lambda delay, callback: timers.append(callback) if callback.__name__ == "_check_ended" else None,
        lambda: ended.append(True),
        main_camera="wide",
    )
    dual.attach(PRIMARY, FakePath("wide"))
    dual.attach(BACKUP, FakePath("wide-backup"))  # it never sends: a crashed encoder's session
    dual.attach(CLOSE, FakePath("close"))
    feed_both(dual, clock, range(10))
    dual.cut_to("close")
    clock.advance(2.0)
    dual.feed(CLOSE, "video", DELTA, 50_000)
    dual.detach(PRIMARY)  # the wide camera's primary ends, its backup sends nothing: off air
    assert dual.rule.active is None and len(timers) == 1
    timers.pop()()
    assert ended == [] and timers == [] and dual.on_air == CLOSE  # the close camera goes on
    dual.detach(CLOSE)  # now nothing is left on air: the program ends after end_after_s
    assert dual.cameras.on_air == "wide" and len(timers) == 1
    clock.advance(1.0)  # end_after_s since the main camera went off air
    timers.pop()()
    assert ended == [True]
