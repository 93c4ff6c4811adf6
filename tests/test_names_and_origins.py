"""Names (room ids, path parameters) and origins, without a server: one full-match rule for
names on the wire and in HTTP, and origins parsed as URLs."""

from __future__ import annotations

import re
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from liveroom.errors import BadRequest
from liveroom.origins import OriginPolicy, parse_origin
from liveroom.protocol import NAME_PATTERN, JoinPayload, decode_payload, is_name
from liveroom.web import _metrics_refusal


@pytest.mark.parametrize("name", ["az1", "a", "a" * 64, "room-1.x:y_z"])
def test_names(name: str) -> None:
    assert is_name(name) and decode_payload(JoinPayload, {"room": name}).room == name


@pytest.mark.parametrize("name", ["", "a" * 65, "az1\n", "az1\r\n", "\naz1", "a b", "r/1", "é", "az1\x00"])
def test_not_names(name: str) -> None:
    assert not is_name(name)
    with pytest.raises(BadRequest):
        decode_payload(JoinPayload, {"room": name})


def test_the_name_pattern_is_also_a_json_schema_pattern() -> None:
    # ECMA-262 has no \A or \Z: the OpenAPI document's pattern must be one JavaScript reads.
    assert "\\A" not in NAME_PATTERN and "\\Z" not in NAME_PATTERN
    assert re.search(NAME_PATTERN, "az1") and not re.search(NAME_PATTERN, "az1\n")


@pytest.mark.parametrize(
    ("origin", "parsed"),
    [
        ("http://localhost:8080", ("http", "localhost", 8080)),
        ("https://Example.COM", ("https", "example.com", 443)),
        ("http://[::1]:3000", ("http", "::1", 3000)),
        ("http://example.com/", ("http", "example.com", 80)),
        ("http://127.0.0.1:8080.evil.example", None),
        ("http://localhost:99999", None),
        ("http://localhost:0", None),
        ("http://user@localhost", None),
        ("http://localhost/path", None),
        ("http://localhost?x=1", None),
        ("ftp://localhost", None),
        ("null", None),
        ("", None),
    ],
)
def test_origins_are_parsed_as_urls(origin: str, parsed: tuple[str, str, int] | None) -> None:
    assert parse_origin(origin) == parsed


def test_the_default_policy_allows_the_own_origin_and_local_hosts_only() -> None:
    policy = OriginPolicy(())
    assert policy.allows("http://localhost:5173", "live.example:8080")
    assert policy.allows("http://live.example:8080", "live.example:8080")
    assert policy.allows("https://live.example", "live.example")  # the default port on both sides
    assert not policy.allows("http://live.example:9090", "live.example:8080")
    assert not policy.allows("http://127.0.0.1:8080.evil.example", "live.example:8080")
    assert not policy.allows("http://localhost:99999", "live.example:8080")
    assert not policy.allows("http://127.0.0.1.evil.example", "live.example:8080")


def test_configured_origins_are_compared_parsed() -> None:
    policy = OriginPolicy(("https://Shop.example/", "http://localhost:3000"))
    assert policy.allows("https://shop.example", None) and policy.allows("https://shop.example:443", None)
    assert policy.allows("http://localhost:3000", None)
    assert not policy.allows("http://localhost:3001", None)
    assert not policy.allows("https://shop.example.evil", None)
    assert OriginPolicy(("*",)).allows("https://anything.example", None)


def _request(peer: str, authorization: str | None = None) -> object:
    transport = mock.Mock()  # aiohttp's own test request needs a transport for its peer
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 1234) if name == "peername" else default
    )
    headers = {"Authorization": authorization} if authorization else {}
    return make_mocked_request("GET", "/metrics", headers=headers, transport=transport)


def test_metrics_are_for_loopback_or_a_bearer_token() -> None:
    assert _metrics_refusal("", False, _request("127.0.0.1")) is None  # type: ignore[arg-type]
    assert _metrics_refusal("", False, _request("::1")) is None  # type: ignore[arg-type]
    refused = _metrics_refusal("", False, _request("203.0.113.5"))  # type: ignore[arg-type]
    assert refused is not None and refused.status == 403
    assert _metrics_refusal("", True, _request("203.0.113.5")) is None  # type: ignore[arg-type]
    secret = "s3cret"
    assert _metrics_refusal(secret, False, _request("203.0.113.5", f"Bearer {secret}")) is None  # type: ignore[arg-type]
    denied = _metrics_refusal(secret, False, _request("127.0.0.1", "Bearer wrong"))  # type: ignore[arg-type]
    assert denied is not None and denied.status == 401
