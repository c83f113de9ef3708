"""`GET /metrics`: the agent's Prometheus metrics (docs/metrics.md).

Served at the root only (Prometheus' convention, like `/docs`) and kept out of the OpenAPI
document (its answer is Prometheus text, not JSON); it needs the read scope when the agent
requires keys, like the rest of the API.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.api.deps import RuntimeDep, SessionDep
from app.api.security import AUTH_ERRORS, ReadAccess
from app.services.system.metrics import CONTENT_TYPE, scrape

router = APIRouter(tags=["System"], dependencies=[ReadAccess], responses=AUTH_ERRORS)

METRICS_PATH = "/metrics"


@router.get(METRICS_PATH)
async def metrics(runtime: RuntimeDep, session: SessionDep) -> Response:
    """Counters and histograms of this agent (all its API processes in multi-process
    mode), plus the queue's jobs by status and the free disk space, read now."""
    return Response(await scrape(session, runtime.storage), media_type=CONTENT_TYPE)
