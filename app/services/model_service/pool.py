"""Several model services behind one interface (SEGFORMER_SERVICE_URLS).

One `ModelServiceClient` per URL. Each image goes to the service with the fewest
requests in flight, within that service's concurrency limit. A service that fails
(unreachable, HTTP 5xx, a timeout or an unusable answer, after the client's own
retries) is left out for a back-off period (SEGFORMER_FAILOVER_BACKOFF_S, doubling on
each further failure up to SEGFORMER_FAILOVER_BACKOFF_MAX_S) and the image is sent to
another service at once; when the back-off ends, a health probe (`GET /health`) lets the
service back in. A 4xx refusal of the image is the image's fault: it is answered as is
and the service stays in.

When every service is left out, requests are still tried on the one whose back-off ends
first, so a single service behaves as it did before pools existed: every request
reaches it and its errors reach the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field

import anyio

from app.config import Settings
from app.errors import ModelServiceBadAnswer, ModelServiceUnavailable
from app.services.model_service.client import (
    InferenceRecord,
    InferenceResult,
    ModelServiceClient,
)
from app.services.system import metrics
from app.utils.version import without_userinfo

logger = logging.getLogger(__name__)

# 2 ** 64 times any sane SEGFORMER_FAILOVER_BACKOFF_S is past any back-off maximum.
_MAX_DOUBLINGS = 64


@dataclass
class ServiceState:
    """One model service of the pool and what the pool knows of it.

    Attributes:
        client: the service's client (its own connection pool and retries).
        url: the base URL without credentials (shown in /health, metrics and the ledger).
        limit: requests in flight at most.
        in_flight: requests in flight now.
        failures: failures since its last successful inference (a probe that lets it
            back in keeps the count, so the next failure doubles the back-off).
        down_until: monotonic time its back-off ends; None while it is in.
        last_error: what its last failure was, for people.
        probing: a health probe is running.
    """

    client: ModelServiceClient
    url: str
    limit: int
    in_flight: int = 0
    failures: int = 0
    down_until: float | None = None
    last_error: str | None = None
    probing: bool = False
    requests: int = 0
    _probe: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def up(self) -> bool:
        """Whether the service takes requests (it is not backing off)."""
        return self.down_until is None


class ModelServicePool:
    """Spreads inferences over the model services of SEGFORMER_SERVICE_URLS (or the single
    SEGFORMER_SERVICE_URL); the same interface as `ModelServiceClient` for its callers."""

    def __init__(self, settings: Settings, urls: list[str] | None = None) -> None:
        urls = urls if urls is not None else settings.model_service_urls
        if not urls:
            raise ValueError("no model service URL (SEGFORMER_SERVICE_URLS)")
        self._backoff_s = settings.segformer_failover_backoff_s
        self._backoff_max_s = max(settings.segformer_failover_backoff_max_s, self._backoff_s)
        self.services: list[ServiceState] = []
        for index, url in enumerate(urls):
            limit = settings.model_service_limit(index)
            client = ModelServiceClient(
                settings.model_copy(update={"segformer_max_concurrency": limit}), url
            )
            self.services.append(ServiceState(client, without_userinfo(client.base_url), limit))
            metrics.MODEL_SERVICE_UP.labels(service=self.services[-1].url).set(1)
        # Set (and replaced) whenever a slot frees or a service comes back in.
        self._changed: asyncio.Event | None = None
        self._next = 0  # round-robin among equally loaded services
        self._decode_limiter: anyio.CapacityLimiter | None = None

    # -- the client interface -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The first service's base URL (the one named when a single URL is configured)."""
        return self.services[0].client.base_url

    @property
    def decode_limiter(self) -> anyio.CapacityLimiter:
        """The process-wide bound on full image decodes, shared by every service's client."""
        if self._decode_limiter is None:
            self._decode_limiter = self.services[0].client.decode_limiter
            for service in self.services[1:]:
                service.client._decode_limiter = self._decode_limiter
        return self._decode_limiter

    @property
    def last_inference(self) -> InferenceRecord | None:
        """The latest inference over all services."""
        records = [s.client.last_inference for s in self.services if s.client.last_inference]
        return max(records, key=lambda r: r.at) if records else None

    async def aclose(self) -> None:
        """Stop the probes and close every connection pool."""
        for service in self.services:
            if service._probe is not None:
                service._probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await service._probe
            await service.client.aclose()

    async def probe_all(self) -> list[tuple[bool, str | None]]:
        """Each service's health probe, in the order of the URLs; a service that passes
        while backing off is let back in."""
        results = await asyncio.gather(*(s.client.health() for s in self.services))
        for service, (ok, _) in zip(self.services, results, strict=True):
            if ok and not service.up:
                self._back_in(service)
        return list(results)

    async def infer(self, image: bytes, filename: str, media_type: str) -> InferenceResult:
        """Run inference on one image on the least busy service, moving to another
        service when one fails.

        Returns:
            The result of `ModelServiceClient.infer`, `service_url` naming the service
            that answered (without credentials).

        Raises:
            ModelServiceUnavailable, ModelServiceBadAnswer: as `ModelServiceClient.infer`,
                from the last service tried once every service was tried for this image,
                or at once for a refusal of the image (4xx).
        """
        tried: set[int] = set()
        while True:
            index = await self._acquire(tried)
            service = self.services[index]
            started = time.perf_counter()
            try:
                result = await service.client.infer(image, filename, media_type)
            except (ModelServiceUnavailable, ModelServiceBadAnswer) as exc:
                # The client records how the call ended before raising, with no await in
                # between: `ok` there means the service refused the image (a 4xx).
                record = service.client.last_inference
                refused = (
                    isinstance(exc, ModelServiceBadAnswer) and record is not None and record.ok
                )
                self._observe(service, started, "refused" if refused else "failed")
                self._release(service)
                if refused:
                    raise
                self._failed(service, exc.detail)
                tried.add(index)
                if len(tried) >= len(self.services):
                    raise
                logger.warning(
                    "model service failed; sending the image to another",
                    extra={"service": service.url, "error": exc.detail},
                )
                continue
            except BaseException:
                self._release(service)
                raise
            self._observe(service, started, "ok")
            self._release(service)
            self._succeeded(service)
            return dataclasses.replace(result, service_url=service.url)

    # -- choosing and accounting ---------------------------------------------------------

    def _choose(self, tried: set[int]) -> int | None:
        """The service to send to now, or None when every candidate is at its limit."""
        now = time.monotonic()
        candidates = [i for i in range(len(self.services)) if i not in tried]
        for i in candidates:
            service = self.services[i]
            if not service.up and service.down_until is not None and now >= service.down_until:
                self._start_probe(service)
        up = [i for i in candidates if self.services[i].up]
        if not up:
            # Nothing is in: try the service whose back-off ends first (a trial request).
            up = sorted(candidates, key=lambda i: self.services[i].down_until or 0.0)[:1]
        free = [i for i in up if self.services[i].in_flight < self.services[i].limit]
        if not free:
            return None
        count = len(self.services)
        # Fewest in flight; ties go round-robin so an idle pool spreads its work.
        best = min(free, key=lambda i: (self.services[i].in_flight, (i - self._next) % count))
        self._next = (best + 1) % count
        return best

    async def _acquire(self, tried: set[int]) -> int:
        """Take a slot on the service to send to (waits while every candidate is busy)."""
        while True:
            index = self._choose(tried)
            if index is not None:
                service = self.services[index]
                service.in_flight += 1
                service.requests += 1
                metrics.MODEL_SERVICE_IN_FLIGHT.labels(service=service.url).inc()
                return index
            # Every candidate is busy: wait for a slot or a service coming back; wake up at
            # least every second to notice back-offs that ended.
            if self._changed is None:
                self._changed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=1.0)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _release(self, service: ServiceState) -> None:
        service.in_flight -= 1
        metrics.MODEL_SERVICE_IN_FLIGHT.labels(service=service.url).dec()
        self._notify()

    def _observe(self, service: ServiceState, started: float, outcome: str) -> None:
        metrics.MODEL_SERVICE_DURATION.labels(service=service.url).observe(
            time.perf_counter() - started
        )
        metrics.MODEL_SERVICE_REQUESTS.labels(service=service.url, outcome=outcome).inc()

    def _succeeded(self, service: ServiceState) -> None:
        service.failures = 0
        self._back_in(service)

    def _failed(self, service: ServiceState, detail: str) -> None:
        now = time.monotonic()
        service.last_error = detail
        if service.down_until is not None and service.down_until > now:
            # Already left out: the other requests that were in flight when it failed
            # end now too; one outage lengthens the back-off once.
            return
        service.failures += 1
        # The exponent is capped: a service down for a day fails over a thousand times,
        # and 2 ** 1024 times a float overflows (OverflowError, a 500 for every upload).
        doublings = min(service.failures - 1, _MAX_DOUBLINGS)
        backoff = min(self._backoff_s * 2**doublings, self._backoff_max_s)
        service.down_until = now + backoff
        metrics.MODEL_SERVICE_UP.labels(service=service.url).set(0)
        logger.warning(
            "model service left out",
            extra={"service": service.url, "for_s": backoff, "error": detail},
        )

    def _back_in(self, service: ServiceState) -> None:
        """Let a left-out service take requests again. Its count of failures stays until
        an inference succeeds: a service whose `/health` passes but whose inferences fail
        (a lie, or a hang) is left out twice as long each time, not for the base back-off
        again after every probe."""
        if service.up:
            return
        service.down_until = None
        metrics.MODEL_SERVICE_UP.labels(service=service.url).set(1)
        logger.info("model service back in", extra={"service": service.url})
        self._notify()

    def _start_probe(self, service: ServiceState) -> None:
        if service.probing:
            return
        service.probing = True

        async def probe() -> None:
            try:
                ok, detail = await service.client.health()
            finally:
                service.probing = False
            if ok:
                self._back_in(service)
            else:
                self._failed(service, detail or "health probe failed")

        service._probe = asyncio.get_running_loop().create_task(
            probe(), name=f"model-service-probe {service.url}"
        )
