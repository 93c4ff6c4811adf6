"""Rendition switching: a viewer's video moves between relays at the target's keyframe.

First with no network (two relays, one viewer track), then for real: an aiortc host
publishes two renditions as two video tracks (their pictures carry different counters),
one viewer pins the second (`?quality=480p`), another plays the first on its clean
loopback link (no congestion: it stays there); each one's session status (`GET
{Location}`) says which rung it plays. The automatic moves down and back up under a real
bandwidth limit are in tests/test_media_abr_link.py; the rules in the controller's tests.
"""

from __future__ import annotations

import uuid

import pytest
from liveroom.media.hooks import ForwardingPacker
from liveroom.media.keyframes import KeyframeGate
from liveroom.media.relay import TrackRelay
from media_support import LOW, get_json, play, publish_renditions, wait_until
from support import ServerProcess, module_server, token

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 300
DELTA = bytes([0x31]) + b"d" * 50


def relay() -> TrackRelay:
    return TrackRelay(
        "video",
        "video/VP8",
        gop_cache_frames=90,
        queue_frames=120,
        keyframe_interval_s=1.0,
        request_keyframe=lambda: None,
    )


def test_a_viewer_moves_at_the_targets_keyframe_and_its_timestamps_continue() -> None:
    high, low = relay(), relay()
    high.push(KEY, 1000)
    track = high.subscribe()
    high.push(DELTA, 4000)
    track.move_to(low)
    low.push(DELTA, 900_000)  # not a keyframe: ignored, the high rendition goes on
    high.push(DELTA, 7000)
    low.push(KEY, 903_000)  # the move happens here
    high.push(DELTA, 10_000)  # no longer this viewer's
    low.push(DELTA, 906_000)
    frames = [frame for frame in track._frames if frame is not None]
    assert [f.timestamp for f in frames[:3]] == [1000, 4000, 7000]
    assert frames[3].keyframe and frames[3].timestamp - 7000 >= 3000
    assert frames[4].timestamp - frames[3].timestamp == 3000 and len(frames) == 5
    assert track.relay is low and track not in high.viewers and track.moves == 1


def test_a_cut_move_stops_the_old_rendition_at_once_and_forgets_what_it_sent() -> None:
    high, low = relay(), relay()
    high.push(KEY, 1000)
    track = high.subscribe()
    left: list[int] = []
    track.on_left = lambda: left.append(len(track._frames))
    track.move_to(low, cut=True)  # a congested viewer: no more of the old rendition
    assert left == [1] and track not in high.viewers and track.keyframe_source is low
    high.push(DELTA, 4000)  # not sent: it would only fill the viewer's link
    low.push(DELTA, 900_000)
    low.push(KEY, 903_000)  # the move completes at the new rendition's keyframe
    timestamps = [f.timestamp for f in track._frames if f is not None]
    assert len(timestamps) == 2 and timestamps[1] - timestamps[0] >= 3000
    assert track.relay is low and track.keyframe_source is low and len(left) == 2


def test_called_back_before_the_move_completes_a_cut_viewer_resumes_at_a_keyframe() -> None:
    high, low = relay(), relay()
    high.push(KEY, 1000)
    track = high.subscribe()
    track.move_to(low, cut=True)
    track.move_to(high)  # the link recovered before the low keyframe came: stay
    assert track not in low.viewers and track in high.viewers and track.waiting_for_keyframe
    high.push(DELTA, 4000)  # it lost its place: only a keyframe resumes it
    high.push(KEY, 7000)
    assert [f.timestamp for f in track._frames if f is not None] == [1000, 7000]


def test_a_moving_viewer_gets_a_keyframe_soon_even_just_after_one() -> None:
    gate = KeyframeGate(1.0, move_interval_s=0.25)
    gate.keyframe_seen(0.0)
    assert not gate.want(0.1)  # a joiner makes do with the keyframe that just went by...
    assert gate.want(0.1, for_move=True)  # ...a viewer switching to this rendition cannot use it
    assert not gate.want(0.2, for_move=True) and gate.want(0.4, for_move=True)  # one per move interval
    assert not gate.want(0.6)  # a move's request counts for the joiners' gate too


def test_each_estimate_of_the_viewer_reaches_its_session_as_it_comes() -> None:
    seen: list[int] = []
    packer = ForwardingPacker(seen.append)  # what aiortc's sender takes for its encoder
    packer.target_bitrate = 480_000  # aiortc does this on every REMB
    assert seen == [480_000] and packer.target_bitrate == 480_000


server = module_server("server", {"LIVEROOM_MEDIA_STATS_INTERVAL_S": "0.5", "LIVEROOM_MEDIA_WORKERS": "1"})


async def test_renditions_pinned_or_automatic(server: ServerProcess) -> None:
    room = f"abr-{uuid.uuid4().hex[:8]}"
    publisher = await publish_renditions(server.url, room, token("host-abr", "host"))
    pinned = await play(server.url, room + "", token("abr-pinned"), slot="host&quality=480p")
    auto = await play(server.url, room, token("abr-auto"))
    try:
        await wait_until(lambda: sum(c >= LOW for c in pinned.counters) >= 20, 30, "the pinned video")
        if not all(counter >= LOW for counter in pinned.counters):
            # Pictures of the top rung: only while the server had left the pinned rendition
            # for having no picture (yet), as it does on a loaded machine when the host's
            # second track is late (media/sessions.py's leave_renditions, a switch from None).
            status, body = await get_json(server.url + pinned.location, pinned.token)
            fell_back = [s for s in body["quality"]["switches"] if s["from"] is None and s["to"] == "720p"]
            assert status == 200 and fell_back, (pinned.counters, body)
        await wait_until(lambda: len(auto.counters) >= 45, 15, "the auto viewer's video")
        assert all(counter < LOW for counter in auto.counters)  # a clean link: the top rung
        status, body = await get_json(server.url + auto.location, auto.token)
        assert status == 200 and body["quality"]["rung"] == "720p" and not body["quality"]["pinned"]
        assert body["quality"]["rungs"] == ["720p", "480p"] and body["quality"]["switches"] == []
        status, body = await get_json(server.url + pinned.location, pinned.token)
        assert status == 200 and body["quality"]["rung"] == "480p" and body["quality"]["pinned"]
        assert (await get_json(server.url + auto.location, pinned.token))[0] == 403  # not its session
    finally:
        await auto.end()
        await pinned.end()
        await publisher.end()


async def test_an_unknown_quality_is_refused(server: ServerProcess) -> None:
    room = f"abr-{uuid.uuid4().hex[:8]}"
    publisher = await publish_renditions(server.url, room, token("host-abr", "host"))
    try:
        with pytest.raises(Exception, match="400"):
            await play(server.url, room, token("abr-4k"), slot="host&quality=4k")
    finally:
        await publisher.end()
