"""Key management routes (admin): create, list and revoke API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from app.api.deps import SessionDep
from app.api.security import AUTH_ERRORS, AdminAccess
from app.errors import VALIDATION_ERROR_RESPONSE, responses
from app.models.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, ErrorBody
from app.services.security.keys import BadKeyName, KeyNameTaken, KeyNotFound, KeyService, Scope
from app.services.security.repository import ApiKeyRepository

router = APIRouter(
    prefix="/keys",
    tags=["Keys"],
    dependencies=[AdminAccess],
    responses={**AUTH_ERRORS, **VALIDATION_ERROR_RESPONSE},
)


async def get_key_service(session: SessionDep) -> KeyService:
    """Key management over this request's session."""
    return KeyService(ApiKeyRepository(session))


KeyServiceDep = Annotated[KeyService, Depends(get_key_service)]
KeyName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


@router.get("", response_model=list[ApiKeyOut], summary="List API keys")
async def list_keys(keys: KeyServiceDep) -> list[ApiKeyOut]:
    """Every key (revoked ones too) with its prefix, scope and last use; never the key."""
    return [ApiKeyOut.model_validate(row, from_attributes=True) for row in await keys.list()]


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (shown once)",
    responses={
        400: {"model": ErrorBody, "description": "The body is not valid JSON."},
        **responses(KeyNameTaken, BadKeyName),
    },
)
async def create_key(body: ApiKeyCreate, keys: KeyServiceDep) -> ApiKeyCreated:
    """The answer holds the key itself: store it now, it cannot be shown again."""
    row, key = await keys.create(body.name, Scope(body.scope))
    listed = ApiKeyOut.model_validate(row, from_attributes=True)
    return ApiKeyCreated(**listed.model_dump(), key=key)


@router.delete(
    "/{name}",
    response_model=ApiKeyOut,
    summary="Revoke an API key",
    responses=responses(KeyNotFound),
)
async def revoke_key(name: KeyName, keys: KeyServiceDep) -> ApiKeyOut:
    """Requests with the key are refused from now on; the row stays for the record."""
    return ApiKeyOut.model_validate(await keys.revoke(name), from_attributes=True)
