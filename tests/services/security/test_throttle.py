"""The failed-authentication limit and the per-key quota on their own (no database, no
HTTP; tests/api/test_auth_throttle.py goes through the agent)."""

from __future__ import annotations

import pytest

from app.services.security.throttle import (
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
