"""Health checks of the database, the model service and the disk."""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import text

from app.models.schemas import (
    ComponentHealth,
    DiskHealth,
    HealthStatus,
    LastInference,
    ModelServiceHealth,
)
from app.runtime import AgentRuntime

LOW_DISK_FRACTION = 0.05


def agent_version() -> str:
    """The installed version of the agent."""
    try:
        return version("aoi-inference-agent")
    except PackageNotFoundError:
        return "0+unknown"


async def _database(runtime: AgentRuntime) -> ComponentHealth:
    try:
        async with asyncio.timeout(3.0), runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return ComponentHealth(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return ComponentHealth(ok=True)


def _model_service(
    runtime: AgentRuntime, probe_ok: bool, probe_detail: str | None
) -> ModelServiceHealth:
    """The model service is healthy when its contract's probe passes and the last
    inference (if any) did not fail: "answers something" is not enough."""
    last = runtime.client.last_inference
    ok = probe_ok and (last is None or last.ok)
    detail = probe_detail
    if probe_ok and last is not None and not last.ok:
        detail = f"the last inference, at {last.at:%Y-%m-%d %H:%M:%S} UTC, failed: {last.detail}"
    return ModelServiceHealth(
        ok=ok,
        url=runtime.client.base_url,
        detail=detail,
        last_inference=LastInference(
            ok=last.ok, at=last.at, detail=last.detail, seconds=last.seconds
        )
        if last is not None
        else None,
    )


async def check_health(runtime: AgentRuntime) -> HealthStatus:
    """Check every dependency at once; `down` when the database fails, `degraded` when the
    model service does (its health probe, or the last inference) or the disk is nearly
    full, with a sentence in `detail` saying which."""
    database, (probe_ok, probe_detail) = await asyncio.gather(
        _database(runtime), runtime.client.health()
    )
    service = _model_service(runtime, probe_ok, probe_detail)
    usage = await runtime.storage.disk_usage()
    minimum = runtime.settings.min_free_disk_bytes
    accepting = usage.free >= minimum
    disk = DiskHealth(
        path=str(runtime.storage.disk_path),
        free_bytes=usage.free,
        total_bytes=usage.total,
        min_free_bytes=minimum,
        accepting_uploads=accepting,
        ok=accepting and usage.free > usage.total * LOW_DISK_FRACTION,
        detail=None
        if accepting
        else (
            f"{usage.free / 2**20:.0f} MB free, below MIN_FREE_DISK_MB"
            f" ({minimum / 2**20:.0f} MB): uploads are refused with 507 until space is freed"
        ),
    )
    problems = []
    if not database.ok:
        problems.append(f"the database does not answer ({database.detail})")
    if not service.ok:
        problems.append(
            f"the model service at {service.url} fails, so uploads fail: {service.detail}"
        )
    if not disk.ok:
        problems.append(f"the disk holding {disk.path} is nearly full")
    status = "down" if not database.ok else "ok" if service.ok and disk.ok else "degraded"
    return HealthStatus(
        status=status,
        detail="; ".join(problems) or None,
        database=database,
        model_service=service,
        disk=disk,
        version=agent_version(),
    )
