"""The dual-path switch rule and its glue, driven by a fake clock: no network, no sleeps."""

from __future__ import annotations

import itertools
from typing import Any

from liveroom.media.dualpath import DualPath, TimestampSplicer
from liveroom.media.failover import BACKUP, PRIMARY, Decision, FailoverPolicy, FailoverRule, Switch
from liveroom.media.relay import TrackRelay

from liveroom.testing import FakeClock

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 300
DELTA = bytes([0x31]) + b"d" * 50
FRAME_S = 1 / 30


def both_paths(policy: FailoverPolicy | None = None) -> FailoverRule:
    rule = FailoverRule(policy or FailoverPolicy(silence_s=0.1, return_after_s=2.0))
    rule.add(PRIMARY)
    rule.add(BACKUP)
    return rule


def test_a_silent_primary_switches_to_the_backup_after_the_threshold() -> None:
    rule, clock = both_paths(FailoverPolicy(silence_s=0.1, cadence=False)), FakeClock()
    for _ in range(30):
        assert rule.frame(PRIMARY, "video", clock.monotonic(), 100, False).switch is None
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        clock.advance(FRAME_S)
    switched_at = None
    while switched_at is None:  # the primary stops; only the backup's frames arrive
        decision = rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        if decision.switch is not None:
            assert decision.switch == Switch(PRIMARY, BACKUP, "primary_silence")
            assert decision.request_keyframe_from == BACKUP
            switched_at = clock.monotonic()
        clock.advance(0.01)
    last_primary = 1000.0 + 29 * FRAME_S
    assert 0.1 < switched_at - last_primary <= 0.11
    assert rule.active == BACKUP


def test_no_switch_while_the_backup_is_silent_too() -> None:
    rule, clock = both_paths(), FakeClock()
    rule.frame(PRIMARY, "video", clock.monotonic(), 100, True)
    rule.frame(BACKUP, "video", clock.monotonic(), 100, True)
    clock.advance(0.5)  # both were silent; the primary speaks first
    assert rule.frame(PRIMARY, "video", clock.monotonic(), 100, False).switch is None
    assert rule.active == PRIMARY


def test_a_primary_that_never_sent_loses_to_a_live_backup() -> None:
    rule, clock = both_paths(), FakeClock()
    switches = []
    for _ in range(5):
        switches.append(rule.frame(BACKUP, "video", clock.monotonic(), 100, True).switch)
        clock.advance(FRAME_S)
    assert [s for s in switches if s] == [Switch(PRIMARY, BACKUP, "primary_silence")]


def test_return_to_the_primary_waits_for_health_then_a_keyframe() -> None:
    rule, clock = both_paths(), FakeClock()
    rule.frame(PRIMARY, "video", clock.monotonic(), 100, True)
    for _ in range(6):
        clock.advance(FRAME_S)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, True)
    assert rule.active == BACKUP
    asked = []
    for _ in range(int(2.5 / FRAME_S)):  # the primary is back, sending deltas
        clock.advance(FRAME_S)
        decision = rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
        assert decision.switch is None
        if decision.request_keyframe_from:
            asked.append(clock.monotonic())
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
    assert len(asked) == 1 and asked[0] - 1000.2 >= 1.95  # one keyframe asked once healthy 2 s
    clock.advance(FRAME_S)
    decision = rule.frame(PRIMARY, "video", clock.monotonic(), 100, True)
    assert decision.switch == Switch(BACKUP, PRIMARY, "primary_recovered")


def test_a_flapping_primary_does_not_come_back() -> None:
    rule, clock = both_paths(), FakeClock()
    rule.frame(PRIMARY, "video", clock.monotonic(), 100, True)
    for _ in range(6):
        clock.advance(FRAME_S)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, True)
    assert rule.active == BACKUP
    for _ in range(5):  # 1.5 s of frames, then 0.3 s of silence, again and again
        for _ in range(45):
            clock.advance(FRAME_S)
            assert rule.frame(PRIMARY, "video", clock.monotonic(), 100, True).switch is None
            rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        for _ in range(9):
            clock.advance(FRAME_S)
            rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
    assert rule.active == BACKUP


