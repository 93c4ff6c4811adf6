"""Dual-path ingest over real sockets: two aiortc publishers (primary and `?path=backup`)
-> a real `liveroom serve` process (two media workers) -> aiortc viewers that decode.

The primary's link goes dark (its outgoing datagrams are dropped on the publisher's side:
no BYE, no DTLS close, as after a crash); viewers must keep decoding from the backup with
a short gap and stay connected, get audio too, and the switch must reach the room and
/metrics. The primary's link comes back: viewers return to it at a keyframe without a
gap. Then the primary closes for good: the backup keeps the viewers. And a primary whose
encoder crashed (its session lingers on the server) is replaced by a restarted one, which
viewers return to. And a viewer pinned to a rendition that only the primary publishes
plays the program from the backup while the primary is dark, then its rendition again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from media_support import (
    LOW,
    Peer,
    _exchange,
    get_json,
    publish,
    publish_renditions,
    read_counter,
    scrape,
    wait_until,
)
from support import ServerProcess, Viewer, token

# Each wait below is a condition given up to 60 s on a loaded machine: room for a few of them.
pytestmark = pytest.mark.timeout(240)

# No freeze: the largest gap between decoded frames across a switch. The targets (200 ms to
# the backup, 100 ms back) are timings, the benchmark's (`python -m liveroom.loadtest.media_bench
# failover`); here the bounds hold with a CPU hog on one of the two cores and three xdist
# workers (1.5 s did not: a gap of 2.07 s, load 2.3-3.1), and a viewer left waiting for a
# keyframe that never comes, or disconnected, still fails them.
GAP_LIMIT_S = 3.0
RETURN_GAP_LIMIT_S = 2.0
WAIT_S = 60  # waits are for conditions: generous, as the machine may be loaded (a restarted
# primary was not taken up again within 30 s in one of three runs with a CPU hog, 3 workers)


@dataclass
class TimedViewer:
    """A WHEP viewer that notes when each decoded frame arrives."""

    pc: RTCPeerConnection
    video: list[tuple[float, int]] = field(default_factory=list)  # (arrival, counter)
    audio: list[float] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    location: str = ""  # the WHEP session's

    def largest_gap(self, since: float, until: float) -> float:
        times = [at for at, _ in self.video if since <= at <= until]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()

    def largest_audio_gap(self, since: float, until: float) -> float:
        times = [at for at in self.audio if since <= at <= until]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


async def play_timed(base: str, room: str, who: str) -> TimedViewer:
    viewer = TimedViewer(RTCPeerConnection(RTCConfiguration(iceServers=[])))
    for kind in ("video", "audio"):
        viewer.pc.addTransceiver(kind, "recvonly")

    @viewer.pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        viewer.tasks.append(asyncio.ensure_future(consume(viewer, track)))

    viewer.location = await _exchange(viewer.pc, f"{base}/whep/{room}", token(who))
    return viewer


async def consume(viewer: TimedViewer, track: MediaStreamTrack) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(MediaStreamError):
        while True:
            frame: Any = await track.recv()
            if track.kind == "video":
                viewer.video.append((loop.time(), read_counter(frame)))
            else:
                viewer.audio.append(loop.time())
    viewer.ended.append(track.kind)


def cut_link(peer: Peer) -> Any:
    """Drop everything the publisher sends (RTP, RTCP): the link is dark, nothing says so."""
    pair = peer.pc.getTransceivers()[0].sender.transport.transport._connection._nominated[1]
    send_data = pair.protocol.send_data

    async def dropped(data: bytes, addr: Any) -> None:
        return None

    pair.protocol.send_data = dropped  # type: ignore[method-assign]  # aioice's, for the test
    return lambda: setattr(pair.protocol, "send_data", send_data)


async def close_room(viewers: list[TimedViewer], watcher: Viewer, backup: Peer, primary: Peer) -> None:
    for viewer in viewers:
        await viewer.close()
    await backup.end()
    await primary.close()
    await watcher.close()


async def dual_path_room(base: str) -> tuple[str, Viewer, Peer, Peer]:
    """A new room, a Socket.IO client in it, and the host's primary and backup paths."""
    room = f"fo-{uuid.uuid4().hex[:8]}"
    watcher = await Viewer(base, "failover-watcher").connect()
    await watcher.join(room)
    primary = await publish(base, room, token("host-fo", "host"))
    backup = await publish(base, room, token("host-fo", "host"), query="?path=backup")
    return room, watcher, primary, backup


TOLD = ("backup", "primary")


def told(watcher: Viewer) -> dict[str, float]:
    """How many failovers to each path the room was told of."""
    items = watcher.of_type("media.failover")
    return {to: float(sum(1 for i in items if i["data"]["to"] == to)) for to in TOLD}


