"""Pure protocol pieces: payload validation, framing, history, rate limits, tokens. No event loop."""

from __future__ import annotations

import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from liveroom.auth import TokenAuthority
from liveroom.broker import Publication
from liveroom.errors import BadRequest, Unauthorized
from liveroom.frames import batch_message, event_ack_id, plain_event, ws_close_frame, ws_text_frame
from liveroom.history import HistoryRing
from liveroom.protocol import JoinPayload, decode_payload, encode_item
from liveroom.ratelimit import TokenBucket

SECRET = "unit-test-secret-long-enough-for-hs256-0123456789"


def test_join_payload_validation() -> None:
    assert decode_payload(JoinPayload, {"room": "r1"}) == JoinPayload("r1")
    assert decode_payload(JoinPayload, {"room": "r1", "since": 5}).since == 5
    for bad in (
        {},
        {"room": ""},
        {"room": "a b"},
        {"room": "x" * 65},
        {"room": "r", "since": -1},
        {"room": "r", "since": "5"},
        {"room": "r", "since": 1.5},
        {"room": None},
    ):
        with pytest.raises(BadRequest):
            decode_payload(JoinPayload, bad)
    with pytest.raises(BadRequest, match="got an array"):
        decode_payload(JoinPayload, [1])


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=10,
    )
)
def test_any_json_value_either_validates_or_is_a_bad_request(value: object) -> None:
    try:
        decode_payload(JoinPayload, value)
    except BadRequest as error:
        assert error.code == "bad_request" and error.message


def test_batch_message_is_a_socketio_event_with_the_items_as_encoded() -> None:
    items = [
        encode_item(1, "danmaku.message", 10, {"text": "你好"}),
        encode_item(None, "room.online", 11, {"count": 2}),
    ]
    message = batch_message(orjson.dumps("r1"), items)
    assert message.startswith(b"42")
    assert orjson.loads(message[2:]) == [
        "batch",
        {
            "room": "r1",
            "items": [
                {"seq": 1, "type": "danmaku.message", "ts": 10, "data": {"text": "你好"}},
                {"seq": None, "type": "room.online", "ts": 11, "data": {"count": 2}},
            ],
        },
    ]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_ws_text_frame_lengths(size: int) -> None:
    frame = ws_text_frame(b"a" * size)
    assert frame[0] == 0x81
    if size < 126:
        assert frame[1] == size and len(frame) == size + 2
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size


def test_ws_close_frame() -> None:
    frame = ws_close_frame(1001, "server_shutdown")
    assert frame[0] == 0x88 and frame[1] == 2 + len("server_shutdown")
    assert int.from_bytes(frame[2:4], "big") == 1001


@pytest.mark.parametrize(
    ("packet", "ack"),
    [
        ('2["a",{}]', None),
        ('212["a",{}]', 12),
        ('2/x,7["a"]', 7),
        ('3["a"]', None),
        ("2", None),
        ("2/x", None),
    ],
)
def test_event_ack_id(packet: str, ack: int | None) -> None:
    assert event_ack_id(packet) == ack


def _pub(seq: int, ts: int) -> Publication:
    return Publication("r", seq, ts, "t", encode_item(seq, "t", ts, {}))


def test_history_ring_since_and_reset() -> None:
    ring = HistoryRing(max_count=3, max_age_ms=1000)
    for seq in range(1, 6):
        ring.append(_pub(seq, ts=seq * 100))
    assert [p.seq for p in ring.since(2, now_ms=600)[0]] == [3, 4, 5]
    assert ring.since(3, now_ms=600) == ([ring.since(3, 600)[0][0], ring.since(3, 600)[0][1]], False)
    assert ring.since(1, now_ms=600) == ([], True)  # seq 2 was evicted by count
    assert ring.since(5, now_ms=600) == ([], False)
    assert ring.since(None, now_ms=600) == ([], False)
    assert ring.since(9, now_ms=600) == ([], True)  # from another epoch or node
    assert ring.since(3, now_ms=1450) == ([], True)  # seq 4 aged out (ts 400 < 450)
    assert ring.since(5, now_ms=5000) == ([], False)  # nothing missed even though all aged out


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.take(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(0.5)
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.take(10) and bucket.take(10) and bucket.take(10) and not bucket.take(10)


def test_tokens_round_trip_and_refusals() -> None:
    authority = TokenAuthority(SECRET)
    identity = authority.verify(authority.mint("u1", "Ann", "host", room="r9", ttl_s=60))
    assert (identity.user_id, identity.name, identity.role, identity.room) == ("u1", "Ann", "host", "r9")
    assert identity.is_staff
    with pytest.raises(Unauthorized, match="expired"):
        authority.verify(authority.mint("u1", "Ann", "viewer", ttl_s=-5))
    with pytest.raises(Unauthorized, match="invalid"):
        TokenAuthority("z" * 48).verify(authority.mint("u1", "Ann", "viewer"))
    import jwt

    for claims in (
        {"sub": "u", "role": "king"},
        {"sub": "", "role": "viewer"},
        {"role": "viewer"},
        {"sub": "u", "name": 5},
    ):
        forged = jwt.encode({**claims, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        with pytest.raises(Unauthorized):
            authority.verify(forged)


def test_rs256_tokens_from_an_operator_auth_service(tmp_path: object) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    authority = TokenAuthority(SECRET, public)
    token = jwt.encode(
        {"sub": "op", "name": "Op", "role": "admin", "exp": int(time.time()) + 60}, key, algorithm="RS256"
    )
    assert authority.verify(token).role == "admin"
    with pytest.raises(Unauthorized):
        TokenAuthority(SECRET).verify(token)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('2["time",{}]', (None, '["time",{}]')),
        ('212["sale.buy",{"qty":1}]', (12, '["sale.buy",{"qty":1}]')),
        ('2/admin,3["x"]', None),  # another namespace: python-socketio's
        ('51-["x",{"_placeholder":true,"num":0}]', None),  # binary event
        ("3", None),
        ('23"x"', None),  # not an array
        ("2" + "9" * 19 + "[]", None),  # an ack id too long to be one
    ],
)
def test_plain_events_are_recognised_and_everything_else_is_left_alone(
    message: str, expected: tuple[int | None, str] | None
) -> None:
    assert plain_event(message) == expected
