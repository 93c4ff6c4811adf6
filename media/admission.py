"""What a WHIP/WHEP offer must be, and how many sessions one user may hold: pure checks.

`check_offer` runs in the HTTP layer (routes.py) before any worker or peer connection is
involved: an offer without a DTLS fingerprint or ICE credentials can never connect, and
one with no audio/video m-line going the right way has nothing to carry, so both are a
400 at once rather than a session that fails later in the worker.

`Admission` counts a user's WHEP sessions in the plane that holds the room: at most
`per_room` of one stage slot of a room (a viewer of a co-stream plays the host and each
guest: a cap over the whole room refused the third member of every stage to everyone; one
user's sessions in a room are still bounded, by `per_room` times its publishers), at most
`pending` not yet connected (in this media process, whatever the room). A
session not connected within `media.session_connect_timeout_s` is removed (plane.py), and only
connected viewers count against `max_viewers_per_room`: half-open offers cannot fill a room.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aiortc import sdp

from liveroom.errors import BadRequest, CommandError

__all__ = ["Admission", "Counted", "TooManySessions", "check_offer"]

Direction = Literal["send", "receive"]  # what the offerer does: WHIP sends, WHEP receives
_WANTED = {"send": ("sendrecv", "sendonly"), "receive": ("sendrecv", "recvonly")}


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
