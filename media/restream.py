"""Restreaming the host program to other platforms: one RTMP(S) push per destination.

A `Restream` listens to the program's video relay (so it follows failovers) and to the
room's AAC (program_aac.py), and hands each frame to its own thread, which remuxes them
(never re-encodes) into FLV with PyAV and writes them to the destination over FFmpeg's
rtmp/rtmps protocol: connecting and writing block, and a slow or dead destination must
hold up nothing else. The thread opens the connection at a keyframe; a failure (refused,
reset, timed out) is retried after a backoff (restream_state.py) from the next keyframe,
without touching the other destinations. Frames wait in a bounded queue; if it fills
(the destination is slower than the stream) the backlog is dropped and the push resumes
at the next keyframe. State changes are told to the plane on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import av

from liveroom.errors import BadRequest

from .relay import TrackRelay
from .remux import AvRemux
from .restream_state import FAILED, LIVE, RestreamPolicy, RestreamState

__all__ = ["Restream", "check_url", "redact"]

log = logging.getLogger(__name__)
QUEUE_ITEMS = 600  # ~10 s of 30 fps video and its audio
FLV_OPTIONS = {
    "rw_timeout": "5000000",  # a destination that takes no data for 5 s has failed
    "flvflags": "no_duration_filesize",  # live: no header rewrite at the end
    "max_interleave_delta": "500000",  # a silent track holds the other back at most 0.5 s
}
MAX_URL = 2048
Item = tuple[str, bytes, int, bool, float]  # kind, data, timestamp, keyframe, arrival


def check_url(url: str) -> str:
    """An RTMP(S) URL we may push to, or BadRequest."""
    if not isinstance(url, str) or len(url) > MAX_URL or any(c.isspace() for c in url):
        raise BadRequest("url must be an rtmp:// or rtmps:// URL")
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps") or not parts.hostname or not parts.path.strip("/"):
        raise BadRequest("url must be an rtmp:// or rtmps:// URL with an app and a stream key")
    return url


def redact(url: str) -> str:
    """What may be shown to the room: the destination without its path (the stream key)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


class _FlvPush(AvRemux):
    def __init__(self, url: str, aac: Any, what: str) -> None:
        super().__init__(aac)
        self.url = url
        self.what = what
        self.written = 0

    def _make_container(self) -> Any:
        return av.open(self.url, "w", format="flv", options=FLV_OPTIONS)

    def _write(self, packet: Any) -> None:
        self._container.mux(packet)  # a broken connection raises: the push is retried
        self.written += 1


class Restream:
    def __init__(
        self,
        url: str,
        video: TrackRelay,
        aac: Any,
        policy: RestreamPolicy,
        on_change: Callable[[Restream], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = secrets.token_hex(4)
        self.url = url
        self.created_at = time.time()
        self.dropped = 0  # frames dropped because the destination fell behind
        self.frames_sent = 0
        self._clock = clock
        self._video, self._aac = video, aac
        self.state = RestreamState(policy, clock())
        self._on_change = on_change
        self._loop = asyncio.get_running_loop()
        self._queue: queue.Queue[Item | None] = queue.Queue(QUEUE_ITEMS)
        self._stop = threading.Event()
        self._skip_to_keyframe = False
        video.listeners.append(self._on_video)
        aac.listeners.append(self._on_audio)
        self._thread = threading.Thread(target=self._run, name=f"liveroom-restream-{self.id}", daemon=True)
        self._thread.start()

    def summary(self) -> dict[str, Any]:
        """For the host (the URL with its key) and, without `url`, for the room."""
        state = self.state
        return {
            "id": self.id,
            "url": self.url,
            "target": redact(self.url),
            "state": state.state,
            "since": round(time.time() - (self._clock() - state.since), 3),
            "attempts": state.attempts,
            "error": state.error,
            "frames_sent": self.frames_sent,
            "dropped": self.dropped,
        }

    def close(self) -> None:
        """Stop pushing (removed, or the program ended); the thread ends on its own."""
        self._stop.set()
        with contextlib.suppress(ValueError):
            self._video.listeners.remove(self._on_video)
        with contextlib.suppress(ValueError):
            self._aac.listeners.remove(self._on_audio)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    # -- the event loop's side ----------------------------------------------------------------

    def _on_video(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        self._put(("video", data, timestamp, keyframe, self._clock()))

    def _on_audio(self, data: bytes, timestamp: int) -> None:
        self._put(("audio", data, timestamp, True, self._clock()))

    def _put(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            self._skip_to_keyframe = True

    def _changed(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(self._on_change, self)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            error = self._push()
            if self._stop.is_set():
                return
            retry_at = self.state.failed(error, self._clock())
            log.warning("restream %s to %s: %s (%s)", self.id, redact(self.url), error, self.state.state)
            self._changed()
            if retry_at is None or self._stop.wait(max(0.0, retry_at - self._clock())):
                return
            self.state.retry(self._clock())
            self._changed()

    def _push(self) -> str:
        """One connection, from the next keyframe until it fails: what went wrong."""
        push = _FlvPush(self.url, self._aac, f"restream {self.id}")
        try:
            while True:
                item = self._queue.get()
                if item is None or self._stop.is_set():
                    return "stopped"
                kind, data, timestamp, keyframe, arrival = item
                if self._skip_to_keyframe:
                    if not (kind == "video" and keyframe):
                        continue
                    self._skip_to_keyframe = False
                if kind == "video":
                    push.video(data, timestamp, keyframe, arrival)
                else:
                    push.audio(data, timestamp, arrival)
                self.frames_sent = push.written
                if push.written and self.state.state != LIVE and self.state.live(self._clock()):
                    self._changed()
        except Exception as exc:  # refused, reset, timed out, DNS...: retried
            return f"{type(exc).__name__}: {exc}".replace(self.url, redact(self.url))  # no key
        finally:
            push.close()
            self._drain()

    def _drain(self) -> None:
        """What waited for a dead connection is stale: the next one starts at a keyframe."""
        with contextlib.suppress(queue.Empty):
            while True:
                if self._queue.get_nowait() is None:
                    self._stop.set()

    @property
    def ended(self) -> bool:
        return self.state.state == FAILED or self._stop.is_set()
