"""One WHIP (publish) or WHEP (play) session: an aiortc peer connection and its tracks.

A `PublishSession` owns one `TrackRelay` per received track and taps aiortc's receiver
so encoded frames go to it. A `PlaySession` subscribes one `ViewerTrack` per relay and
sends it through a sender that forwards without an encoder.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from liveroom.config import MediaConfig
from liveroom.errors import BadRequest

from .abr import AbrPolicy, LinkReport, Rung, RungController, parse_ladder
from .callers import Caller
from .fastpath import FastSender
from .hooks import attach_sender, tap_receiver
from .ladder import LadderTranscoder, RungEncoder
from .nacks import ReaskingNacks
from .relay import ForwardedFrame, TrackRelay, ViewerTrack

__all__ = ["PlaySession", "PublishSession", "Session", "negotiate"]

log = logging.getLogger(__name__)
FORWARDED_MIME_TYPES = {"audio": ("audio/opus",), "video": ("video/h264", "video/vp8")}
CLOSE_TIMEOUT_S = 5.0
SWITCHES_KEPT = 20  # a viewer's latest rung switches, for its session status
SENT_WINDOW_S = 2.0  # what we sent a viewer is averaged over this long (keyframes are bursts)
# Server-side ladder (ladder.py): frames waiting for the transcoding thread (1 s at 30 fps),
# and the longest a rung goes without an IDR when nobody asks for one (4 s at 30 fps).
LADDER_QUEUE_FRAMES = 30
LADDER_KEYFRAME_INTERVAL_FRAMES = 120
# A server rung's keyframe costs the host nothing (only that rung's bits): its gate is short,
# so a viewer moving onto it waits a frame or so rather than up to keyframe_request_interval_s.
LADDER_KEYFRAME_GATE_S = 0.25
# A rendition without a frame for this long is gone for now: its viewers play the program
# (which fails over), and nobody moves onto it (longer than a failover's gap).
RENDITION_SILENCE_S = 1.0


class Session:
    def __init__(self, room: str, slot: str, caller: Caller, config: MediaConfig) -> None:
        self.id = secrets.token_urlsafe(12)
        self.room = room
        self.slot = slot
        self.caller = caller
        servers = [RTCIceServer(urls=url) for url in config.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.closed = False
        self.connected = False  # has reached "connected" (admission counts it from then)
        self.ending = False  # a publisher closing (its viewers first, then itself)
        self._closing: asyncio.Future[None] | None = None
        self.ended_by_request = False  # DELETE (ended) rather than a lost connection
        self.on_closed: Callable[[Session], None] = lambda session: None
        self.on_connected: Callable[[Session], None] = lambda session: None
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer_sdp: str) -> str:
        # Transceivers are made only for the kinds offered: aiortc cannot answer with a
        # transceiver the offer never mentioned.
        self._prepare(offered_kinds(offer_sdp))
        await negotiate(self.pc, offer_sdp)
        self._negotiated()
        await self.pc.setLocalDescription(await self.pc.createAnswer())  # gathers ICE fully
        return str(self.pc.localDescription.sdp)

    def status(self) -> dict[str, Any]:
        """What `GET {Location}` shows the session's owner."""
        return {"session": self.id, "room": self.room, "slot": self.slot, "state": self.pc.connectionState}

    def _prepare(self, kinds: list[str]) -> None:
        """Hook run before the offer is applied, with the media kinds it offers."""

    def _negotiated(self) -> None:
        """Hook run between the offer and the answer (before aiortc starts any receiver)."""

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected":
            self.connected = True
            self.on_connected(self)
        elif self.pc.connectionState in ("failed", "closed") and self._closing is None:
            self._closing = asyncio.ensure_future(self.close())

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        connections = [t.receiver.transport.transport._connection for t in self.pc.getTransceivers()]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT_S)
        await _stop_consent_checks(connections)
        self.on_closed(self)


async def _stop_consent_checks(connections: list[Any]) -> None:
    """Work around an aioice 0.13 race: closed while ICE was completing, `connect()`
    resumes afterwards and starts consent checks on the closed connection, a task that
    would outlive the session. Give it a moment to do so, then cancel it."""
    await asyncio.sleep(0.05)
    for connection in connections:
        task = getattr(connection, "_query_consent_task", None)
        if task is not None and not task.done():
            task.cancel()


