"""The relay's rules with no network: keyframes, fan-out, joiners, laggards, the keyframe gate."""

from __future__ import annotations

from liveroom.media.bitstream import H264ParameterSets, h264_nal_units, is_keyframe, packetize
from liveroom.media.keyframes import KeyframeGate
from liveroom.media.relay import TrackRelay

VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 3000  # frame tag bit 0 = 0
VP8_DELTA = bytes([0x31]) + b"d" * 200
SPS, PPS = b"\x67\x42\x00\x1f", b"\x68\xce\x3c\x80"
IDR, SLICE = b"\x65" + b"i" * 2500, b"\x41" + b"p" * 100


def annex_b(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def relay(
    mime: str = "video/VP8", gop: int = 90, queue: int = 120
) -> tuple[TrackRelay, list[float], FakeClock]:
    clock, requests = FakeClock(), []
    made = TrackRelay(
        "video",
        mime,
        gop_cache_frames=gop,
        queue_frames=queue,
        keyframe_interval_s=1.0,
        request_keyframe=lambda: requests.append(clock.now),
        clock=clock,
    )
    return made, requests, clock


def test_keyframes_are_recognised() -> None:
    assert is_keyframe("video/VP8", VP8_KEY) and not is_keyframe("video/VP8", VP8_DELTA)
    assert is_keyframe("video/H264", annex_b(SPS, PPS, IDR))
    assert not is_keyframe("video/H264", annex_b(SLICE))
    assert is_keyframe("audio/opus", b"\x01")


def test_frames_are_cut_into_rtp_sized_payloads() -> None:
    vp8 = packetize("video/VP8", VP8_KEY, 7)
    assert len(vp8) == 3 and all(len(p) <= 1300 for p in vp8)
    h264 = packetize("video/H264", annex_b(SPS, PPS, IDR), 0)
    assert h264[0][0] & 0x1F == 24  # STAP-A carrying SPS + PPS (+ the start of nothing else)
    assert all(p[0] & 0x1F == 28 for p in h264[1:])  # the IDR in FU-A fragments
    assert packetize("audio/opus", b"opus", 0) == [b"opus"]


def test_parameter_sets_are_repeated_in_every_idr() -> None:
    sets = H264ParameterSets()
    assert sets.complete(annex_b(SPS, PPS, IDR)) == annex_b(SPS, PPS, IDR)
    assert sets.complete(annex_b(SLICE)) == annex_b(SLICE)
    assert h264_nal_units(sets.complete(annex_b(IDR))) == [SPS, PPS, IDR]


def test_one_packetization_is_shared_by_every_viewer() -> None:
    fanout, _, _ = relay()
    viewers = [fanout.subscribe() for _ in range(3)]
    frame = fanout.push(VP8_KEY, 0)
    assert all(list(v._frames) == [frame] for v in viewers)
    assert all(v._frames[0] is frame for v in viewers)  # the same object, not copies


def test_a_joiner_gets_the_cached_gop_without_asking_the_publisher() -> None:
    fanout, requests, _ = relay()
    fanout.push(VP8_DELTA, 0)  # no keyframe yet: nothing cached
    fanout.push(VP8_KEY, 3000)
    fanout.push(VP8_DELTA, 6000)
    joiner = fanout.subscribe()
    assert [f.timestamp for f in joiner._frames] == [3000, 6000]
    assert requests == []


def test_a_join_storm_asks_for_at_most_one_keyframe_per_second() -> None:
    fanout, requests, clock = relay(gop=2)
    fanout.push(VP8_KEY, 0)
    for n in range(1, 5):
        fanout.push(VP8_DELTA, n * 3000)  # the GOP is now too long to replay
    for step in range(100):  # 100 joiners over 2.5 s, frames flowing meanwhile
        clock.now = step * 0.025
        fanout.subscribe()
        fanout.push(VP8_DELTA, 20000 + step * 3000)
    assert requests == [1.0, 2.0]  # the keyframe at t=0 counts: then at most one per second
    fanout.push(VP8_KEY, 999999)
    assert all(not v.waiting_for_keyframe for v in fanout.viewers)


def test_a_viewer_that_falls_behind_skips_to_the_next_keyframe() -> None:
    fanout, requests, _ = relay(queue=4)
    slow = fanout.subscribe()
    fanout.push(VP8_KEY, 0)
    for n in range(1, 6):
        fanout.push(VP8_DELTA, n)
    assert slow.waiting_for_keyframe and len(slow._frames) == 0 and slow.frames_dropped == 4
    assert requests
    fanout.push(VP8_KEY, 100)
    assert [f.timestamp for f in slow._frames] == [100]


def test_ending_the_relay_ends_every_viewer() -> None:
    fanout, _, _ = relay()
    viewer = fanout.subscribe()
    fanout.end()
    assert list(viewer._frames) == [None] and not fanout.viewers
    assert list(fanout.subscribe()._frames) == [None]


def test_the_gate_lets_one_request_through_per_interval() -> None:
    gate = KeyframeGate(1.0)
    assert gate.want(0.0) and not gate.want(0.5) and gate.want(1.0)
    gate.keyframe_seen(1.5)
    assert not gate.want(2.2) and gate.want(2.6)
    assert (gate.requests_sent, gate.requests_absorbed) == (3, 2)
