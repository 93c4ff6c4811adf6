"""The host console's cameras in headless Chromium (`tests/browser/cameras.mjs`): two aiortc
cameras publish into one room, the console lists them with the main one on air, and its
"Cut to" button puts the close camera on the program a WHEP viewer decodes.

Skipped when chromium, node or npm is missing; `npm ci --prefix tests/browser` on first use.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from browser_support import page_driver, run_page_driver
from media_support import LOW, publish, wait_until
from support import ServerProcess, token
from test_media_cameras_e2e import pictures, publish_close
from test_media_failover_e2e import WAIT_S, play_timed

pytestmark = pytest.mark.timeout(240)


async def test_the_console_lists_the_cameras_and_cuts_to_one(server: ServerProcess) -> None:
    driver = page_driver("cameras.mjs")
    room = f"cams-{uuid.uuid4().hex[:8]}"
    host = token("host-cams", "host")
    wide = await publish(server.url, room, host, query="?camera=wide")
    close = await publish_close(server.url, room, host)
    viewer = await play_timed(server.url, room, "cams-viewer")
    try:
        await wait_until(lambda: len(viewer.video) >= 30, WAIT_S, "video from the wide camera")
        started = asyncio.get_running_loop().time()
        seen, _ = await run_page_driver(driver, server, [room, host], 120)
        assert seen["errors"] == [] and seen["http"] == [], seen
        assert [(c["name"], c["onAir"], c["disabled"]) for c in seen["listed"]] == [
            ("wide", True, True),
            ("close", False, False),
        ], seen["listed"]
        cut = seen["cut"]
        assert [(c["name"], c["onAir"], c["button"]) for c in cut["cameras"]] == [
            ("wide", False, "Cut to"),
            ("close", True, "On air"),
        ], cut
        assert cut["error"] == "" and any("(cut)" in event for event in cut["events"]), cut
        await wait_until(lambda: len(pictures(viewer, started, close=True)) >= 15, WAIT_S, "the close camera")
        assert viewer.video[-1][1] >= LOW and viewer.ended == []
    finally:
        await viewer.close()
        await close.close()
        await wide.end()
