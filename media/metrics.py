"""Media figures in /metrics, read from the plane at scrape time (no bookkeeping on the hot path)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .hooks import CODEC_INSTANCES
from .plane import MediaPlane
from .sessions import PlaySession, PublishSession

__all__ = ["MediaCollector"]


class MediaCollector(Collector):
    def __init__(self, plane: MediaPlane) -> None:
        self._plane = plane

    def collect(self) -> Iterator[Metric]:
        plane = self._plane
        sessions = GaugeMetricFamily(
            "liveroom_media_sessions", "Open WHIP/WHEP peer connections", labels=["kind"]
        )
        sessions.add_metric(["whip"], sum(isinstance(s, PublishSession) for s in plane.sessions.values()))
        sessions.add_metric(["whep"], sum(isinstance(s, PlaySession) for s in plane.sessions.values()))
        yield sessions
        codecs = CounterMetricFamily(
            "liveroom_media_codec_instances",
            "Encoders/decoders aiortc made in this process (a forwarding server keeps 0)",
            labels=["role"],
        )
        for role, count in CODEC_INSTANCES.items():
            codecs.add_metric([role], count)
        yield codecs
        yield from self._per_room()
        yield self._tasks()

    def _per_room(self) -> Iterator[Metric]:
        plane = self._plane
        viewers = GaugeMetricFamily("liveroom_media_viewers", "WHEP viewers per room", labels=["room"])
        for room in sorted({room for room, _ in plane.publishers}):
            viewers.add_metric([room], plane.viewer_count(room))
        yield viewers
        labels = ["room", "slot", "kind"]
        bitrate = GaugeMetricFamily("liveroom_media_publisher_bitrate_bps", "Received bitrate", labels=labels)
        fps = GaugeMetricFamily(
            "liveroom_media_publisher_fps", "Received video frames per second", labels=labels
        )
        keyframes = GaugeMetricFamily(
            "liveroom_media_publisher_keyframe_interval_seconds",
            "Time between the last two keyframes",
            labels=labels,
        )
        requests = CounterMetricFamily(
            "liveroom_media_keyframe_requests", "Keyframe requests sent to publishers", labels=labels
        )
        for (room, slot), publisher in plane.publishers.items():
            stats = plane.stats.get(publisher.id)
            for kind, relay in publisher.relays.items():
                key = [room, slot, kind]
                requests.add_metric(key, relay.gate.requests_sent)
                if stats is None:
                    continue
                bitrate.add_metric(key, stats.bitrate_bps.get(kind, 0.0))
                if kind == "video":
                    fps.add_metric(key, stats.fps.get(kind, 0.0))
                    keyframes.add_metric(key, stats.keyframe_interval_s or 0.0)
        yield from (bitrate, fps, keyframes, requests)

    def _tasks(self) -> Metric:
        # For leak checks: asyncio tasks alive in the server right now.
        tasks = GaugeMetricFamily("liveroom_asyncio_tasks", "asyncio tasks alive in this process")
        try:
            tasks.add_metric([], len(asyncio.all_tasks()))
        except RuntimeError:  # scraped outside the loop
            tasks.add_metric([], 0)
        return tasks
