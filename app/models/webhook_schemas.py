"""Request and answer models of the webhook admin API (docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.webhooks import DESCRIPTION_LENGTH, URL_LENGTH

EventType = Literal[
    "inspection.completed",
    "inspection.failed",
    "batch.completed",
    "region.verdict",
    "image.disposition",
    "spc.alarm",
]


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


_ENDPOINT = {
    "id": 1,
    "url": "http://10.0.3.7:8080/aoi-hook",
    "events": ["inspection.completed", "region.verdict"],
    "enabled": True,
    "description": "line 3 MES bridge",
    "created_at": "2026-12-07T21:30:00Z",
    "pending": 0,
    "delivered": 12,
    "parked": 0,
}


class WebhookEndpointCreate(BaseModel):
    """A new endpoint: where to deliver, which events, and a note for admins."""

    model_config = _example(
        {
            "url": "http://10.0.3.7:8080/aoi-hook",
            "events": ["inspection.completed", "region.verdict"],
            "description": "line 3 MES bridge",
        }
    )

    url: str = Field(
        min_length=8,
        max_length=URL_LENGTH,
        # No space or control character (C0, DEL, C1): spelt out, not `\s`, which JSON
        # Schema (ECMA-262) and the validator (Rust regex) read differently (U+0085).
        pattern=r"^https?://[^\x00-\x20\x7f-\x9f]+$",
        description="http:// or https:// URL; private and loopback addresses are allowed.",
    )
    events: list[EventType] = Field(min_length=1, max_length=6)
    description: str | None = Field(default=None, max_length=DESCRIPTION_LENGTH)


class WebhookEndpointOut(BaseModel):
    """An endpoint as listed (never its secret) with its deliveries by status."""

    model_config = _example(_ENDPOINT)

    id: int
    url: str
    events: list[str]
    enabled: bool
    description: str | None = None
    created_at: datetime
    pending: int = 0
    delivered: int = 0
    parked: int = 0


class WebhookEndpointCreated(WebhookEndpointOut):
    """A created endpoint with its signing secret (shown once; keep it)."""

    model_config = _example({**_ENDPOINT, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})

    secret: str = Field(description="Standard Webhooks secret: `whsec_` + base64 of 24 bytes.")


class WebhookSecretRotated(WebhookEndpointOut):
    """An endpoint after a secret rotation, with its new signing secret (shown once)."""

    model_config = _example(
        {
            **_ENDPOINT,
            "secret": "whsec_4nYgL0bV0c2N3dPp6Tq1sU8wXz9aBcDe",
            "previous_secret_until": "2026-12-09T00:30:00Z",
        }
    )

    secret: str = Field(description="The new Standard Webhooks secret: `whsec_` + base64.")
    previous_secret_until: datetime | None = Field(
        description="Until when deliveries are signed with the old secret too (both"
        " signatures in `webhook-signature`); null: WEBHOOK_SECRET_OVERLAP_S is 0."
    )


_ATTEMPT: dict[str, Any] = {
    "attempted_at": "2026-12-07T21:31:00Z",
    "duration_s": 0.012,
    "status_code": 204,
    "error": None,
    "response_excerpt": "",
}


class WebhookAttemptOut(BaseModel):
    """One try at a delivery."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_ATTEMPT]})

    attempted_at: datetime
    duration_s: float = Field(description="Seconds from connecting to the answer (or error).")
    status_code: int | None = Field(description="The receiver's HTTP status; null: none came.")
    error: str | None = None
    response_excerpt: str | None = Field(
        default=None, description="The first bytes of the answer (at most 4 KiB read)."
    )


class WebhookDeliveryOut(BaseModel):
    """One event for one endpoint, with every attempt."""

    model_config = _example(
        {
            "id": 42,
            "endpoint_id": 1,
            "event_id": "0b4ad0c6-5b8e-4c5c-9d55-0f4f0d2f9b1e",
            "event_type": "inspection.completed",
            "status": "delivered",
            "attempts": 1,
            "created_at": "2026-12-07T21:30:59Z",
            "next_attempt_at": "2026-12-07T21:31:00Z",
            "retry_until": "2026-12-08T21:30:59Z",
            "delivered_at": "2026-12-07T21:31:00Z",
            "last_status_code": 204,
            "last_error": None,
            "payload": {"type": "inspection.completed", "timestamp": "…", "data": {}},
            "attempt_log": [_ATTEMPT],
        }
    )

    id: int
    endpoint_id: int
    event_id: str = Field(description="The `webhook-id` header: stable over every attempt.")
    event_type: str
    status: Literal["pending", "delivered", "parked"]
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    retry_until: datetime
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    payload: dict[str, Any] = Field(description="The body as signed and sent.")
    attempt_log: list[WebhookAttemptOut] = Field(description="Every attempt, oldest first.")
