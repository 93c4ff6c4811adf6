"""Engine.IO and Socket.IO without I/O (liveroom.wire.engineio, liveroom.wire.socketio):
packets, payloads, the heartbeat, and binary attachments bounded."""

from __future__ import annotations

import contextlib

import msgpack
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from liveroom.wire import engineio
from liveroom.wire import socketio as sio
from liveroom.wire.engineio import Beat, EngineIOError, Heartbeat
from liveroom.wire.socketio import Assembly, Packet, SocketIOError


@pytest.mark.parametrize(
    ("text", "packet"),
    [
        ('0{"token":"t"}', Packet(sio.CONNECT, data={"token": "t"})),
        ("0", Packet(sio.CONNECT)),
        ('0/admin,{"token":"t"}', Packet(sio.CONNECT, "/admin", data={"token": "t"})),
        ("0/admin?x=1,", Packet(sio.CONNECT, "/admin")),
        ("1", Packet(sio.DISCONNECT)),
        ('2["time",{}]', Packet(sio.EVENT, data=["time", {}])),
        ('212["a"]', Packet(sio.EVENT, id=12, data=["a"])),
        ('2/x,7["a"]', Packet(sio.EVENT, "/x", 7, ["a"])),
        ("31[]", Packet(sio.ACK, id=1, data=[])),
        (
            '51-["a",{"_placeholder":true,"num":0}]',
            Packet(5, data=["a", {"_placeholder": True, "num": 0}], attachments=1),
        ),
        ('52-9["a"]', Packet(5, id=9, data=["a"], attachments=2)),
    ],
)
def test_json_packets_are_decoded(text: str, packet: Packet) -> None:
    assert sio.decode_text(text) == packet


@pytest.mark.parametrize(
    ("text", "ack_id"),
    [
        ("", None),
        ("7", None),
        ("x", None),
        ('5["a"]', None),  # a binary event without its count
        ("2" + "9" * 16 + "[]", None),  # an id too long to be one
        ("23[", 3),  # bad JSON, but the id was read: it gets its error ack
    ],
)
def test_bad_json_packets_are_refused_with_the_ack_id_when_known(text: str, ack_id: int | None) -> None:
    with pytest.raises(SocketIOError) as refused:
        sio.decode_text(text)
    assert refused.value.ack_id == ack_id and refused.value.code == "bad_request"


@given(st.text(max_size=40))
@example("0¹")  # a digit to str.isdigit(), not to int(): once a ValueError out of the decoder
@example("51²-[]")
def test_any_text_decodes_or_is_refused(text: str) -> None:
    with contextlib.suppress(SocketIOError):
        sio.decode_text(text)


def test_msgpack_packets_round_trip_and_bad_ones_are_refused() -> None:
    packed = sio.encode_msgpack(sio.EVENT, ["time", {}], 5)
    assert sio.decode_msgpack(packed) == Packet(sio.EVENT, "/", 5, ["time", {}])
    for bad in (
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"type": 9}),
        msgpack.packb({"type": 2, "nsp": 3}),
    ):
        with pytest.raises(SocketIOError):
            sio.decode_msgpack(bad)
    with pytest.raises(SocketIOError) as refused:
        sio.decode_msgpack(msgpack.packb({"type": 2, "id": 1.5}))
    assert refused.value.ack_id is None


def test_the_ack_id_of_a_huge_msgpack_packet_is_found_without_decoding_it() -> None:
    huge = msgpack.packb({"type": 2, "data": ["x", "y" * 100_000], "nsp": "/", "id": 77})
    assert sio.msgpack_ack_id(huge) == 77
    assert sio.msgpack_ack_id(msgpack.packb({"type": 2, "data": ["x"]})) is None
    assert sio.msgpack_ack_id(b"\x92\x01") is None  # not a map
    assert sio.msgpack_ack_id(huge[:50]) is None  # truncated


