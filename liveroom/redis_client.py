"""Redis clients as liveroom uses them: bounded pools, retries on a dropped connection."""

from __future__ import annotations

from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

__all__ = ["MAX_IN_FLIGHT", "connect_redis", "retry_options"]

# Redis commands one store or broker keeps in flight at once (and its pool's size).
MAX_IN_FLIGHT = 64


def connect_redis(url: str, cluster: bool, max_connections: int = MAX_IN_FLIGHT) -> Redis | RedisCluster:
    """A client whose pool waits for a free connection instead of failing under a burst, and
    retries a command a few times on a dropped connection (pooled connections go stale when
    Redis restarts; every liveroom write is idempotent or a counter)."""
    retry = {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        "retry_on_error": [redis_errors.ConnectionError, redis_errors.TimeoutError],
    }
    if cluster:
        return RedisCluster.from_url(url, max_connections=max_connections, **retry)
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=5, **retry)
    return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


def retry_options() -> dict[str, Any]:
    """Retry a command a few times, with backoff, when its connection drops."""
    return {
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        "retry_on_error": [redis_errors.ConnectionError, redis_errors.TimeoutError],
    }
