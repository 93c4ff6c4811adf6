"""The auction card and the gifts on liveroom's pages, in headless Chromium: the host console
drives each, two viewers bid and give (`tests/browser/auction_gift.mjs`), with a real HTTP
wallet in this test's event loop. Skipped as tests/test_pages.py is without chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess, token
from test_pages import ARTIFACTS, BROWSER_DIR, CHROMIUM
from wallet_support import WalletServer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def driver() -> Path:
    """As tests/test_pages.py's: skipped without chromium, node and npm."""
    if CHROMIUM is None or shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Debian's chromium, node and npm")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        command = ["npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix", str(BROWSER_DIR)]
        if subprocess.run(command, timeout=300, check=False).returncode != 0:
            pytest.skip("npm could not install playwright-core")
    return BROWSER_DIR / "auction_gift.mjs"


async def test_the_pages_show_the_auction_and_the_gifts(tmp_path: Path, driver: Path) -> None:
    assert CHROMIUM is not None
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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = [str(driver), server.url, room, *tokens, opponent, CHROMIUM, str(ARTIFACTS)]
    try:
        child = await asyncio.create_subprocess_exec(
            "node", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=BROWSER_DIR
        )
        try:
            stdout, stderr = await asyncio.wait_for(child.communicate(), 200)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
        lines = stdout.decode().strip().splitlines()
        assert child.returncode == 0 and lines, (stdout[-2000:], stderr[-2000:], server.log()[-2000:])
        result: dict[str, Any] = json.loads(lines[-1])
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
