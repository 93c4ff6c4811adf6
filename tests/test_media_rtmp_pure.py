"""RTMP without I/O: AMF0, the chunk stream (fed a few bytes at a time), the server's command
state machine, the publish URL shapes, FLV tag bodies to Annex B / AAC, an RTMP backup's
replayed group of pictures, and a restream destination's backoff."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from liveroom.media.dualpath import DualPath
from liveroom.media.failover import BACKUP, PRIMARY, FailoverPolicy
from liveroom.media.relay import TrackRelay
from liveroom.media.restream_state import CONNECTING, FAILED, LIVE, RETRYING, RestreamPolicy, RestreamState
from liveroom.media.rtmp_amf import AmfError, decode_all, encode
from liveroom.media.rtmp_chunks import (
    AUDIO,
    COMMAND_AMF0,
    VIDEO,
    ChunkError,
    ChunkReader,
    Message,
    encode_message,
)
from liveroom.media.rtmp_flv import FlvAudio, FlvError, FlvVideo
from liveroom.media.rtmp_protocol import (
    MediaData,
    ProtocolError,
    PublishRequest,
    RtmpServerProtocol,
    Unpublished,
    ingest_target,
)

SPS, PPS = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80"
IDR, DELTA = b"\x65\x88\x84\x00\x10", b"\x41\x9a\x02\x03"


def feed_slowly(reader: ChunkReader, data: bytes, step: int = 7) -> list[Message]:
    messages = []
    for at in range(0, len(data), step):
        messages += reader.feed(data[at : at + step])
    return messages


def test_amf0_values_round_trip_and_cut_values_are_refused() -> None:
    values = ["connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "n": None, "ok": True}, [1.0, "x"]]
    assert decode_all(encode(*values)) == values
    assert decode_all(encode("x" * 70000)) == ["x" * 70000]  # a long string
    ecma = b"\x08\x00\x00\x00\x01" + b"\x00\x01k" + encode(2.0) + b"\x00\x00\x09"
    assert decode_all(ecma) == [{"k": 2.0}]
    with pytest.raises(AmfError):
        decode_all(encode("connect")[:-2])
    with pytest.raises(AmfError):
        decode_all(b"\x11")  # AMF3 switch: not supported
    with pytest.raises(AmfError):
        decode_all(b"\x03" * 40)  # nested too deep (and cut)


def test_chunks_reassemble_messages_across_chunk_sizes_and_streams() -> None:
    big = Message(VIDEO, 1, 40, bytes(range(256)) * 40)
    small = Message(AUDIO, 1, 41, b"aac")
    for size in (128, 4096):
        reader = ChunkReader(1 << 20)
        set_size = encode_message(Message(1, 0, 0, size.to_bytes(4, "big")), 2, 128)
        wire = set_size + encode_message(big, 6, size) + encode_message(small, 4, size)
        assert feed_slowly(reader, wire) == [big, small]


def test_compressed_headers_and_extended_timestamps() -> None:
    reader = ChunkReader(1 << 20)
    first = (
        b"\x06" + (1000).to_bytes(3, "big") + (3).to_bytes(3, "big") + bytes([VIDEO]) + b"\x01\0\0\0" + b"abc"
    )
    delta = b"\x86" + (33).to_bytes(3, "big") + b"def"  # type 2: new delta, same length and type
    again = b"\xc6" + b"ghi"  # type 3 starting a message: the same delta again
    assert [(m.timestamp, m.payload) for m in feed_slowly(reader, first + delta + again, 2)] == [
        (1000, b"abc"),
        (1033, b"def"),
        (1066, b"ghi"),
    ]
    late = Message(VIDEO, 1, 0x1000000 + 5, bytes(300))  # past 24 bits: extended, in every chunk
    assert feed_slowly(ChunkReader(1 << 20), encode_message(late, 5, 128), 5) == [late]


def test_broken_chunk_streams_are_errors() -> None:
    with pytest.raises(ChunkError, match="before its first full header"):
        ChunkReader(1 << 20).feed(b"\x43" + bytes(10))
    oversize = Message(VIDEO, 1, 0, bytes(2000))
    with pytest.raises(ChunkError, match="limit"):
        ChunkReader(1000).feed(encode_message(oversize, 5, 4096))
    streams = b"".join(encode_message(Message(VIDEO, 1, 0, bytes(200)), 3, 128)[:140] for _ in range(1))
    reader = ChunkReader(1 << 20)
    reader.feed(streams)  # one stream half done is fine
    many = b"".join(bytes([0x00, 60 + i]) + bytes(11) for i in range(70))  # 70 chunk streams open at once
    with pytest.raises(ChunkError, match="too many"):
        ChunkReader(1 << 20).feed(many)


class Client:
    """The encoder's side, enough to drive the server: chunks out, messages back."""

    def __init__(self) -> None:
        self.reader = ChunkReader(1 << 20)

    def command(self, *values: object, stream: int = 0) -> bytes:
        chunks: bytes = encode_message(Message(COMMAND_AMF0, stream, 0, encode(*values)), 3, 128)
        return chunks

    def replies(self, data: bytes) -> list[list[object]]:
        return [decode_all(m.payload) for m in self.reader.feed(data) if m.type_id == COMMAND_AMF0]