def test_a_low_frame_rate_counts_as_a_failure_when_configured() -> None:
    rule, clock = both_paths(FailoverPolicy(silence_s=0.5, min_fps=20)), FakeClock()
    switch = None
    for frame in range(90):  # primary at 10 fps (every third tick), backup at 30 fps
        if frame % 3 == 0:
            rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
        switch = switch or rule.frame(BACKUP, "video", clock.monotonic(), 100, False).switch
        clock.advance(FRAME_S)
    assert switch == Switch(PRIMARY, BACKUP, "primary_low_fps")


def test_audio_silence_on_the_primary_fails_over_too() -> None:
    rule, clock = both_paths(), FakeClock()
    for _ in range(10):
        for path in (PRIMARY, BACKUP):
            rule.frame(path, "audio", clock.monotonic(), 100, False)
            rule.frame(path, "video", clock.monotonic(), 100, False)
        clock.advance(0.02)
    for _ in range(10):  # the primary's video goes on, its audio stops
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
        rule.frame(BACKUP, "audio", clock.monotonic(), 100, False)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        clock.advance(0.02)
    assert rule.active == BACKUP


def test_an_ended_path_hands_over_and_the_backup_is_promoted() -> None:
    rule, clock = both_paths(), FakeClock()
    rule.frame(PRIMARY, "video", clock.monotonic(), 100, True)
    rule.frame(BACKUP, "video", clock.monotonic(), 100, True)
    assert rule.remove(PRIMARY, clock.monotonic()) == Switch(PRIMARY, BACKUP, "primary_ended")
    rule.promote()
    assert rule.active == PRIMARY and list(rule.paths) == [PRIMARY]


def fail_over_to_the_backup(rule: FailoverRule, clock: FakeClock) -> None:
    """Both send, then the primary dies (its session lingers) and the backup goes on air."""
    for _ in range(10):
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        clock.advance(FRAME_S)
    for _ in range(10):
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        clock.advance(FRAME_S)
    assert rule.active == BACKUP


def test_a_backup_that_ends_while_the_primary_is_dead_takes_the_program_off_air_then_ends_it() -> None:
    rule, clock = both_paths(), FakeClock()
    fail_over_to_the_backup(rule, clock)
    assert rule.remove(BACKUP, clock.monotonic()) is None  # never back to a dead primary
    assert rule.active is None and not rule.ended(clock.monotonic())
    assert rule.primary_replaceable(clock.monotonic())  # a restarted encoder may take its place
    clock.advance(0.99)
    assert not rule.ended(clock.monotonic())
    clock.advance(0.01)
    assert rule.ended(clock.monotonic())  # end_after_s (1 s) off air: the program is over


def test_a_primary_that_sends_again_while_off_air_is_taken_up() -> None:
    rule, clock = both_paths(), FakeClock()
    fail_over_to_the_backup(rule, clock)
    rule.remove(BACKUP, clock.monotonic())
    clock.advance(0.5)
    decision = rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
    assert decision == Decision(Switch(BACKUP, PRIMARY, "primary_recovered"), PRIMARY)
    assert rule.active == PRIMARY
    clock.advance(1.0)
    assert not rule.ended(clock.monotonic())


def test_a_primary_that_ends_while_the_backup_is_dead_does_not_hand_over() -> None:
    rule, clock = both_paths(), FakeClock()
    rule.frame(BACKUP, "video", clock.monotonic(), 100, True)
    for _ in range(10):  # the backup's encoder died; the primary goes on, then is deleted
        clock.advance(FRAME_S)
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
    assert rule.remove(PRIMARY, clock.monotonic()) is None and rule.active is None
    rule.promote()  # the plane hands the program to the (dead) backup's session ...
    assert rule.active is None  # ... which is still off air until it sends


