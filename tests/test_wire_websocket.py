"""The WebSocket machine (liveroom.wire.websocket): RFC 6455 rules, bounds, and differential
fuzzing against websockets' sans-I/O `Protocol` as the oracle: the same bytes, in the same
random segments, must give the same messages, the same pongs and the same close codes."""

from __future__ import annotations

import codecs
import itertools
import logging
import os
import struct
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from wire_support import client_frame

from liveroom.wire import websocket as ws
from liveroom.wire.websocket import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    BinaryMessage,
    CloseReceived,
    ServerProtocol,
    TextMessage,
)

QUIET = logging.getLogger("oracle")
QUIET.disabled = True


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of unmasked server frames."""
    frames, offset = [], 0
    while offset < len(data):
        opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
        assert length < 126  # only control frames come out of the machine
        frames.append((opcode, data[offset + 2 : offset + 2 + length]))
        offset += 2 + length
    return frames


# -- the rules, one by one ------------------------------------------------------------------


def test_messages_are_unmasked_and_split_anywhere() -> None:
    machine = ServerProtocol(1 << 20)
    text = '40{"token":"弹幕"}'
    big = os.urandom(70_000)
    wire = (
        client_frame(TEXT, text.encode())
        + client_frame(BINARY, big, mask=os.urandom(4))
        + client_frame(TEXT, b"x" * 300)
    )
    events = []
    for i in range(0, len(wire), 7):  # seven bytes at a time
        events += machine.receive_data(wire[i : i + 7])
    assert events == [TextMessage(text), BinaryMessage(big), TextMessage("x" * 300)]


def test_fragments_are_joined_with_control_frames_between_them() -> None:
    machine = ServerProtocol(1024)
    wire = (
        client_frame(TEXT, "42[弹".encode()[:-1], final=False)  # a character cut across fragments
        + client_frame(PING, b"hi")
        + client_frame(CONTINUATION, "弹".encode()[-1:] + b'"', final=False)
        + client_frame(CONTINUATION, b"]")
    )
    assert machine.receive_data(wire) == [TextMessage('42[弹"]')]
    assert server_frames(machine.take_outgoing()) == [(PONG, b"hi")]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (client_frame(TEXT, b"hi", masked=False), 1002),  # clients must mask
        (client_frame(TEXT, b"x" * 2000), 1009),  # over the limit
        (client_frame(PING, b"x" * 126), 1002),  # control frames are short
        (client_frame(CLOSE, b"", final=False), 1002),  # and never fragmented
        (client_frame(CONTINUATION, b"x"), 1002),  # a continuation of nothing
        (client_frame(0x3, b"x"), 1002),  # a reserved opcode
        (client_frame(TEXT, b"x", rsv=4), 1002),  # RSV1 without an extension
        (client_frame(TEXT, b"a", final=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(TEXT, b"\xff\xfe"), 1007),  # not UTF-8
        (client_frame(TEXT, b"ok\xc3", final=False), None),  # a character may continue...
        (client_frame(TEXT, b"ok\xc3\x28", final=False), 1007),  # ...but not this one, at once
        (client_frame(CLOSE, b"\x03"), 1002),  # a close payload of one byte
        (client_frame(CLOSE, b"\x03\xe8\xff"), 1007),  # a reason that is not UTF-8
        (b"\x81\xff" + b"\x80" + b"\x00" * 7, 1002),  # a 64-bit length with the top bit set
    ],
    # Named, not made from the bytes: the masks are random, and xdist's workers must collect
    # the same test ids.
    ids=[
        "unmasked",
        "oversize",
        "long-ping",
        "fragmented-close",
        "lone-continuation",
        "reserved-opcode",
        "rsv1",
        "new-message-mid-message",
        "bad-utf8",
        "utf8-may-continue",
        "bad-utf8-continuation",
        "one-byte-close",
        "close-reason-not-utf8",
        "top-bit-length",
    ],
)
def test_protocol_errors_fail_with_their_close_code(wire: bytes, code: int | None) -> None:
    machine = ServerProtocol(1024)
    machine.receive_data(wire)
    assert machine.close_code == code
    if code is not None:
        assert machine.state is ws.State.CLOSED
        assert server_frames(machine.take_outgoing())[-1][1][:2] == struct.pack("!H", code)


@pytest.mark.parametrize(
    ("code", "answer"),
    [
        (1000, 1000),
        (1001, 1001),
        (1003, 1003),
        (1007, 1007),
        (1014, 1014),
        (3000, 3000),
        (4999, 4999),
        (999, 1002),
        (1004, 1002),
        (1005, 1002),
        (1006, 1002),
        (1015, 1002),
        (1016, 1002),
        (2999, 1002),
        (5000, 1002),
    ],
)
def test_close_codes_are_echoed_only_when_a_peer_may_send_them(code: int, answer: int) -> None:
    machine = ServerProtocol(1024)
    assert machine.receive_data(client_frame(CLOSE, struct.pack("!H", code) + b"bye")) == (
        [CloseReceived(code, "bye")] if answer == code else []
    )
    [(opcode, payload)] = server_frames(machine.take_outgoing())
    assert opcode == CLOSE and payload[:2] == struct.pack("!H", answer)
    assert machine.receive_data(client_frame(TEXT, b"after")) == []  # nothing after a close


def test_an_empty_close_is_answered_with_an_empty_close() -> None:
    machine = ServerProtocol(1024)
    assert machine.receive_data(client_frame(CLOSE, b"")) == [CloseReceived(1005, "")]
    assert server_frames(machine.take_outgoing()) == [(CLOSE, b"")]


def test_the_size_limit_counts_every_fragment_but_not_control_frames() -> None:
    machine = ServerProtocol(10)
    assert machine.receive_data(client_frame(TEXT, b"x" * 9, final=False)) == []
    assert machine.receive_data(client_frame(PING, b"y" * 100)) == []  # not part of the message
    assert machine.receive_data(client_frame(CONTINUATION, b"x")) == [TextMessage("x" * 10)]
    machine.receive_data(client_frame(TEXT, b"x" * 6, final=False))
    machine.receive_data(client_frame(CONTINUATION, b"x" * 6))
    assert machine.close_code == 1009


def test_an_oversized_message_is_refused_from_its_header() -> None:
    machine = ServerProtocol(1024)
    header = client_frame(BINARY, b"x" * 70_000)[:14]
    machine.receive_data(header)  # nothing of the payload has come
    assert machine.close_code == 1009


def test_empty_continuations_cost_no_memory() -> None:
    machine = ServerProtocol(1024)
    machine.receive_data(client_frame(BINARY, b"a", final=False))
    empty = client_frame(CONTINUATION, b"", final=False) * 10_000
    for _ in range(10):
        assert machine.receive_data(empty) == []
    assert machine._message == bytearray(b"a") and machine._buffer is None
    assert machine.receive_data(client_frame(CONTINUATION, b"b")) == [BinaryMessage(b"ab")]


def test_a_frame_in_small_segments_costs_time_linear_in_its_bytes() -> None:
    def feed(size: int) -> float:
        wire = client_frame(BINARY, os.urandom(size))
        machine = ServerProtocol(1 << 24)
        started = time.process_time()
        for i in range(0, len(wire), 100):
            machine.receive_data(wire[i : i + 100])
        return time.process_time() - started

    feed(10_000)  # warm up
    small, large = min(feed(60_000) for _ in range(3)), min(feed(600_000) for _ in range(3))
    # Ten times the bytes: ten times the work give or take, never the hundred of a
    # quadratic rebuild (that cost 0.49 s for this frame before).
    assert large < small * 30 + 0.01, (small, large)


def test_masking_runs_in_c() -> None:
    from websockets.speedups import apply_mask as c_mask

    assert ws._c_apply_mask is c_mask and type(c_mask).__name__ == "builtin_function_or_method"
    data, mask = os.urandom(1001), os.urandom(4)
    assert ws.apply_mask(data, mask) == ws._python_mask(data, mask)
    assert ws.apply_mask(ws.apply_mask(data, mask), mask) == data


def test_eof_without_a_close_frame_is_1006() -> None:
    machine = ServerProtocol(1024)
    machine.receive_data(client_frame(TEXT, b"hi")[:3])
    machine.receive_eof()
    assert machine.close_code == 1006 and machine.take_outgoing() == b""


def test_fail_queues_one_close_and_cuts_long_reasons_on_a_character() -> None:
    machine = ServerProtocol(1024)
    machine.fail(1008, "弹" * 100)
    machine.fail(1011, "again")  # already closed: nothing more
    [(opcode, payload)] = server_frames(machine.take_outgoing())
    assert opcode == CLOSE and len(payload) <= 125 and payload[:2] == b"\x03\xf0"
    payload[2:].decode()


# -- differential fuzzing against websockets ----------------------------------------------


@dataclass
class Outcome:
    messages: list[str | bytes] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    echoed: int | None = None  # the code of a close frame sent back in answer to the client's
    failed: int | None = None  # the code the connection failed with (1006: at EOF)


def run_ours(chunks: list[bytes], limit: int) -> Outcome:
    machine = ServerProtocol(limit)
    outcome = Outcome()
    for chunk in chunks:
        for event in machine.receive_data(chunk):
            if isinstance(event, CloseReceived):
                outcome.echoed = event.code
            else:
                outcome.messages.append(event.text if isinstance(event, TextMessage) else event.data)
    machine.receive_eof()
    for opcode, payload in server_frames(machine.take_outgoing()):
        if opcode == PONG:
            outcome.pongs.append(payload)
    if outcome.echoed is None:
        outcome.failed = machine.close_code
    return outcome


def run_oracle(chunks: list[bytes], limit: int | None) -> tuple[Outcome, int]:
    """websockets' outcome, with the rule it leaves to its caller on top: text must be UTF-8
    (checked frame by frame, as liveroom does). Also returns how many bytes of the input
    it had taken as whole frames when the outcome was settled."""
    oracle = Protocol(Side.SERVER, state=State.OPEN, max_size=limit, logger=QUIET)
    outcome = Outcome()
    parts: list[bytes] = []
    decoder: codecs.IncrementalDecoder | None = None
    text = False
    frames: list[Frame] = []
    for chunk in chunks:
        oracle.receive_data(chunk)
        frames += [e for e in oracle.events_received() if isinstance(e, Frame)]
    oracle.receive_eof()
    frames += [e for e in oracle.events_received() if isinstance(e, Frame)]
    consumed = 0
    for frame in frames:
        consumed += _wire_size(frame)
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if frame.opcode is not Opcode.CONT:
                text = frame.opcode is Opcode.TEXT
                parts, decoder = [], codecs.getincrementaldecoder("utf-8")() if text else None
            parts.append(bytes(frame.data))
            if decoder is not None:
                try:
                    decoder.decode(frame.data, frame.fin)
                except UnicodeDecodeError:
                    outcome.failed = 1007
                    return outcome, consumed
            if frame.fin:
                joined = b"".join(parts)
                outcome.messages.append(joined.decode() if text else joined)
        elif frame.opcode is Opcode.PING:
            outcome.pongs.append(bytes(frame.data))
        elif frame.opcode is Opcode.CLOSE:
            assert oracle.close_rcvd is not None
            outcome.echoed = oracle.close_rcvd.code
            return outcome, consumed
    sent = oracle.close_sent
    outcome.failed = 1006 if sent is None else sent.code
    return outcome, consumed


def _wire_size(frame: Frame) -> int:
    length = len(frame.data)
    return 2 + 4 + length + (0 if length < 126 else 2 if length < 65536 else 8)


def refused_from_header(tail: bytes) -> int | None:
    """The code liveroom refuses an incomplete frame with from its header alone (websockets
    reads the payload first, then fails the same way; at EOF it has not, so it says 1006)."""
    if len(tail) < 2:
        return None
    first, length = tail[0], tail[1] & 0x7F
    if length == 127 and len(tail) >= 10 and tail[2] & 0x80:
        return 1002
    if first & 0x0F >= 8 and (length > 125 or not first & 0x80):
        return 1002
    return 1002 if first & 0x70 else None


def _close_payload(draw: st.DrawFn) -> bytes:
    code = draw(st.sampled_from([1000, 1001, 1002, 1004, 1005, 1006, 1011, 1015, 2000, 3000, 4999, 5000]))
    reason = draw(st.sampled_from([b"", b"bye", "再见".encode(), b"\xff"]))
    return draw(st.sampled_from([struct.pack("!H", code) + reason, b"", b"\x03"]))


def _message_frames(draw: st.DrawFn) -> list[list[object]]:
    """One message as the client would send it: fragmented at random, pings between."""
    text = draw(st.booleans())
    size = draw(st.sampled_from([20, 300, 70_000]))
    body = draw(st.text(max_size=60)).encode() if text else draw(st.binary(max_size=size))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    bounds = [0, *cuts, len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(bounds)]
    frames: list[list[object]] = []
    for i, piece in enumerate(pieces):
        opcode = (TEXT if text else BINARY) if i == 0 else CONTINUATION
        frames.append([opcode, piece, i == len(pieces) - 1, True, 0])
        if i < len(pieces) - 1 and draw(st.integers(0, 3)) == 0:
            frames.append([draw(st.sampled_from([PING, PONG])), draw(st.binary(max_size=10)), True, True, 0])
    return frames


def _mutate(draw: st.DrawFn, frame: list[object]) -> None:
    """Break one frame the way a buggy or hostile client would."""
    what = draw(st.sampled_from(["opcode", "final", "unmasked", "rsv", "payload", "close"]))
    if what == "opcode":
        frame[0] = draw(st.integers(0, 15))
    elif what == "final":
        frame[2] = not frame[2]
    elif what == "unmasked":
        frame[3] = False
    elif what == "rsv":
        frame[4] = draw(st.integers(1, 7))
    elif what == "payload":
        frame[1] = draw(st.binary(max_size=draw(st.sampled_from([10, 130, 300]))))
    else:
        frame[0], frame[1] = CLOSE, _close_payload(draw)


@st.composite
def frame_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """Random and mutated frame sequences, cut into random segments."""
    frames: list[list[object]] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["message", "message", "message", "control", "close", "random"]))
        if kind == "message":
            frames += _message_frames(draw)
        elif kind == "control":
            frames.append([draw(st.sampled_from([PING, PONG])), draw(st.binary(max_size=125)), True, True, 0])
        elif kind == "close":
            frames.append([CLOSE, _close_payload(draw), True, True, 0])
        else:
            frames.append(
                [draw(st.integers(0, 15)), draw(st.binary(max_size=200)), draw(st.booleans()), True, 0]
            )
    for _ in range(draw(st.integers(0, 2)) if frames else 0):
        _mutate(draw, frames[draw(st.integers(0, len(frames) - 1))])
    wire = b"".join(
        client_frame(op, payload, final, masked, draw(st.binary(min_size=4, max_size=4)), rsv)  # type: ignore[arg-type]
        for op, payload, final, masked, rsv in frames
    )
    if draw(st.booleans()) and wire:
        wire = wire[: draw(st.integers(0, len(wire)))]  # cut anywhere
    if draw(st.integers(0, 5)) == 0:
        wire += draw(st.binary(max_size=30))  # and some garbage
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    bounds = [0, *cuts, len(wire)]
    return wire, [wire[a:b] for a, b in itertools.pairwise(bounds)]


def compare(wire: bytes, chunks: list[bytes], limit: int | None) -> None:
    ours = run_ours(chunks, limit if limit is not None else 1 << 62)
    expected, consumed = run_oracle(chunks, limit)
    tail = wire[consumed:]
    # The one rule liveroom keeps apart: websockets counts a control frame against the
    # fragmented message it interrupts (tests above check that liveroom does not).
    assume(not (expected.failed == 1009 and len(tail) > 1 and tail[0] & 0x0F >= 8))
    if ours.failed != expected.failed and expected.failed == 1006:
        # Refused from a header that websockets would refuse once the payload had come.
        assert ours.failed == refused_from_header(tail), (ours, expected)
        ours.failed = 1006
    assert ours == expected


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame_streams())
def test_the_same_outcome_as_websockets(stream: tuple[bytes, list[bytes]]) -> None:
    wire, chunks = stream
    compare(wire, chunks, None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame_streams(), st.sampled_from([0, 1, 30, 150, 1000]))
def test_the_same_outcome_as_websockets_with_a_message_limit(
    stream: tuple[bytes, list[bytes]], limit: int
) -> None:
    wire, chunks = stream
    compare(wire, chunks, limit)
