"""The HTTP API as the load tools call it: one JSON request with a bearer token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

__all__ = ["api"]


def api(url: str, token: str, method: str, path: str, body: Any = None, *, retry_for_s: float = 30.0) -> Any:
    """Sends one request and returns its JSON body. A 503 (`unavailable`: on a cluster, a
    room whose owner was just killed answers so until the lease runs out) is retried after
    its Retry-After, as a client would, for up to `retry_for_s`."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    give_up_at = time.monotonic() + retry_for_s
    while True:
        request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() >= give_up_at:
                raise
            time.sleep(min(float(error.headers.get("Retry-After") or 0.5), 1.0))
