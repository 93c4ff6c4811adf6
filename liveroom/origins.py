"""Which browser origins may talk to the server: CORS, the Engine.IO origin check.

An `Origin` is parsed with a real URL parser (yarl, aiohttp's own) into scheme, host and
port, and compared as such: string tests let `http://127.0.0.1:8080.evil.example` pass
as 127.0.0.1 and `http://localhost:99999` as localhost. Anything that is not a plain
`http(s)://host[:port]` (a path, user info, a query, port 0 or past 65535) is refused.
"""

from __future__ import annotations

from yarl import URL

__all__ = ["LOCAL_HOSTS", "OriginPolicy", "parse_origin"]

LOCAL_HOSTS = frozenset(("localhost", "127.0.0.1", "::1"))
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host (lower case), port


def parse_origin(origin: str) -> Origin | None:
    """(scheme, host, port) of a well-formed web origin, else None."""
    try:
        url = URL(origin)
        port = url.port  # raises for what cannot be a port
    except ValueError:
        return None
    scheme, host = url.scheme, url.host
    if scheme not in _DEFAULT_PORTS or not host or port is None or not 0 < port < 65536:
        return None
    if url.user is not None or url.password is not None or url.raw_query_string or url.raw_fragment:
        return None
    if url.raw_path not in ("", "/"):
        return None
    return scheme, host.lower(), port


def _host_header(host: str, scheme: str) -> tuple[str, int] | None:
    """The Host header's host and port (the scheme's default when it names none)."""
    parsed = parse_origin(f"{scheme}://{host}")
    return None if parsed is None else (parsed[1], parsed[2])


class OriginPolicy:
    """Configured origins if any (`*` for all); otherwise the server's own origin (the Host
    it was reached at) and localhost / 127.0.0.1 / [::1] on any port."""

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self._any = "*" in allowed
        self._allowed = {parsed for origin in allowed if (parsed := parse_origin(origin)) is not None}

    def allows(self, origin: str, host: str | None) -> bool:
        if self._any:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if self._allowed:
            return parsed in self._allowed
        scheme, origin_host, port = parsed
        if origin_host in LOCAL_HOSTS:
            return True
        return host is not None and _host_header(host, scheme) == (origin_host, port)
