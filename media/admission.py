"""What a WHIP/WHEP offer must be, and how many sessions one user may hold: pure checks.

`check_offer` runs in the HTTP layer (routes.py) before any worker or peer connection is
involved: an offer without a DTLS fingerprint or ICE credentials can never connect, and
one with no audio/video m-line going the right way has nothing to carry, so both are a
400 at once rather than a session that fails later in the worker.

`Admission` counts a user's WHEP sessions in the plane that holds the room: at most
`per_room` of one stage slot of a room (a viewer of a co-stream plays the host and each
guest: a cap over the whole room refused the third member of every stage to everyone; one
user's sessions in a room are still bounded, by `per_room` times its publishers), at most
`pending` not yet connected (in this media process, whatever the room). With media worker
processes (`media.workers >= 2`) rooms are spread over processes, so the node also counts
each user's connecting sessions over all of them (`Connecting`, in pool.py): the pending
cap holds per node, not once per process. A
session not connected within `media.session_connect_timeout_s` is removed (plane.py), and only
connected viewers count against `max_viewers_per_room`: half-open offers cannot fill a room.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from aiortc import sdp

from liveroom.errors import BadRequest, CommandError

__all__ = ["Admission", "Connecting", "Counted", "TooManySessions", "check_offer"]

Direction = Literal["send", "receive"]  # what the offerer does: WHIP sends, WHEP receives
_WANTED = {"send": ("sendrecv", "sendonly"), "receive": ("sendrecv", "recvonly")}
SWEEP_EVERY = 1024  # admissions between sweeps of every user's lapsed places


class TooManySessions(CommandError):
    code = "too_many_sessions"


def check_offer(offer: str, direction: Direction) -> None:
    """Refuse (BadRequest) an offer that cannot make a working session."""
    if "v=0" not in offer or "m=" not in offer:
        raise BadRequest("the body is not an SDP offer", "malformed_sdp")
    try:
        description = sdp.SessionDescription.parse(offer)
    except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError...
        raise BadRequest(f"the SDP offer cannot be parsed: {exc}", "malformed_sdp") from None
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise BadRequest("the offer has no audio or video m-line", "no_media")
    for m in media:
        if m.dtls is None or not m.dtls.fingerprints:
            raise BadRequest(f"the {m.kind} m-line has no a=fingerprint (DTLS)", "malformed_sdp")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise BadRequest(f"the {m.kind} m-line has no a=ice-ufrag / a=ice-pwd", "malformed_sdp")
    usable = [
        m for m in media if m.port != 0 and m.rtp.codecs and (m.direction or "sendrecv") in _WANTED[direction]
    ]
    if not usable:
        verb = "sends" if direction == "send" else "receives"
        raise BadRequest(f"no m-line of the offer {verb} audio or video with a codec", "no_media")


@dataclass(frozen=True, slots=True)
class Counted:
    """One WHEP session as admission sees it."""

    user_id: str
    room: str
    slot: str
    connected: bool


@dataclass(frozen=True, slots=True)
class Admission:
    per_room: int  # a user's WHEP sessions of one slot of a room
    pending: int  # a user's WHEP sessions not yet connected

    def check(self, user_id: str, room: str, slot: str, sessions: Iterable[Counted]) -> None:
        """Raise TooManySessions if `user_id` may not open one more WHEP session of `room`'s `slot`."""
        mine = [s for s in sessions if s.user_id == user_id]
        if sum(s.room == room and s.slot == slot for s in mine) >= self.per_room:
            raise TooManySessions(f"at most {self.per_room} playback sessions per user of a slot in a room")
        if sum(not s.connected for s in mine) >= self.pending:
            raise TooManySessions(f"at most {self.pending} playback sessions per user still connecting")


@dataclass(slots=True)
class Connecting:
    """Each user's WHEP sessions not yet connected, over every media process of a node.

    `admit` reserves a place before the offer goes to a process (`TooManySessions` past
    `limit`); `opened` names it once answered, `failed` gives it back. A session leaves the
    count when its process `reported` it connected or closed, or `timeout_s` after
    it opened in any case (the process removes a session not connected by then: a lost
    report cannot hold a place for ever). Pure: time is passed in.
    """

    limit: int
    timeout_s: float
    _users: dict[str, dict[str, float]] = field(default_factory=dict)  # user -> key -> until
    _owner: dict[str, str] = field(default_factory=dict)  # key -> user
    _early: dict[str, float] = field(default_factory=dict)  # settled before `opened`: until
    _made: int = 0

    def admit(self, user_id: str, now: float) -> str:
        """A reservation's key, or TooManySessions if the user has `limit` connecting."""
        self._made += 1
        if self._made % SWEEP_EVERY == 0:
            for user in list(self._users):
                self._forget(user, now)
            self._early = {key: until for key, until in self._early.items() if until > now}
        keys = self._forget(user_id, now)
        if len(keys) >= self.limit:
            raise TooManySessions(f"at most {self.limit} playback sessions per user still connecting")
        key = f"reserved:{self._made}"
        self._users.setdefault(user_id, {})[key] = now + self.timeout_s
        self._owner[key] = user_id
        return key

    def opened(self, key: str, session_id: str, now: float) -> None:
        user = self._owner.get(key)
        self.settled(key)
        if self._early.pop(session_id, None) is not None:
            return  # its process said it connected (or closed) before its answer reached us
        if user is not None:
            self._users.setdefault(user, {})[session_id] = now + self.timeout_s
            self._owner[session_id] = user

    def failed(self, key: str) -> None:
        self.settled(key)

    def reported(self, session_id: str, now: float) -> None:
        """Its process says the session connected or closed: it holds no place any more."""
        if session_id in self._owner:
            self.settled(session_id)
        else:
            self._early[session_id] = now + self.timeout_s

    def settled(self, session_id: str) -> None:
        user = self._owner.pop(session_id, None)
        keys = None if user is None else self._users.get(user)
        if user is not None and keys is not None:
            keys.pop(session_id, None)
            if not keys:
                del self._users[user]

    def settled_all(self, prefix: str) -> None:
        """Every session whose id starts with `prefix` (a media process that exited)."""
        for key in [key for key in self._owner if key.startswith(prefix)]:
            self.settled(key)

    def count(self, user_id: str) -> int:
        return len(self._users.get(user_id, ()))

    def _forget(self, user_id: str, now: float) -> dict[str, float]:
        """The user's places still held at `now` (the others are given back)."""
        keys = self._users.get(user_id, {})
        for key in [key for key, until in keys.items() if until <= now]:
            self.settled(key)
        return keys
