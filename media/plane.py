"""The media plane of one process: which session publishes into which room and slot.

Rules enforced here (HTTP status in brackets, see routes.py):
* one publisher per (room, slot); a second host publish needs `?path=backup` [409];
* with a backup ingest, both host paths stay live and a `DualPath` puts one of them on
  air (failover.py decides which); viewers stay connected through every switch, and
  when the primary ends the backup adopts the program (relays and viewers); a host
  publish while the primary has failed over and still fails replaces that primary;
* a host publish with `?camera=NAME` other than the main camera's (the first publish's)
  is one more camera of the program [409 if that camera publishes already]: the host cuts
  between them (`cut_program`, cameras.py); when the main camera ends without a backup,
  another camera adopts the program;
* every media resource (a session's DELETE, PATCH and GET, a slot's DELETE) is authorised
  by one check, `Caller.authorise` (callers.py): user, role and room binding together [403];
* a user holds at most `max_viewer_sessions_per_user` WHEP sessions of a slot in a room, at most
  `max_pending_sessions_per_user` not yet connected [429]; a WebRTC session not connected
  within `session_connect_timeout_s` is removed; `max_viewers_per_room` counts connected viewers [503].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from liveroom.config import MediaConfig
from liveroom.errors import BadRequest, CommandError, Forbidden

from .abr import parse_ladder
from .admission import Admission, Counted
from .callers import HOST_SLOT, Action, Caller
from .cameras import DEFAULT_CAMERA, Cut
from .composite import LAYOUTS, Compositor
from .dualpath import CAMERA_PREFIX, DualPath, camera_path
from .failover import BACKUP, PRIMARY, FailoverPolicy, Switch
from .hls import HlsOutput, HlsRoom, remove_directory, room_directory
from .hls_audio import HlsAudio
from .program_aac import ProgramAac
from .recording import Recorder, new_recording_id
from .restream import Restream, check_url
from .restream_state import RestreamPolicy
from .rtmp_session import RtmpPublishSession
from .sessions import PlaySession, PublishSession, Session
from .stats import PublisherStats, plane_snapshot, viewer_quality
from .trickle import apply_fragment

__all__ = ["MediaPlane", "PublishEvent"]

log = logging.getLogger(__name__)

PublishEvent = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class MediaPlane:
    def __init__(self, config: MediaConfig, publish_event: PublishEvent) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.publishers: dict[tuple[str, str], PublishSession] = {}
        self.backups: dict[str, PublishSession] = {}
        self.cameras: dict[str, dict[str, PublishSession]] = {}  # by room: the host's other cameras
        self.stats: dict[str, PublisherStats] = {}  # by publish session id
        self.dual: dict[str, DualPath] = {}  # by room: the host slot's two paths
        self.failovers: dict[tuple[str, str], int] = {}  # (room, to path) -> switches
        self.hls: dict[str, HlsRoom] = {}  # by room: the host's renditions remuxed to HLS
        self.recordings: dict[str, Recorder] = {}  # by room: its recording, until stopped
        self.composites: dict[str, Compositor] = {}  # by room: host + guests in one picture (HLS)
        self.program_aac: dict[str, ProgramAac] = {}  # by room: its sound as AAC, for outputs
        self.restreams: dict[str, dict[str, Restream]] = {}  # by room, by id: pushes elsewhere
        self._end_reasons: dict[str, str] = {}  # by room: why its program is being ended
        # by room: an ended program's HLS files, kept a while (players read the end), then removed
        self._hls_removals: dict[str, tuple[asyncio.TimerHandle, Path]] = {}
        if config.composite_layout not in LAYOUTS:
            raise ValueError(
                f"media.composite_layout must be one of {LAYOUTS}, not {config.composite_layout!r}"
            )
        self._policy = FailoverPolicy(
            config.failover_silence_s,
            config.failover_return_after_s,
            config.failover_min_fps,
            config.failover_min_bitrate_bps,
        )
        self._admission = Admission(config.max_viewer_sessions_per_user, config.max_pending_sessions_per_user)
        # A viewer "connected" or "closed": a worker process tells the node (its pending count).
        self.on_viewer: Callable[[Session, str], None] = lambda session, state: None
        self._publish_event = publish_event
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats_task: asyncio.Task[None] | None = None

    # -- publishing (WHIP) ----------------------------------------------------------------

    async def publish(
        self, room: str, caller: Caller, offer: str, backup: bool, camera: str | None = None
    ) -> tuple[str, str]:
        """Start a WHIP session: (session id, SDP answer)."""
        session, answer = await self._admit(room, caller, backup, offer, camera)
        return session.id, answer

    async def publish_rtmp(
        self, room: str, caller: Caller, backup: bool, camera: str | None = None
    ) -> RtmpPublishSession:
        """An RTMP encoder publishes (rtmp_server.py): the session its connection feeds."""
        session, _ = await self._admit(room, caller, backup, None, camera)
        assert isinstance(session, RtmpPublishSession)
        return session

    async def _admit(
        self, room: str, caller: Caller, backup: bool, offer: str | None, camera: str | None = None
    ) -> tuple[PublishSession, str]:
        """A publisher (WHIP with its offer, RTMP without) takes its slot, path or camera."""
        slot = caller.publish_slot(room)
        if backup and slot != HOST_SLOT:
            raise BadRequest("only the host slot has a backup path", "bad_request")
        if camera is not None and slot != HOST_SLOT:
            raise BadRequest("only the host slot has cameras", "bad_request")
        extra = self._is_extra_camera(room, camera)
        if extra and backup:
            raise BadRequest("only the main camera has a backup path", "bad_request")
        stale = None if backup or extra else self._failed_primary(room, slot)
        if extra:
            self._check_camera_free(room, str(camera))
        elif stale is None:
            self._check_free(room, slot, backup)
        kind = PublishSession if offer is not None else RtmpPublishSession
        session = kind(room, slot, caller, self.config)
        session.camera = camera
        if backup:
            self.backups[room] = session
        elif extra:
            self.cameras.setdefault(room, {})[str(camera)] = session
        elif stale is None:
            self.publishers[(room, slot)] = session
        session.on_closed = self._publisher_closed
        session.on_connected = lambda s: self._event(s, "connected")
        answer = await self._answer(session, offer)
        if stale is not None:
            await self._replace_primary(stale, session)
        elif extra:
            pass  # a camera feeds the program only through the DualPath
        elif slot == HOST_SLOT and not backup:
            self._start_ladder(session)
            self._start_hls(session)
        elif room in self.composites and "video" in session.relays:
            self.composites[room].add(slot, session.relays["video"])
        if slot == HOST_SLOT and stale is None:
            try:
                self._pair(room)
            except BadRequest:
                await session.close()
                raise
        return session, answer

    # -- the host's two paths (failover.py, dualpath.py) --------------------------------------

    def _pair(self, room: str) -> None:
        """Host paths and cameras are answered: feed them through one DualPath into the program."""
        primary = self.publishers.get((room, HOST_SLOT))
        if primary is None or primary.closed:
            return
        backup = self.backups.get(room)
        paths = [(BACKUP, backup)] if backup is not None else []
        paths += [(camera_path(name), s) for name, s in self.cameras.get(room, {}).items()]
        dual = self.dual.get(room)
        current = dual is not None and dual.program is primary.relays
        new = [
            (name, s)
            for name, s in paths
            if not s.closed and not (current and dual and dual.paths.get(name) is s)
        ]
        for name, session in new:
            if session.mime_types != {k: v for k, v in primary.mime_types.items() if k in session.mime_types}:
                what = "backup" if name == BACKUP else "camera"
                raise BadRequest(f"the {what} must send the primary's codecs", "codec_mismatch")
        if not new:
            return
        if dual is None or not current:
            dual = self.dual[room] = self._new_dual(room, primary)
        for name, session in new:
            self._attach(dual, name, session)
            if name.startswith(CAMERA_PREFIX):
                self._program_changed(room, dual, "camera_added")

    def _new_dual(self, room: str, primary: PublishSession) -> DualPath:
        def ended() -> None:
            self._off_air_ended(room, dual)

        loop = asyncio.get_running_loop()
        switched = lambda switch: self._failover(room, switch)  # noqa: E731
        dual = DualPath(
            primary.relays,
            self._policy,
            switched,
            schedule=loop.call_later,
            on_ended=ended,
            main_camera=primary.camera or DEFAULT_CAMERA,
            on_cut=lambda cut: self._cut(room, dual, cut),
        )
        self._attach(dual, PRIMARY, primary)
        return dual

    # -- the host's cameras (cameras.py) ------------------------------------------------------

    def _is_extra_camera(self, room: str, camera: str | None) -> bool:
        """A camera other than the main one (the primary's, or `main` when it named none)."""
        primary = self.publishers.get((room, HOST_SLOT))
        if camera is None or primary is None or primary.closed:
            return False
        return camera != (primary.camera or DEFAULT_CAMERA)

    def _check_camera_free(self, room: str, camera: str) -> None:
        if camera in self.cameras.get(room, {}):
            raise CommandError(f"camera {camera!r} is already publishing in this room", "already_publishing")
        if self._publishers_in(room) >= self.config.max_publishers_per_room:
            raise CommandError("this room has as many publishers as it may", "too_many_publishers")

    def _publishers_in(self, room: str) -> int:
        cameras = len(self.cameras.get(room, {}))
        return sum(1 for (r, _) in self.publishers if r == room) + (room in self.backups) + cameras

    def cut_program(self, room: str, caller: Caller, camera: str) -> dict[str, Any]:
        """The host cuts the program to `camera` (on its keyframe): the program's state."""
        _check_staff(caller, room, "direct")
        dual = self._program_dual(room)
        if dual is None:
            main = self.publishers[(room, HOST_SLOT)].camera or DEFAULT_CAMERA
            if camera != main:
                raise CommandError(f"room {room!r} has no camera {camera!r}", "no_such_camera")
            return self.program(room, caller)
        error = dual.cut_to(camera).error
        if error == "no_such_camera":
            raise CommandError(f"room {room!r} has no camera {camera!r}", error)
        if error is not None:
            raise CommandError(f"camera {camera!r} is not sending", error)
        return self.program(room, caller)

    def program(self, room: str, caller: Caller) -> dict[str, Any]:
        """Which camera is on air, which one a cut waits for, and every camera (none while
        nobody publishes: the host console asks before going live)."""
        _check_staff(caller, room, "direct")
        publisher = self.publishers.get((room, HOST_SLOT))
        if publisher is None or publisher.closed:
            return {"room": room, "camera": None, "pending": None, "cameras": []}
        dual = self._program_dual(room)
        if dual is None:
            main = self.publishers[(room, HOST_SLOT)].camera or DEFAULT_CAMERA
            cameras = [{"name": main, "on_air": True, "sending": True}]
            return {"room": room, "camera": main, "pending": None, "cameras": cameras}
        on_air, pending = dual.cameras.on_air, dual.cameras.pending
        return {"room": room, "camera": on_air, "pending": pending, "cameras": dual.camera_list()}

    def _program_dual(self, room: str) -> DualPath | None:
        """The room's DualPath (None: the host publishes one path of one camera)."""
        publisher = self.publishers.get((room, HOST_SLOT))
        if publisher is None or publisher.closed:
            raise CommandError(f"nobody is publishing in room {room!r}", "not_publishing")
        dual = self.dual.get(room)
        return dual if dual is not None and dual.program is publisher.relays else None

    def _cut(self, room: str, dual: DualPath, cut: Cut) -> None:
        log.info("media camera cut in %s: %s -> %s (%s)", room, cut.from_camera, cut.to_camera, cut.reason)
        self._program_changed(room, dual, cut.reason, cut.from_camera)

    def _program_changed(
        self, room: str, dual: DualPath, reason: str, from_camera: str | None = None
    ) -> None:
        """`media.program` to the room: the camera on air and every camera (the host console)."""
        data = {
            "room": room,
            "slot": HOST_SLOT,
            "camera": dual.cameras.on_air,
            "from": from_camera,
            "reason": reason,
            "cameras": [camera["name"] for camera in dual.camera_list()],
        }
        self._spawn(self._publish_event(room, "media.program", data))

    def _hand_program_to_camera(self, dual: DualPath, session: PublishSession) -> bool:
        """The main camera's primary ends with no backup: another camera adopts the program
        (the one on air if any), so its viewers stay; False when there is none."""
        cameras = self.cameras.get(session.room, {})
        live = [name for name, s in cameras.items() if not s.closed and not s.ending]
        if not live:
            return False
        on_air = dual.cameras.on_air
        name = on_air if on_air in live else live[0]
        successor = cameras.pop(name)
        if not cameras:
            del self.cameras[session.room]
        successor.adopt_program(session)
        dual.hand_main_to(name)
        self._bind(dual, PRIMARY, successor)
        self.publishers[(session.room, HOST_SLOT)] = successor
        self._event(successor, "promoted")
        self._program_changed(session.room, dual, "camera_promoted")
        return True

    def _failed_primary(self, room: str, slot: str) -> PublishSession | None:
        """The host's primary path if a new primary may replace it: it failed over to the
        backup and still fails (after a crash its session lingers until ICE gives up)."""
        dual, primary = self.dual.get(room), self.publishers.get((room, slot))
        if slot != HOST_SLOT or dual is None or primary is None or dual.paths.get(PRIMARY) is not primary:
            return None
        return primary if dual.primary_replaceable() else None

    async def _replace_primary(self, stale: PublishSession, session: PublishSession) -> None:
        """A restarted primary takes the failed one's place: it adopts the program (its
        relays and viewers, fed by the backup meanwhile); the rule returns to it once it has
        been healthy for `failover_return_after_s`, at one of its keyframes."""
        room = session.room
        if self._failed_primary(room, HOST_SLOT) is not stale or stale.closed:
            await session.close()  # the old primary came back, or another replaced it first
            raise CommandError("a host is already publishing in this room", "already_publishing")
        if session.mime_types != stale.mime_types:
            await session.close()
            raise BadRequest("a new primary must send the program's codecs", "codec_mismatch")
        dual = self.dual[room]
        stale.before_close = lambda s: None  # the program stays with the dual path
        stale.feed = lambda kind, data, timestamp: None
        stale.on_packet = lambda kind: None
        session.adopt_program(stale)
        self.publishers[(room, HOST_SLOT)] = session
        dual.detach(PRIMARY)
        self._attach(dual, PRIMARY, session)
        await stale.close()

    def _attach(self, dual: DualPath, name: str, session: PublishSession) -> None:
        dual.attach(name, session)
        self._bind(dual, name, session)

    def _bind(self, dual: DualPath, name: str, session: PublishSession) -> None:
        """The session's frames and packets go to `dual` as path `name`."""
        session.feed = lambda kind, data, timestamp: dual.feed(name, kind, data, timestamp)
        session.on_packet = lambda kind: dual.packet(name, kind)
        session.before_close = self._path_closing

    def _path_closing(self, session: PublishSession) -> None:
        """A host path is closing: the other one keeps the program (and its viewers) going."""
        dual = self.dual.get(session.room)
        if dual is None:
            return
        if dual.paths.get(BACKUP) is session:
            dual.detach(BACKUP)
            return
        if session.camera is not None and dual.paths.get(camera_path(session.camera)) is session:
            dual.detach(camera_path(session.camera))
            self._program_changed(session.room, dual, "camera_removed")
            return
        backup = dual.paths.get(BACKUP)
        if dual.paths.get(PRIMARY) is not session:
            return
        if (not isinstance(backup, PublishSession) or backup.closed) and self._hand_program_to_camera(
            dual, session
        ):
            return
        if not isinstance(backup, PublishSession) or backup.closed:
            dual.detach(PRIMARY)  # nobody left to take over: the program ends with this path
            return
        backup.adopt_program(session)
        dual.detach(PRIMARY)
        dual.promote()
        self._attach(dual, PRIMARY, backup)

    def _off_air_ended(self, room: str, dual: DualPath) -> None:
        """No host path has sent for `end_after_s` since the one on air ended (say the backup
        was deleted while the crashed primary's session lingers): the program ends, as if
        its last path had ended, instead of staying with a dead path (a frozen picture)."""
        if self.dual.get(room) is not dual:
            return
        log.info("media program of %s ended: no host path is sending", room)
        self._end_reasons[room] = "no_path_sending"
        for session in list(dual.paths.values()):
            if isinstance(session, PublishSession) and not session.closed:
                self._spawn(session.close())

    def _start_ladder(self, session: PublishSession) -> None:
        """A host sending one H.264 video gets the lower rungs made here (ladder.py), if on."""
        ladder = parse_ladder(self.config.abr_ladder)
        if not self.config.transcode_ladder or len(ladder) < 2 or len(session.rungs) != 1:
            return
        mime_type = session.rungs[0].mime_type
        if mime_type.lower() != "video/h264":
            log.info("media ladder: room %s sends %s, not H.264: no ladder", session.room, mime_type)
            return
        session.start_ladder(ladder)

    def _start_hls(self, session: PublishSession) -> None:
        """The host's H.264 video, remuxed to HLS: one variant per rendition it publishes."""
        directory = room_directory(self.config.hls_dir, session.room)
        if not self.config.hls_enabled or directory is None or session.room in self.hls:
            return
        removal = self._hls_removals.pop(session.room, None)
        if removal is not None:  # the room's previous program ended moments ago: its files go now
            removal[0].cancel()
            remove_directory(removal[1])
        h264 = [relay for relay in session.rungs if relay.mime_type.lower() == "video/h264"]
        if not h264:
            return
        hls = HlsRoom(directory)
        segment_s, size = self.config.hls_segment_s, self.config.hls_list_size
        if "audio" in session.relays or "aac" in session.relays:
            aac = self._program_aac(session.room)
            hls.add_audio(HlsAudio(directory, secrets.token_hex(4), segment_s, size, hls.origin, aac))
            aac.listeners.append(hls.audio.frame)
        for relay, rung in zip(h264, parse_ladder(self.config.abr_ladder), strict=False):
            output = HlsOutput(directory, rung.name, rung.bitrate_bps, segment_s, size, relay.keyframe_wanted)
            hls.add(output)
            relay.listeners.append(output.frame)
        self.hls[session.room] = hls
        if self.config.composite_layout != "off":
            self._start_composite(session, hls)

    def _start_composite(self, session: PublishSession, hls: HlsRoom) -> None:
        """Host and stage guests in one picture, as `composite.m3u8` (composite.py)."""
        config, top = self.config, session.relays["video"]
        width, _, height = config.composite_size.partition("x")
        relay = session.new_relay("video", top.codec)
        compositor = Compositor(
            relay,
            config.composite_layout,
            (int(width), int(height)),
            config.composite_fps,
            config.composite_bitrate_bps,
            asyncio.get_running_loop(),
            hls.origin,
        )
        output = HlsOutput(
            hls.directory, "composite", config.composite_bitrate_bps, config.hls_segment_s,
            config.hls_list_size, relay.keyframe_wanted,
        )  # fmt: skip
        output.origin = hls.origin
        relay.listeners.append(output.frame)
        hls.extra.append(output)
        compositor.add(HOST_SLOT, top)
        for (room, slot), guest in self.publishers.items():
            if room == session.room and slot != HOST_SLOT and "video" in guest.relays:
                compositor.add(slot, guest.relays["video"])
        self.composites[session.room] = compositor

    def _failover(self, room: str, switch: Switch) -> None:
        key = (room, switch.to_path)
        self.failovers[key] = self.failovers.get(key, 0) + 1
        log.info("media failover in %s: %s -> %s (%s)", room, switch.from_path, switch.to_path, switch.reason)
        data = {"room": room, "slot": HOST_SLOT, "from": switch.from_path, "to": switch.to_path}
        self._spawn(self._publish_event(room, "media.failover", {**data, "reason": switch.reason}))
        host = self.publishers.get((room, HOST_SLOT))
        if switch.to_path == BACKUP and host is not None:  # the primary's own renditions went with it
            gone = host.own_renditions
            for viewer in list(host.viewers):
                viewer.leave_renditions(gone)

    def _check_free(self, room: str, slot: str, backup: bool) -> None:
        if backup and room in self.backups:
            raise CommandError("this room already has a backup ingest", "already_publishing")
        if not backup and (room, slot) in self.publishers:
            where = "a host is" if slot == HOST_SLOT else f"a guest is already in slot {slot} and"
            hint = "; publish with ?path=backup for a backup ingest" if slot == HOST_SLOT else ""
            raise CommandError(f"{where} already publishing in this room{hint}", "already_publishing")
        if self._publishers_in(room) >= self.config.max_publishers_per_room:
            raise CommandError("this room has as many publishers as it may", "too_many_publishers")

    def _publisher_closed(self, session: Session) -> None:
        assert isinstance(session, PublishSession)
        self.sessions.pop(session.id, None)
        self.stats.pop(session.id, None)
        dual = self.dual.get(session.room)
        if dual is not None and session.slot == HOST_SLOT and not dual.paths:
            del self.dual[session.room]
        cameras = self.cameras.get(session.room, {})
        if session.camera is not None and cameras.get(session.camera) is session:
            self._event(session, "ended" if session.ended_by_request else "lost")  # path "camera"
            del cameras[session.camera]  # a camera other than the main one: the program goes on
            if not cameras:
                del self.cameras[session.room]
            return
        if self.backups.get(session.room) is session:
            del self.backups[session.room]
        elif self.publishers.get((session.room, session.slot)) is session:
            del self.publishers[(session.room, session.slot)]
            backup = self.backups.pop(session.room, None) if session.slot == HOST_SLOT else None
            if backup is not None:
                self.publishers[(session.room, HOST_SLOT)] = backup
                self._event(backup, "promoted")
        if session.slot == HOST_SLOT and (session.room, HOST_SLOT) not in self.publishers:
            output = self.hls.pop(session.room, None)
            if output is not None:
                self._end_hls(session.room, output)
            recorder = self.recordings.get(session.room)
            if recorder is not None:
                recorder.close()  # the file is complete; stopping it returns its summary
            for restream in self.restreams.pop(session.room, {}).values():
                restream.close()
                self._restream_changed(session.room, restream, "ended")
            aac = self.program_aac.pop(session.room, None)
            if aac is not None:
                aac.close()
            compositor = self.composites.pop(session.room, None)
            if compositor is not None:
                compositor.close()
                compositor.relay.end()
        elif session.slot != HOST_SLOT and session.room in self.composites:
            self.composites[session.room].remove(session.slot)
        state = "ended" if session.ended_by_request else "lost"
        if session.slot == HOST_SLOT and (session.room, HOST_SLOT) not in self.publishers:
            reason = self._end_reasons.pop(session.room, state)
            data = {"room": session.room, "slot": HOST_SLOT, "reason": reason}
            self._spawn(self._publish_event(session.room, "media.ended", data))
        self._event(session, state)

    def _end_hls(self, room: str, hls: HlsRoom) -> None:
        """The program ended: its playlists end (`#EXT-X-ENDLIST`, written as the muxers
        finish) and stay readable for three segments' time, so that players polling them
        see the end rather than a 404; then the files go."""
        hls.close()
        linger = 3 * self.config.hls_segment_s
        loop = asyncio.get_running_loop()
        handle = loop.call_later(linger, self._remove_hls, room, hls.directory)
        self._hls_removals[room] = (handle, hls.directory)

    def _remove_hls(self, room: str, directory: Path) -> None:
        self._hls_removals.pop(room, None)
        remove_directory(directory)

    # -- playing (WHEP) -------------------------------------------------------------------

    async def play(
        self, room: str, slot: str, caller: Caller, offer: str, quality: str | None = None
    ) -> tuple[str, str]:
        """Start a WHEP session on one stage slot: (session id, SDP answer)."""
        caller.check_room(room)
        publisher = self.publishers.get((room, slot))
        if publisher is None or publisher.closed or publisher.ending:
            raise CommandError(f"nobody is publishing in slot {slot!r} of room {room!r}", "not_publishing")
        self._admission.check(caller.user_id, room, slot, self._viewers_of(caller.user_id))
        self._check_room_has_space(room)
        session = PlaySession(publisher, caller, self.config, quality)
        session.on_closed = self._viewer_closed
        session.on_connected = self._viewer_connected
        return session.id, await self._answer(session, offer)

    def _viewers_of(self, user_id: str) -> list[Counted]:
        """The user's WHEP sessions in this media process (one pass, nothing made for others);
        one being closed (ended, its peer connection still closing) holds nothing any more."""
        return [
            Counted(s.caller.user_id, s.room, s.slot, s.connected)
            for s in self.sessions.values()
            if s.caller.user_id == user_id and isinstance(s, PlaySession) and not s.closed
        ]

    def _check_room_has_space(self, room: str) -> None:
        """Connected viewers up to `max_viewers_per_room`, and up to `max_pending_per_room`
        connecting (many users' offers that never connect are bounded too, not one user's)."""
        viewers = [v for (r, _), p in self.publishers.items() if r == room for v in p.viewers if not v.closed]
        connected = sum(v.connected for v in viewers)
        if connected >= self.config.max_viewers_per_room:
            raise CommandError("this room has as many media viewers as it may", "too_many_viewers")
        if len(viewers) - connected >= self.config.max_pending_per_room:
            raise CommandError("too many viewers of this room are connecting; try again", "too_many_viewers")

    def _viewer_connected(self, session: Session) -> None:
        """Admitted while connecting, the room filled meanwhile: the last to connect goes."""
        self.on_viewer(session, "connected")
        if self.viewer_count(session.room) > self.config.max_viewers_per_room:
            log.info("media: room %s is full; viewer %s connected too late", session.room, session.id)
            self._spawn(session.close())

    def _viewer_closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.on_viewer(session, "closed")

    def viewer_count(self, room: str) -> int:
        """Connected viewers of the room (sessions still connecting take no place)."""
        return sum(
            sum(v.connected and not v.closed for v in p.viewers)
            for (r, _), p in self.publishers.items()
            if r == room
        )

    # -- sessions ---------------------------------------------------------------------------

    async def _answer(self, session: Session, offer: str | None) -> str:
        self.sessions[session.id] = session
        try:
            if isinstance(session, RtmpPublishSession):
                session.start()
                return ""
            assert offer is not None
            answer: str = await session.answer(offer)
        except BaseException:
            await session.close()
            raise
        self._expire_unconnected(session)
        return answer

    def _expire_unconnected(self, session: Session) -> None:
        """A WebRTC session must connect within `session_connect_timeout_s`, or it is removed."""

        def expire() -> None:
            if not session.connected and not session.closed:
                log.info("media: session %s did not connect in time; removed", session.id)
                self._spawn(session.close())

        handle = asyncio.get_running_loop().call_later(self.config.session_connect_timeout_s, expire)
        closed = session.on_closed

        def on_closed(done: Session) -> None:
            handle.cancel()
            closed(done)

        session.on_closed = on_closed

    def _authorised(self, session_id: str, caller: Caller, action: Action) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise CommandError("no such media session", "not_found")
        caller.authorise(action, session.caller, session.room, session.slot)
        return session

    async def end(self, session_id: str, caller: Caller) -> None:
        session = self._authorised(session_id, caller, "end")
        session.ended_by_request = True
        await session.close()

    async def trickle(self, session_id: str, caller: Caller, fragment: str) -> None:
        """PATCH: the client's late ICE candidates for its own session."""
        session = self._authorised(session_id, caller, "trickle")
        await apply_fragment(session.pc, fragment)

    def status(self, session_id: str, caller: Caller) -> dict[str, Any]:
        """GET {Location}: a session's state for its owner (a viewer: its rung and switches)."""
        return self._authorised(session_id, caller, "status").status()

    async def end_slot(self, room: str, slot: str, caller: Caller, only_user: str | None = None) -> None:
        """Take a slot off stage: whoever may end its publisher's session (the publisher, an
        admin, the room's host for a guest), or the node for the costream plugin (`only_user`:
        only if that user still publishes there)."""
        caller.check_room(room)
        publisher = self.publishers.get((room, slot))
        if publisher is None or (only_user is not None and publisher.caller.user_id != only_user):
            raise CommandError(f"nobody is publishing in slot {slot!r} of room {room!r}", "not_publishing")
        caller.authorise("end", publisher.caller, room, slot)
        publisher.ended_by_request = True
        await publisher.close()

    # -- recording the program (recording.py) ----------------------------------------------

    def start_recording(self, room: str, caller: Caller) -> dict[str, Any]:
        """The host program's video into a new fMP4 file; its summary (id, file, ...)."""
        _check_staff(caller, room)
        publisher = self.publishers.get((room, HOST_SLOT))
        relay = publisher.relays.get("video") if publisher is not None and not publisher.closed else None
        if relay is None:
            raise CommandError(f"nobody is publishing video in room {room!r}", "not_publishing")
        if relay.mime_type.lower() != "video/h264":
            raise BadRequest("recording needs the host's video in H.264 (it is remuxed, not re-encoded)")
        current = self.recordings.get(room)
        if current is not None and not current.closed:
            raise CommandError(f"room {room!r} is already recording ({current.id})", "already_recording")
        directory = room_directory(self.config.recordings_dir, room)
        if directory is None:
            raise BadRequest("this room name cannot be a directory")
        config = self.config
        path = directory / f"{new_recording_id(time.time())}.mp4"
        aac = self._program_aac(room)
        recorder = Recorder(
            path, config.recording_fragment_s, config.recording_max_s, relay.keyframe_wanted, aac
        )
        relay.listeners.append(recorder.frame)
        aac.listeners.append(recorder.sound)
        relay.keyframe_wanted()  # start soon, not at the publisher's next keyframe
        self.recordings[room] = recorder
        return recorder.summary()

    def stop_recording(self, room: str, recording_id: str, caller: Caller) -> dict[str, Any]:
        """Close the room's recording (if it is `recording_id`); its final summary."""
        _check_staff(caller, room)
        recorder = self.recordings.get(room)
        if recorder is None or recorder.id != recording_id:
            raise CommandError(f"no recording {recording_id!r} in room {room!r}", "not_found")
        recorder.close()
        del self.recordings[room]
        publisher = self.publishers.get((room, HOST_SLOT))
        relay = publisher.relays.get("video") if publisher is not None else None
        if relay is not None and recorder.frame in relay.listeners:
            relay.listeners.remove(recorder.frame)
        aac = self.program_aac.get(room)
        if aac is not None and recorder.sound in aac.listeners:
            aac.listeners.remove(recorder.sound)
        return recorder.summary()

    # -- restreaming the program (restream.py) ---------------------------------------------

    def add_restream(self, room: str, caller: Caller, url: str) -> dict[str, Any]:
        """Push the program to an RTMP(S) URL, remuxed: the destination's summary."""
        _check_staff(caller, room, "restream")
        publisher = self.publishers.get((room, HOST_SLOT))
        relay = publisher.relays.get("video") if publisher is not None and not publisher.closed else None
        if relay is None:
            raise CommandError(f"nobody is publishing video in room {room!r}", "not_publishing")
        if relay.mime_type.lower() != "video/h264":
            raise BadRequest("restreaming needs the host's video in H.264 (it is remuxed, not re-encoded)")
        check_url(url)
        outputs = self.restreams.setdefault(room, {})
        if len(outputs) >= self.config.restream_max_per_room:
            raise CommandError(f"room {room!r} has as many restreams as it may", "too_many_restreams")
        config = self.config
        policy = RestreamPolicy(
            config.restream_retry_initial_s, config.restream_retry_max_s, config.restream_max_failures
        )
        restream = Restream(
            url, relay, self._program_aac(room), policy, lambda r: self._restream_changed(room, r)
        )
        outputs[restream.id] = restream
        self._restream_changed(room, restream)
        return restream.summary()

    def list_restreams(self, room: str, caller: Caller) -> list[dict[str, Any]]:
        _check_staff(caller, room, "restream")
        return [restream.summary() for restream in self.restreams.get(room, {}).values()]

    def remove_restream(self, room: str, restream_id: str, caller: Caller) -> dict[str, Any]:
        _check_staff(caller, room, "restream")
        restream = self.restreams.get(room, {}).pop(restream_id, None)
        if restream is None:
            raise CommandError(f"no restream {restream_id!r} in room {room!r}", "not_found")
        restream.close()
        self._restream_changed(room, restream, "removed")
        return restream.summary()

    def _restream_changed(self, room: str, restream: Restream, state: str | None = None) -> None:
        """A destination's state, to the room (the host console): never its URL (its key)."""
        summary = restream.summary()
        data = {key: summary[key] for key in ("id", "target", "state", "attempts", "error")}
        self._spawn(self._publish_event(room, "media.restream", {**data, "state": state or data["state"]}))

    def _program_aac(self, room: str) -> ProgramAac:
        """The room's sound as AAC, made once for its recordings and restreams (program_aac.py)."""
        aac = self.program_aac.get(room)
        if aac is None:
            aac = self.program_aac[room] = ProgramAac(self.publishers[(room, HOST_SLOT)].relays)
        return aac

    # -- lifecycle and events -----------------------------------------------------------

    async def start(self) -> None:
        self._stats_task = asyncio.create_task(self._sample_stats(), name="liveroom-media-stats")

    async def stop(self) -> None:
        for recorder in self.recordings.values():
            recorder.close()
        for outputs in self.restreams.values():
            for restream in outputs.values():
                restream.close()
        for compositor in self.composites.values():
            compositor.close()
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
        publishers = [s for s in self.sessions.values() if isinstance(s, PublishSession)]
        await asyncio.gather(*(s.close() for s in publishers), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)
        for handle, directory in self._hls_removals.values():  # ended programs' files go now
            handle.cancel()
            remove_directory(directory)
        self._hls_removals.clear()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)

    def snapshot(self) -> dict[str, Any]:
        """Plain figures for /metrics (the same shape from a worker process or in-process)."""
        return plane_snapshot(self)

    def _event(self, session: Session, state: str) -> None:
        data: dict[str, Any] = {
            "slot": session.slot,
            "state": state,
            "session": session.id,
            "user": {"id": session.caller.user_id, "name": session.caller.name},
        }
        if session.slot == HOST_SLOT:
            # Whether the host's program still has a source after this: a path that ends
            # while another has the program (a backup's end, a primary replaced by its backup
            # or by a camera, announced after the promotion) is not the program ending.
            source = self.publishers.get((session.room, HOST_SLOT))
            data["on_air"] = source is not None and not source.closed
        if isinstance(session, PublishSession):
            data["tracks"] = {kind: relay.mime_type for kind, relay in session.relays.items()}
            if session.camera is not None:
                data["camera"] = session.camera
            if session.camera in self.cameras.get(session.room, {}):
                data["path"] = "camera"  # not the program's source (yet): players ignore it
        self._spawn(self._publish_event(session.room, "media.publisher", data))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("media event failed: %r", task.exception())

    async def _sample_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.stats_interval_s)
            for (room, slot), publisher in list(self.publishers.items()):
                stats = self.stats.setdefault(publisher.id, PublisherStats(room, slot))
                sample = stats.sample(publisher.relays, asyncio.get_running_loop().time())
                stats.viewers = await viewer_quality(publisher.viewers)
                if len(publisher.rungs) > 1:  # ABR: each viewer's rung from its RTCP
                    now = asyncio.get_running_loop().time()
                    for viewer in list(publisher.viewers):
                        viewer.adapt(viewer.link_report(now), now)
                if sample is not None:
                    sample["viewer_rtt_ms"] = stats.viewers.rtt_ms
                    dual = self.dual.get(room) if slot == HOST_SLOT else None
                    if dual is not None and dual.program is publisher.relays:
                        sample["ingest"] = dual.figures()  # each path's own figures
                    self._spawn(self._publish_event(room, "media.stats", {"slot": slot, **sample}))


def _check_staff(caller: Caller, room: str, what: str = "record") -> None:
    caller.check_room(room)
    if caller.role not in ("host", "admin"):
        raise Forbidden(f"only the room's host or an admin may {what} it")