class PublishSession(Session):
    """WHIP: receive up to one audio and one video track and fan them out, encoded."""

    def __init__(self, room: str, slot: str, caller: Caller, config: MediaConfig) -> None:
        super().__init__(room, slot, caller, config)
        self.config = config
        self.relays: dict[str, TrackRelay] = {}
        # Video renditions in m-line order (ABR rungs, highest first); [0] is relays["video"].
        self.rungs: list[TrackRelay] = []
        self.viewers: set[PlaySession] = set()
        self.mime_types: dict[str, str] = {}
        self.camera: str | None = None  # `?camera=NAME` of a host's publish (cameras.py)
        # Where received frames go: this session's relays, or a DualPath (host + backup).
        self.feed: Callable[[str, bytes, int], None] = self._push
        # Every RTP packet of the fed tracks, as it arrives (a host path's liveness: failover.py).
        self.on_packet: Callable[[str], None] = lambda kind: None
        # Called first thing in close(): the plane hands the program over to the backup.
        self.before_close: Callable[[PublishSession], None] = lambda session: None
        self._receivers: dict[str, RTCRtpReceiver] = {}
        self._pli_tasks: set[asyncio.Future[None]] = set()
        # The server-side ladder, when this host sends one stream and it is on (ladder.py).
        self.transcoder: LadderTranscoder | None = None

    def _prepare(self, kinds: list[str]) -> None:
        videos, audios = kinds.count("video"), kinds.count("audio")
        if not kinds or audios > 1 or videos > len(self.config.abr_ladder):
            message = "publish one audio track and video tracks, one per rendition of the ladder"
            raise BadRequest(message, "no_media")
        for kind in kinds:
            transceiver = self.pc.addTransceiver(kind, "recvonly")
            transceiver.setCodecPreferences(_capabilities(kind, FORWARDED_MIME_TYPES[kind]))

    def _negotiated(self) -> None:
        for transceiver in _negotiated_transceivers(self.pc):
            self._relay(transceiver)
        if not self.relays:
            raise BadRequest("the offer has no audio or video to publish", "no_media")

    def _relay(self, transceiver: RTCRtpTransceiver) -> None:
        codec = transceiver._codecs[0]
        receiver = transceiver.receiver
        relay = self._new_relay(transceiver.kind, codec, lambda: self._send_pli(receiver))
        kind = transceiver.kind
        if kind == "video":
            self.rungs.append(relay)
        if kind in self.relays:  # a further rendition: its own relay, not failed over
            tap_receiver(receiver, lambda _codec, data, timestamp: relay.push(data, timestamp))
            return
        tap_receiver(receiver, lambda _codec, data, timestamp: self.feed(kind, data, timestamp))
        _tap_packets(receiver, lambda: self.on_packet(kind))
        if getattr(receiver, _NACK_GENERATOR, None) is not None:  # video: ask again for losses
            setattr(receiver, _NACK_GENERATOR, ReaskingNacks())
        self.relays[kind] = relay
        self.mime_types[kind] = codec.mimeType
        self._receivers[kind] = receiver

    def new_relay(
        self, kind: str, codec: Any, request_keyframe: Callable[[], None] = lambda: None
    ) -> TrackRelay:
        """A relay of this session's kind and codec for frames made on the server."""
        return self._new_relay(kind, codec, request_keyframe)

    def _new_relay(self, kind: str, codec: Any, request_keyframe: Callable[[], None]) -> TrackRelay:
        relay = TrackRelay(
            kind,
            codec.mimeType,
            gop_cache_frames=self.config.gop_cache_frames,
            queue_frames=self.config.viewer_queue_frames,
            keyframe_interval_s=self.config.keyframe_request_interval_s,
            move_keyframe_interval_s=self.config.move_keyframe_interval_s,
            request_keyframe=request_keyframe,
        )
        relay.codec = codec
        return relay

    def start_ladder(self, ladder: tuple[Rung, ...]) -> None:
        """Make the ladder's lower rungs from this host's one video (decoded once, each rung
        encoded once); they become renditions like published ones (`rungs[1:]`)."""
        top = self.relays["video"]
        keyint = LADDER_KEYFRAME_INTERVAL_FRAMES
        relays = [self._new_relay("video", top.codec, lambda: None) for _ in ladder[1:]]
        for relay in relays:
            relay.gate.interval_s = LADDER_KEYFRAME_GATE_S
            relay.gate.move_interval_s = min(relay.gate.move_interval_s, LADDER_KEYFRAME_GATE_S)
        encoders = [RungEncoder(rung, relay, keyint) for rung, relay in zip(ladder[1:], relays, strict=True)]
        loop = asyncio.get_running_loop()
        self.transcoder = LadderTranscoder(encoders, loop, top.keyframe_wanted, LADDER_QUEUE_FRAMES)
        self.rungs += self.transcoder.relays
        top.listeners.append(self.transcoder.frame)

    def _push(self, kind: str, data: bytes, timestamp: int) -> None:
        self.relays[kind].push(data, timestamp)

    def request_keyframe(self) -> None:
        """A PLI to this publisher now, bypassing the gate (a failover cannot wait)."""
        receiver = self._receivers.get("video")
        if receiver is not None and not self.closed:
            self._send_pli(receiver)

    def adopt_program(self, previous: PublishSession) -> None:
        """Take over `previous`'s relays and viewers (the backup, when the primary ends):
        the viewers stay connected. This session's own relays had nobody watching."""
        for relay in self.relays.values():
            relay.end()
        self.relays, previous.relays = previous.relays, {}
        # The program's server-side rungs go on with it; the previous path's own further
        # renditions end with it, their viewers moved onto the program first.
        transcoded = previous.transcoded_rungs
        self.rungs = [self.relays["video"], *transcoded] if "video" in self.relays else []
        previous.rungs = previous.own_renditions
        self.transcoder, previous.transcoder = previous.transcoder, None
        self.viewers, previous.viewers = previous.viewers, set()
        for viewer in self.viewers:
            viewer.publisher = self
            viewer.leave_renditions(previous.rungs)

    @property
    def transcoded_rungs(self) -> list[TrackRelay]:
        """The rungs the server makes from this path's video (ladder.py)."""
        return self.transcoder.relays if self.transcoder is not None else []

    @property
    def own_renditions(self) -> list[TrackRelay]:
        """The further video renditions this path publishes itself (not the program's, nor
        the server's rungs): they do not fail over."""
        transcoded = self.transcoded_rungs
        return [relay for relay in self.rungs[1:] if relay not in transcoded]

    def _send_pli(self, receiver: RTCRtpReceiver) -> None:
        for source in receiver.getSynchronizationSources():
            task = asyncio.ensure_future(receiver._send_rtcp_pli(source.source))
            self._pli_tasks.add(task)
            task.add_done_callback(self._pli_tasks.discard)

    async def close(self) -> None:
        if self.closed:
            return
        self.ending = True  # closing its viewers first: no new viewer may join meanwhile
        self.before_close(self)
        if self.transcoder is not None:
            self.transcoder.close()
        for relay in [*self.relays.values(), *self.rungs]:
            relay.end()
        viewers = list(self.viewers)
        await asyncio.gather(*(viewer.close() for viewer in viewers))
        await super().close()
        for task in list(self._pli_tasks):
            task.cancel()


