"""Throttling of guesses and per-key request quotas, with the `limits` library.

Two moving-window limits, kept in this process's memory (`limits.aio.storage.MemoryStorage`)
or, with THROTTLE_STORAGE_URL (`async+redis://host:6379`), in a Redis server that every
agent process of the deployment shares:

* failed authentications (wrong API keys, in a header or the sign-in form) per client
  address: AUTH_FAILURES_PER_MINUTE. Once an address is over it, every request from it
  that presents a key is answered 429 before the key is looked up or hashed, so a
  throttled guess costs microseconds. Successful authentications are not counted.
* requests per key (key header or web session): KEY_RATE_LIMIT, in the `limits` string
  syntax (`600/minute`, `20/second`); unset, no quota.

With N agent processes and the default `memory://`, each keeps its own counts, so the
bounds are N times the settings. While a shared store does not answer, each process counts
in its own memory (the outage is logged once when it starts and once when it ends), so an
outage loosens the bounds to per process and never refuses or fails a request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio
from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import ConfigurationError
from limits.storage import storage_from_string

from app.errors import AgentError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a shared store may take to connect or answer before this process counts alone.
SHARED_STORE_TIMEOUT_S = 0.5
# Seconds between attempts to go back to a shared store that did not answer.
SHARED_STORE_RETRY_S = 5.0


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


REDIS_CLIENT_NAME = "aoi-agent-throttle"
"""How the throttle's connections name themselves to Redis (`CLIENT LIST`)."""


class AuthThrottle:
    """The failed-authentication limit per client address and the request quota per key."""

    def __init__(
        self,
        failures_per_minute: int,
        key_rate_limit: str | None,
        storage_url: str = "memory://",
    ) -> None:
        """`failures_per_minute`: 0 turns the limit off; `key_rate_limit`: None, no quota;
        `storage_url`: where the counts live (THROTTLE_STORAGE_URL, a `limits` storage URI:
        `memory://` or `async+redis://host:port[/db]`, redis-py as the client).

        Raises:
            limits.errors.ConfigurationError: `storage_url` names a storage `limits` does
                not know, or whose client library is not installed.
        """
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._shared_storage: Storage | None = None
        self._pool: redis.asyncio.ConnectionPool | None = None
        if not storage_url.startswith("memory://"):
            options: dict[str, Any] = {}  # `limits` types its options narrower than it takes
            if storage_url.startswith(("async+redis://", "async+rediss://")):
                # Our own redis-py pool, handed to `limits` (its documented
                # `connection_pool` option), so that `close` can close it.
                self._pool = redis.asyncio.ConnectionPool.from_url(
                    storage_url.removeprefix("async+"),
                    socket_connect_timeout=SHARED_STORE_TIMEOUT_S,
                    socket_timeout=SHARED_STORE_TIMEOUT_S,
                    client_name=REDIS_CLIENT_NAME,
                )
                options["connection_pool"] = self._pool
            else:
                options["socket_connect_timeout"] = SHARED_STORE_TIMEOUT_S
                options["socket_timeout"] = SHARED_STORE_TIMEOUT_S
            storage = storage_from_string(
                storage_url, implementation="redispy", key_prefix="aoi-agent-throttle", **options
            )
            if not isinstance(storage, Storage):  # an `async+` scheme gives an async one
                raise ConfigurationError(f"{storage_url!r} is not an async+ storage URI")
            self._shared_storage = storage
            self._shared = MovingWindowRateLimiter(storage)
        self._shared_down_since: float | None = None
        self._next_shared_try = 0.0
        per_minute = failures_per_minute
        self._failures = RateLimitItemPerMinute(per_minute) if per_minute else None
        self._quota = parse_rate(key_rate_limit) if key_rate_limit else None

    async def close(self) -> None:
        """Close the shared store's connections (none with `memory://`); the pool connects
        again if the throttle is used afterwards."""
        if self._pool is not None:
            await self._pool.disconnect()

    async def _count(self, use: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """`use(limiter)` on the shared store when there is one and it answers, else on this
        process's memory (an unanswered store is tried again every SHARED_STORE_RETRY_S)."""
        shared, storage = self._shared, self._shared_storage
        if shared is None or storage is None or time.monotonic() < self._next_shared_try:
            return await use(self._local)
        try:
            result = await use(shared)
        except storage.base_exceptions as exc:
            if self._shared_down_since is None:
                self._shared_down_since = time.monotonic()
                logger.warning(
                    "throttle store unreachable; counting in this process until it answers",
                    extra={"error": str(exc)[:300]},
                )
            self._next_shared_try = time.monotonic() + SHARED_STORE_RETRY_S
            return await use(self._local)
        if self._shared_down_since is not None:
            logger.info(
                "throttle store answers again",
                extra={"down_s": round(time.monotonic() - self._shared_down_since, 1)},
            )
            self._shared_down_since = None
        return result

    async def _retry_after_s(self, item: RateLimitItem, *identifiers: str) -> int:
        """Whole seconds until the window has room again (at least 1)."""
        stats = await self._count(lambda limiter: limiter.get_window_stats(item, *identifiers))
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def check_address(self, address: str) -> None:
        """Let a key from `address` be checked, unless the address is over the limit.

        Raises:
            TooManyFailedAuthentications: AUTH_FAILURES_PER_MINUTE wrong keys came from
                `address` within the last minute.
        """
        failures = self._failures
        if failures is None or await self._count(
            lambda limiter: limiter.test(failures, "auth", address)
        ):
            return
        wait_s = await self._retry_after_s(failures, "auth", address)
        raise TooManyFailedAuthentications(
            f"too many wrong API keys from {address} (more than {failures.amount} a"
            f" minute); try again in {wait_s} s with a valid key",
            retry_after_s=wait_s,
        )

    async def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        failures = self._failures
        if failures is not None:
            await self._count(lambda limiter: limiter.hit(failures, "auth", address))

    async def spend(self, key_id: int, key_name: str | None) -> None:
        """Count one request of key `key_id` against KEY_RATE_LIMIT.

        Raises:
            RateLimited: the key has used its quota in the current window.
        """
        quota = self._quota
        if quota is None or await self._count(
            lambda limiter: limiter.hit(quota, "key", str(key_id))
        ):
            return
        wait_s = await self._retry_after_s(quota, "key", str(key_id))
        raise RateLimited(
            f"the key {key_name!r} is over its quota of {quota} requests"
            f" (KEY_RATE_LIMIT); try again in {wait_s} s",
            retry_after_s=wait_s,
        )
