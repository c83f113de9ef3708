"""Several model services (SEGFORMER_SERVICE_URLS): least-busy choice, failover without a
failed image, back-off and probe back in, per-service limits.

The batch test uses two real reference services and stops one of them mid-batch. The
scripted service (real HTTP on loopback) stands in where a real service cannot be made
to refuse an image or to hold requests open on demand.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.responses import JSONResponse, Response

from app.config import Settings
from app.errors import ModelServiceBadAnswer
from app.services.model_service.pool import ModelServicePool
from app.services.model_service.reference import (
    ReferenceService,
    free_loopback_port,
    start_reference_service,
)
from tests.conftest import agent_settings
from tests.support import (
    ScriptedService,
    db_rows,
    make_image,
    sample_analysis,
    serve_agent,
    wait_until,
)

PNG = make_image("PNG", (8, 8))
B64 = base64.b64encode(PNG).decode()
ANSWER = {
    "result_json": sample_analysis(8, 8),
    "images": {"combined": B64, "mask": B64, "overlay": B64},
}


def pool_settings(urls: list[str], **overrides: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        segformer_service_urls=urls,
        **{
            "segformer_backoff_base_s": 0.01,
            "segformer_timeout_s": 5,
            "segformer_failover_backoff_s": 0.3,
            **overrides,
        },
    )


@pytest.fixture
def second_reference_service(tmp_path: Path) -> Iterator[ReferenceService]:
    """A second reference model service, a real child process, that a test may stop."""
    service = start_reference_service(tmp_path / "second-service.log")
    yield service
    service.stop()


def test_the_list_wins_over_the_single_url_and_limits_follow_the_urls() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        segformer_service_url="http://old:8080/",
        segformer_service_urls="http://gpu-1:8080/, http://gpu-2:8080/",  # type: ignore[arg-type]
        segformer_service_max_concurrency="8",  # type: ignore[arg-type]
        segformer_max_concurrency=3,
    )
    assert settings.model_service_urls == ["http://gpu-1:8080/", "http://gpu-2:8080/"]
    assert [settings.model_service_limit(i) for i in range(2)] == [8, 3]
    assert settings.effective_worker_concurrency == 11
    single = Settings(_env_file=None, segformer_service_url="http://old:8080/")  # type: ignore[call-arg]
    assert single.model_service_urls == ["http://old:8080/"]


async def test_an_idle_pool_spreads_concurrent_images_over_the_services() -> None:
    async def slow() -> Response:
        await asyncio.sleep(0.3)
        return JSONResponse(ANSWER)

    with ScriptedService() as a, ScriptedService() as b:
        a.script = b.script = [slow]
        pool = ModelServicePool(pool_settings([a.url, b.url], segformer_max_concurrency=2))
        try:
            results = await asyncio.gather(
                *(pool.infer(PNG, f"{i}.png", "image/png") for i in range(4))
            )
        finally:
            await pool.aclose()
    assert (a.calls, b.calls) == (2, 2)
    assert sorted(r.service_url for r in results) == sorted([a.url, a.url, b.url, b.url])


async def test_a_service_never_gets_more_than_its_limit() -> None:
    in_flight = {"now": 0, "most": 0}

    async def counted() -> Response:
        in_flight["now"] += 1
        in_flight["most"] = max(in_flight["most"], in_flight["now"])
        await asyncio.sleep(0.05)
        in_flight["now"] -= 1
        return JSONResponse(ANSWER)

    with ScriptedService() as a:
        a.script = [counted]
        pool = ModelServicePool(pool_settings([a.url], segformer_service_max_concurrency=[2]))
        try:
            await asyncio.gather(*(pool.infer(PNG, f"{i}.png", "image/png") for i in range(8)))
        finally:
            await pool.aclose()
    assert a.calls == 8
    assert in_flight["most"] == 2


async def test_a_refused_image_is_not_sent_elsewhere_and_the_service_stays_in() -> None:
    with ScriptedService() as a, ScriptedService() as b:
        a.script = b.script = [lambda: JSONResponse({"detail": "not an image"}, status_code=400)]
        pool = ModelServicePool(pool_settings([a.url, b.url]))
        try:
            with pytest.raises(ModelServiceBadAnswer, match="400"):
                await pool.infer(PNG, "x.png", "image/png")
        finally:
            await pool.aclose()
    assert a.calls + b.calls == 1
    assert all(s.up for s in pool.services)


async def test_a_failing_service_is_left_out_then_probed_back_in() -> None:
    with ScriptedService() as a, ScriptedService() as b:
        a.script = [lambda: JSONResponse({"detail": "GPU fell over"}, status_code=500)]
        b.script = [lambda: JSONResponse(ANSWER)]
        pool = ModelServicePool(pool_settings([a.url, b.url]))
        try:
            first = await pool.infer(PNG, "1.png", "image/png")
            assert first.service_url == b.url, "the image moved to the working service"
            assert not pool.services[0].up
            for i in range(3):
                assert (await pool.infer(PNG, f"{i}.png", "image/png")).service_url == b.url
            assert a.calls == 1, "no request reaches a service while it is left out"

            a.script = [lambda: JSONResponse(ANSWER)]
            await asyncio.sleep(0.35)  # the back-off ends; the next choice probes it
            await pool.infer(PNG, "p.png", "image/png")
            await asyncio.sleep(0.2)
            assert pool.services[0].up
            results = await asyncio.gather(
                *(pool.infer(PNG, f"{i}.png", "image/png") for i in range(4))
            )
        finally:
            await pool.aclose()
    assert {r.service_url for r in results} == {a.url, b.url}


async def test_a_service_whose_health_passes_but_inference_fails_backs_off_longer() -> None:
    # /health answers ok (a lie): each probe lets it back in, but only a successful
    # inference resets its failures, so the back-off doubles as documented.
    with ScriptedService() as a, ScriptedService() as b:
        a.script = [lambda: JSONResponse({"detail": "GPU fell over"}, status_code=500)]
        b.script = [lambda: JSONResponse(ANSWER)]
        pool = ModelServicePool(pool_settings([a.url, b.url]))
        lying = pool.services[0]
        try:
            await pool.infer(PNG, "1.png", "image/png")
            assert (lying.up, lying.failures) == (False, 1)
            await pool.probe_all()
            assert (lying.up, lying.failures) == (True, 1)
            while a.calls < 2:
                assert (await pool.infer(PNG, "n.png", "image/png")).service_url == b.url
            assert (lying.up, lying.failures) == (False, 2)
            assert lying.down_until is not None
            assert 0.45 < lying.down_until - time.monotonic() <= 0.6

            a.script = [lambda: JSONResponse(ANSWER)]
            await pool.probe_all()
            while a.calls < 3:
                await pool.infer(PNG, "ok.png", "image/png")
            assert (lying.up, lying.failures) == (True, 0), "a success resets the count"
        finally:
            await pool.aclose()


async def test_requests_failing_together_lengthen_the_back_off_once() -> None:
    async def broken() -> Response:
        await asyncio.sleep(0.1)
        return JSONResponse({"detail": "GPU fell over"}, status_code=500)

    with ScriptedService() as a, ScriptedService() as b:
        a.script = [broken]
        b.script = [lambda: JSONResponse(ANSWER)]
        pool = ModelServicePool(pool_settings([a.url, b.url], segformer_max_concurrency=3))
        try:
            # Fewest in flight, ties taking turns: two of the four are sent to `a` at once.
            results = await asyncio.gather(
                *(pool.infer(PNG, f"{i}.png", "image/png") for i in range(4))
            )
        finally:
            await pool.aclose()
    assert {r.service_url for r in results} == {b.url}
    assert a.calls >= 2, "several requests were in flight on the failing service"
    assert pool.services[0].failures == 1


async def test_every_service_down_still_tries_one_and_reports_its_error() -> None:
    dead = [f"http://127.0.0.1:{free_loopback_port()}/" for _ in range(2)]
    pool = ModelServicePool(pool_settings(dead, segformer_max_retries=1))
    try:
        with pytest.raises(Exception, match="unreachable"):
            await pool.infer(PNG, "x.png", "image/png")
        assert not any(s.up for s in pool.services)
        # Both left out: the next image is still tried (not refused without trying).
        with pytest.raises(Exception, match="unreachable"):
            await pool.infer(PNG, "y.png", "image/png")
    finally:
        await pool.aclose()


async def test_a_service_down_for_a_day_still_fails_with_its_own_error() -> None:
    # 1024 failures in a row (about 17 h of outage at the default 60 s maximum back-off)
    # made the doubling overflow a float: OverflowError, a 500 for every upload.
    async def broken() -> Response:
        return JSONResponse({"detail": "GPU fell over"}, status_code=500)

    with ScriptedService() as a:
        a.script = [broken]
        pool = ModelServicePool(pool_settings([a.url], segformer_failover_backoff_max_s=60))
        service = pool.services[0]
        service.failures = 1100
        try:
            with pytest.raises(ModelServiceBadAnswer, match="GPU fell over"):
                await pool.infer(PNG, "x.png", "image/png")
            assert service.failures == 1101
            assert service.down_until is not None
            assert 59 < service.down_until - time.monotonic() <= 60.5
        finally:
            await pool.aclose()


@pytest.mark.deeppcb
def test_batch_completes_when_one_of_two_services_stops_mid_batch(
    tmp_path: Path,
    database_url: str,
    reference_service: ReferenceService,
    second_reference_service: ReferenceService,
    deeppcb: list[Path],
) -> None:
    images = deeppcb[:40]
    first, second = reference_service.url, second_reference_service.url
    settings = agent_settings(
        tmp_path / "data",
        database_url,
        first,
        segformer_service_urls=[first, second],
        segformer_max_concurrency=2,
    )
    with serve_agent(settings) as agent, httpx2.Client(base_url=agent.url, timeout=60) as c:
        batch_id = c.post(
            "/api/upload/batch", files=[("images", (p.name, p.read_bytes())) for p in images]
        ).json()["batch_id"]

        def both_served() -> bool:
            services = c.get("/api/health").json()["model_services"]
            return all(s["requests"] >= 2 for s in services)

        wait_until(both_served, interval_s=0.05)
        second_reference_service.stop()
        status = wait_until(
            lambda: (s := c.get(f"/api/batches/{batch_id}").json())["done"] and s,
            timeout_s=180,
        )
        health = c.get("/api/health").json()

    assert status["succeeded"] == len(images)
    assert status["failed"] == 0
    rows = db_rows(
        database_url,
        "SELECT model_service_url, count(*), max(attempts) FROM inspections"
        " WHERE batch_id = %s GROUP BY model_service_url",
        batch_id,
    )
    served = {url: count for url, count, _ in rows}
    assert set(served) == {first, second}, "both services did part of the batch"
    assert served[first] > served[second], "the stopped service's share moved to the other"
    assert max(attempts for _, _, attempts in rows) == 1, "moved at once, not retried later"
    by_url = {s["url"]: s for s in health["model_services"]}
    assert by_url[second]["ok"] is False
    assert by_url[first]["ok"] is True
    assert health["model_service"]["ok"] is True
    assert health["status"] == "degraded"