def test_the_server_walks_an_encoder_from_handshake_to_publishing() -> None:
    server, client = RtmpServerProtocol(1 << 20, random=bytes), Client()
    assert server.receive(b"\x03" + bytes(range(256)) * 6) == []
    s0s1s2 = server.data_to_send()
    assert s0s1s2[0] == 3 and s0s1s2[1 + 1536 :] == bytes(range(256)) * 6  # S2 echoes C1
    events = server.receive(
        bytes(1536) + client.command("connect", 1.0, {"app": "live/r1", "tcUrl": "rtmp://h/live/r1"})
    )
    assert events == [] and server.app == "live/r1"
    (result,) = client.replies(server.data_to_send())
    assert result[0] == "_result" and result[3]["code"] == "NetConnection.Connect.Success"  # type: ignore[index]
    assert server.receive(client.command("releaseStream", 2.0, None, "key")) == []
    assert server.receive(client.command("createStream", 4.0, None)) == []
    assert [r[:3] + r[3:] for r in client.replies(server.data_to_send())][-1] == ["_result", 4.0, None, 1.0]
    video = encode_message(Message(VIDEO, 1, 0, b"early"), 6, 128)
    (request,) = server.receive(client.command("publish", 5.0, None, "the-key", "live", stream=1) + video)
    assert request == PublishRequest(
        "live/r1", "rtmp://h/live/r1", "the-key"
    )  # media before the answer: dropped
    server.accept_publish()
    (status,) = client.replies(server.data_to_send())
    assert status[0] == "onStatus" and status[3]["code"] == "NetStream.Publish.Start"  # type: ignore[index]
    frame = encode_message(Message(VIDEO, 1, 66, b"\x17\x01\0\0\0"), 6, 128)
    assert server.receive(frame) == [MediaData("video", 66, b"\x17\x01\0\0\0")]
    assert server.receive(client.command("FCUnpublish", 6.0, None, "the-key")) == [Unpublished()]


def test_the_server_refuses_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="version"):
        RtmpServerProtocol(1 << 20).receive(b"\x06" + bytes(1536))
    server, client = RtmpServerProtocol(1 << 20), Client()
    server.receive(b"\x03" + bytes(1536) + bytes(1536))
    with pytest.raises(ProtocolError, match="before connect"):
        server.receive(client.command("publish", 1.0, None, "key"))
    server = RtmpServerProtocol(1 << 20)
    server.receive(b"\x03" + bytes(1536) + bytes(1536))
    with pytest.raises(ProtocolError, match="AMF0"):
        server.receive(encode_message(Message(COMMAND_AMF0, 0, 0, b"\x02\x00\x09conn"), 3, 128))


