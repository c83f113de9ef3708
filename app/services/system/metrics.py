"""Prometheus metrics of the agent (`GET /metrics`, docs/metrics.md).

Counters and histograms are kept by `prometheus_client` in the process that observes
them. Several API worker processes on one host (WEB_CONCURRENCY > 1) share them through
its multi-process mode: PROMETHEUS_MULTIPROC_DIR names a folder every process writes to,
set before `prometheus_client` is first imported (`app.launcher.prepare_metrics_dir` does
it for `run.py`). Values read from the database or the disk (`aoi_queue_jobs`,
`aoi_storage_free_bytes`) are read when Prometheus scrapes, never cached.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import anyio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import metrics as http_metrics
from sqlalchemy.ext.asyncio import AsyncSession

from app.services.cfx.outbox import CFX_SINK, Backlog, OutboxRepository
from app.services.storage import Storage
from app.services.system.repository import QueueRepository
from app.services.webhooks.events import WEBHOOKS_SINK
from app.services.webhooks.repository import WebhookBacklog, WebhookRepository

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; model-service calls take from ~50 ms (a small image on a GPU) to the deadline.
MODEL_SERVICE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))

INSPECTIONS = Counter(
    "aoi_inspections",
    "Inspections that ended in this process, by how they ended (succeeded or failed).",
    ["status"],
)
DEFECT_REGIONS = Counter(
    "aoi_defect_regions",
    "Defect regions found by the inspections stored in this process, by defect class.",
    ["class_name"],
)
MODEL_SERVICE_DURATION = Histogram(
    "aoi_model_service_request_duration_seconds",
    "Wall time of one inference request to a model service (retries and result-image"
    " fetches included), seconds.",
    ["service"],
    buckets=MODEL_SERVICE_BUCKETS,
)
MODEL_SERVICE_REQUESTS = Counter(
    "aoi_model_service_requests",
    "Inference requests sent to a model service, by outcome: ok, refused (the service"
    " refused the image with a 4xx), failed (unreachable, 5xx, timeout or a bad answer).",
    ["service", "outcome"],
)
MODEL_SERVICE_UP = Gauge(
    "aoi_model_service_up",
    "1 while a model service takes requests, 0 while it is left out after failing.",
    ["service"],
    multiprocess_mode="livemin",
)
MODEL_SERVICE_IN_FLIGHT = Gauge(
    "aoi_model_service_in_flight",
    "Inference requests in flight to a model service.",
    ["service"],
    multiprocess_mode="livesum",
)
REFERENCE_SERVICE_RESTARTS = Counter(
    "aoi_reference_service_restarts",
    "Times `run.py` started the reference model service again after it exited on its own.",
)

# HTTP request counts and durations by route template (prometheus-fastapi-instrumentator),
# built once per process: the library does not register the same metric names twice, so a
# second app in one process (tests) would otherwise get none.
HTTP_INSTRUMENTATION = http_metrics.default()


def record_inspection_stored(defect_classes: Mapping[str, int]) -> None:
    """Count one succeeded inspection and its regions per defect class."""
    INSPECTIONS.labels(status="succeeded").inc()
    for class_name, regions in defect_classes.items():
        if regions:
            DEFECT_REGIONS.labels(class_name=class_name).inc(regions)


def record_inspection_failed() -> None:
    """Count one inspection that ended failed."""
    INSPECTIONS.labels(status="failed").inc()


class _Snapshot(Collector):
    """Metric families computed at scrape time, handed over as finished values."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def scrape_time_families(
    queue_jobs: Mapping[str, int],
    free_bytes: int | None,
    outbox: Mapping[str, Backlog] | None = None,
    webhooks: WebhookBacklog | None = None,
) -> list[Metric]:
    """`aoi_queue_jobs{status}` (jobs in the queue table by status),
    `aoi_storage_free_bytes` (free bytes where the agent keeps its files; omitted when
    `free_bytes` is None, e.g. a store that has no such figure), and per outbox sink
    `aoi_outbox_messages{sink}` (unpublished messages) and
    `aoi_outbox_oldest_age_seconds{sink}` (age of the oldest, 0 when none), and the
    webhook backlog `aoi_webhook_backlog` (events not yet delivered: pending deliveries
    and events not yet fanned out) and `aoi_webhook_oldest_age_seconds` (0 when none)."""
    jobs = GaugeMetricFamily(
        "aoi_queue_jobs", "Jobs in the procrastinate queue, by status.", labels=["status"]
    )
    for status, count in sorted(queue_jobs.items()):
        jobs.add_metric([status], count)
    families: list[Metric] = [jobs]
    if outbox is not None:
        backlog = GaugeMetricFamily(
            "aoi_outbox_messages", "Unpublished outbox messages, by sink.", labels=["sink"]
        )
        oldest = GaugeMetricFamily(
            "aoi_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox message, by sink (0 when none).",
            labels=["sink"],
        )
        for sink, figures in sorted(outbox.items()):
            backlog.add_metric([sink], figures.messages)
            oldest.add_metric([sink], figures.oldest_age_s or 0.0)
        families += [backlog, oldest]
    if webhooks is not None:
        families.append(
            GaugeMetricFamily(
                "aoi_webhook_backlog",
                "Webhook events not yet delivered (pending deliveries and events not yet"
                " fanned out to endpoints); parked deliveries are not counted.",
                value=webhooks.pending,
            )
        )
        families.append(
            GaugeMetricFamily(
                "aoi_webhook_oldest_age_seconds",
                "Age of the oldest webhook event not yet delivered (0 when none).",
                value=webhooks.oldest_age_s or 0.0,
            )
        )
    if free_bytes is not None:
        families.append(
            GaugeMetricFamily(
                "aoi_storage_free_bytes",
                "Free bytes on the file system holding the agent's data (DATA_DIR).",
                value=free_bytes,
            )
        )
    return families


def render(extra: Iterable[Metric] = ()) -> bytes:
    """Every metric in the Prometheus text format: this process's (or, in multi-process
    mode, all processes' through the shared folder) plus `extra`."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(extra))
    return generate_latest(registry) + generate_latest(snapshot)


async def scrape(session: AsyncSession, storage: Storage) -> bytes:
    """The `/metrics` answer body: every metric in the Prometheus text format, the queue's
    jobs counted and the free disk space read now.

    Raises:
        sqlalchemy.exc.DBAPIError: the database does not answer (the app answers 503).
    """
    queue_jobs = await QueueRepository(session).job_counts()
    outbox = {
        sink: await OutboxRepository(session).backlog(sink) for sink in (CFX_SINK, WEBHOOKS_SINK)
    }
    webhooks = await WebhookRepository(session).backlog()
    usage = await storage.disk_usage()
    # Off the event loop: about 8 ms, and in multi-process mode it reads every process's
    # metrics file (prometheus_client's values are lock-protected).
    return await anyio.to_thread.run_sync(
        render, scrape_time_families(queue_jobs, usage.free, outbox, webhooks)
    )


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of an API worker process that exited (multi-process mode)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
