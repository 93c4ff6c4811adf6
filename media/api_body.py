"""The small JSON bodies of the host's media API (`{"url": ...}`, `{"camera": ...}`)."""

from __future__ import annotations

import json

from aiohttp import web

from liveroom.errors import BadRequest

__all__ = ["MAX_BODY", "string_field"]

MAX_BODY = 4096


async def string_field(request: web.Request, field: str, example: str) -> str:
    """`field` of the request's JSON object body, a string; `BadRequest` naming `example`
    (the body a client should have sent) otherwise, or past `MAX_BODY` bytes."""
    body = await request.read()
    if len(body) > MAX_BODY:
        raise BadRequest("the body is too large")
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise BadRequest(f"the body must be JSON: {example}") from None
    value = data.get(field) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise BadRequest(f"the body must be JSON: {example}")
    return value
