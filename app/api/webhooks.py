"""Webhook administration routes (admin): endpoints, their deliveries with every
attempt, and redelivery (docs/webhooks.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from app.api.deps import SessionDep, SettingsDep
from app.api.security import AUTH_ERRORS, AdminAccess
from app.errors import VALIDATION_ERROR_RESPONSE, responses
from app.models.schemas import ErrorBody
from app.models.webhook_schemas import (
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
    WebhookSecretRotated,
)
from app.services.webhooks.repository import WebhookRepository
from app.services.webhooks.service import (
    DELIVERIES_LIMIT,
    InvalidWebhookEndpoint,
    WebhookDeliveryNotFound,
    WebhookEndpointNotFound,
    WebhookService,
)

router = APIRouter(
    prefix="/webhooks",
    tags=["Webhooks"],
    dependencies=[AdminAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


async def get_webhook_service(session: SessionDep, settings: SettingsDep) -> WebhookService:
    """Webhook administration over this request's session."""
    return WebhookService(WebhookRepository(session), settings)


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]
EndpointId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The endpoint's id.")]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The delivery's id.")]


@router.get("", response_model=list[WebhookEndpointOut], summary="List webhook endpoints")
async def list_endpoints(webhooks: WebhookServiceDep) -> list[WebhookEndpointOut]:
    """Every endpoint with its deliveries by status; never its secret."""
    return await webhooks.endpoints()


@router.post(
    "",
    response_model=WebhookEndpointCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Add a webhook endpoint (its secret shown once)",
    responses={
        400: {"model": ErrorBody, "description": "The body is not valid JSON."},
        **responses(InvalidWebhookEndpoint),
    },
)
async def create_endpoint(
    body: WebhookEndpointCreate, webhooks: WebhookServiceDep
) -> WebhookEndpointCreated:
    """The answer holds the endpoint's signing secret (`whsec_...`): give it to the
    receiver now, it is not shown again. Events from now on are delivered to it."""
    return await webhooks.create(body.url, body.events, body.description)


@router.delete(
    "/{endpoint_id}",
    response_model=WebhookEndpointOut,
    summary="Remove a webhook endpoint",
    responses=responses(WebhookEndpointNotFound),
)
async def delete_endpoint(
    endpoint_id: EndpointId, webhooks: WebhookServiceDep
) -> WebhookEndpointOut:
    """Removes the endpoint with its deliveries and their attempts; returns it as it was."""
    return await webhooks.remove(endpoint_id)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookSecretRotated,
    summary="Give a webhook endpoint a new secret (shown once)",
    responses=responses(WebhookEndpointNotFound),
)
async def rotate_secret(
    endpoint_id: EndpointId, webhooks: WebhookServiceDep
) -> WebhookSecretRotated:
    """The answer holds the endpoint's new signing secret (`whsec_...`), not shown again.
    Until `previous_secret_until` (WEBHOOK_SECRET_OVERLAP_S from now) every delivery
    carries signatures of both the new and the old secret in `webhook-signature`, so the
    receiver verifies with either while it switches; after that, the new one only."""
    return await webhooks.rotate_secret(endpoint_id)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=list[WebhookDeliveryOut],
    summary="An endpoint's deliveries, each with every attempt",
    responses=responses(WebhookEndpointNotFound),
)
async def list_deliveries(
    endpoint_id: EndpointId,
    webhooks: WebhookServiceDep,
    limit: Annotated[int, Query(ge=1, le=DELIVERIES_LIMIT)] = 50,
) -> list[WebhookDeliveryOut]:
    """The newest deliveries first; each with its status, the body as sent and every
    attempt (status code, error, the first bytes of the answer)."""
    return await webhooks.deliveries(endpoint_id, limit)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=WebhookDeliveryOut,
    summary="Deliver an event again",
    responses=responses(WebhookDeliveryNotFound),
)
async def redeliver(delivery_id: DeliveryId, webhooks: WebhookServiceDep) -> WebhookDeliveryOut:
    """Makes the delivery `pending` and due now, with a fresh WEBHOOK_RETRY_HOURS window:
    the same body and `webhook-id`, signed anew. It goes out in its endpoint's order."""
    return await webhooks.redeliver(delivery_id)
