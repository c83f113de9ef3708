"""Health checks of the database, the model service, the store, the disk, the CFX
outbox and the webhook deliveries."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import text

from app.models.schemas import (
    ComponentHealth,
    DiskHealth,
    HealthStatus,
    LastInference,
    ModelServiceHealth,
    ModelServiceInstance,
    OutboxHealth,
    StorageHealth,
    WebhookHealth,
)
from app.runtime import AgentRuntime
from app.services.cfx.outbox import CFX_SINK, OutboxRepository
from app.services.model_service.client import InferenceRecord
from app.services.model_service.pool import ModelServicePool, ServiceState
from app.services.webhooks.repository import WebhookRepository
from app.utils.version import without_userinfo

LOW_DISK_FRACTION = 0.05
# Seconds the oldest CFX outbox message may wait before /health says `degraded`.
OUTBOX_LATE_S = 60.0
# Seconds the oldest undelivered webhook event may wait before /health says `degraded`.
WEBHOOKS_LATE_S = 300.0


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


def _last(record: InferenceRecord | None) -> LastInference | None:
    if record is None:
        return None
    return LastInference(ok=record.ok, at=record.at, detail=record.detail, seconds=record.seconds)


def _model_service(
    service: ServiceState, probe_ok: bool, probe_detail: str | None
) -> ModelServiceInstance:
    """A model service is healthy when its contract's probe passes and the last
    inference (if any) did not fail: "answers something" is not enough."""
    last = service.client.last_inference
    ok = probe_ok and (last is None or last.ok)
    detail = probe_detail
    if probe_ok and last is not None and not last.ok:
        detail = f"the last inference, at {last.at:%Y-%m-%d %H:%M:%S} UTC, failed: {last.detail}"
    back_in = None
    if service.down_until is not None:
        back_in = round(max(0.0, service.down_until - time.monotonic()), 1)
    return ModelServiceInstance(
        ok=ok,
        url=service.client.base_url,
        detail=detail,
        last_inference=_last(last),
        taking_requests=service.up,
        in_flight=service.in_flight,
        max_concurrency=service.limit,
        requests=service.requests,
        back_in_seconds=back_in,
    )


def _summary(pool: ModelServicePool, services: list[ModelServiceInstance]) -> ModelServiceHealth:
    """One model service: itself. Several: ok while at least one is."""
    if len(services) == 1:
        return ModelServiceHealth.model_validate(
            services[0].model_dump(include={"ok", "detail", "url", "last_inference"})
        )
    failing = [s for s in services if not s.ok]
    working = len(services) - len(failing)
    return ModelServiceHealth(
        ok=working > 0,
        url=", ".join(s.url for s in services),
        detail=None
        if not failing
        else f"{working} of {len(services)} model services work; "
        + "; ".join(f"{s.url}: {s.detail}" for s in failing),
        last_inference=_last(pool.last_inference),
    )


async def _outbox(runtime: AgentRuntime) -> OutboxHealth | None:
    """The CFX outbox's backlog; None when the database does not answer (reported
    there)."""
    try:
        async with runtime.sessions() as session:
            backlog = await OutboxRepository(session).backlog(CFX_SINK)
    except Exception:
        return None
    late = backlog.oldest_age_s is not None and backlog.oldest_age_s > OUTBOX_LATE_S
    return OutboxHealth(
        ok=not late,
        detail=(
            f"{backlog.messages} CFX messages wait for the broker"
            f" {without_userinfo(runtime.settings.cfx_broker_url or '')}, the oldest for"
            f" {backlog.oldest_age_s:.0f} s; they are kept and sent when it answers"
            if late
            else None
        ),
        backlog_messages=backlog.messages,
        oldest_age_s=backlog.oldest_age_s,
    )


async def _webhooks(runtime: AgentRuntime) -> WebhookHealth | None:
    """The webhook backlog; None when no endpoint is enabled or the database does not
    answer (reported there)."""
    try:
        async with asyncio.timeout(3.0), runtime.sessions() as session:
            repository = WebhookRepository(session)
            if not await repository.any_enabled():
                return None
            backlog = await repository.backlog()
    except Exception:
        return None
    late = backlog.oldest_age_s is not None and backlog.oldest_age_s > WEBHOOKS_LATE_S
    return WebhookHealth(
        ok=not late,
        detail=(
            f"{backlog.pending} webhook events wait for their receivers, the oldest for"
            f" {backlog.oldest_age_s:.0f} s; they are retried (GET /api/webhooks/{{id}}/deliveries"
            " says why) and parked after WEBHOOK_RETRY_HOURS"
            if late
            else None
        ),
        backlog_events=backlog.pending,
        oldest_age_s=backlog.oldest_age_s,
    )


async def check_health(runtime: AgentRuntime) -> HealthStatus:
    """Check every dependency at once; `down` when the database fails, `degraded` when the
    model service does (its health probe, or the last inference), the store does not answer
    or the disk is nearly full, with a sentence in `detail` saying which."""
    database, probes, store = await asyncio.gather(
        _database(runtime), runtime.client.probe_all(), runtime.storage.check()
    )
    storage = StorageHealth(
        ok=store.state == "ok",
        detail=store.detail,
        backend=runtime.storage.backend,
        location=runtime.storage.location,
        state=store.state,
    )
    instances = [
        _model_service(s, ok, detail)
        for s, (ok, detail) in zip(runtime.client.services, probes, strict=True)
    ]
    service = _summary(runtime.client, instances)
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
    outbox = await _outbox(runtime) if runtime.settings.cfx_broker_url else None
    webhooks = await _webhooks(runtime) if database.ok else None
    problems = []
    if not database.ok:
        problems.append(f"the database does not answer ({database.detail})")
    if not service.ok:
        problems.append(
            f"the model service at {service.url} fails, so uploads fail: {service.detail}"
        )
    elif any(not s.ok for s in instances):
        problems.append(f"a model service fails, the others take its work: {service.detail}")
    if storage.state == "misconfigured":
        problems.append(
            f"the store {storage.location} refuses the agent, so uploads and downloads fail"
            f" until it is fixed: {storage.detail}"
        )
    elif not storage.ok:
        problems.append(
            f"the store {storage.location} does not answer, so uploads and downloads fail"
            f" and batch images wait for it: {storage.detail}"
        )
    if not disk.ok:
        problems.append(f"the disk holding {disk.path} is nearly full")
    if outbox is not None and not outbox.ok:
        problems.append(outbox.detail or "the CFX outbox is not draining")
    if webhooks is not None and not webhooks.ok:
        problems.append(webhooks.detail or "webhook deliveries are not draining")
    all_ok = (
        service.ok
        and storage.ok
        and disk.ok
        and all(s.ok for s in instances)
        and (outbox is None or outbox.ok)
        and (webhooks is None or webhooks.ok)
    )
    status = "down" if not database.ok else "ok" if all_ok else "degraded"
    return HealthStatus(
        status=status,
        detail="; ".join(problems) or None,
        database=database,
        model_service=service,
        model_services=instances,
        storage=storage,
        disk=disk,
        outbox=outbox,
        webhooks=webhooks,
        version=agent_version(),
    )
