"""Co-stream composite for HLS: a host (a red picture) and a stage guest (a blue one, VP8)
publish; the server decodes each once, puts them side by side and encodes the picture
once into `composite.m3u8`. A segment of it, decoded here, is red on the left half and
blue on the right; when the guest leaves, the host has the picture to itself."""

from __future__ import annotations

import uuid
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, VideoStreamTrack
from liveroom.media.composite import tiles
from media_support import Peer, _exchange, codec_preferences, wait_until
from support import ServerProcess, module_server, token
from test_media_forwarding import guest_token
from test_media_hls import get, segments

RED, BLUE = (81, 90, 240), (41, 240, 110)  # Y, U, V


class ColourTrack(VideoStreamTrack):
    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__()
        self.colour = colour

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(160, 120, "yuv420p")
        for plane, value in zip(frame.planes, self.colour, strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


async def publish_colour(base: str, room: str, bearer: str, colour: tuple[int, int, int], codec: str) -> Peer:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(ColourTrack(colour), "sendonly").setCodecPreferences(codec_preferences("video", codec))
    return Peer(pc, await _exchange(pc, f"{base}/whip/{room}", bearer), base, bearer)


def test_layouts() -> None:
    assert tiles("side_by_side", 1, 640, 360) == [(0, 0, 640, 360)]
    assert tiles("side_by_side", 3, 640, 360) == [(0, 0, 212, 360), (212, 0, 212, 360), (424, 0, 212, 360)]
    assert tiles("host_large", 3, 640, 360) == [(0, 0, 426, 360), (426, 0, 214, 180), (426, 180, 214, 180)]


server = module_server(
    "server",
    {
        "LIVEROOM_MEDIA_WORKERS": "1",
        "LIVEROOM_MEDIA_HLS_SEGMENT_S": "0.5",
        "LIVEROOM_MEDIA_COMPOSITE_LAYOUT": "side_by_side",
        "LIVEROOM_MEDIA_COMPOSITE_SIZE": "320x120",
        "LIVEROOM_MEDIA_COMPOSITE_FPS": "10",
    },
)


def latest_picture(base: str) -> Any:
    """The last picture of the newest composite segment, decoded here."""
    name = segments(get(f"{base}/composite.m3u8")[2])[-1][0]
    with av.open(f"{base}/{name}") as container:
        pictures = list(container.decode(video=0))
    return pictures[-1]


def colour_at(picture: Any, x: int, y: int) -> tuple[int, int, int]:
    planes = [bytes(plane) for plane in picture.planes]
    luma = planes[0][y * picture.planes[0].line_size + x]
    half = (y // 2) * picture.planes[1].line_size + x // 2
    return luma, planes[1][half], planes[2][half]


def near(colour: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(colour, expected, strict=True))


async def test_host_and_guest_side_by_side_in_the_hls_composite(server: ServerProcess) -> None:
    room = f"comp-{uuid.uuid4().hex[:8]}"
    base = f"{server.url}/hls/{room}"
    host = await publish_colour(server.url, room, token("host-comp", "host"), RED, "video/H264")
    guest = await publish_colour(server.url, room, guest_token(room, 1), BLUE, "video/VP8")
    try:
        playlist = f"{base}/composite.m3u8"
        await wait_until(lambda: len(segments(get(playlist)[2])) >= 2, 15, "composite segments")

        def both() -> bool:
            picture = latest_picture(base)
            return near(colour_at(picture, 80, 60), RED) and near(colour_at(picture, 240, 60), BLUE)

        await wait_until(both, 10, "red on the left, blue on the right")
        picture = latest_picture(base)
        assert (picture.width, picture.height) == (320, 120)
        assert b"composite" not in get(f"{base}/master.m3u8")[2]  # a picture of its own, not a rung
        await guest.end()

        def host_alone() -> bool:  # its 4:3 picture centred on the 8:3 canvas, black at the sides
            picture = latest_picture(base)
            centre = near(colour_at(picture, 110, 60), RED) and near(colour_at(picture, 210, 60), RED)
            return centre and near(colour_at(picture, 20, 60), (16, 128, 128))

        await wait_until(host_alone, 10, "the host alone in the picture")
    finally:
        await host.end()
