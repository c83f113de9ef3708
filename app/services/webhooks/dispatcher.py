"""The webhook dispatcher: fans the `webhooks` outbox rows out to deliveries and delivers
them, signed per the Standard Webhooks spec (docs/webhooks.md).

One dispatcher per deployment: every agent process runs the loop, but only the one that
holds a PostgreSQL session-level advisory lock (`WEBHOOK_DISPATCHER_LOCK`) works; the
others try again every few seconds (a killed dispatcher's lock goes with its connection).

The holder, in a loop:

1. takes the unpublished `webhooks` outbox rows in `id` order and writes one `pending`
   delivery per enabled endpoint subscribed to the event's type (and marks the rows
   published), in one transaction;
2. for every endpoint whose oldest pending delivery is due, sends that endpoint's
   deliveries in `id` order, one at a time (up to 4 endpoints at once): a delivery is
   `delivered` on a 2xx answer; on anything else (no answer, a timeout, a 3xx — redirects
   are not followed —, 4xx, 5xx) it stays first in its endpoint's line and is tried again
   after an exponential back-off (tenacity's `wait_exponential`: WEBHOOK_RETRY_INITIAL_S ×
   2^(attempt − 1), at most WEBHOOK_RETRY_MAX_S), until WEBHOOK_RETRY_HOURS after it was
   created; then it is `parked` and the next one goes. An admin can redeliver it.

So per endpoint, events arrive in the order they were written, at least once, each with
the same `webhook-id` on every attempt (the event's outbox `unique_id`); every attempt
is signed anew (the `webhook-timestamp` is the attempt's time), with the endpoint's
secret and, for WEBHOOK_SECRET_OVERLAP_S after a rotation, its previous one too.

Each attempt: HTTP POST of the stored JSON body, `follow_redirects=False`, WEBHOOK_TIMEOUT_S
for the whole attempt, and at most `RESPONSE_READ_BYTES` of the answer read (the rest is
dropped with the connection). Private and loopback addresses are allowed: factory
receivers live there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook
from tenacity import RetryCallState, wait_exponential

from app.config import Settings
from app.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.services.database.leader import lead
from app.services.webhooks.repository import WebhookRepository
from app.utils.text import printable
from app.utils.version import installed_version, without_userinfo

logger = logging.getLogger(__name__)

# Outbox rows fanned out per transaction, and deliveries sent per endpoint per round.
BATCH = 200
# Endpoints delivered to at once (each holds one database connection while it sends).
PARALLEL_ENDPOINTS = 4
# Seconds between two looks at the outbox when there is nothing to do (with no enabled
# endpoint: IDLE_POLL_S, so an agent without webhooks does not query 10 times a second).
POLL_S = 0.1
IDLE_POLL_S = 1.0
# Seconds between two tries for the dispatcher's lock by a process that does not hold it.
LOCK_RETRY_S = 5.0
PRUNE_EVERY_S = 600.0
# Bytes of a receiver's answer read at most; characters of it kept with the attempt.
RESPONSE_READ_BYTES = 4096
EXCERPT_CHARS = 1024


def retry_delay_s(settings: Settings, attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1-based): tenacity's
    `wait_exponential` with multiplier WEBHOOK_RETRY_INITIAL_S and cap WEBHOOK_RETRY_MAX_S,
    i.e. min(initial × 2^(attempts − 1), max)."""
    # The wait functions read only `attempt_number` of the call state.
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempts)
    wait = wait_exponential(
        multiplier=settings.webhook_retry_initial_s, max=settings.webhook_retry_max_s
    )
    return float(wait(state))