async def test_viewers_fail_over_to_the_backup_and_back_without_disconnecting(server: ServerProcess) -> None:
    loop = asyncio.get_running_loop()
    room, watcher, primary, backup = await dual_path_room(server.url)
    viewers = [await play_timed(server.url, room, f"fo-fan-{n}") for n in range(2)]
    try:
        await wait_until(lambda: all(len(v.video) >= 30 for v in viewers), WAIT_S, "video from the primary")
        restore = cut_link(primary)
        cut_at = loop.time()
        await wait_until(
            lambda: all(v.video[-1][0] > cut_at + 0.5 for v in viewers), WAIT_S, "video after cut"
        )
        items = await watcher.wait_for(lambda i: i["type"] == "media.failover", timeout=WAIT_S)
        # Nothing came for its cadence (~45 ms: "stopped"); on a loaded machine the cadence
        # may have learnt a jitter that puts it at the 100 ms threshold ("silence")
        reason = items[0]["data"].pop("reason")
        assert reason in ("primary_stopped", "primary_silence")
        assert items[0]["data"] == {"room": room, "slot": "host", "from": "primary", "to": "backup"}
        for viewer in viewers:
            gap = viewer.largest_gap(cut_at - 0.2, loop.time())  # up to frames well past the cut
            assert gap <= GAP_LIMIT_S, f"video gap {gap * 1000:.0f} ms"
            assert viewer.largest_audio_gap(cut_at - 0.2, loop.time()) <= GAP_LIMIT_S
        restore()  # the primary is back: after 2 s of health, viewers return at its keyframe
        back_at = loop.time()
        back = lambda i: i["type"] == "media.failover" and i["data"]["to"] == "primary"  # noqa: E731
        await watcher.wait_for(back, timeout=WAIT_S)
        await asyncio.sleep(0.5)
        for viewer in viewers:
            assert viewer.largest_gap(back_at, loop.time()) <= RETURN_GAP_LIMIT_S
        # The cut and the return, counted; on a loaded machine the publisher (in this test's
        # process) may also stall past the threshold for real, and then each stall is a
        # failover and a return too (a hog run counted two of each): /metrics counts what
        # the room was told.
        metrics = scrape(server.url)
        counted = {to: metrics[f'liveroom_media_failovers_total{{room="{room}",to="{to}"}}'] for to in TOLD}

        def seen() -> dict[str, float]:
            return told(watcher)

        await wait_until(lambda: seen() == counted, WAIT_S, "the failovers counted, told", seen)
        assert counted["backup"] >= 1 and counted["primary"] >= 1, counted
        await primary.close()  # now the primary goes for good: the backup adopts the viewers
        ended_at = loop.time()
        await wait_until(
            lambda: all(v.video[-1][0] > ended_at + 0.5 for v in viewers), WAIT_S, "video after end"
        )
        for viewer in viewers:
            assert viewer.pc.connectionState == "connected" and viewer.ended == []
            assert viewer.largest_gap(ended_at, loop.time()) <= GAP_LIMIT_S
            counters = [counter for _, counter in viewer.video]
            assert len(counters) > 100
    finally:
        await close_room(viewers, watcher, backup, primary)


async def test_a_restarted_primary_replaces_the_failed_one_and_viewers_return_to_it(
    server: ServerProcess,
) -> None:
    loop = asyncio.get_running_loop()
    room, watcher, primary, backup = await dual_path_room(server.url)
    viewer = await play_timed(server.url, room, "fo-restart")
    restarted = None
    try:
        await wait_until(lambda: len(viewer.video) >= 30, WAIT_S, "video from the primary")
        # (A loaded machine may stall the primary, in this process, before the cut: a real
        # failover and return, told and counted; what follows is the crash's.)
        before = told(watcher)
        cut_link(primary)  # the encoder crashed: the server still holds its session
        await wait_until(lambda: told(watcher)["backup"] > before["backup"], WAIT_S, "the failover")
        restarted = await publish(server.url, room, token("host-fo", "host"))  # 201, not 409
        started_at = loop.time()
        await wait_until(lambda: told(watcher)["primary"] > before["primary"], WAIT_S, "the return")
        [item] = [i for i in watcher.of_type("media.failover") if i["data"]["to"] == "primary"][-1:]
        assert item["data"]["reason"] == "primary_recovered"
        await asyncio.sleep(0.5)
        assert viewer.largest_gap(started_at, loop.time()) <= RETURN_GAP_LIMIT_S
        assert viewer.pc.connectionState == "connected" and viewer.ended == []
        returns = scrape(server.url)[f'liveroom_media_failovers_total{{room="{room}",to="primary"}}']
        assert returns == told(watcher)["primary"], watcher.of_type("media.failover")
    finally:
        await viewer.close()
        for peer in (restarted, backup):
            if peer is not None:
                await peer.end()
        await primary.close()
        await watcher.close()


