"""Throttling of guesses and per-key request quotas, with the `limits` library.

Two moving-window limits, kept in this process's memory (`limits.aio.storage.MemoryStorage`):

* failed authentications (wrong API keys, in a header or the sign-in form) per client
  address: AUTH_FAILURES_PER_MINUTE. Once an address is over it, every request from it
  that presents a key is answered 429 before the key is looked up or hashed, so a
  throttled guess costs microseconds. Successful authentications are not counted.
* requests per key (key header or web session): KEY_RATE_LIMIT, in the `limits` string
  syntax (`600/minute`, `20/second`); unset, no quota.

With N agent processes each keeps its own counts, so the bounds are N times the settings.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from app.errors import AgentError


class Throttled(AgentError):
    """A 429 whose `Retry-After` header says when a request may succeed again."""

    status_code = 429
    error = "throttled"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def response_headers(self) -> dict[str, str]:
        """`Retry-After`: whole seconds until a request may succeed (RFC 9110 §10.2.3)."""
        return {"Retry-After": str(self.retry_after_s)}


class TooManyFailedAuthentications(Throttled):
    """Too many wrong API keys came from this client address; wait `Retry-After` seconds."""

    error = "too_many_failed_authentications"


class RateLimited(Throttled):
    """The key has used its request quota (KEY_RATE_LIMIT); wait `Retry-After` seconds."""

    error = "rate_limited"


def parse_rate(text: str) -> RateLimitItem:
    """The limit written as `text` (`600/minute`, `10 per second`...).

    Raises:
        ValueError: `text` is not in the `limits` string syntax.
    """
    return parse(text)


class AuthThrottle:
    """The failed-authentication limit per client address and the request quota per key."""

    def __init__(self, failures_per_minute: int, key_rate_limit: str | None) -> None:
        """`failures_per_minute`: 0 turns the limit off; `key_rate_limit`: None, no quota."""
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        per_minute = failures_per_minute
        self._failures = RateLimitItemPerMinute(per_minute) if per_minute else None
        self._quota = parse_rate(key_rate_limit) if key_rate_limit else None

    async def _retry_after_s(self, item: RateLimitItem, *identifiers: str) -> int:
        """Whole seconds until the window has room again (at least 1)."""
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def check_address(self, address: str) -> None:
        """Let a key from `address` be checked, unless the address is over the limit.

        Raises:
            TooManyFailedAuthentications: AUTH_FAILURES_PER_MINUTE wrong keys came from
                `address` within the last minute.
        """
        if self._failures is None or await self._limiter.test(self._failures, "auth", address):
            return
        wait_s = await self._retry_after_s(self._failures, "auth", address)
        raise TooManyFailedAuthentications(
            f"too many wrong API keys from {address} (more than {self._failures.amount} a"
            f" minute); try again in {wait_s} s with a valid key",
            retry_after_s=wait_s,
        )

    async def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        if self._failures is not None:
            await self._limiter.hit(self._failures, "auth", address)

    async def spend(self, key_id: int, key_name: str | None) -> None:
        """Count one request of key `key_id` against KEY_RATE_LIMIT.

        Raises:
            RateLimited: the key has used its quota in the current window.
        """
        if self._quota is None or await self._limiter.hit(self._quota, "key", str(key_id)):
            return
        wait_s = await self._retry_after_s(self._quota, "key", str(key_id))
        raise RateLimited(
            f"the key {key_name!r} is over its quota of {self._quota} requests"
            f" (KEY_RATE_LIMIT); try again in {wait_s} s",
            retry_after_s=wait_s,
        )
