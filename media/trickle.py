"""Trickle ICE for WHIP/WHEP (`PATCH` with `application/trickle-ice-sdpfrag`, RFC 8840).

The server's answer always carries all of its candidates; clients that send their own
candidates after the offer (browsers that do not wait for gathering, OBS) PATCH them
here. WHIP bundles everything on one transport, so every candidate goes to the first
m-line's transport whatever `a=mid` it came under. ICE restarts are not supported.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from liveroom.errors import BadRequest

__all__ = ["MAX_FRAGMENT_BYTES", "apply_fragment"]

MAX_FRAGMENT_BYTES = 16 * 1024


async def apply_fragment(pc: RTCPeerConnection, fragment: str) -> int:
    """Add the fragment's candidates (and end-of-candidates); returns how many were added."""
    mids = [t.mid for t in pc.getTransceivers() if t.mid is not None]
    if not mids:
        raise BadRequest("the session has no negotiated media", "bad_request")
    added = 0
    for line in fragment.splitlines():
        line = line.strip()
        if line.startswith("a=candidate:"):
            try:
                candidate = candidate_from_sdp(line[len("a=candidate:") :])
                candidate.sdpMid = mids[0]  # bundled: the first m-line's transport carries all
                await pc.addIceCandidate(candidate)
            except Exception as exc:  # aiortc's parser raises ValueError, IndexError, KeyError...
                raise BadRequest(f"bad candidate line {line[:100]!r}: {exc!r}", "malformed_sdp") from None
            added += 1
        elif line == "a=end-of-candidates":
            await pc.addIceCandidate(None)
    return added