def test_timestamps_continue_across_a_splice() -> None:
    splicer, clock = TimestampSplicer("video"), FakeClock()
    assert splicer.rewrite("a", 1000, clock.monotonic()) == 1000  # one path: unchanged
    clock.advance(FRAME_S)
    assert splicer.rewrite("a", 4000, clock.monotonic()) == 4000
    clock.advance(0.15)
    assert splicer.rewrite("b", 0xFFFFFF00, clock.monotonic()) == 4000 + 13500  # 150 ms later
    clock.advance(FRAME_S)
    assert splicer.rewrite("b", (0xFFFFFF00 + 3000) & 0xFFFFFFFF, clock.monotonic()) == 20500


class FakePath:
    def __init__(self, name: str) -> None:
        self.id = name
        self.mime_types = {"video": "video/VP8", "audio": "audio/opus"}
        self.keyframes_asked = 0

    def request_keyframe(self) -> None:
        self.keyframes_asked += 1


def program() -> dict[str, TrackRelay]:
    def relay(kind: str, mime: str) -> TrackRelay:
        return TrackRelay(
            kind,
            mime,
            gop_cache_frames=90,
            queue_frames=120,
            keyframe_interval_s=1.0,
            request_keyframe=lambda: None,
        )

    return {"video": relay("video", "video/VP8"), "audio": relay("audio", "audio/opus")}


def dual_program() -> tuple[FakeClock, list[Any], dict[str, Any], Any, DualPath, FakePath, FakePath]:
    """The program's relays fed by both paths, a viewer on its video, and the switches seen."""
    clock, switches = FakeClock(), list[Any]()
    relays = program()
    viewer = relays["video"].subscribe()
    dual = DualPath(relays, FailoverPolicy(), switches.append, clock.monotonic)
    primary, backup = FakePath("p"), FakePath("b")
    dual.attach(PRIMARY, primary)
    dual.attach(BACKUP, backup)
    return clock, switches, relays, viewer, dual, primary, backup


def test_the_glue_forwards_the_path_on_air_and_resumes_video_at_a_keyframe() -> None:
    clock, switches, relays, viewer, dual, primary, backup = dual_program()
    for n in range(10):  # the backup has sent no keyframe yet: it is asked for one (once)
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(BACKUP, "video", DELTA, 777 + n * 3000)
        clock.advance(FRAME_S)
    forwarded = len(viewer._frames)
    assert forwarded == 10 and relays["video"].stats.frames == 10  # only the primary's
    assert backup.keyframes_asked == 1
    for n in range(10, 16):  # the primary is silent; the backup's keyframe has not come
        dual.feed(BACKUP, "video", DELTA, 777 + n * 3000)
        clock.advance(FRAME_S)
    assert [s.reason for s in switches] == ["primary_stopped"]
    assert backup.keyframes_asked == 2  # asked again at the switch: none at hand
    assert len(viewer._frames) == forwarded  # deltas from the backup wait for its keyframe
    relays["video"].request_keyframe()  # a viewer's PLI goes to the path on air
    assert backup.keyframes_asked == 3 and primary.keyframes_asked == 0
    dual.feed(BACKUP, "video", KEY, 777 + 16 * 3000)
    frames = list(viewer._frames)
    assert len(frames) == forwarded + 1 and frames[-1] is not None and frames[-1].keyframe
    previous = frames[-2]
    assert previous is not None and 0 < frames[-1].timestamp - previous.timestamp < 90000 * 0.3


