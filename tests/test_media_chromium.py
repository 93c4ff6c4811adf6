"""Headless Chromium publishes through WHIP from liveroom's own page; a second Chromium
page plays it through WHEP, and its getStats() shows frames decoded.

Needs Debian's `chromium` and npm's `playwright-core` (installed on first use into
~/.cache/liveroom/node); skipped when either is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from media_support import scrape
from support import ServerProcess, token

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE_DIR = Path.home() / ".cache" / "liveroom" / "node"

DRIVER = r"""
const { chromium } = require("playwright-core");
const [base, room, hostToken, viewerToken, executablePath] = process.argv.slice(2);
(async () => {
  const browser = await chromium.launch({executablePath, args: [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
    "--disable-features=WebRtcHideLocalIpsWithMdns"]});
  try {
    const publisher = await (await browser.newContext()).newPage();
    await publisher.goto(base + "/media/demo");
    const published = await publisher.evaluate(([r, t]) => whip(r, t), [room, hostToken]);
    const viewer = await (await browser.newContext()).newPage();
    await viewer.goto(base + "/media/demo");
    const played = await viewer.evaluate(([r, t]) => whep(r, t), [room, viewerToken]);
    let stats = {frames: 0};
    for (let i = 0; i < 100 && stats.frames < 30; i++) {
      await new Promise(r => setTimeout(r, 150));
      stats = await viewer.evaluate(() => framesDecoded());
    }
    console.log(JSON.stringify({published, played, ...stats}));
  } finally {
    await browser.close();
  }
})().catch(error => { console.log(JSON.stringify({error: String(error)})); process.exit(1); });
"""


@pytest.fixture(scope="module")
def playwright() -> Path:
    if CHROMIUM is None or shutil.which("npm") is None:
        pytest.skip("needs Debian's chromium and npm")
    if not (NODE_DIR / "node_modules" / "playwright-core").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--silent", "--no-audit", "--no-fund", "playwright-core@1"]
        if subprocess.run(command, cwd=NODE_DIR, timeout=300, check=False).returncode != 0:
            pytest.skip("npm could not install playwright-core")
    driver = NODE_DIR / "whip_whep_driver.js"
    driver.write_text(DRIVER)
    return driver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("media-chromium"), {"LIVEROOM_MEDIA_WORKERS": "1"})
    yield process.start()
    process.stop()


def test_chromium_publishes_with_whip_and_plays_with_whep(server: ServerProcess, playwright: Path) -> None:
    room = f"c-{uuid.uuid4().hex[:8]}"
    assert CHROMIUM is not None
    arguments = [server.url, room, token("chromium-host", "host"), token("chromium-fan"), CHROMIUM]
    run = subprocess.run(
        ["node", str(playwright), *arguments], capture_output=True, text=True, timeout=60, check=False
    )
    result = json.loads(run.stdout.strip().splitlines()[-1]) if run.stdout.strip() else {}
    assert "error" not in result and run.returncode == 0, (result, run.stderr[-2000:], server.log()[-2000:])
    assert result["published"].startswith(f"/whip/{room}/") and result["played"].startswith(f"/whep/{room}/")
    assert result["frames"] >= 30, result
    assert result["codec"] in ("video/VP8", "video/H264"), result
    assert scrape(server.url)['liveroom_media_codec_instances_total{role="encoder"}'] == 0
