"""Publisher figures for the room and /metrics: bitrate, frame rate, keyframe interval."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .relay import TrackRelay

__all__ = ["PublisherStats", "ViewerQuality", "plane_snapshot", "viewer_quality"]


@dataclass(frozen=True, slots=True)
class ViewerQuality:
    """What a publisher's viewers report back in RTCP receiver reports, summed up."""

    viewers: int = 0
    rtt_ms: float | None = None  # mean round-trip time over viewers that reported one
    packets_lost: int = 0  # cumulative, over every viewer's video and audio


async def viewer_quality(sessions: Iterable[Any]) -> ViewerQuality:
    rtts: list[float] = []
    lost = count = 0
    for session in list(sessions):
        count += 1
        for sender in session.senders:
            for report in (await sender.getStats()).values():
                if report.type == "remote-inbound-rtp":
                    lost += max(0, report.packetsLost or 0)
                    if report.roundTripTime is not None:
                        rtts.append(report.roundTripTime * 1000)
    mean = round(sum(rtts) / len(rtts), 2) if rtts else None
    return ViewerQuality(count, mean, lost)


class PublisherStats:
    """Turns the relays' running counters into rates between two samples."""

    def __init__(self, room: str, slot: str) -> None:
        self.room = room
        self.slot = slot
        self.bitrate_bps: dict[str, float] = {}
        self.fps: dict[str, float] = {}
        self.keyframe_interval_s: float | None = None
        self.viewers = ViewerQuality()
        self._last: dict[str, tuple[float, int, int]] = {}  # kind -> (time, bytes, frames)

    def sample(self, relays: Mapping[str, TrackRelay], now: float) -> dict[str, Any] | None:
        """Update the rates; returns the figures, or None on the first sample."""
        ready = bool(self._last)
        for kind, relay in relays.items():
            last = self._last.get(kind)
            self._last[kind] = (now, relay.stats.bytes, relay.stats.frames)
            if last is None or now <= last[0]:
                ready = False
                continue
            elapsed = now - last[0]
            self.bitrate_bps[kind] = (relay.stats.bytes - last[1]) * 8 / elapsed
            self.fps[kind] = (relay.stats.frames - last[2]) / elapsed
            if kind == "video":
                self.keyframe_interval_s = relay.stats.keyframe_interval_s
        if not ready:
            return None
        return {
            "bitrate_bps": {kind: round(value) for kind, value in self.bitrate_bps.items()},
            "fps": round(self.fps.get("video", 0.0), 1),
            "keyframe_interval_s": self.keyframe_interval_s,
            "viewers": max((len(relay.viewers) for relay in relays.values()), default=0),
        }


def plane_snapshot(plane: Any) -> dict[str, Any]:
    """What /metrics shows about one media plane, as JSON-able data (see metrics.py)."""
    from .hooks import CODEC_INSTANCES
    from .ladder import LADDER_CODECS
    from .rtmp_session import RtmpPublishSession
    from .sessions import PlaySession, PublishSession

    sessions = list(plane.sessions.values())
    rtmp = sum(isinstance(s, RtmpPublishSession) for s in sessions)
    publishers = []
    for (room, slot), publisher in plane.publishers.items():
        stats = plane.stats.get(publisher.id)
        for kind, relay in publisher.relays.items():
            publishers.append(
                {
                    "room": room,
                    "slot": slot,
                    "kind": kind,
                    "viewers": len(relay.viewers),
                    "keyframe_requests": relay.gate.requests_sent,
                    "bitrate_bps": stats.bitrate_bps.get(kind) if stats else None,
                    "fps": stats.fps.get(kind) if stats else None,
                    "keyframe_interval_s": stats.keyframe_interval_s if stats else None,
                    "viewer_rtt_ms": stats.viewers.rtt_ms if stats else None,
                    "viewer_packets_lost": stats.viewers.packets_lost if stats else 0,
                }
            )
    return {
        "sessions": {
            "whip": sum(isinstance(s, PublishSession) for s in sessions) - rtmp,
            "rtmp": rtmp,
            "whep": sum(isinstance(s, PlaySession) for s in sessions),
        },
        "codec_instances": dict(CODEC_INSTANCES),
        "ladder": {
            "codec_instances": dict(LADDER_CODECS),
            "rooms": sum(p.transcoder is not None for p in plane.publishers.values()),
            "frames_dropped": sum(
                p.transcoder.frames_dropped for p in plane.publishers.values() if p.transcoder is not None
            ),
        },
        "viewers": {room: plane.viewer_count(room) for room in {room for room, _ in plane.publishers}},
        "publishers": publishers,
        "failovers": [{"room": room, "to": to, "count": n} for (room, to), n in plane.failovers.items()],
        "restreams": [
            {"room": room, **restream.summary(), "url": None}
            for room, outputs in plane.restreams.items()
            for restream in outputs.values()
        ],
        "tasks": len(asyncio.all_tasks()),
    }