def test_a_primary_that_stops_is_noticed_at_its_own_cadence_by_the_timer() -> None:
    clock, timers = FakeClock(), []
    switches: list[Any] = []
    relays = program()
    viewer = relays["video"].subscribe()
    schedule = lambda delay, callback: timers.append((clock.monotonic() + delay, callback))  # noqa: E731
    dual = DualPath(relays, FailoverPolicy(), switches.append, clock.monotonic, schedule)
    dual.attach(PRIMARY, FakePath("p"))
    dual.attach(BACKUP, FakePath("b"))
    for n in range(60):  # both send at 30 fps; the backup's keyframe comes every 15 frames
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(BACKUP, "video", KEY if n % 15 == 5 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    last_primary, n = clock.monotonic() - FRAME_S, 60
    while not switches:  # the primary stops; 1 ms steps, the backup goes on at 30 fps
        if clock.monotonic() >= last_primary + (n - 59) * FRAME_S:
            dual.feed(BACKUP, "video", KEY if n % 15 == 5 else DELTA, n * 3000)
            n += 1
        for at, callback in [t for t in timers if t[0] <= clock.monotonic()]:
            timers.remove((at, callback))
            callback()
        clock.advance(0.001)
    assert switches == [Switch(PRIMARY, BACKUP, "primary_stopped")]
    assert 0.045 <= clock.monotonic() - last_primary <= 0.048  # one interval + 12 ms, not 100 ms
    frames = [f for f in viewer._frames if f is not None][60:]
    assert frames[0].keyframe and len(frames) == n - 50  # the backup's frames since its keyframe
    steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(frames)]
    assert steps == [1] * (n - 51)  # replayed at once, a tick apart, ending at its live frame


def test_packets_of_an_incomplete_frame_keep_a_path_alive() -> None:
    rule, clock = both_paths(), FakeClock()
    for _ in range(30):
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, False, round(clock.monotonic() * 90000))
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False, round(clock.monotonic() * 90000))
        clock.advance(FRAME_S)
    deadline = rule.deadline(clock.monotonic())
    assert deadline is not None and 0.044 <= deadline - (clock.monotonic() - FRAME_S) <= 0.046
    for _ in range(2):  # a frame lost a packet: it waits for the retransmission, packets go on
        rule.packet(PRIMARY, "video", clock.monotonic())
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False, round(clock.monotonic() * 90000))
        clock.advance(FRAME_S)
        assert rule.check(clock.monotonic()).switch is None
    assert rule.active == PRIMARY


def test_a_jittery_path_gets_a_longer_cadence_deadline() -> None:
    rule, clock = both_paths(), FakeClock()
    for n in range(60):  # frames meant 33 ms apart arrive up to 30 ms late
        rule.frame(PRIMARY, "video", clock.monotonic() + (0.03 if n % 2 else 0.0), 100, False, n * 3000)
        clock.advance(FRAME_S)
    deadline, primary = rule.deadline(clock.monotonic()), rule.paths[PRIMARY]
    assert deadline is not None and primary.overdue_at() is not None
    assert deadline - max(primary.last_frame.values()) >= 0.09  # interval + 4 jitter, near the 100 ms cap


def test_a_stall_of_the_servers_own_loop_is_not_a_silence() -> None:
    rule, clock = both_paths(), FakeClock()
    for _ in range(10):
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, False)
        clock.advance(FRAME_S)
    clock.advance(0.3)  # the loop was busy; both paths' late frames are read in a burst
    for _ in range(3):
        assert rule.frame(BACKUP, "video", clock.monotonic(), 100, False).switch is None
        clock.advance(0.001)
    rule.frame(PRIMARY, "video", clock.monotonic(), 100, False)
    assert rule.active == PRIMARY


def test_a_recent_backup_keyframe_starts_the_viewers_at_the_switch() -> None:
    clock, switches, _relays, viewer, dual, _primary, backup = dual_program()
    for n in range(10):
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(BACKUP, "video", DELTA, n * 3000)
        clock.advance(FRAME_S)
    n, answered = 10, False
    while not switches:  # the primary is silent; the backup answers the warm-up request
        answer = backup.keyframes_asked == 1 and not answered
        answered = answered or answer
        dual.feed(BACKUP, "video", KEY if answer else DELTA, n * 3000)
        clock.advance(FRAME_S)
        n += 1
    frames = [f for f in viewer._frames if f is not None]
    assert backup.keyframes_asked == 1  # the warm-up request only: the kept keyframe served
    assert frames[10].keyframe and len(frames) >= 12  # the kept keyframe and the deltas after it