class PlaySession(Session):
    """WHEP: send every track of one publisher (one stage slot) to one viewer.

    When the publisher sends several renditions, the viewer's video moves between them
    (at the target's keyframe, no renegotiation) as its `RungController` decides, or stays
    on the one it pinned (`?quality=480p`).
    """

    def __init__(
        self, publisher: PublishSession, caller: Caller, config: MediaConfig, quality: str | None = None
    ) -> None:
        super().__init__(publisher.room, publisher.slot, caller, config)
        self.publisher = publisher
        self.config = config
        self.tracks: list[ViewerTrack] = []
        ladder = parse_ladder(config.abr_ladder)[: max(1, len(publisher.rungs))]
        self.abr = RungController(
            ladder, AbrPolicy(up_hold_s=config.abr_up_hold_s, trial_s=config.abr_trial_s)
        )
        if quality is not None:
            try:
                self.abr.pin(quality)
            except ValueError as exc:
                raise BadRequest(f"quality: {exc}", "bad_request") from None
            self.abr.current = self.abr.pinned or 0
        # The latest rung switches: {"from", "to", "decided_at", "switched_at", "trial"} (wall clock).
        self.switches: collections.deque[dict[str, Any]] = collections.deque(maxlen=SWITCHES_KEPT)
        self._sent: collections.deque[tuple[float, int]] = collections.deque()  # (now, octets)
        self._last_estimate: int | None = None
        publisher.viewers.add(self)

    @property
    def video(self) -> ViewerTrack | None:
        return next((track for track in self.tracks if track.kind == "video"), None)

    def leave_renditions(self, gone: list[TrackRelay]) -> None:
        """Renditions whose publisher is gone or silent (the host's failed path): a viewer
        playing, or moving to, one of them plays the program from its next keyframe."""
        track = self.video
        if track is None or track.keyframe_source not in gone or "video" not in self.publisher.relays:
            return
        track.move_to(self.publisher.relays["video"], cut=True)
        self.abr.current = 0
        name = self.abr.ladder[0].name
        self.switches.append({"from": None, "to": name, "decided_at": time.time(), "trial": False})

    def adapt(self, report: LinkReport, now: float) -> None:
        """The viewer's latest RTCP figures: move its video to the rung they call for."""
        track, rungs = self.video, self.publisher.rungs
        if track is None or len(rungs) < 2:
            return
        silent = [relay for relay in rungs[1:] if relay.silent(RENDITION_SILENCE_S)]
        self.leave_renditions(silent)
        before = self.abr.current
        wanted = self.abr.update(report, now)
        index = self.abr.ladder.index(wanted)
        if rungs[index] in silent:  # e.g. a pinned rendition of a path that failed: not yet
            self.abr.current = rungs.index(track.keyframe_source)
            return
        if index != before and rungs[index] is not track.relay:
            name = self.abr.ladder[before].name
            self.switches.append(
                {"from": name, "to": wanted.name, "decided_at": time.time(), "trial": self.abr.trying}
            )
        # Down (congested): the old rung stops at once, so the link drains before the new
        # rung's keyframe; up (a trial on a clean link): the old one plays until then.
        track.move_to(rungs[index], cut=index > rungs.index(track.keyframe_source))

    def _estimate(self, bps: int) -> None:
        """A REMB from the viewer: a fall is acted on now, not at the next stats round."""
        last, self._last_estimate = self._last_estimate, bps
        if last is not None and bps < last * self.abr.policy.drop and not self.closed:
            now = asyncio.get_running_loop().time()
            self.adapt(self.link_report(now), now)

    def _moved(self, old: TrackRelay, new: TrackRelay, keyframe: ForwardedFrame) -> None:
        """The new rung's keyframe went out to this viewer: the switch is done."""
        rungs = self.publisher.rungs
        if (
            self.switches
            and new in rungs
            and self.switches[-1]["to"] == self.abr.ladder[rungs.index(new)].name
            and "switched_at" not in self.switches[-1]
        ):
            self.switches[-1].update(switched_at=time.time(), keyframe_bytes=keyframe.size)
        self.abr.moved(asyncio.get_running_loop().time())

    def link_report(self, now: float) -> LinkReport:
        """REMB (aiortc hands it to the sender's encoder: our packer), loss and RTT (RR), and
        what we sent this viewer's video over the last `SENT_WINDOW_S`."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video" and transceiver.sender.track is not None:
                sender = transceiver.sender
                estimate = getattr(getattr(sender, "_RTCRtpSender__encoder", None), "target_bitrate", None)
                sent = self._sent_bps(now, getattr(sender, "_RTCRtpSender__octet_count", 0))
                return LinkReport(estimate, *_loss_and_rtt(sender), sent_bps=sent)
        return LinkReport(None)

    def _sent_bps(self, now: float, octets: int) -> float | None:
        self._sent.append((now, octets))
        while len(self._sent) > 2 and now - self._sent[1][0] >= SENT_WINDOW_S:
            self._sent.popleft()
        first_at, first = self._sent[0]
        elapsed = now - first_at
        return (octets - first) * 8 / elapsed if elapsed >= SENT_WINDOW_S / 2 else None

    def status(self) -> dict[str, Any]:
        names = [rung.name for rung in self.abr.ladder]
        track = self.video
        playing = track.relay if track is not None else None
        rung = names[self.publisher.rungs.index(playing)] if playing in self.publisher.rungs else None
        quality = {
            "rung": rung,
            "rungs": names,
            "pinned": self.abr.pinned is not None,
            "trying": self.abr.trying,
            "switches": list(self.switches),
        }
        return {**super().status(), "kind": "whep", "quality": quality}

    def _prepare(self, kinds: list[str]) -> None:
        for kind, relay in self.publisher.relays.items():
            if kind not in kinds:
                continue
            if kind == "video" and self.abr.current < len(self.publisher.rungs):
                relay = self.publisher.rungs[self.abr.current]
            track = relay.subscribe()
            track.on_moved = self._moved
            self.tracks.append(track)
            transceiver = self.pc.addTransceiver(track, "sendonly")
            transceiver.setCodecPreferences(_same_codec(kind, relay.codec))
            on_estimate = self._estimate if kind == "video" else lambda bps: None
            attach_sender(transceiver.sender, _keyframe_wanted_by(track), on_estimate)
            if self.config.fast_send:
                track.make_direct = _direct_sender(transceiver, track)

    def _negotiated(self) -> None:
        if not any(t.sender.track is not None and t.mid is not None for t in self.pc.getTransceivers()):
            raise BadRequest("the offer receives none of the published tracks", "no_media")

    async def close(self) -> None:
        if self.closed:
            return
        self.publisher.viewers.discard(self)
        for track in self.tracks:
            track.stop()
        await super().close()

    @property
    def senders(self) -> list[RTCRtpSender]:
        return [t.sender for t in self.pc.getTransceivers() if t.sender.track is not None]


_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"


def _tap_packets(receiver: RTCRtpReceiver, on_packet: Callable[[], None]) -> None:
    """Tell `on_packet` of each RTP packet before aiortc handles it: a frame that lost a
    packet waits for its retransmission, but the packets after it say the sender lives."""
    handle = receiver._handle_rtp_packet

    async def handled(packet: Any, arrival_time_ms: int) -> None:
        on_packet()
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handled  # type: ignore[method-assign]


def _keyframe_wanted_by(track: ViewerTrack) -> Callable[[], None]:
    """A viewer's PLI/FIR goes to the rendition it plays now (it may have moved)."""
    return lambda: track.keyframe_source.keyframe_wanted()


