"""The failed-authentication limit and the per-key quota on their own (no database, no
HTTP; tests/api/test_auth_throttle.py goes through the agent)."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis.asyncio

from app.services.security.throttle import (
    REDIS_CLIENT_NAME,
    AuthThrottle,
    RateLimited,
    TooManyFailedAuthentications,
)


async def test_an_address_is_refused_after_its_failures_and_others_are_not() -> None:
    throttle = AuthThrottle(failures_per_minute=3, key_rate_limit=None)
    for _ in range(3):
        await throttle.check_address("10.0.0.7")
        await throttle.failed("10.0.0.7")
    with pytest.raises(TooManyFailedAuthentications) as refused:
        await throttle.check_address("10.0.0.7")
    assert 1 <= refused.value.retry_after_s <= 60
    assert refused.value.response_headers() == {"Retry-After": str(refused.value.retry_after_s)}
    assert "10.0.0.7" in refused.value.detail
    await throttle.check_address("10.0.0.8")
    for _ in range(100):
        await throttle.spend(1, "line-1")  # no quota set


async def test_zero_failures_per_minute_turns_the_limit_off() -> None:
    throttle = AuthThrottle(failures_per_minute=0, key_rate_limit=None)
    for _ in range(50):
        await throttle.failed("10.0.0.7")
    await throttle.check_address("10.0.0.7")


async def test_a_key_over_its_quota_is_rate_limited_alone() -> None:
    throttle = AuthThrottle(failures_per_minute=10, key_rate_limit="2/hour")
    await throttle.spend(1, "line-1")
    await throttle.spend(1, "line-1")
    with pytest.raises(RateLimited) as limited:
        await throttle.spend(1, "line-1")
    assert 3500 <= limited.value.retry_after_s <= 3600
    assert "'line-1'" in limited.value.detail
    await throttle.spend(2, "line-2")


REDIS_URL = "async+redis://127.0.0.1:6379/0"


def _redis_answers() -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


needs_redis = pytest.mark.skipif(
    not _redis_answers(), reason="no Redis server on 127.0.0.1:6379 (CI machines have one)"
)


@needs_redis
async def test_processes_sharing_a_redis_store_count_together() -> None:
    """Two throttles stand for two agent processes with one THROTTLE_STORAGE_URL (a real
    Redis server): the failures of both count against one limit."""
    address = f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    first = AuthThrottle(failures_per_minute=4, key_rate_limit=None, storage_url=REDIS_URL)
    second = AuthThrottle(failures_per_minute=4, key_rate_limit=None, storage_url=REDIS_URL)
    for throttle in (first, second, first, second):
        await throttle.check_address(address)
        await throttle.failed(address)
    assert await _throttle_connections() > 0
    for throttle in (first, second):
        with pytest.raises(TooManyFailedAuthentications):
            await throttle.check_address(address)
        await throttle.close()
    assert await _throttle_connections() == 0  # close() closed every connection


async def _throttle_connections() -> int:
    """Connections open on the Redis server that name themselves as the throttle's."""
    client = redis.asyncio.Redis.from_url(REDIS_URL.removeprefix("async+"))
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return sum(1 for c in clients if c.get("name") == REDIS_CLIENT_NAME)


async def test_an_unreachable_store_loosens_the_limit_to_the_process_and_fails_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens on port 1: every count falls back to this process's memory, so the
    limit still holds per process, and the outage is logged once."""
    throttle = AuthThrottle(
        failures_per_minute=2, key_rate_limit="3/hour", storage_url="async+redis://127.0.0.1:1"
    )
    with caplog.at_level(logging.INFO, logger="app.services.security.throttle"):
        for _ in range(2):
            await throttle.check_address("10.0.0.9")
            await throttle.failed("10.0.0.9")
        with pytest.raises(TooManyFailedAuthentications):
            await throttle.check_address("10.0.0.9")
        for _ in range(3):
            await throttle.spend(7, "line-7")
        with pytest.raises(RateLimited):
            await throttle.spend(7, "line-7")
    await throttle.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["throttle store unreachable; counting in this process until it answers"]


def test_an_unknown_throttle_store_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from app.config import Settings

    with pytest.raises(ValidationError, match="THROTTLE_STORAGE_URL"):
        Settings(throttle_storage_url="mongodb://127.0.0.1")
    assert Settings(throttle_storage_url="").throttle_storage_url == "memory://"
