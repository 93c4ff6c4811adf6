"""The server-side ladder (`media.transcode_ladder`): a host who sends ONE H.264 stream gets
every lower rung of `media.abr_ladder` made by the room's media process (decoded once,
each rung encoded once), as renditions that viewers pin and HLS lists like published ones.

First the transcoder alone (frames in, smaller frames out on each rung's relay), then for
real: an aiortc host (320x240 counter pictures, so the 480p and 360p rungs keep the
source's size at their lower bitrates and 180p is 240x180) -> a server process -> viewers
pinned to lower rungs decode pictures of that rung's size carrying the host's counter.
A host that publishes its own renditions is forwarded: no ladder is made for it.
"""

from __future__ import annotations

import asyncio
import uuid
from fractions import Fraction

import av
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection
from liveroom.media.abr import parse_ladder
from liveroom.media.ladder import LadderTranscoder, RungEncoder, rung_size
from liveroom.media.relay import TrackRelay
from media_support import (
    CounterTrack,
    Peer,
    _exchange,
    codec_preferences,
    counter_frame,
    play,
    publish,
    read_counter,
    scrape,
    wait_until,
)
from support import ServerProcess, module_server, token
from test_media_hls import get

LADDER = parse_ladder(("720p:2500000", "480p:1200000", "360p:700000", "180p:250000"))


def relay() -> TrackRelay:
    return TrackRelay(
        "video",
        "video/H264",
        gop_cache_frames=90,
        queue_frames=120,
        keyframe_interval_s=1.0,
        request_keyframe=lambda: None,
    )


def h264_clip(frames: int) -> list[tuple[bytes, bool]]:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base, codec.framerate = Fraction(1, 30), Fraction(30)
    params = "keyint=30:repeat-headers=1"
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": params}
    clip = []
    for i in range(frames):
        picture = counter_frame(i)
        picture.pts = i
        clip += [(bytes(packet), packet.is_keyframe) for packet in codec.encode(picture)]
    return clip


def test_rung_sizes_keep_the_aspect_and_never_upscale() -> None:
    assert rung_size(480, 1280, 720) == (852, 480)
    assert rung_size(180, 1280, 720) == (320, 180)
    assert rung_size(480, 320, 240) == (320, 240)
    assert rung_size(180, 320, 240) == (240, 180)


async def test_each_rung_is_encoded_once_from_one_decode() -> None:
    rungs = [RungEncoder(rung, relay(), 120) for rung in LADDER[1:]]
    # The queue holds the whole clip: on a loaded machine the thread may fall 30 frames behind
    # and drop its backlog, which is right for a live room but not what this test is about.
    transcoder = LadderTranscoder(rungs, asyncio.get_running_loop(), lambda: None, 64)
    viewers = [rung.relay.subscribe() for rung in rungs]
    base = 4_000_000_000  # the RTP timestamps wrap during the clip
    for index, (data, keyframe) in enumerate(h264_clip(45)):
        transcoder.frame(data, (base + index * 3000) & 0xFFFFFFFF, keyframe)
        await asyncio.sleep(0.002)
    await wait_until(lambda: all(rung.relay.stats.frames == 45 for rung in rungs), 60, "every rung's frames")
    assert transcoder.frames_dropped == 0
    rungs[2].want_keyframe()  # a viewer of 180p asks: that rung's next frame is an IDR, no upstream PLI
    transcoder.frame(h264_clip(2)[1][0], (base + 45 * 3000) & 0xFFFFFFFF, False)  # undecodable alone
    transcoder.close()
    for rung, viewer in zip(rungs, viewers, strict=True):
        frames = [frame for frame in viewer._frames if frame is not None]
        assert frames[0].keyframe and [f.timestamp for f in frames[:2]] == [base, (base + 3000) & 0xFFFFFFFF]
        assert rung.relay.stats.keyframes >= 2  # at the source's keyframes (every 30 frames)
    decoder = av.CodecContext.create("h264", "r")
    low = [frame for frame in viewers[2]._frames if frame is not None]
    pictures = [p for frame in low for p in decoder.decode(av.Packet(_annex_b(frame.payloads)))]
    assert {(p.width, p.height) for p in pictures} == {(240, 180)}
    assert [read_counter(p) for p in pictures] == list(range(len(pictures)))


def _annex_b(payloads: list[bytes]) -> bytes:
    """Undo aiortc's H.264 packetization (single NAL units, STAP-A, FU-A) for a decoder."""
    out, fragment = b"", b""
    for payload in payloads:
        kind = payload[0] & 0x1F
        if kind == 24:  # STAP-A
            offset = 1
            while offset < len(payload):
                size = int.from_bytes(payload[offset : offset + 2], "big")
                out += b"\0\0\0\1" + payload[offset + 2 : offset + 2 + size]
                offset += 2 + size
        elif kind == 28:  # FU-A
            if payload[1] & 0x80:
                fragment = bytes([payload[0] & 0xE0 | payload[1] & 0x1F])
            fragment += payload[2:]
            if payload[1] & 0x40:
                out += b"\0\0\0\1" + fragment
        else:
            out += b"\0\0\0\1" + payload
    return out


