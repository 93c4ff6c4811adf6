"""The auction card and the gifts on liveroom's pages, in headless Chromium: the host console
drives each, two viewers bid and give (`tests/browser/auction_gift.mjs`), with a real HTTP
wallet in this test's event loop. Skipped as tests/test_pages.py is without chromium."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from browser_support import page_driver, run_page_driver
from support import ServerProcess, token
from wallet_support import WalletServer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def driver() -> Path:
    return page_driver("auction_gift.mjs")


async def test_the_pages_show_the_auction_and_the_gifts(tmp_path: Path, driver: Path) -> None:
    wallet = await WalletServer().start()
    env = {
        "LIVEROOM_PLUGINS_GIFT_WALLET_URL": wallet.url,
        "LIVEROOM_PLUGINS_GIFT_PK_SETTLE_MS": "300",
        "LIVEROOM_MEDIA_WORKERS": "1",
    }
    server = ServerProcess(tmp_path, env)
    await asyncio.to_thread(server.start)  # the wallet answers meanwhile
    room, opponent = f"lot-{uuid.uuid4().hex[:6]}", f"rival-{uuid.uuid4().hex[:6]}"
    tokens = [token("host1", "host", name="Host"), token("alice", name="Alice"), token("bob", name="Bob")]
    try:
        result, stderr = await run_page_driver(driver, server, [room, *tokens, opponent], 200)
    finally:
        server.stop()
        await wallet.stop()
    assert result["errors"] == [], (result["errors"], stderr.decode()[-2000:])

    auction = result["auction"]
    assert auction["opened"]["price"] == "" and auction["opened"]["leader"] == ""
    assert auction["afterAlice"]["price"] == "10000" and auction["afterBob"]["price"] == "11000"
    # Each bid was in the anti-snipe window: the end moved later with each.
    assert auction["opened"]["endsAt"] < auction["afterAlice"]["endsAt"] <= auction["afterBob"]["endsAt"]
    assert auction["alice"]["result"].startswith("Sold to Bob at ¥110.00")
    assert auction["host"]["leader"] == "bob" and auction["host"]["countdown"] == "Ended"

    gifts = result["gifts"]
    assert sorted(gifts["feed"]) == ["heart", "rose"] and gifts["board"][0].startswith("1. Alice")
    assert "¥11.00" in gifts["totals"]
    assert wallet.debits() == 3  # rose, heart, rocket: each once

    pk = result["pk"]
    assert "500.00" in pk["during"]
    assert pk["winners"] == [room, room, room] and pk["clock"] == f"Winner: {room}"