def test_publish_urls_in_the_shapes_encoders_send() -> None:
    assert (
        ingest_target("live", "r1?token=T") == ingest_target("live/r1", "T") == ingest_target("live", "r1/T")
    )
    target = ingest_target("live/r1?path=backup", "T?camera=wide")
    assert (target.room, target.token, target.backup, target.params["camera"]) == ("r1", "T", True, "wide")
    assert ingest_target("live", "r1").token is None
    for app, name in (("app", "r1?token=T"), ("live", ""), ("live/a/b/c", "T")):
        with pytest.raises(ProtocolError):
            ingest_target(app, name)


def avc(packet_type: int, body: bytes, keyframe: bool = True, cts: int = 0) -> bytes:
    return bytes([0x17 if keyframe else 0x27, packet_type]) + cts.to_bytes(3, "big", signed=True) + body


def length_prefixed(*nals: bytes) -> bytes:
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in nals)


def test_flv_h264_becomes_annex_b_with_parameter_sets_before_each_idr() -> None:
    video = FlvVideo()
    record = (
        b"\x01\x42\xc0\x1e\xff\xe1"
        + len(SPS).to_bytes(2, "big")
        + SPS
        + b"\x01"
        + len(PPS).to_bytes(2, "big")
        + PPS
    )
    assert video.frame(avc(0, record)) is None
    start = b"\x00\x00\x00\x01"
    assert video.frame(avc(1, length_prefixed(IDR))) == start + SPS + start + PPS + start + IDR
    assert video.frame(avc(1, length_prefixed(DELTA), keyframe=False)) == start + DELTA
    with pytest.raises(FlvError, match="B-frames"):
        video.frame(avc(1, length_prefixed(DELTA), keyframe=False, cts=66))
    with pytest.raises(FlvError, match="longer than its tag"):
        video.frame(avc(1, length_prefixed(DELTA)[:-1]))
    with pytest.raises(FlvError, match="send H"):
        video.frame(b"\x12\x00\x00\x00\x00")  # Sorenson H.263
    with pytest.raises(FlvError, match="enhanced"):
        video.frame(b"\x90hvc1")


def test_flv_aac_config_then_frames() -> None:
    audio = FlvAudio()
    with pytest.raises(FlvError, match="before their AudioSpecificConfig"):
        audio.frame(b"\xaf\x01frame")
    assert audio.frame(b"\xaf\x00\x12\x10") is None  # AAC-LC, 44.1 kHz, stereo
    assert audio.config is not None and (audio.config.sample_rate, audio.config.channels) == (44100, 2)
    assert audio.frame(b"\xaf\x01frame") == b"frame"
    with pytest.raises(FlvError, match="send AAC"):
        audio.frame(b"\x2f\x01mp3")


def test_an_rtmp_backup_replays_its_group_of_pictures_at_once_when_the_primary_ends() -> None:
    """No keyframe can be asked of an RTMP encoder: the backup's whole GOP is kept and, at
    the switch, replayed a tick apart ending where its live frames go on (no added delay)."""
    relay = TrackRelay(
        "video",
        "video/H264",
        gop_cache_frames=90,
        queue_frames=120,
        keyframe_interval_s=1.0,
        request_keyframe=lambda: None,
    )
    now = [0.0]
    dual = DualPath({"video": relay}, FailoverPolicy(), lambda switch: None, lambda: now[0])
    h264 = {"video": "video/H264"}
    primary = SimpleNamespace(id="p", mime_types=h264, request_keyframe=lambda: None)
    backup = SimpleNamespace(id="b", mime_types=h264, request_keyframe=lambda: None, standby_frames=90)
    dual.attach(PRIMARY, primary)
    dual.attach(BACKUP, backup)
    viewer = relay.subscribe()
    key, delta = b"\0\0\0\1" + SPS + b"\0\0\0\1" + PPS + b"\0\0\0\1" + IDR, b"\0\0\0\1" + DELTA
    for n in range(40):  # the backup's keyframe came 39 frames ago
        dual.feed(PRIMARY, "video", key if n == 0 else delta, n * 3000)
        dual.feed(BACKUP, "video", key if n == 0 else delta, 500_000 + n * 3000)
        now[0] += 1 / 30
    dual.detach(PRIMARY)
    frames = [f for f in viewer._frames if f is not None]
    replayed = frames[40:]
    assert len(replayed) == 40 and replayed[0].keyframe
    assert [f.timestamp - replayed[0].timestamp for f in replayed] == list(range(40))
    assert replayed[-1].timestamp - frames[39].timestamp == 3000  # one frame after the last live one