async def test_the_ladder_moves_with_the_program_when_the_backup_adopts_it() -> None:
    from types import SimpleNamespace

    from liveroom.media.callers import Caller
    from liveroom.media.sessions import PublishSession

    from liveroom.config import MediaConfig

    config, host = MediaConfig(transcode_ladder=True), Caller("host", "Host", "host", None)
    primary, backup = PublishSession("r", "host", host, config), PublishSession("r", "host", host, config)
    try:
        for session in (primary, backup):
            relay = session.new_relay("video", SimpleNamespace(mimeType="video/H264"))
            session.relays["video"], session.rungs = relay, [relay]
        primary.start_ladder(LADDER)
        program, transcoder = primary.relays["video"], primary.transcoder
        assert transcoder is not None and len(primary.rungs) == 4
        backup.adopt_program(primary)
        assert backup.transcoder is transcoder and primary.transcoder is None
        assert backup.rungs == [program, *transcoder.relays] and primary.rungs == []
        assert transcoder.frame in program.listeners  # still fed by the program, now the backup's
    finally:
        for session in (primary, backup):
            if session.transcoder is not None:
                session.transcoder.close()
            await session.pc.close()


server = module_server(
    "server",
    {
        "LIVEROOM_MEDIA_TRANSCODE_LADDER": "true",
        "LIVEROOM_MEDIA_WORKERS": "1",
        "LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0",
    },
)


def ladder_codecs(server: ServerProcess) -> tuple[float, float]:
    metrics = scrape(server.url)
    return (
        metrics.get('liveroom_media_ladder_codec_instances_total{role="encoder"}', 0.0),
        metrics.get('liveroom_media_ladder_codec_instances_total{role="decoder"}', 0.0),
    )


async def test_a_one_stream_host_gets_every_rung_from_the_server(server: ServerProcess) -> None:
    room = f"ladder-{uuid.uuid4().hex[:8]}"
    publisher = await publish(server.url, room, token("host-ladder", "host"), "video/H264")
    low = await play(server.url, room, token("ladder-180"), slot="host&quality=180p")
    mid = await play(server.url, room, token("ladder-480"), slot="host&quality=480p")
    top = await play(server.url, room, token("ladder-720"))
    hls = f"{server.url}/hls/{room}/master.m3u8"
    try:
        await wait_until(lambda: all(len(p.counters) >= 30 for p in (low, mid, top)), 15, "every rung")
        assert set(low.sizes) == {(240, 180)} and set(mid.sizes) == {(320, 240)}
        for peer in (low, mid, top):
            assert peer.counters == sorted(set(peer.counters)), "the host's pictures, in order"
        assert ladder_codecs(server) == (3, 1)  # three lower rungs, one decode
        assert scrape(server.url)['liveroom_media_ladder_rooms{worker="0"}'] == 1
        assert scrape(server.url)['liveroom_media_codec_instances_total{role="encoder"}'] == 0
        await wait_until(lambda: get(hls)[2].count(b"#EXT-X-STREAM-INF") == 4, 10, "all four rungs listed")
        master = get(hls)[2].decode()
        sizes = {"720p": "320x240", "480p": "320x240", "360p": "320x240", "180p": "240x180"}
        for name, size in sizes.items():
            assert f"RESOLUTION={size}" in master.split(f"{name}.m3u8")[0].splitlines()[-1], master
    finally:
        for peer in (low, mid, top):
            await peer.end()
        await publisher.end()
    await wait_until(lambda: scrape(server.url)['liveroom_media_ladder_rooms{worker="0"}'] == 0, 5)


async def test_a_host_publishing_renditions_is_forwarded_not_transcoded(server: ServerProcess) -> None:
    room = f"ladder-{uuid.uuid4().hex[:8]}"
    before = ladder_codecs(server)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in (CounterTrack(), CounterTrack()):
        pc.addTransceiver(track, "sendonly").setCodecPreferences(codec_preferences("video", "video/H264"))
    pc.addTransceiver(AudioStreamTrack(), "sendonly")
    host = token("host-renditions", "host")
    publisher = Peer(pc, await _exchange(pc, f"{server.url}/whip/{room}", host), server.url, host)
    viewer = await play(server.url, room, token("renditions-480"), slot="host&quality=480p")
    try:
        await wait_until(lambda: len(viewer.counters) >= 15, 15, "the second rendition")
        assert ladder_codecs(server) == before
    finally:
        await viewer.end()
        await publisher.end()