def _loss_and_rtt(sender: RTCRtpSender) -> tuple[float, float | None]:
    """The latest receiver report's fraction lost (0..1) and RTT, as aiortc keeps them."""
    stats = getattr(sender, "_RTCRtpSender__stats", None)
    reports = [r for r in getattr(stats, "values", dict)() if r.type == "remote-inbound-rtp"]
    if not reports:
        return 0.0, None
    return (reports[-1].fractionLost or 0) / 256, reports[-1].roundTripTime


def offered_kinds(offer_sdp: str) -> list[str]:
    """The media kinds of the offer's m-lines, in order (application/data left out)."""
    if "v=0" not in offer_sdp or "m=" not in offer_sdp:
        raise BadRequest("the body is not an SDP offer", "malformed_sdp")
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError...
        raise BadRequest(f"the SDP offer cannot be parsed: {exc}", "malformed_sdp") from None
    return [m.kind for m in description.media if m.kind in ("audio", "video")]


async def negotiate(pc: RTCPeerConnection, offer_sdp: str) -> None:
    """Apply a WHIP/WHEP offer; anything aiortc cannot parse or match is a BadRequest."""
    if "v=0" not in offer_sdp or "m=" not in offer_sdp:
        raise BadRequest("the body is not an SDP offer", "malformed_sdp")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError...
        code = "codec_mismatch" if "parameters" in str(exc) else "malformed_sdp"
        raise BadRequest(f"the SDP offer was refused: {exc}", code) from None


