"""The pages liveroom serves itself: the viewer room, the host console and the dashboard.

Plain HTML, CSS and JavaScript modules under `liveroom/static/`, no build step. The room
id is read by the page from its own path; the token comes from the URL fragment
(`#token=...`) or a small form, so it never reaches a server log. See docs/pages.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

__all__ = ["STATIC_DIR", "add_page_routes", "page_links"]

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {"room": "viewer.html", "host": "host.html", "dashboard": "dashboard.html"}


def add_page_routes(app: web.Application) -> None:
    for prefix, filename in PAGES.items():
        app.router.add_get(f"/{prefix}/{{room}}", _page(STATIC_DIR / filename))
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    # The pages name /static/favicon.svg; browsers and tools that ask for /favicon.ico get it too.
    app.router.add_get("/favicon.ico", _favicon)


async def _favicon(request: web.Request) -> web.StreamResponse:
    icon = STATIC_DIR / "favicon.svg"
    return web.FileResponse(icon, headers={"Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"})


def _page(path: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(path, headers={"Cache-Control": "no-cache"})
        response.headers["Content-Security-Policy"] = CSP
        return response

    return handler


# Everything the pages load comes from this server: no inline script, no CDN. Images alone
# may come from any https origin: the showcase's product pictures are the merchant's.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'"
)


def page_links(base_url: str, room: str, role: str, token: str) -> list[str]:
    """Ready-made links for `liveroom token --links`: the token rides in the fragment."""
    pages = ["room"] if role == "viewer" else ["host", "dashboard", "room"]
    names = {"room": "viewer", "host": "host console", "dashboard": "dashboard"}
    base = base_url.rstrip("/")
    return [f"{names[page]}: {base}/{page}/{quote(room, safe='')}#token={token}" for page in pages]