async def test_a_viewer_of_the_primarys_own_rendition_fails_over_too(server: ServerProcess) -> None:
    loop = asyncio.get_running_loop()
    room = f"fo-{uuid.uuid4().hex[:8]}"
    watcher = await Viewer(server.url, "failover-watcher").connect()
    await watcher.join(room)
    primary = await publish_renditions(server.url, room, token("host-fo", "host"))  # two renditions
    backup = await publish(server.url, room, token("host-fo", "host"), query="?path=backup")  # one
    viewer = await play_timed(server.url, room + "?quality=480p", "fo-pinned")  # the second rendition
    try:
        rendition: Callable[[], list[int]] = lambda: [c for _, c in viewer.video if c >= LOW]  # noqa: E731
        await wait_until(lambda: len(rendition()) >= 30, WAIT_S, "video from the primary's rendition")
        if len(rendition()) < len(viewer.video):
            # Pictures of the program: only while the server had left the pinned rendition
            # for having no picture yet (the host's second track late, once in a full run at
            # load 1-3: media/sessions.py's leave_renditions, a switch from None).
            status, body = await get_json(server.url + viewer.location, token("fo-pinned"))
            fell_back = [s for s in body["quality"]["switches"] if s["from"] is None]
            assert status == 200 and fell_back, (viewer.video[:40], body)
        restore = cut_link(primary)
        cut_at = loop.time()
        await watcher.wait_for(lambda i: i["type"] == "media.failover", timeout=WAIT_S)
        program: Callable[[], list[int]] = lambda: [c for at, c in viewer.video if at > cut_at and c < LOW]  # noqa: E731
        await wait_until(lambda: len(program()) >= 15, WAIT_S, "the program from the backup")
        assert viewer.largest_gap(cut_at - 0.2, loop.time()) <= GAP_LIMIT_S + 0.2  # one keyframe more
        restore()  # the primary is back: the viewer returns to the rendition it pinned
        back_at = loop.time()
        pinned: Callable[[], list[int]] = lambda: [c for at, c in viewer.video if at > back_at and c >= LOW]  # noqa: E731
        await wait_until(lambda: len(pinned()) >= 15, WAIT_S, "the pinned rendition again")
        await primary.close()  # now the primary goes for good, its rendition with it
        ended_at = loop.time()
        after: Callable[[], list[int]] = lambda: [c for at, c in viewer.video if at > ended_at and c < LOW]  # noqa: E731
        await wait_until(lambda: len(after()) >= 15, WAIT_S, "the program from the backup, for good")
        assert viewer.pc.connectionState == "connected" and viewer.ended == []
    finally:
        await close_room([viewer], watcher, backup, primary)


async def test_a_path_ending_while_another_keeps_the_program_says_on_air(server: ServerProcess) -> None:
    """The host's primary deleted while the backup is up: the backup is `promoted` and the
    primary's `ended` (announced after it) says `on_air: true`, so players keep playing; the
    last path's end says `on_air: false`."""
    _, watcher, primary, backup = await dual_path_room(server.url)

    def publisher(state: str, session: str | None = None) -> Callable[[dict[str, Any]], bool]:
        return lambda i: (
            i["type"] == "media.publisher"
            and i["data"]["state"] == state
            and session in (None, i["data"]["session"])
        )

    try:
        connected = await watcher.wait_for(publisher("connected"), count=2, timeout=WAIT_S)
        assert all(item["data"]["on_air"] for item in connected), connected
        # The session's resource, less the media worker's index ("1.<id>", docs/media.md)
        primary_id = primary.location.rsplit("/", 1)[-1].split(".", 1)[-1]
        assert primary_id in [item["data"]["session"] for item in connected], (primary.location, connected)
        assert await primary.end() == 200
        [ended] = await watcher.wait_for(publisher("ended", primary_id), timeout=WAIT_S)
        [promoted] = await watcher.wait_for(publisher("promoted"), timeout=WAIT_S)
        assert ended["data"]["on_air"] is True, ended
        assert promoted["data"]["session"] != primary_id, promoted
        assert await backup.end() == 200
        [last] = await watcher.wait_for(publisher("ended", promoted["data"]["session"]), timeout=WAIT_S)
        assert last["data"]["on_air"] is False, last
    finally:
        await primary.close()
        await backup.close()
        await watcher.close()