def _direct_sender(
    transceiver: RTCRtpTransceiver, track: ViewerTrack
) -> Callable[[], Callable[[ForwardedFrame], None]]:
    def make() -> Callable[[ForwardedFrame], None]:
        payload_type = transceiver._codecs[0].payloadType
        assert payload_type is not None  # negotiated codecs always carry one
        sender = FastSender(transceiver.sender, payload_type)
        track.on_left = sender.forget
        return sender.send_frame

    return make


def _negotiated_transceivers(pc: RTCPeerConnection) -> list[RTCRtpTransceiver]:
    return [t for t in pc.getTransceivers() if t.mid is not None and t._codecs]


def _capabilities(kind: str, mime_types: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for m in mime_types for c in codecs if c.mimeType.lower() == m]
    return chosen + [c for c in codecs if c.mimeType.lower().endswith("/rtx")]


def _same_codec(kind: str, codec: Any) -> list[RTCRtpCodecCapability]:
    """Viewers must receive exactly the publisher's codec: nothing is transcoded."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    same = [
        c for c in codecs if c.mimeType.lower() == codec.mimeType.lower() and c.parameters == codec.parameters
    ]
    same = same or [c for c in codecs if c.mimeType.lower() == codec.mimeType.lower()]
    return same + [c for c in codecs if c.mimeType.lower().endswith("/rtx")]
