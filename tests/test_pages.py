"""liveroom's own pages in headless Chromium: the host console, two viewers and the dashboard.

One run of `tests/browser/pages.mjs` (playwright-core driving Debian's `chromium`, 23-30 s
at load 2-7 on the 2-core machine, 31-53 s with a CPU hog on one of its cores: after the
dashboard's counts, the failover and Carol's HLS run beside the other steps) does what a
show does: the host goes live from the fake camera with a backup path, Alice (a phone, in
Chromium's mobile emulation) comments, drops off and resumes, loses a batch frame on the
way and recovers it, everyone votes, a flash sale opens on the server's clock, a coupon is
dropped and claimed, Bob asks to join on stage and is accepted, the host moderates, a
console opened late lists what was said, the primary ingest path fails over to the
backup, Carol, refused by WHEP, plays the host through HLS, and Dan signs in by hand.
Each test below checks one part of what the driver saw. Screenshots land in
test-artifacts/pages/.

Apart from the show, `tests/browser/hls_levels.mjs` (same harness, about 10 s) plays a room
of a second server, with the server-side ladder on, through the viewer page's HLS fallback
and switches hls.js to every rung with the page's quality picker; `tests/browser/hls_audio.mjs`
(about 5 s) plays a room of a third server that way with the sound on and hears the aiortc
host's tone through the master playlist's AAC rendition.

Skipped when chromium, node or npm is missing; `npm ci --prefix tests/browser` on first use.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import ARTIFACTS, BROWSER_DIR, CHROMIUM, page_driver, run_page_driver
from media_support import publish, wait_until
from plugin_support import api, joined, room_name
from support import SECRET, ServerProcess, Viewer, module_server, token

from liveroom.auth import TokenAuthority
from liveroom.publish_token import PublishTokens

ROOT = Path(__file__).resolve().parent.parent

# The first test to read the show pays for it (~25-30 s, plus `npm ci` on a fresh clone).
pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Media in worker processes, as `media.workers` defaults to on this machine: with media
    # on the node's own event loop (1), the show's two ingest paths, WHEP viewers and HLS
    # delayed Socket.IO commands by 0.3-3 s under a CPU hog, and a like.send ran past the
    # 5 s command timeout (3 December 2026).
    process = ServerProcess(tmp_path_factory.mktemp("pages"), {"LIVEROOM_MEDIA_WORKERS": "2"})
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def driver() -> Path:
    return page_driver("pages.mjs")


@pytest.fixture(scope="module")
def show(server: ServerProcess, driver: Path) -> dict[str, Any]:
    """Run the whole show once; every test reads its part."""
    assert CHROMIUM is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    room = f"show-{uuid.uuid4().hex[:8]}"
    tokens = [token("host1", "host", name="Host"), token("alice", name="Alice"), token("bob", name="Bob")]
    tokens += [token("carol", name="Carol"), token("dan", name="Dan")]
    try:
        run = subprocess.run(
            ["node", str(driver), server.url, room, *tokens, CHROMIUM, str(ARTIFACTS)],
            capture_output=True,
            text=True,
            # 60-70 s alone on a quiet machine (its steps have grown), 190-220 s within the
            # whole suite on 3 December 2026, when the machine ran everything about twice as
            # slowly as the day before (the same commit's suite: 228 s, then 476 s).
            timeout=390,
            check=False,
            cwd=BROWSER_DIR,
        )
    except subprocess.TimeoutExpired as exc:  # the steps it got through, with their times
        progress = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"the show ran past 390 s; its steps:\n{progress[-3000:]}\n{server.log()[-2000:]}")
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines, (run.stdout[-2000:], run.stderr[-2000:], server.log()[-2000:])
    result: dict[str, Any] = json.loads(lines[-1])
    result["server_log"] = server.log()[-3000:]
    return result


def part(show: dict[str, Any], step: str) -> Any:
    """What the driver saw in one step; that step's errors fail only the tests reading it."""
    errors = [error for error in show["errors"] if error.startswith(f"{step}:")]
    assert not errors and step in show, (errors, show["server_log"])
    return show[step]


def test_the_pages_raise_no_errors(show: dict[str, Any]) -> None:
    # Uncaught page errors are named by the page's path; a dialog (an alert is what an XSS
    # would open) and the driver's own failures are named too.
    assert [error for error in show["errors"] if error.startswith(("/", "dialog", "driver"))] == []