def test_a_restream_backs_off_gives_up_and_starts_afresh_after_a_healthy_run() -> None:
    state = RestreamState(RestreamPolicy(initial_s=1.0, max_s=8.0, max_failures=5), now=0.0)
    assert state.state == CONNECTING
    assert [state.failed("refused", now) for now in (0.0, 1.0, 3.0)] == [1.0, 3.0, 7.0]  # 1, 2, 4 s
    assert state.state == RETRYING and state.error == "refused"
    state.retry(7.0)
    assert state.live(7.5) and state.state == LIVE and state.error is None and not state.live(8.0)
    assert state.failed("reset", 20.0) == 21.0  # live for 12.5 s >= max_s: the backoff starts afresh
    state.retry(21.0)
    assert [state.failed("refused", now) for now in (21.0, 23.0, 27.0)] == [23.0, 27.0, 35.0]
    assert state.failed("refused", 35.0) is None and state.state == FAILED  # 5 in a row, never live
    assert RestreamState(RestreamPolicy(), 0.0).failed("bad", 0.0, permanent=True) is None


def test_an_rtmp_backup_that_was_on_air_is_ready_again_as_soon_as_it_is_off_air() -> None:
    """The backup took over, then the primary came back (at its keyframe): if the primary
    now ends, the backup resumes at once from the keyframe it sent while on air."""
    relay = TrackRelay(
        "video", "video/H264", gop_cache_frames=300, queue_frames=600, keyframe_interval_s=1.0,
        request_keyframe=lambda: None,
    )  # fmt: skip
    now, switches = [0.0], list[Any]()
    dual = DualPath({"video": relay}, FailoverPolicy(), switches.append, lambda: now[0])
    h264 = {"video": "video/H264"}
    dual.attach(
        PRIMARY, SimpleNamespace(id="p", mime_types=h264, request_keyframe=lambda: None, standby_frames=300)
    )
    dual.attach(
        BACKUP, SimpleNamespace(id="b", mime_types=h264, request_keyframe=lambda: None, standby_frames=300)
    )
    viewer = relay.subscribe()
    key, delta = b"\0\0\0\1" + SPS + b"\0\0\0\1" + PPS + b"\0\0\0\1" + IDR, b"\0\0\0\1" + DELTA
    for n in range(200):  # keyframes: the primary's every 60 frames, the backup's every 100
        silent = 10 <= n < 20  # the primary stalls: the backup goes on air (its keyframe at 100)
        if not silent:
            dual.feed(PRIMARY, "video", key if n % 60 == 0 else delta, n * 3000)
        dual.feed(BACKUP, "video", key if n % 100 == 0 else delta, 7_000 + n * 3000)
        now[0] += 1 / 30
    assert [s.reason for s in switches] == ["primary_stopped", "primary_recovered"]  # back at frame 120
    before = len(viewer._frames)
    dual.detach(PRIMARY)
    replayed = [f for f in list(viewer._frames)[before:] if f is not None]
    assert replayed and replayed[0].keyframe and len(replayed) == 100  # from the backup's frame 100
