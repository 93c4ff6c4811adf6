"""The page drivers of tests/browser (playwright-core driving Debian's chromium) for the pages tests.

A driver is a node script taking the server's URL, its own arguments (a room, tokens...), the
chromium binary and the folder for its screenshots; it prints what it saw as JSON, last line."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import ServerProcess

__all__ = ["ARTIFACTS", "BROWSER_DIR", "CHROMIUM", "page_driver", "run_page_driver"]

ROOT = Path(__file__).resolve().parent.parent
BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "test-artifacts" / "pages"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def page_driver(name: str) -> Path:
    """The driver `name`; the test is skipped without chromium, node and npm (`npm ci` on first use)."""
    if CHROMIUM is None or shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs Debian's chromium, node and npm")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        command = ["npm", "ci", "--silent", "--no-audit", "--no-fund", "--prefix", str(BROWSER_DIR)]
        if subprocess.run(command, timeout=300, check=False).returncode != 0:
            pytest.skip("npm could not install playwright-core")
    return BROWSER_DIR / name


async def run_page_driver(
    script: Path, server: ServerProcess, args: list[str], timeout_s: float
) -> tuple[dict[str, Any], bytes]:
    """Run a driver against `server` as a child process (this event loop, and what runs on it,
    goes on meanwhile): what it saw, and its stderr. A driver that fails fails the test with
    the ends of its output and of the server's log."""
    assert CHROMIUM is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    command = [str(script), server.url, *args, CHROMIUM, str(ARTIFACTS)]
    child = await asyncio.create_subprocess_exec(
        "node", *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=BROWSER_DIR
    )
    try:
        stdout, stderr = await asyncio.wait_for(child.communicate(), timeout_s)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    lines = stdout.decode().strip().splitlines()
    assert child.returncode == 0 and lines, (stdout[-2000:], stderr[-2000:], server.log()[-2000:])
    seen: dict[str, Any] = json.loads(lines[-1])
    return seen, stderr