def test_each_paths_figures_for_the_host_console() -> None:
    clock = FakeClock()
    dual = DualPath(program(), FailoverPolicy(), lambda switch: None, clock.monotonic)
    dual.attach(PRIMARY, FakePath("p"))
    dual.attach(BACKUP, FakePath("b"))
    for n in range(60):  # two seconds: the primary at 30 fps, the backup at 15
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        if n % 2 == 0:
            dual.feed(BACKUP, "video", KEY if n == 0 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    figures = dual.figures()
    assert figures["active"] == PRIMARY and figures["switches"] == 0
    primary, backup = figures["paths"][PRIMARY], figures["paths"][BACKUP]
    assert 29 <= primary["fps"] <= 31 and 14 <= backup["fps"] <= 16
    assert primary["video_bitrate_bps"] == round(primary["fps"] * len(DELTA) * 8)
    assert primary["problem"] is None
    clock.advance(0.5)  # the primary goes silent: its figures fall, its problem shows
    assert dual.figures()["paths"][PRIMARY]["problem"] == "silence"
    assert 14 <= dual.figures()["paths"][PRIMARY]["fps"] <= 16


def test_a_restarted_primary_replaces_the_failed_one_and_gets_the_program_back() -> None:
    clock, switches, _relays, viewer, dual, _primary, _backup = dual_program()
    for n in range(10):
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(BACKUP, "video", KEY if n == 0 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    assert not dual.primary_replaceable()  # a live primary on air keeps its place
    for n in range(10, 20):  # the primary's encoder crashed
        dual.feed(BACKUP, "video", KEY if n == 15 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    assert [s.reason for s in switches] == ["primary_stopped"] and dual.primary_replaceable()
    restarted = FakePath("p2")
    dual.detach(PRIMARY)  # the backup stays on air: no switch
    dual.attach(PRIMARY, restarted)
    assert len(switches) == 1
    n = 20
    while len(switches) == 1 and n < 120:  # both send; the new primary answers keyframe requests
        dual.feed(PRIMARY, "video", KEY if restarted.keyframes_asked else DELTA, 5 + n * 3000)
        dual.feed(BACKUP, "video", DELTA, n * 3000)
        clock.advance(FRAME_S)
        n += 1
    assert switches[1] == Switch(BACKUP, PRIMARY, "primary_recovered") and not dual.primary_replaceable()
    assert 2.0 <= (n - 20) * FRAME_S <= 2.2  # healthy for return_after_s, then at its keyframe
    frames = [f for f in viewer._frames if f is not None]
    assert frames[-1].keyframe and frames[-1].timestamp - frames[-2].timestamp == 3000


def test_the_glue_ends_an_off_air_program_and_forwards_nothing_of_the_dead_path() -> None:
    clock, ended, timers = FakeClock(), [], []
    switches: list[Any] = []
    relays = program()
    viewer = relays["video"].subscribe()
    on_ended = lambda: ended.append(clock.monotonic())  # noqa: E731
    schedule = lambda delay, callback: timers.append((clock.monotonic() + delay, callback))  # noqa: E731
    dual = DualPath(relays, FailoverPolicy(), switches.append, clock.monotonic, schedule, on_ended)
    dual.attach(PRIMARY, FakePath("p"))
    dual.attach(BACKUP, FakePath("b"))
    for n in range(10):
        dual.feed(PRIMARY, "video", KEY if n == 0 else DELTA, n * 3000)
        dual.feed(BACKUP, "video", KEY if n == 0 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    for n in range(10, 20):  # the primary crashed
        dual.feed(BACKUP, "video", KEY if n == 15 else DELTA, n * 3000)
        clock.advance(FRAME_S)
    assert [s.reason for s in switches] == ["primary_stopped"]
    dual.detach(BACKUP)  # the backup is deleted: no switch back to the dead primary
    assert len(switches) == 1 and dual.active is None
    forwarded = len(viewer._frames)
    at, check = timers[-1]  # the last one set: the end's (the others watched the path on air)
    clock.advance(at - clock.monotonic())
    check()
    assert ended == [clock.monotonic()] and len(viewer._frames) == forwarded


def test_the_sound_goes_on_without_a_hole_across_a_switch() -> None:
    clock, timers = FakeClock(), []
    switches: list[Any] = []
    relays = program()
    listener = relays["audio"].subscribe()
    schedule = lambda delay, callback: timers.append((clock.monotonic() + delay, callback))  # noqa: E731
    dual = DualPath(relays, FailoverPolicy(), switches.append, clock.monotonic, schedule)
    dual.attach(PRIMARY, FakePath("p"))
    dual.attach(BACKUP, FakePath("b"))
    opus_s, n = 0.02, 0
    while not switches:  # Opus every 20 ms on both paths (other origins); the primary stops at 50
        if n < 50:
            dual.feed(PRIMARY, "audio", b"p%d" % n, 1000 + n * 960)
        dual.feed(BACKUP, "audio", b"b%d" % n, 7777 + n * 960)
        for _ in range(20):
            for at, callback in [t for t in timers if t[0] <= clock.monotonic()]:
                timers.remove((at, callback))
                callback()
            clock.advance(opus_s / 20)
        n += 1
    assert switches == [Switch(PRIMARY, BACKUP, "primary_stopped")]
    dual.feed(BACKUP, "audio", b"b%d" % n, 7777 + n * 960)
    sent = [f for f in listener._frames if f is not None]
    steps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(sent)}
    assert steps == {960}  # every 20 ms of the timeline has its frame: nothing to conceal
    names = [f.payloads[0][-4:] for f in sent]
    assert len(sent) == n + 1 and names[49].endswith(b"p49") and names[50].endswith(b"b50")


def test_a_path_stopped_by_its_cadence_is_not_handed_the_program() -> None:
    rule, clock = both_paths(), FakeClock()
    for n in range(30):  # both at 30 fps, then the primary stops; 60 ms later the backup ends
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, n == 0, n * 3000)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, n == 0, n * 3000)
        clock.advance(FRAME_S)
    rule.frame(BACKUP, "video", clock.monotonic(), 100, False, 30 * 3000)
    clock.advance(0.03)
    assert rule.check(clock.monotonic()).switch == Switch(PRIMARY, BACKUP, "primary_stopped")
    assert rule.remove(BACKUP, clock.monotonic()) is None and rule.active is None  # not silent 100 ms yet


def test_frames_held_behind_a_hole_fail_over_only_after_half_a_second() -> None:
    rule, clock = both_paths(), FakeClock()
    for n in range(30):
        rule.frame(PRIMARY, "video", clock.monotonic(), 100, n == 0, n * 3000)
        rule.frame(BACKUP, "video", clock.monotonic(), 100, n == 0, n * 3000)
        clock.advance(FRAME_S)
    switched_at, n = None, 30
    while switched_at is None:  # the primary's packets come, its frames are held
        rule.packet(PRIMARY, "video", clock.monotonic())
        decision = rule.frame(BACKUP, "video", clock.monotonic(), 100, False, n * 3000)
        if decision.switch is not None:
            assert decision.switch.reason == "primary_silence"
            switched_at = clock.monotonic()
        clock.advance(FRAME_S)
        n += 1
    assert 0.5 < switched_at - (1000 + 29 * FRAME_S) <= 0.5 + FRAME_S
