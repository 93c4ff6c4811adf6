"""A recording as VOD HLS without a second copy: a playlist of byte ranges of its fMP4 file.

A recording is fragmented MP4 (recording.py): `ftyp` + `moov` (the init section), then one
`moof` + `mdat` per fragment, each starting at a video keyframe. That is exactly HLS's
fMP4 format: `#EXT-X-MAP` names the init section's bytes, and each fragment is a segment
(`#EXT-X-BYTERANGE`) whose duration is the gap between its video `tfdt` and the next one's.
A file still being written gives an EVENT playlist of its complete fragments; a finished
one a VOD playlist with `#EXT-X-ENDLIST`. Pure: bytes of the box headers in, text out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Fragment", "Layout", "layout", "playlist"]


@dataclass(frozen=True, slots=True)
class Fragment:
    offset: int
    size: int
    start: int  # the video track's decode time (tfdt), in its timescale


@dataclass(frozen=True, slots=True)
class Layout:
    init_size: int
    timescale: int  # the video track's
    fragments: list[Fragment]


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, offset of the body, end) of the boxes in data[start:end]; a cut box ends the list."""
    boxes, at = [], start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1 and at + 16 <= end:
            size, header = struct.unpack_from(">Q", data, at + 8)[0], 16
        if size < header or at + size > end:
            break
        boxes.append((kind, at + header, at + size))
        at += size
    return boxes


def _field(data: bytes, body: int, v1: int, v0: int) -> int:
    """A 32-bit field of a full box at byte `v1` (version 1) or `v0` (version 0) of its body."""
    return int(struct.unpack_from(">I", data, body + (v1 if data[body] == 1 else v0))[0])


def _video_track(data: bytes, moov: tuple[int, int]) -> tuple[int, int]:
    """(track id, timescale) of the first video track in `moov`."""
    for kind, body, end in _boxes(data, *moov):
        if kind != b"trak":
            continue
        track_id, timescale, video = 0, 0, False
        for inner, ibody, iend in _boxes(data, body, end):
            if inner == b"tkhd":
                track_id = _field(data, ibody, 20, 12)
            elif inner == b"mdia":
                for leaf, lbody, _ in _boxes(data, ibody, iend):
                    if leaf == b"mdhd":
                        timescale = struct.unpack_from(">I", data, lbody + (20 if data[lbody] == 1 else 12))[
                            0
                        ]
                    elif leaf == b"hdlr":
                        video = data[lbody + 8 : lbody + 12] == b"vide"
        if video:
            return track_id, timescale
    raise ValueError("no video track in the recording")


def _decode_time(data: bytes, moof: tuple[int, int], track_id: int) -> int | None:
    for kind, body, end in _boxes(data, *moof):
        if kind != b"traf":
            continue
        found, time = False, None
        for inner, ibody, _ in _boxes(data, body, end):
            if inner == b"tfhd":
                found = struct.unpack_from(">I", data, ibody + 4)[0] == track_id
            elif inner == b"tfdt":
                wide = data[ibody] == 1
                time = struct.unpack_from(">Q" if wide else ">I", data, ibody + 4)[0]
        if found:
            return time
    return None


def layout(path: Path) -> Layout:
    """The init section and the complete fragments of an fMP4 file."""
    data = path.read_bytes()  # fragments are read whole anyway; recordings are served from disk
    top = _boxes(data, 0, len(data))
    moov = next(((body, end) for kind, body, end in top if kind == b"moov"), None)
    if moov is None:
        raise ValueError("the recording has no moov yet")
    track_id, timescale = _video_track(data, moov)
    init_size = moov[1]
    fragments = []
    for (kind, body, end), following in zip(top, [*top[1:], None], strict=True):
        if kind != b"moof" or following is None or following[0] != b"mdat":
            continue
        start = _decode_time(data, (body, end), track_id)
        if start is not None:
            offset = body - 8
            fragments.append(Fragment(offset, following[2] - offset, start))
    return Layout(init_size, timescale, fragments)


def playlist(media_url: str, layout: Layout, total_s: float | None) -> str:
    """The HLS playlist; `total_s` (the recording's length) ends it, None: still recording."""
    durations = [
        (nxt.start - frag.start) / layout.timescale
        for frag, nxt in zip(layout.fragments, layout.fragments[1:], strict=False)
    ]
    fragments = layout.fragments if total_s is not None else layout.fragments[:-1]
    if total_s is not None and layout.fragments:
        durations.append(max(0.001, total_s - layout.fragments[-1].start / layout.timescale))
    target = max((round(d + 0.5) for d in durations), default=1)
    kind = "VOD" if total_s is not None else "EVENT"
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-PLAYLIST-TYPE:{kind}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{media_url}",BYTERANGE="{layout.init_size}@0"',
    ]
    for fragment, duration in zip(fragments, durations, strict=False):
        lines += [
            f"#EXTINF:{duration:.3f},",
            f"#EXT-X-BYTERANGE:{fragment.size}@{fragment.offset}",
            media_url,
        ]
    if total_s is not None:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
