"""System routes: health and statistics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import QueryServiceDep, RuntimeDep
from app.api.security import AUTH_ERRORS, ReadAccess
from app.models.schemas import HealthStatus, Liveness, Stats
from app.services.system.health import check_health

router = APIRouter(tags=["System"])


@router.get(
    "/health",
    response_model=HealthStatus,
    summary="Health of the agent and what it depends on",
    responses={503: {"model": HealthStatus, "description": "The database is down."}},
)
async def health(runtime: RuntimeDep) -> JSONResponse:
    """Database, model service and free disk. 503 when the database is down; `degraded`
    (still 200) when only the model service is."""
    report = await check_health(runtime)
    return JSONResponse(
        report.model_dump(mode="json"), status_code=503 if report.status == "down" else 200
    )


@router.get(
    "/health/live",
    response_model=Liveness,
    summary="Liveness: the agent process answers (no dependency checked)",
)
async def live() -> Liveness:
    """Always `{"status": "ok"}` while the process serves requests; for orchestrators."""
    return Liveness(status="ok")


@router.get(
    "/health/ready",
    response_model=Liveness,
    summary="Readiness: the agent can serve requests (its database answers)",
    responses={503: {"model": Liveness, "description": "Not ready: the database is down."}},
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    """`ok` when the database answers, else 503 `down`; for load balancers."""
    report = await check_health(runtime)
    ok = report.status != "down"
    return JSONResponse({"status": "ok" if ok else "down"}, status_code=200 if ok else 503)


@router.get(
    "/stats",
    response_model=Stats,
    summary="Totals over every inspection",
    dependencies=[ReadAccess],
    responses=AUTH_ERRORS,
)
async def stats(queries: QueryServiceDep) -> Stats:
    """Images, defects by class, recent uploads and failures, mean processing times."""
    return await queries.stats()
