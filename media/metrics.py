"""Media figures in /metrics, built at scrape time from each worker's latest snapshot.

A snapshot is plain data (`stats.plane_snapshot`): made in-process when the plane runs
in the node, or sent by each worker process over its event stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["MediaCollector"]

Snapshots = Callable[[], Mapping[str, Mapping[str, Any]]]  # worker name -> snapshot


class MediaCollector(Collector):
    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        snapshots = self._snapshots()
        sessions = GaugeMetricFamily(
            "liveroom_media_sessions", "Open WHIP/WHEP peer connections", labels=["kind", "worker"]
        )
        codecs = CounterMetricFamily(
            "liveroom_media_codec_instances",
            "Encoders/decoders aiortc made in media processes (a forwarding server keeps 0)",
            labels=["role"],
        )
        tasks = GaugeMetricFamily(
            "liveroom_media_asyncio_tasks", "asyncio tasks alive in each media process", labels=["worker"]
        )
        totals = {"encoder": 0, "decoder": 0}
        for worker, snapshot in snapshots.items():
            for kind, count in snapshot["sessions"].items():
                sessions.add_metric([kind, worker], count)
            for role, count in snapshot["codec_instances"].items():
                totals[role] = totals.get(role, 0) + count
            tasks.add_metric([worker], snapshot["tasks"])
        for role, count in totals.items():
            codecs.add_metric([role], count)
        yield from (sessions, codecs, tasks)
        yield from _ladder(snapshots)
        yield from _per_room(snapshots)
        yield from _restreams(snapshots)


def _ladder(snapshots: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The server-side ladder (media.transcode_ladder): its codecs, rooms and dropped frames."""
    codecs = CounterMetricFamily(
        "liveroom_media_ladder_codec_instances",
        "Decoders/encoders made for server-side ABR ladders (0 while every room is forwarded)",
        labels=["role"],
    )
    rooms = GaugeMetricFamily(
        "liveroom_media_ladder_rooms", "Rooms whose ladder this process makes", labels=["worker"]
    )
    dropped = CounterMetricFamily(
        "liveroom_media_ladder_frames_dropped", "Source frames the ladder skipped (it fell behind)"
    )
    totals = {"encoder": 0, "decoder": 0}
    dropped_total = 0
    for worker, snapshot in snapshots.items():
        ladder = snapshot.get("ladder", {})
        for role, count in ladder.get("codec_instances", {}).items():
            totals[role] = totals.get(role, 0) + count
        rooms.add_metric([worker], ladder.get("rooms", 0))
        dropped_total += ladder.get("frames_dropped", 0)
    for role, count in totals.items():
        codecs.add_metric([role], count)
    dropped.add_metric([], dropped_total)
    yield from (codecs, rooms, dropped)


def _per_room(snapshots: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    viewers = GaugeMetricFamily("liveroom_media_viewers", "WHEP viewers per room", labels=["room"])
    for snapshot in snapshots.values():
        for room, count in sorted(snapshot["viewers"].items()):
            viewers.add_metric([room], count)
    yield viewers
    failovers = CounterMetricFamily(
        "liveroom_media_failovers", "Host path switches (dual-path ingest)", labels=["room", "to"]
    )
    for snapshot in snapshots.values():
        for switch in snapshot.get("failovers", ()):
            failovers.add_metric([switch["room"], switch["to"]], switch["count"])
    yield failovers
    labels = ["room", "slot", "kind"]
    bitrate = GaugeMetricFamily("liveroom_media_publisher_bitrate_bps", "Received bitrate", labels=labels)
    fps = GaugeMetricFamily("liveroom_media_publisher_fps", "Received video frames per second", labels=labels)
    keyframes = GaugeMetricFamily(
        "liveroom_media_publisher_keyframe_interval_seconds",
        "Time between the publisher's last two keyframes",
        labels=labels,
    )
    requests = CounterMetricFamily(
        "liveroom_media_keyframe_requests", "Keyframe requests sent to the publisher", labels=labels
    )
    rtt = GaugeMetricFamily(
        "liveroom_media_viewer_rtt_ms", "Mean viewer round-trip time (RTCP)", labels=["room", "slot"]
    )
    lost = CounterMetricFamily(
        "liveroom_media_viewer_packets_lost", "Packets viewers reported lost", labels=["room", "slot"]
    )
    for snapshot in snapshots.values():
        for track in snapshot["publishers"]:
            key = [track["room"], track["slot"], track["kind"]]
            requests.add_metric(key, track["keyframe_requests"])
            if track["kind"] == "video":
                lost.add_metric(key[:2], track["viewer_packets_lost"])
                if track["viewer_rtt_ms"] is not None:
                    rtt.add_metric(key[:2], track["viewer_rtt_ms"])
            if track["bitrate_bps"] is not None:
                bitrate.add_metric(key, track["bitrate_bps"])
            if track["kind"] == "video" and track["fps"] is not None:
                fps.add_metric(key, track["fps"])
                keyframes.add_metric(key, track["keyframe_interval_s"] or 0.0)
    yield from (bitrate, fps, keyframes, requests, rtt, lost)


def _restreams(snapshots: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """Each restream destination's state as a state set (1 for the state it is in)."""
    labels = ["room", "restream", "state"]
    state = GaugeMetricFamily("liveroom_media_restream_state", "Restream destination state", labels=labels)
    frames = CounterMetricFamily(
        "liveroom_media_restream_frames", "Frames written to a restream destination", labels=labels[:2]
    )
    attempts = CounterMetricFamily(
        "liveroom_media_restream_attempts", "Connections made to a restream destination", labels=labels[:2]
    )
    for snapshot in snapshots.values():
        for restream in snapshot.get("restreams", ()):
            key = [restream["room"], restream["id"]]
            for name in ("connecting", "live", "retrying", "failed"):
                state.add_metric([*key, name], float(restream["state"] == name))
            frames.add_metric(key, restream["frames_sent"])
            attempts.add_metric(key, restream["attempts"])
    yield from (state, frames, attempts)
