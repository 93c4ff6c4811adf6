"""Bad input on WHIP/WHEP: the right 4xx with a JSON error, and nothing left behind.

This module's server runs the media plane in the node process (`media.workers = 1`);
test_media_forwarding.py and test_media_workers.py cover worker processes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from media_support import WhipError, delete, patch_fragment, play, post_sdp, publish, scrape, wait_until
from support import ServerProcess, token

OFFER_LIKE = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("media-errors"), {"LIVEROOM_MEDIA_WORKERS": "1"})
    yield process.start()
    process.stop()


def room_name() -> str:
    return f"e-{uuid.uuid4().hex[:8]}"


def error_code(body: str) -> str:
    error: dict[str, Any] = json.loads(body)["error"]
    assert error["message"]
    return str(error["code"])


def leak_gauges(server: ServerProcess) -> dict[str, float]:
    metrics = scrape(server.url)
    watched = ("liveroom_media_sessions", "liveroom_media_asyncio")
    return {k: v for k, v in metrics.items() if k.startswith(watched)}


async def settled(server: ServerProcess, baseline: dict[str, float]) -> None:
    try:
        # 30 s: a session's tasks end after aiortc's own close timeouts, later on a loaded
        # machine (one task more at 10 s, with a CPU hog on one core and three workers).
        await wait_until(lambda: leak_gauges(server) == baseline, 30, "no leaks")
    except AssertionError:
        raise AssertionError(f"leaked: {baseline} became {leak_gauges(server)}") from None


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("hello", "application/sdp", 400, "malformed_sdp"),
        (OFFER_LIKE, "application/sdp", 400, "malformed_sdp"),
        ("v=0\r\nm=audio", "application/sdp", 400, "malformed_sdp"),
        ("{}", "application/json", 415, "unsupported_media_type"),
    ],
)
async def test_a_bad_offer_is_refused(
    server: ServerProcess, body: str, content_type: str, status: int, code: str
) -> None:
    baseline = leak_gauges(server)
    url = f"{server.url}/whip/{room_name()}"
    got, location, text = await post_sdp(url, token("h", "host"), body, content_type)
    assert (got, error_code(text)) == (status, code)
    assert location is None
    await settled(server, baseline)


@pytest.mark.parametrize(
    ("bearer", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("not-a-jwt", 401, "unauthorized"),
        (
            jwt.encode({"sub": "x", "role": "host", "exp": 9999999999}, "wrong-secret-" * 4),
            401,
            "unauthorized",
        ),
        (token("v", "viewer"), 403, "forbidden"),
        (token("h", "host", room="another-room"), 403, "wrong_room"),
    ],
)
async def test_whip_needs_a_publishing_token_for_this_room(
    server: ServerProcess, bearer: str | None, status: int, code: str
) -> None:
    baseline = leak_gauges(server)
    with pytest.raises(WhipError) as refused:
        await publish(server.url, room_name(), bearer)  # type: ignore[arg-type]
    assert (refused.value.status, error_code(refused.value.body)) == (status, code)
    await settled(server, baseline)


async def test_publish_conflicts_sessions_and_ownership(server: ServerProcess) -> None:
    baseline = leak_gauges(server)
    room = room_name()
    host = await publish(server.url, room, token("host", "host"))
    viewer = None
    try:
        with pytest.raises(WhipError) as second:
            await publish(server.url, room, token("host", "host"))
        assert (second.value.status, error_code(second.value.body)) == (409, "already_publishing")
        backup = await publish(server.url, room, token("host", "host"), query="?path=backup")
        with pytest.raises(WhipError) as third:
            await publish(server.url, room, token("host", "host"), query="?path=backup")
        assert third.value.status == 409
        viewer = await play(server.url, room, token("fan"))
        status, body = await delete(server.url + host.location, token("someone-else", "host"))
        assert (status, error_code(body)) == (403, "forbidden")
        status, body = await delete(server.url + viewer.location, token("other-viewer"))
        assert (status, error_code(body)) == (403, "forbidden")
        status, body = await delete(f"{server.url}/whip/{room}/no-such-session", token("host", "host"))
        assert (status, error_code(body)) == (404, "not_found")
        status, body = await delete(server.url + host.location, None)
        assert (status, error_code(body)) == (401, "unauthorized")
        await backup.end()
    finally:
        if viewer is not None:
            assert await viewer.end() == 200
        assert await host.end() == 200
    await settled(server, baseline)


async def test_a_viewer_without_the_publishers_codec_is_refused(server: ServerProcess) -> None:
    baseline = leak_gauges(server)
    room = room_name()
    host = await publish(server.url, room, token("h264-host", "host"), "video/H264", audio=False)
    try:
        with pytest.raises(WhipError) as refused:
            await play(server.url, room, token("vp8-only"), kinds=("video",), video_codec="video/VP8")
        assert (refused.value.status, error_code(refused.value.body)) == (400, "codec_mismatch")
    finally:
        await host.end()
    await settled(server, baseline)


async def test_whep_errors(server: ServerProcess) -> None:
    baseline = leak_gauges(server)
    room = room_name()
    with pytest.raises(WhipError) as nobody:
        await play(server.url, room, token("fan"))
    assert (nobody.value.status, error_code(nobody.value.body)) == (404, "not_publishing")
    with pytest.raises(WhipError) as unauthorized:
        await play(server.url, room, "garbage")
    assert unauthorized.value.status == 401
    status, _, body = await post_sdp(f"{server.url}/whep/{room}?slot=../x", token("fan"), OFFER_LIKE)
    assert (status, error_code(body)) == (400, "bad_request")
    await settled(server, baseline)


async def test_trickled_candidates_are_patched_in(server: ServerProcess) -> None:
    baseline = leak_gauges(server)
    room = room_name()
    host = await publish(server.url, room, token("trickler", "host"), trickle=True)
    viewer = await play(server.url, room, token("fan"))
    try:
        await wait_until(lambda: len(viewer.counters) >= 10, 15, "video from a trickled publisher")
        url = server.url + host.location
        assert await patch_fragment(url, token("trickler", "host"), "a=candidate:x", "text/plain") == 415
        assert await patch_fragment(url, token("someone-else", "host"), "a=end-of-candidates") == 403
        assert await patch_fragment(url, None, "") == 401
        assert await patch_fragment(f"{server.url}/whip/{room}/nope", token("trickler", "host"), "") == 404
        assert await patch_fragment(url, token("trickler", "host"), "a=candidate:garbage") == 400
    finally:
        await viewer.end()
        await host.end()
    await settled(server, baseline)


async def test_an_expired_guest_token_is_refused(server: ServerProcess) -> None:
    from support import SECRET

    room = room_name()
    claims = {"sub": "g", "role": "guest", "room": room, "slot": 1, "scope": "publish"}
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")
    other_room = jwt.encode({**claims, "room": "elsewhere", "exp": int(time.time()) + 60}, SECRET)
    for bearer, status in ((expired, 401), (other_room, 403)):
        with pytest.raises(WhipError) as refused:
            await publish(server.url, room, bearer)
        assert refused.value.status == status
