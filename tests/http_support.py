"""A local HTTP endpoint standing for a merchant's backend: what liveroom POSTs out (order
webhooks, business events, wallet debits) lands on a real aiohttp server on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from support import free_port

__all__ = ["post_endpoint"]


@contextlib.asynccontextmanager
async def post_endpoint(
    path: str, handle: Callable[[web.Request], Awaitable[web.Response]]
) -> AsyncIterator[str]:
    """POST `path` answered by `handle` on a free port of 127.0.0.1, until the block ends;
    yields its URL."""
    port = free_port()
    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        await runner.cleanup()