def test_attachments_are_put_back_in_place() -> None:
    packet = sio.decode_text(
        '52-3["a",{"x":{"_placeholder":true,"num":1},"y":[{"_placeholder":true,"num":0}]}]'
    )
    assembly = Assembly(packet, 100)
    assert assembly.add(b"zero") is None
    assert assembly.add(b"one") == Packet(sio.EVENT, "/", 3, ["a", {"x": b"one", "y": [b"zero"]}])


@pytest.mark.parametrize(
    "placeholder",
    [
        '{"_placeholder":true,"num":5}',
        '{"_placeholder":true,"num":-1}',
        '{"_placeholder":true,"num":"0"}',
        '{"_placeholder":true}',
        '{"_placeholder":true,"num":0,"more":1}',
    ],
)
def test_bad_placeholders_are_refused_with_the_ack_id(placeholder: str) -> None:
    assembly = Assembly(sio.decode_text(f'51-4["a",{placeholder}]'), 100)
    with pytest.raises(SocketIOError) as refused:
        assembly.add(b"x")
    assert refused.value.ack_id == 4 and refused.value.code == "bad_request"


def test_attachments_are_bounded_in_bytes() -> None:
    assembly = Assembly(sio.decode_text('52-4["a",{"_placeholder":true,"num":0}]'), 10)
    assembly.add(b"x" * 6)
    with pytest.raises(SocketIOError) as refused:
        assembly.add(b"x" * 6)
    assert refused.value.code == "payload_too_large" and refused.value.ack_id == 4


def test_deeply_nested_data_is_refused_not_a_recursion_error() -> None:
    deep = "[" * 200 + "]" * 200
    assembly = Assembly(sio.decode_text(f'51-1["a",{deep}]'), 100)
    with pytest.raises(SocketIOError):
        assembly.add(b"x")


# -- Engine.IO ------------------------------------------------------------------------------


def test_polling_payloads_round_trip_with_binary_as_base64() -> None:
    packets: list[str | bytes] = ["40", b"\x00\xff", '42["a"]']
    body = engineio.encode_payload(packets)
    assert body == '40\x1ebAP8=\x1e42["a"]'
    assert engineio.decode_payload(body, 16) == packets


@pytest.mark.parametrize("body", ["", "4\x1e", "b!!!", "\x1e".join(["3"] * 17)])
def test_bad_polling_payloads_are_refused(body: str) -> None:
    with pytest.raises(EngineIOError):
        engineio.decode_payload(body, 16)


def test_the_open_packet_is_the_handshake_clients_expect() -> None:
    packet = engineio.open_packet("abc", ["websocket"], 25.0, 20.0, 1000)
    expected = {"sid": "abc", "upgrades": ["websocket"], "pingInterval": 25000, "pingTimeout": 20000}
    assert packet[:1] == b"0" and orjson.loads(packet[1:]) == {**expected, "maxPayload": 1000}


def test_the_heartbeat_alternates_a_ping_and_its_deadline() -> None:
    beat = Heartbeat(25.0, 20.0)
    assert beat.on_timer() == (Beat.PING, 20.0)
    beat.pong()
    assert beat.on_timer() == (Beat.WAIT, 5.0)
    assert beat.on_timer() == (Beat.PING, 20.0)
    assert beat.on_timer() == (Beat.TIMEOUT, 0.0)  # no pong this time


def test_an_upgrade_is_a_probe_then_a_five_and_nothing_else() -> None:
    from liveroom.wire.engineio import Upgrade, UpgradeStep

    upgrade = Upgrade()
    assert upgrade.on_packet("2probe") is UpgradeStep.ANSWER_PROBE
    assert upgrade.on_packet("5") is UpgradeStep.COMPLETE
    assert Upgrade().on_packet("5") is UpgradeStep.FAIL  # no probe first
    assert Upgrade().on_packet("42[]") is UpgradeStep.FAIL
    probed = Upgrade()
    probed.on_packet("2probe")
    assert probed.on_packet("2probe") is UpgradeStep.FAIL  # probed twice
