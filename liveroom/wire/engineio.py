"""Engine.IO v4 with no I/O: packets, the long-polling payload, and the heartbeat.

An Engine.IO packet is one character of type and its data: `0` open (server to client,
the handshake), `1` close, `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop. Over
WebSocket a text frame is one packet and a binary frame is a binary message; over
long-polling, packets travel joined by the record separator (0x1e), a binary message
as `b` and its base64.

The heartbeat is the server's: a ping every `interval_s`, answered within `timeout_s`.
`Heartbeat` decides what each timer should do and when the next one is due, so the
caller owns the clock (one wheel for every session: liveroom.ping_wheel).
"""

from __future__ import annotations

import base64
import binascii
import enum

import orjson

__all__ = [
    "CLOSE",
    "MESSAGE",
    "NOOP",
    "OPEN",
    "PING",
    "PONG",
    "UPGRADE",
    "Beat",
    "EngineIOError",
    "Heartbeat",
    "Upgrade",
    "UpgradeStep",
    "decode_payload",
    "encode_payload",
    "open_packet",
]

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = "0", "1", "2", "3", "4", "5", "6"
SEPARATOR = "\x1e"
PROBE = "probe"


class EngineIOError(Exception):
    """A request or payload that breaks Engine.IO: answered 400, never a traceback."""


def open_packet(
    sid: str, upgrades: list[str], ping_interval_s: float, ping_timeout_s: float, max_payload: int
) -> bytes:
    """The handshake: `0{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}`."""
    return b"0" + orjson.dumps(
        {
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": int(ping_interval_s * 1000),
            "pingTimeout": int(ping_timeout_s * 1000),
            "maxPayload": max_payload,
        }
    )


def encode_payload(packets: list[str | bytes]) -> str:
    """Packets for one long-polling response (text packets as they are, binary as `b`+base64)."""
    return SEPARATOR.join(
        packet if isinstance(packet, str) else "b" + base64.b64encode(packet).decode() for packet in packets
    )


def decode_payload(body: str, max_packets: int) -> list[str | bytes]:
    """The packets of a long-polling POST body: text packets as str, binary messages as bytes."""
    if not body:
        raise EngineIOError("an empty payload")
    parts = body.split(SEPARATOR, max_packets)
    if len(parts) > max_packets:
        raise EngineIOError(f"at most {max_packets} packets per request")
    packets: list[str | bytes] = []
    for part in parts:
        if not part:
            raise EngineIOError("an empty packet")
        if part[0] == "b":
            try:
                packets.append(base64.b64decode(part[1:], validate=True))
            except (binascii.Error, ValueError):
                raise EngineIOError("a binary packet that is not base64") from None
        else:
            packets.append(part)
    return packets


class Beat(enum.Enum):
    PING = "ping"  # send a ping now
    TIMEOUT = "timeout"  # the last ping went unanswered: the connection is dead
    WAIT = "wait"  # the pong came in time: nothing to do until the next ping


class Heartbeat:
    """A session's pings as a cycle of two timers: the ping (then `timeout_s` for its pong),
    and its deadline (dead without the pong; else `interval_s - timeout_s` to the next)."""

    __slots__ = ("_at_deadline", "awaiting_pong", "interval_s", "timeout_s")

    def __init__(self, interval_s: float, timeout_s: float) -> None:
        self.interval_s = interval_s  # also the wait from the open packet to the first ping
        self.timeout_s = timeout_s
        self.awaiting_pong = False
        self._at_deadline = False

    def on_timer(self) -> tuple[Beat, float]:
        """What the timer that just fired means, and the delay to the next one."""
        if not self._at_deadline:
            self._at_deadline = self.awaiting_pong = True
            return Beat.PING, self.timeout_s
        if self.awaiting_pong:
            return Beat.TIMEOUT, 0.0
        self._at_deadline = False
        return Beat.WAIT, max(self.interval_s - self.timeout_s, 0.0)

    def pong(self) -> None:
        self.awaiting_pong = False


class UpgradeStep(enum.Enum):
    ANSWER_PROBE = "answer_probe"  # reply `3probe`; the pending GET returns (a noop)
    COMPLETE = "complete"  # from now on the session's packets go over the WebSocket
    FAIL = "fail"  # close this WebSocket; the session goes on polling


class Upgrade:
    """A polling session's move to WebSocket: over the new WebSocket, the client's
    `2probe`, then its `5`. Anything else, or in another order, fails the upgrade."""

    __slots__ = ("probed",)

    def __init__(self) -> None:
        self.probed = False

    def on_packet(self, text: str) -> UpgradeStep:
        if not self.probed and text == PING + PROBE:
            self.probed = True
            return UpgradeStep.ANSWER_PROBE
        if self.probed and text == UPGRADE:
            return UpgradeStep.COMPLETE
        return UpgradeStep.FAIL
