"""Webhook administration: endpoints (add, list, remove), their deliveries with every
attempt, and redelivery. Used by the admin API (`app/api/webhooks.py`) and the CLI
(`aoi-agent webhooks ...`); services only flush, the caller's unit of work commits."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import urlsplit

import httpx2

from app.config import Settings
from app.errors import AgentError
from app.models.webhook_schemas import (
    WebhookAttemptOut,
    WebhookDeliveryOut,
    WebhookEndpointCreated,
    WebhookEndpointOut,
    WebhookSecretRotated,
)
from app.models.webhooks import (
    DESCRIPTION_LENGTH,
    URL_LENGTH,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from app.services.webhooks.events import EVENT_TYPES
from app.services.webhooks.repository import WebhookRepository

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # Standard Webhooks: 24 to 64 bytes of randomness
DELIVERIES_LIMIT = 200


class WebhookEndpointNotFound(AgentError):
    """No webhook endpoint has this id."""

    status_code = 404
    error = "webhook_endpoint_not_found"


class WebhookDeliveryNotFound(AgentError):
    """No webhook delivery has this id."""

    status_code = 404
    error = "webhook_delivery_not_found"


class InvalidWebhookEndpoint(AgentError):
    """The URL is not http(s), or an event type is unknown."""

    status_code = 400
    error = "invalid_webhook_endpoint"


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_endpoint(url: str, events: Sequence[str], description: str | None) -> list[str]:
    """The endpoint's events, deduplicated in the order of `EVENT_TYPES`.

    Raises:
        InvalidWebhookEndpoint: not an http:// or https:// URL with a host, too long, an
            unknown or no event type, or a description over 500 characters.
    """
    problem = InvalidWebhookEndpoint(
        f"the URL must be http:// or https:// with a host, at most {URL_LENGTH} characters"
    )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port out of range)
        httpx2.URL(url)  # what the dispatcher will send to
    except (ValueError, httpx2.InvalidURL) as exc:
        raise problem from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname or len(url) > URL_LENGTH:
        raise problem
    if any(c.isspace() or c == "\x00" for c in url):
        raise InvalidWebhookEndpoint("the URL must not contain spaces or control characters")
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        raise InvalidWebhookEndpoint(
            f"unknown event type(s) {', '.join(unknown) or '(none given)'}; use one or more of"
            f" {', '.join(EVENT_TYPES)}"
        )
    if description is not None and len(description) > DESCRIPTION_LENGTH:
        raise InvalidWebhookEndpoint(f"the description is over {DESCRIPTION_LENGTH} characters")
    return [e for e in EVENT_TYPES if e in set(events)]


def _listed(endpoint: WebhookEndpoint, counts: dict[str, int]) -> WebhookEndpointOut:
    return WebhookEndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        enabled=endpoint.enabled,
        description=endpoint.description,
        created_at=endpoint.created_at,
        pending=counts.get("pending", 0),
        delivered=counts.get("delivered", 0),
        parked=counts.get("parked", 0),
    )


def _delivery_out(row: WebhookDelivery, attempts: list[WebhookAttempt]) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=str(row.event_id),
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        retry_until=row.retry_until,
        delivered_at=row.delivered_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        payload=json.loads(row.body),
        attempt_log=[WebhookAttemptOut.model_validate(a) for a in attempts],
    )


class WebhookService:
    """Endpoint and delivery administration over one session."""

    def __init__(self, repository: WebhookRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings

    async def create(
        self, url: str, events: Sequence[str], description: str | None = None
    ) -> WebhookEndpointCreated:
        """Add an enabled endpoint with a new secret; the answer holds the secret.

        Raises:
            InvalidWebhookEndpoint: see `check_endpoint`.
        """
        wanted = check_endpoint(url, events, description)
        endpoint = await self.repository.add_endpoint(
            WebhookEndpoint(
                url=url, events=wanted, secret=new_secret(), description=description, enabled=True
            )
        )
        return WebhookEndpointCreated(**_listed(endpoint, {}).model_dump(), secret=endpoint.secret)

    async def rotate_secret(self, endpoint_id: int) -> WebhookSecretRotated:
        """Give an endpoint a new secret; the answer holds it (shown once).

        For WEBHOOK_SECRET_OVERLAP_S seconds from now (the database's clock) deliveries
        carry signatures of both the new and the replaced secret, so the receiver can
        switch to the new one at any moment in that window; after it, only the new one.
        A second rotation within the window drops the first replaced secret: only the
        latest replaced one is kept.

        Raises:
            WebhookEndpointNotFound: no endpoint with this id.
        """
        endpoint = await self.repository.endpoint(endpoint_id, for_update=True)
        if endpoint is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint with id {endpoint_id}")
        overlap_s = self.settings.webhook_secret_overlap_s
        until = await self.repository.now() + timedelta(seconds=overlap_s) if overlap_s else None
        endpoint.previous_secret = endpoint.secret if until else None
        endpoint.previous_secret_until = until
        endpoint.secret = new_secret()
        await self.repository.session.flush()
        counts = (await self.repository.delivery_counts()).get(endpoint_id, {})
        return WebhookSecretRotated(
            **_listed(endpoint, counts).model_dump(),
            secret=endpoint.secret,
            previous_secret_until=until,
        )

    async def endpoints(self) -> list[WebhookEndpointOut]:
        """Every endpoint (never its secret) with its deliveries by status."""
        counts = await self.repository.delivery_counts()
        return [_listed(e, counts.get(e.id, {})) for e in await self.repository.endpoints()]

    async def remove(self, endpoint_id: int) -> WebhookEndpointOut:
        """Delete an endpoint, its deliveries and their attempts; returns it as it was.

        Raises:
            WebhookEndpointNotFound: no endpoint with this id.
        """
        endpoint = await self.repository.endpoint(endpoint_id)
        if endpoint is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint with id {endpoint_id}")
        counts = (await self.repository.delivery_counts()).get(endpoint_id, {})
        listed = _listed(endpoint, counts)
        await self.repository.remove_endpoint(endpoint)
        return listed

    async def deliveries(
        self, endpoint_id: int, limit: int = DELIVERIES_LIMIT
    ) -> list[WebhookDeliveryOut]:
        """The newest `limit` deliveries of an endpoint (newest first), each with every
        attempt (oldest first).

        Raises:
            WebhookEndpointNotFound: no endpoint with this id.
        """
        if await self.repository.endpoint(endpoint_id) is None:
            raise WebhookEndpointNotFound(f"no webhook endpoint with id {endpoint_id}")
        rows = await self.repository.deliveries(endpoint_id, limit)
        attempts = await self.repository.attempts_of([row.id for row in rows])
        return [_delivery_out(row, attempts[row.id]) for row in rows]

    async def redeliver(self, delivery_id: int) -> WebhookDeliveryOut:
        """Send a delivery again (whatever its status): `pending`, due now, with a fresh
        WEBHOOK_RETRY_HOURS window; same body and `webhook-id`, a new signature.

        Raises:
            WebhookDeliveryNotFound: no delivery with this id.
        """
        delivery = await self.repository.delivery(delivery_id, for_update=True)
        if delivery is None:
            raise WebhookDeliveryNotFound(f"no webhook delivery with id {delivery_id}")
        await self.repository.redeliver(delivery, self.settings.webhook_retry_hours)
        return await self.delivery(delivery.id)

    async def delivery(self, delivery_id: int) -> WebhookDeliveryOut:
        """One delivery with its attempts.

        Raises:
            WebhookDeliveryNotFound: no delivery with this id.
        """
        row = await self.repository.delivery(delivery_id)
        if row is None:
            raise WebhookDeliveryNotFound(f"no webhook delivery with id {delivery_id}")
        attempts = await self.repository.attempts_of([row.id])
        return _delivery_out(row, attempts[row.id])
