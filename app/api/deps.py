"""FastAPI dependencies, as `Annotated` aliases.

They are `async def` although none awaits: FastAPI runs a plain `def` dependency in its
thread pool, a thread hop per dependency per request (measured: the dependencies of
`GET /api/batches/{id}` took a fifth of its CPU that way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.runtime import AgentRuntime
from app.services.database.session import unit_of_work
from app.services.history.queries import Links, QueryService
from app.services.inspection.uploads import UploadService
from app.services.inspection.workflow import InspectionService


async def get_runtime(request: Request) -> AgentRuntime:
    """The agent's long-lived parts, built in the lifespan."""
    runtime: AgentRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[AgentRuntime, Depends(get_runtime)]


async def get_settings_dep(runtime: RuntimeDep) -> Settings:
    """The settings the agent was started with."""
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit on success, roll back on error."""
    async with unit_of_work(runtime.sessions) as session:
        yield session


# scope="function": the unit of work commits before the answer is sent (FastAPI's default
# for a dependency with yield ends it after the answer), so a client that got its answer
# to a change sees the change in its next request, and a failed commit is its answer.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_links(request: Request, settings: SettingsDep) -> Links:
    """URL builder from PUBLIC_BASE_URL, or else the request's own base URL; download links
    are signed when API keys are required."""
    security = request.app.state.security
    signer = security.links if security.required else None
    return Links(settings.public_base_url or str(request.base_url), signer)


LinksDep = Annotated[Links, Depends(get_links)]


async def get_inspection_service(runtime: RuntimeDep) -> InspectionService:
    """The inspection workflow."""
    return runtime.inspections


InspectionServiceDep = Annotated[InspectionService, Depends(get_inspection_service)]


async def get_query_service(session: SessionDep, links: LinksDep) -> QueryService:
    """Read-side queries over this request's session."""
    return QueryService(session, links)


QueryServiceDep = Annotated[QueryService, Depends(get_query_service)]


async def get_upload_service(runtime: RuntimeDep, links: LinksDep) -> UploadService:
    """The upload endpoints' workflow, with this request's signed links (no request
    session: a single upload needs none)."""
    return UploadService(
        runtime.settings, runtime.storage, runtime.sessions, runtime.inspections, links
    )


UploadServiceDep = Annotated[UploadService, Depends(get_upload_service)]