def signed_headers(secrets: Sequence[str], msg_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt: `webhook-id`, `webhook-timestamp`
    (integer Unix seconds of `at`) and `webhook-signature`: one `v1,<base64 HMAC-SHA256>`
    of `id.timestamp.body` per secret in `secrets` (each by the `standardwebhooks`
    library), separated by spaces as the spec allows — the new and the old secret during
    a rotation's overlap; a receiver accepts the request when any of them verifies.
    Plus the content type."""
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets),
        "user-agent": f"aoi-inference-agent/{installed_version()}",
    }


async def _read_bounded(response: httpx2.Response, limit: int) -> bytes:
    """At most `limit` bytes of a streamed answer's body."""
    read = bytearray()
    async for chunk in response.aiter_bytes():
        read += chunk
        if len(read) >= limit:
            break
    return bytes(read[:limit])


class WebhookDispatcher:
    """The dispatcher loop of one agent process (see the module docstring)."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(settings.webhook_timeout_s),
            follow_redirects=False,
            trust_env=False,  # a receiver on the plant network is not reached via a proxy
        )
        self._task: asyncio.Task[None] | None = None
        self._parallel = asyncio.Semaphore(PARALLEL_ENDPOINTS)
        self._next_prune = 0.0
        self.holds_lock = False

    def start(self) -> None:
        """Run the loop in a task until `stop`."""
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop the loop and close the HTTP client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def _run(self) -> None:
        await lead(
            self.sessions,
            WebhookRepository,
            self._dispatch,
            name="webhook dispatcher",
            retry_s=LOCK_RETRY_S,
            holding=self._holding,
        )

    def _holding(self, held: bool) -> None:
        self.holds_lock = held

    async def _dispatch(self, session: AsyncSession, repository: WebhookRepository) -> None:
        """Fan out and deliver for as long as this process holds the lock."""
        while True:
            taken = await repository.fan_out(BATCH, self.settings.webhook_retry_hours)
            await session.commit()
            session.expunge_all()  # this session lives as long as the lock: keep it empty
            due = await repository.due_endpoints()
            await session.commit()
            if due:
                await asyncio.gather(*(self._drain(endpoint_id) for endpoint_id in due))
            elif not taken:
                await self._prune_when_due(session, repository)
                enabled = await repository.any_enabled()
                await session.commit()
                # With no endpoint there is no one to keep waiting: look less often.
                await asyncio.sleep(POLL_S if enabled else IDLE_POLL_S)

    async def _drain(self, endpoint_id: int) -> None:
        """Send an endpoint's due deliveries in order until one fails (or BATCH went)."""
        async with self._parallel, self.sessions() as session:
            repository = WebhookRepository(session)
            for _ in range(BATCH):
                head = await repository.head(endpoint_id)
                if head is None:
                    await session.commit()
                    return
                delivery, endpoint = head
                await session.commit()  # no transaction stays open during the request
                attempt = await self.attempt(delivery, endpoint)
                delivered = attempt.error is None
                status = await repository.record_attempt(
                    delivery,
                    attempt,
                    delivered=delivered,
                    retry_in_s=retry_delay_s(self.settings, delivery.attempts + 1),
                )
                await session.commit()
                if not delivered:
                    logger.log(
                        logging.WARNING
                        if status == "parked" or delivery.attempts == 0
                        else logging.INFO,
                        "webhook delivery failed; %s",
                        "parked" if status == "parked" else "tried again later",
                        extra={
                            "endpoint": without_userinfo(endpoint.url),
                            "delivery_id": delivery.id,
                            "error": attempt.error,
                        },
                    )
                    return

    async def attempt(self, delivery: WebhookDelivery, endpoint: WebhookEndpoint) -> WebhookAttempt:
        """POST one delivery to its endpoint, signed now; returns the attempt (not yet
        added to a session): `error` None when the receiver answered 2xx."""
        msg_id = str(delivery.event_id)
        at = datetime.now(UTC)
        headers = signed_headers(endpoint.signing_secrets(at), msg_id, delivery.body, at)
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        timeout_s = self.settings.webhook_timeout_s
        try:
            async with (
                asyncio.timeout(timeout_s),
                self.client.stream(
                    "POST", endpoint.url, content=delivery.body.encode(), headers=headers
                ) as response,
            ):
                status_code = response.status_code
                read = await _read_bounded(response, RESPONSE_READ_BYTES)
                excerpt = printable(read.decode("utf-8", errors="replace"), EXCERPT_CHARS)
                if 300 <= status_code < 400:
                    location = response.headers.get("location", "")
                    error = (
                        f"HTTP {status_code} redirect to {location[:200]!r}: redirects are"
                        " not followed; register the final URL"
                    )
                elif not 200 <= status_code < 300:
                    error = f"HTTP {status_code}"
        except TimeoutError:
            error = f"no answer within {timeout_s:g} s (WEBHOOK_TIMEOUT_S)"
        except httpx2.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:
            # Whatever else fails (a URL the HTTP client cannot use, an IDNA error) is
            # this attempt's failure, recorded like any other: it must not stop the loop.
            error = f"{type(exc).__name__}: {exc}"[:500]
        return WebhookAttempt(
            delivery_id=delivery.id,
            duration_s=round(time.perf_counter() - started, 6),
            status_code=status_code,
            error=error,
            response_excerpt=excerpt,
        )

    async def _prune_when_due(self, session: AsyncSession, repository: WebhookRepository) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        await repository.prune(
            self.settings.webhook_keep_days, self.settings.cfx_keep_published_hours
        )
        await session.commit()