def test_the_favicon_is_served(server: ServerProcess) -> None:
    with urllib.request.urlopen(server.url + "/favicon.ico", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("image/svg+xml")
        assert response.read().startswith(b"<svg")


def test_pages_are_served_with_a_strict_policy(server: ServerProcess) -> None:
    for path in ("/room/r1", "/host/r1", "/dashboard/r1"):
        with urllib.request.urlopen(server.url + path, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    lock = json.loads((ROOT / "liveroom/static/vendor/package-lock.json").read_text())
    version = lock["packages"]["node_modules/socket.io-client"]["version"]
    with urllib.request.urlopen(server.url + "/static/vendor/socket.io.esm.min.js", timeout=5) as response:
        assert f"Socket.IO v{version}" in response.read(200).decode()
    version = lock["packages"]["node_modules/hls.js"]["version"]
    with urllib.request.urlopen(server.url + "/static/vendor/hls.min.mjs", timeout=5) as response:
        assert f"hls.js version {version}" in response.read().decode()


async def test_the_coupon_rules_query_counts_issued_and_claimed(
    server: ServerProcess, viewers: list[Viewer]
) -> None:
    """What the dashboard's coupon figures read (no browser needed)."""
    room = room_name()
    host = await joined(server, viewers, "h-coupons", room, "host")
    fans = [await joined(server, viewers, f"fan-{i}", room) for i in range(3)]
    rule = (await host.call("coupon.drop", {"room": room, "title": "10% off", "count": 5}))["rule"]
    for fan in fans[:2]:
        assert (await fan.call("coupon.grab", {"room": room, "rule": rule}))["ok"]
    assert (await fans[0].call("coupon.claim", {"room": room, "rule": rule}))["ok"]
    status, body = api(server, "GET", f"/api/rooms/{room}/coupons/rules")
    assert status == 200
    [drop] = [r for r in body["rules"] if r["id"] == rule]
    assert (drop["issued"], drop["claimed"]) == (2, 1)


def test_a_costream_publish_token_is_a_media_guest() -> None:
    from liveroom.media.callers import CallerVerifier  # type: ignore[import-not-found,unused-ignore]

    minted, _ = PublishTokens(SECRET).mint("bob", "r1", 2)
    caller = CallerVerifier(TokenAuthority(SECRET), SECRET).verify(minted)
    assert (caller.user_id, caller.role, caller.room, caller.slot) == ("bob", "guest", "r1", "2")


def test_the_host_goes_live_and_both_viewers_play_it(show: dict[str, Any]) -> None:
    live = part(show, "live")
    assert all(frames >= 10 for frames in live), live


def test_the_console_shows_both_ingest_paths_and_a_failover(show: dict[str, Any]) -> None:
    ingest = part(show, "ingest")
    before = {path["path"]: path for path in ingest["before"]}
    assert {path["active"] for path in before.values()} == {"true", "false"}, ingest  # one on air
    assert all(path["fps"] > 0 and path["kbps"] > 0 for path in before.values()), ingest
    after = {path["path"]: path for path in ingest["after"]}
    assert after["backup"]["active"] == "true", ingest
    assert any("failover primary → backup" in event for event in ingest["events"]), ingest
    assert ingest["framesAfter"] >= ingest["framesBefore"] + 15  # the viewers' video went on


def test_a_viewer_refused_by_whep_plays_the_host_through_hls(show: dict[str, Any]) -> None:
    hls = part(show, "hls")
    assert hls["mse"] is True  # Debian's chromium plays H.264 through Media Source Extensions
    assert hls["player"] == "hls.js"
    assert hls["t2"] - hls["t1"] >= 1.0, hls  # the video plays on (within 8 s on a loaded machine)
    assert hls["levels"] == 1 and hls["pickerHidden"] is True  # one rendition: nothing to pick


def test_a_comment_flies_across_the_other_viewers_video_as_text(show: dict[str, Any]) -> None:
    danmaku = part(show, "danmaku")
    assert "hello from alice 你好" in danmaku["texts"]
    assert danmaku["x2"] < danmaku["x1"] - 20, danmaku  # it moves right to left
    assert "<img src=x onerror=window.__xss=1>" in danmaku["texts"]
    assert danmaku["images"] == 0 and danmaku["xss"] is None
    assert len(set(danmaku["lanes"])) == len(danmaku["lanes"])  # on screen together: separate lanes


def test_a_viewer_reconnects_by_itself_and_resumes_with_since(show: dict[str, Any]) -> None:
    resume = part(show, "resume")
    assert (resume["joins"], resume["fresh"]) == (2, False), resume
    # `missed` is every item after `since`: Bob's comment, and whatever else the room made
    # meanwhile (a media.publisher or media.failover item when the host's paths flap on a
    # loaded machine: why its length varied from run to run). Nothing is shown twice.
    assert all(item["seq"] > resume["since"] for item in resume["items"]), resume
    assert [item["type"] for item in resume["items"]].count("danmaku.message") == 1, resume
    assert resume["shown"] == 1, resume


def test_a_viewer_given_a_real_gap_joins_again_with_since_and_shows_what_it_missed(
    show: dict[str, Any],
) -> None:
    gap = part(show, "gap")
    [dropped] = gap["dropped"]  # the driver dropped one batch frame on its way to Alice's page
    assert "lost in transit" in dropped["texts"], gap
    lost = {seq for seq in dropped["seqs"] if seq is not None}  # (a counter may ride along)
    before, after, rejoin = gap["before"], gap["after"], gap["after"]["lastJoin"]
    assert after["gaps"] == before["gaps"] + 1 and after["joins"] == before["joins"] + 1, gap
    assert rejoin["fresh"] is False and rejoin["since"] < min(lost), gap
    assert lost <= {item["seq"] for item in rejoin["items"]}, gap
    assert gap["shown"] == [1, 1], gap  # both comments, once each


def test_no_page_is_sent_an_item_twice_and_only_a_real_gap_makes_it_rejoin(show: dict[str, Any]) -> None:
    stats = part(show, "integrity")
    assert {page: seen["duplicates"] for page, seen in stats.items()} == {"host": 0, "alice": 0, "bob": 0}
    assert {page: seen["gaps"] for page, seen in stats.items()} == {"host": 0, "alice": 1, "bob": 0}


def test_without_a_token_a_page_shows_the_sign_in_form_alone(show: dict[str, Any]) -> None:
    signin = part(show, "signin")
    hidden = {"main": False, "#status": False, "#online": False}
    assert signin["alone"] == {"visible": {"form.signin": True, **hidden}, "started": False}, signin
    assert signin["refused"]["visible"] == {"form.signin": True, **hidden}, signin  # a bad token: asked again
    assert "expired" in signin["refused"]["error"], signin
    shown = {"main": True, "#status": True, "#online": True}
    assert signin["signedIn"]["visible"] == {"form.signin": False, **shown}, signin
    # His first WHEP was answered no_media (a publisher coming up): the page asked again.
    # (A later media.publisher item, the failover's, may make it ask once more.)
    signed_in = signin["signedIn"]
    seen = f"{json.dumps(signed_in)} {show['http']}"  # a string: pytest shows it whole
    assert signed_in["whepPosts"] >= 2 and signed_in["frames"] >= 10, seen


def test_the_console_header_speaks_of_the_socket_and_the_go_live_card_of_the_stream(
    show: dict[str, Any],
) -> None:
    header = part(show, "header")
    assert header["status"] == "connected" and header["live"].startswith("Live"), header


def test_every_field_of_the_host_console_has_a_label(show: dict[str, Any]) -> None:
    console = part(show, "console")
    assert console["unlabelled"] == [], console
    # Each count says what it counts (people in the room; distinct viewers; WebRTC players).
    assert {"in the room now", "viewers so far"} <= set(console["stats"]), console


def test_the_viewer_page_works_on_a_phone(show: dict[str, Any]) -> None:
    phone = part(show, "phone")
    top, scrolled, later = phone["top"], phone["scrolled"], phone["later"]
    assert top["coarse"] and (top["width"], top["height"]) == (390, 844), phone  # mobile emulation
    assert top["scrollWidth"] <= top["width"], phone  # nothing wider than the screen
    assert (top["screen"]["left"], top["screen"]["width"]) == (0, 390), phone  # the video, full width
    assert top["screen"]["top"] < 60 and top["comment"]["bottom"] <= top["height"], phone
    assert scrolled["scrollY"] > 0 and scrolled["screen"]["top"] == 0, phone  # still in view
    assert later["playing"] and later["time"] >= scrolled["time"] + 1, phone


def test_no_request_of_the_pages_fails_but_whep_answers(show: dict[str, Any]) -> None:
    # WHEP answers are the media plane's (404 before the host or a guest is live, 400
    # no_media while a publisher's tracks are coming up, the driver's 503 to Carol and 400
    # to Dan); nothing
    # else fails: no favicon 404, no WHEP with Dan's refused token (401).
    failed = [line.split(" ", 3) for line in show["http"]]
    # (hls.js, far behind on a loaded machine, may ask for a segment already gone: 404.)
    whep_or_late_segment = [
        line
        for line in failed
        if line[2].startswith("/whep/")
        or (line[:2] == ["404", "GET"] and line[2].startswith("/hls/") and not line[2].endswith(".m3u8"))
    ]
    assert [line for line in failed if line not in whep_or_late_segment] == [], show["http"]
    assert not [line for line in failed if line[0] == "401"], show["http"]


def test_a_poll_shows_on_both_viewers_and_tallies_their_votes(show: dict[str, Any]) -> None:
    poll = part(show, "poll")
    assert poll["totals"] == ["2", "2", "2"]  # Alice, Bob, and the host's dashboard
    assert poll["counts"] == [[1, 1, 0], [1, 1, 0]]


def test_the_sale_countdown_runs_on_the_server_clock(show: dict[str, Any]) -> None:
    sale = part(show, "sale")
    for sample in sale["samples"]:
        # Bob's device clock is 5 s fast; both pages still agree with the server within the
        # sync's own bound (half the best round trip; 100 ms at least, as it is when quiet).
        for page in sample:
            assert page["rtt"] is not None, ("the page's clock never synced", sample)
            assert abs(page["error"]) < max(100, page["rtt"]), sample
    assert sale["disabledBefore"] == [True, True]
    assert sale["earlyBuy"]["error"]["code"] == "not_started"
    # The button opens on the first tick at or after the start on the server clock (a tick
    # every 50 ms: a busy machine runs them late, so only "never early" is a fixed bound).
    assert all(late >= 0 for late in sale["openedLate"]), sale["openedLate"]
    assert sale["results"] == ["ok", "ok"]


def test_a_coupon_drop_pops_up_and_is_claimed(show: dict[str, Any]) -> None:
    assert "claimed" in part(show, "coupon")["alice"]


def test_likes_are_batched(show: dict[str, Any]) -> None:
    likes = part(show, "likes")
    assert likes["shown"] == "10"
    assert 1 <= likes["commands"] < 10


def test_an_accepted_guest_appears_on_the_viewers_pages(show: dict[str, Any]) -> None:
    costream = part(show, "costream")
    assert "Bob" in costream["stage"]
    assert costream["frames"] >= 10, (costream, show["http"])
    assert costream["viewers"] <= 3, costream  # no WHEP session left open behind the page's back


def test_the_dashboards_count_what_was_done(show: dict[str, Any]) -> None:
    dashboard = part(show, "dashboard")
    host, page = dashboard["host"], dashboard["page"]
    # The figures are the server's (`dashboard.stats`): a page opened late shows the peak and
    # the danmaku sent before it opened. Conversion: 2 buyers among 2 viewers.
    expected = {"online": "3", "peak": "3", "viewers": "2", "orders": "2", "gmv": "¥39.80", "buyers": "2"}
    expected |= {"conversion": "100.0%", "issued": "2", "claimed": "1", "likes": "10", "danmaku": "5"}
    assert {key: host[key] for key in expected} == expected
    assert {key: page[key] for key in expected} == expected
    assert "dashboard.stats" in dashboard["hostTypes"]
    assert "dashboard.stats" not in dashboard["viewerTypes"]  # host-only
    assert any(word.startswith("hello ") for word in dashboard["hot"])
    assert any(word.startswith("你好 ") for word in dashboard["hot"])  # CJK bigrams too


def test_a_coupon_rule_from_the_console_grants_on_activity(show: dict[str, Any]) -> None:
    assert part(show, "rule") is True


def test_moderation_from_the_console_pins_and_mutes(show: dict[str, Any]) -> None:
    moderation = part(show, "moderation")
    assert "while you were away" in moderation["pinned"]
    assert moderation["error"].startswith("You are muted") and "left)" in moderation["error"]
    # A console opened late lists what was said before (newest first), the deleted one left out.
    recent = moderation["recent"]
    assert recent["late"] == recent["host"] and len(recent["late"]) == 4, recent
    assert recent["late"][-1] == "Alice hello from alice 你好", recent
    assert not any("<img" in text for text in recent["late"]), recent


def test_the_run_of_show_starts_its_first_step(show: dict[str, Any]) -> None:
    assert part(show, "show") == ["current", "", "", "", ""]


def test_a_danmaku_storm_never_overlaps_and_thins_out(show: dict[str, Any]) -> None:
    storm = part(show, "storm")
    assert storm["overlaps"] == 0, storm
    assert storm["onScreen"] >= 5 and storm["dropped"] > 0 and storm["waiting"] <= 40, storm


# The server-side ladder over a 320x240 H.264 host, with rungs whose pictures all differ in
# size (a rung is never upscaled: the default ladder would make three of them 320x240), and
# no WebRTC viewers at all, so that the viewer page is refused by WHEP and plays HLS.
ladder_server = module_server(
    "ladder_server",
    {
        "LIVEROOM_MEDIA_WORKERS": "1",
        "LIVEROOM_MEDIA_TRANSCODE_LADDER": "true",
        "LIVEROOM_MEDIA_ABR_LADDER": "240p:900000,180p:450000,120p:200000",
        "LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0",
        "LIVEROOM_MEDIA_MAX_VIEWERS_PER_ROOM": "0",
    },
)
RUNGS = {"240p.m3u8": (900_000, 320, 240), "180p.m3u8": (450_000, 240, 180), "120p.m3u8": (200_000, 160, 120)}


def master_variants(url: str) -> dict[str, tuple[int, int, int]]:
    """The master playlist's variants: {uri: (bandwidth, width, height)}; {} before it exists."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    pattern = r"BANDWIDTH=(\d+),RESOLUTION=(\d+)x(\d+).*\n(\S+)"
    return {uri: (int(b), int(w), int(h)) for b, w, h, uri in re.findall(pattern, text)}


async def run_viewer_driver(
    server: ServerProcess, driver: Path, name: str, room: str, user: str
) -> dict[str, Any]:
    """A one-viewer driver (`hls_levels.mjs`, `hls_audio.mjs`) as a child process; the event
    loop (and the aiortc host on it) runs on."""
    args = [room, token(user.lower(), name=user)]
    result, _ = await run_page_driver(driver.with_name(name), server, args, 90)
    assert result["errors"] == [], (result["errors"], server.log()[-3000:])
    return result


async def test_hls_js_plays_every_rung_of_the_ladder_and_switches_between_them(
    ladder_server: ServerProcess, driver: Path
) -> None:
    room = f"rungs-{uuid.uuid4().hex[:8]}"
    host = await publish(ladder_server.url, room, token("host-rungs", "host"), "video/H264")
    master = f"{ladder_server.url}/hls/{room}/master.m3u8"
    try:
        # hls.js reads a live master playlist once: the page opens when it lists every rung.
        await wait_until(lambda: len(master_variants(master)) == len(RUNGS), 15, "every rung in master.m3u8")
        assert master_variants(master) == RUNGS
        seen = await run_viewer_driver(ladder_server, driver, "hls_levels.mjs", room, "Dave")
    finally:
        await host.end()
    levels = seen["levels"]
    assert levels["player"] == "hls.js"
    # Every variant is a level (hls.js sorts them lowest bitrate first), with its size.
    by_uri = {level["url"].rsplit("/", 1)[-1]: level for level in levels["levels"]}
    assert {uri: (v["bitrate"], v["width"], v["height"]) for uri, v in by_uri.items()} == RUNGS
    # The page's picker offers Auto and each of them.
    names = [f"{v['height']}p · {v['bitrate'] // 1000} kb/s" for v in levels["levels"]]
    assert levels["pickerShown"] and [o["text"] for o in levels["options"][1:]] == names, levels
    assert levels["options"][0]["value"] == "-1" and levels["options"][0]["text"].startswith("Auto")
    switches = seen["switches"]
    assert sorted(s["index"] for s in switches) == list(range(len(RUNGS))), switches
    for switch in switches:
        index, before, at, after = switch["index"], switch["before"], switch["at"], switch["after"]
        level = levels["levels"][index]
        assert before["level"] != index  # a real switch every time
        assert index in switch["fragLevels"] and index in switch["switchedTo"], switch  # its fragments
        assert (at["width"], at["height"]) == (level["width"], level["height"]), switch  # its pictures
        assert (after["width"], after["height"]) == (level["width"], level["height"]), switch
        assert (after["level"], after["auto"], after["picker"]) == (index, False, str(index)), switch
        # Playback went on through the switch, and on at that level.
        assert before["time"] <= at["time"] and after["time"] >= at["time"] + 0.5, switch
        assert after["frames"] >= at["frames"] + 5, switch
        assert before["counter"] < at["counter"] < after["counter"], switch  # the host's pictures, live
    auto = seen["auto"]
    assert auto["after"]["auto"] and auto["after"]["picker"] == "-1", auto
    assert auto["after"]["time"] >= auto["at"]["time"] + 0.5, auto


# A room with no WebRTC viewers (the viewer page falls back to HLS) and 1 s segments.
hls_server = module_server(
    "hls_server",
    {
        "LIVEROOM_MEDIA_WORKERS": "1",
        "LIVEROOM_MEDIA_HLS_SEGMENT_S": "1.0",
        "LIVEROOM_MEDIA_MAX_VIEWERS_PER_ROOM": "0",
    },
)
TONE_HZ = 440.0


def master_text(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


async def test_the_hls_fallback_plays_the_rooms_audio_with_the_video(
    hls_server: ServerProcess, driver: Path
) -> None:
    room = f"sound-{uuid.uuid4().hex[:8]}"
    host = await publish(hls_server.url, room, token("host-sound", "host"), "video/H264", tone_hz=TONE_HZ)
    master = f"{hls_server.url}/hls/{room}/master.m3u8"
    try:
        # hls.js reads a live master playlist once: the page opens when it lists the audio.
        await wait_until(lambda: 'AUDIO="aac"' in master_text(master), 15, "the AAC rendition in master.m3u8")
        seen = await run_viewer_driver(hls_server, driver, "hls_audio.mjs", room, "Erin")
    finally:
        await host.end()
    audio = seen["audio"]
    before, after = audio["before"], audio["after"]
    assert audio["player"] == "hls.js"
    # hls.js took the master's one AAC rendition (EXT-X-MEDIA) as the audio of every level.
    [track] = audio["tracks"]
    assert (track["groupId"], track["name"], track["codec"]) == ("aac", "program", "mp4a.40.2"), audio
    assert track["url"].endswith(f"/hls/{room}/audio.m3u8"), audio
    assert audio["track"] == 0 and audio["levelCodecs"] == ["mp4a.40.2"], audio
    # Its playlist and fragments load, Chromium decodes it, and the video plays on beside it.
    assert after["audioPlaylists"] >= 1 and after["audioFrags"] >= before["audioFrags"] + 2, audio
    assert after["audioBytes"] > before["audioBytes"] > 0, audio
    assert after["time"] >= before["time"] + 1 and after["frames"] >= before["frames"] + 10, audio
    # With *Sound on*, what the element plays is the host's tone (FFT bins of 11.7 Hz).
    assert after["muted"] is False
    heard = audio["heard"][-3:]
    assert all(level["rms"] > 0.05 and abs(level["peakHz"] - TONE_HZ) < 25 for level in heard), audio


# Issue 20 on the pages: a server of its own (lucky bags of 10 s allowed), its own driver.
shop_server = module_server(
    "shop_server", {"LIVEROOM_MEDIA_WORKERS": "1", "LIVEROOM_PLUGINS_LUCKYBAG_MIN_DURATION_S": "5"}
)


async def test_the_viewer_sees_the_pinned_card_and_the_lucky_bag_the_console_drives(
    shop_server: ServerProcess, driver: Path
) -> None:
    """`tests/browser/shop.mjs` (about 15 s: the bag's 10 s countdown): products listed and one
    pinned on the console, the viewer's click counted on the console's dashboard, a lucky bag
    counted down, entered and drawn on both pages."""
    room = f"shop-{uuid.uuid4().hex[:8]}"
    tokens = [token("host-shop", "host", name="Host"), token("alice", name="Alice")]
    seen, stderr = await run_page_driver(driver.with_name("shop.mjs"), shop_server, [room, *tokens], 200)
    assert seen["errors"] == [], (seen["errors"], stderr.decode()[-2000:], shop_server.log()[-3000:])
    pinned = seen["pinned"]
    assert pinned == {
        "title": "Tea set",
        "price": "¥19.90",
        "listed": 2,
        "opened": "https://shop.example/checkout/tea-1",
    }
    assert seen["dashboard_clicks"] == 1
    countdown = seen["countdown"]
    assert 0 < countdown["remaining_ms"] <= 10_000 and countdown["text"].startswith("Draw in 0:")
    assert "draw in" in countdown["host_countdown"] or "drawing" in countdown["host_countdown"]
    drawn = seen["drawn"]
    assert drawn["winners"] == ["Alice"] and "You won" in drawn["viewer"] and len(drawn["seed"]) == 64
    assert "won by Alice" in drawn["host"]
