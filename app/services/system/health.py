"""Health checks of the database, the model service and the disk."""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version

import anyio
from sqlalchemy import text

from app.models.schemas import ComponentHealth, DiskHealth, HealthStatus, ModelServiceHealth
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


async def check_health(runtime: AgentRuntime) -> HealthStatus:
    """Check every dependency at once; `down` when the database fails, `degraded` when the
    model service does or the disk is nearly full."""
    database, (service_ok, service_detail) = await asyncio.gather(
        _database(runtime), runtime.client.health()
    )
    usage = await anyio.to_thread.run_sync(runtime.storage.disk_usage)
    minimum = runtime.settings.min_free_disk_bytes
    accepting = usage.free >= minimum
    disk = DiskHealth(
        path=str(runtime.storage.data_dir),
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
    status = "down" if not database.ok else "ok" if service_ok and disk.ok else "degraded"
    return HealthStatus(
        status=status,
        database=database,
        model_service=ModelServiceHealth(
            ok=service_ok, url=runtime.client.base_url, detail=service_detail
        ),
        disk=disk,
        version=agent_version(),
    )
