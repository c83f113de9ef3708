"""The model-service client: answer layouts, retries, errors.

The reference service always answers well, so these tests use a small scripted
model service (real HTTP on a loopback port) for what a real one cannot be made
to do on demand: answer 503 twice, drop connections, send other layouts or a
broken body.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from PIL import Image as PILImage
from starlette.responses import JSONResponse, Response

from app.config import Settings
from app.errors import ModelServiceBadAnswer, ModelServiceUnavailable
from app.services.model_service.client import ModelServiceClient
from app.services.model_service.reference import free_loopback_port
from tests.support import ScriptedService, make_image, sample_analysis

PNG = make_image("PNG", (8, 8))
B64 = base64.b64encode(PNG).decode()
ANALYSIS = sample_analysis(8, 8)


@pytest.fixture
def scripted() -> Iterator[ScriptedService]:
    with ScriptedService() as service:
        yield service


def make_client(url: str, **overrides: Any) -> ModelServiceClient:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{"segformer_backoff_base_s": 0.01, "segformer_timeout_s": 5, **overrides},
    )
    return ModelServiceClient(settings, url)


def ok(body: dict[str, Any]) -> Callable[[], Response]:
    return lambda: JSONResponse(body)


@pytest.mark.parametrize(
    "body",
    [
        {"result_json": ANALYSIS, "images": {"combined": B64, "mask": B64, "overlay": B64}},
        {
            "result": ANALYSIS,
            "combined_image": B64,
            "mask_image": B64,
            "overlay_image": "data:image/png;base64," + B64,
        },
        {
            **ANALYSIS,
            "images": {
                "combined": "/files/c.png",
                "mask": "/files/m.png",
                "overlay": "/files/o.png",
            },
        },
    ],
    ids=["result_json+images", "result+top-level-data-uri", "top-level+urls"],
)
async def test_every_plausible_layout_is_accepted(
    scripted: ScriptedService, body: dict[str, Any]
) -> None:
    scripted.script = [ok(body)]
    client = make_client(scripted.url)
    try:
        result = await client.infer(PNG, "a.png", "image/png")
    finally:
        await client.aclose()
    assert result.analysis.classes["pin_hole"].regions[0].circularity == 0.75
    assert result.images == {"combined": PNG, "mask": PNG, "overlay": PNG}
    assert result.raw_analysis["classes"] == ANALYSIS["classes"]
    assert result.model_name is None
    assert result.model_version is None


@pytest.mark.parametrize("where", ["top", "result_json"])
async def test_the_model_name_and_version_are_read_where_the_service_puts_them(
    scripted: ScriptedService, where: str
) -> None:
    model = {"model_name": "segformer-b2-pcb", "model_version": "2026.02.1"}
    images = {"combined": B64, "mask": B64, "overlay": B64}
    body = (
        {**model, "result_json": ANALYSIS, "images": images}
        if where == "top"
        else {"result_json": {**ANALYSIS, **model}, "images": images}
    )
    scripted.script = [ok(body)]
    client = make_client(scripted.url)
    try:
        result = await client.infer(PNG, "a.png", "image/png")
    finally:
        await client.aclose()
    assert (result.model_name, result.model_version) == ("segformer-b2-pcb", "2026.02.1")


async def test_503_is_retried_with_back_off_then_succeeds(scripted: ScriptedService) -> None:
    good = {"result_json": ANALYSIS, "images": {"combined": B64, "mask": B64, "overlay": B64}}
    scripted.script = [
        lambda: JSONResponse({"error": "busy"}, status_code=503),
        lambda: JSONResponse({"error": "busy"}, status_code=502),
        ok(good),
    ]
    client = make_client(scripted.url)
    try:
        result = await client.infer(PNG, "a.png", "image/png")
    finally:
        await client.aclose()
    assert scripted.calls == 3
    assert result.analysis.total_defects == 1


async def test_persistent_503_gives_unavailable_after_three_attempts(
    scripted: ScriptedService,
) -> None:
    scripted.script = [lambda: JSONResponse({"detail": "GPU busy"}, status_code=503)]
    client = make_client(scripted.url)
    with pytest.raises(ModelServiceUnavailable, match=r"HTTP 503 \(attempt 3 of 3, .*\): GPU busy"):
        await client.infer(PNG, "a.png", "image/png")
    await client.aclose()
    assert scripted.calls == 3


async def test_4xx_is_never_retried(scripted: ScriptedService) -> None:
    scripted.script = [lambda: JSONResponse({"detail": "not an image"}, status_code=400)]
    client = make_client(scripted.url)
    with pytest.raises(ModelServiceBadAnswer, match="HTTP 400: not an image"):
        await client.infer(PNG, "a.png", "image/png")
    await client.aclose()
    assert scripted.calls == 1


async def test_the_services_reason_reaches_the_error_without_control_characters(
    scripted: ScriptedService,
) -> None:
    # The reason goes into the agent's JSON answer and its logs: a NUL or a terminal
    # escape sequence from a lying service must not.
    scripted.script = [
        lambda: JSONResponse({"detail": "bad\x00image\x1b[31m" + "x" * 500}, status_code=400),
        lambda: Response(b"plain\x00text", status_code=400),
    ]
    client = make_client(scripted.url)
    for expected in ("HTTP 400: bad?image?[31mxxx", "HTTP 400: plain?text"):
        with pytest.raises(ModelServiceBadAnswer) as caught:
            await client.infer(PNG, "a.png", "image/png")
        assert expected in caught.value.detail
        assert not any(ord(c) < 32 for c in caught.value.detail)
        assert len(caught.value.detail) < 400
    await client.aclose()


async def test_unreachable_service_names_its_url() -> None:
    url = f"http://127.0.0.1:{free_loopback_port()}/"
    client = make_client(url)
    with pytest.raises(ModelServiceUnavailable, match=f"{url} is unreachable after 3 attempts"):
        await client.infer(PNG, "a.png", "image/png")
    await client.aclose()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"result_json": ANALYSIS, "images": {"combined": B64, "overlay": B64}}, "no 'mask' image"),
        ({"images": {"combined": B64, "mask": B64, "overlay": B64}}, "no analysis JSON"),
        (
            {"result_json": ANALYSIS, "images": {"combined": "!!", "mask": B64, "overlay": B64}},
            "'combined' image is not valid base64",
        ),
        (
            {
                "result_json": {
                    **ANALYSIS,
                    "classes": {"x": {**ANALYSIS["classes"]["pin_hole"], "total_regions": 3}},
                },
                "images": {"combined": B64, "mask": B64, "overlay": B64},
            },
            "total_regions is 3 but 1 regions are listed",
        ),
        (
            {
                **ANALYSIS,
                "model_version": "2.1\n",
                "images": {"combined": B64, "mask": B64, "overlay": B64},
            },
            "model_version",
        ),
        (
            {
                "result_json": {**ANALYSIS, "model_name": "m" * 129},
                "images": {"combined": B64, "mask": B64, "overlay": B64},
            },
            "model_name",
        ),
        (
            {
                **ANALYSIS,
                "model_version": 2,
                "images": {"combined": B64, "mask": B64, "overlay": B64},
            },
            "model_version",
        ),
    ],
    ids=[
        "missing-mask",
        "missing-analysis",
        "bad-base64",
        "totals-disagree",
        "model-version-newline",
        "model-name-too-long",
        "model-version-not-text",
    ],
)
async def test_malformed_answers_name_what_is_wrong(
    scripted: ScriptedService, body: dict[str, Any], message: str
) -> None:
    scripted.script = [ok(body)]
    client = make_client(scripted.url)
    with pytest.raises(ModelServiceBadAnswer, match=message):
        await client.infer(PNG, "a.png", "image/png")
    await client.aclose()


async def test_non_json_body_is_a_bad_answer(scripted: ScriptedService) -> None:
    scripted.script = [lambda: Response("<html>proxy error</html>", media_type="text/html")]
    client = make_client(scripted.url)
    with pytest.raises(ModelServiceBadAnswer, match="not JSON"):
        await client.infer(PNG, "a.png", "image/png")
    await client.aclose()


GOOD = {"result_json": ANALYSIS, "images": {"combined": B64, "mask": B64, "overlay": B64}}


def hang(seconds: float) -> Callable[[], Any]:
    async def answer() -> Response:
        await asyncio.sleep(seconds)
        return JSONResponse(GOOD)

    return answer


async def test_a_hanging_service_costs_one_inference_and_the_503_says_how_long(
    scripted: ScriptedService,
) -> None:
    """A service that takes the image and never answers (scripted: the real one cannot
    hang on demand) is not sent the image again: one call, one timeout."""
    scripted.script = [hang(3)]
    client = make_client(scripted.url, segformer_timeout_s=1, segformer_deadline_s=20)
    started = time.perf_counter()
    with pytest.raises(ModelServiceUnavailable, match="no answer within 1 s") as caught:
        await client.infer(PNG, "a.png", "image/png")
    elapsed = time.perf_counter() - started
    await client.aclose()
    assert scripted.calls == 1
    assert elapsed < 3
    assert 0.9 <= caught.value.extra["waited_seconds"] < 3
    assert client.last_inference is not None
    assert not client.last_inference.ok


async def test_the_deadline_covers_every_attempt_and_back_off(scripted: ScriptedService) -> None:
    """503 forever (scripted) with a 1 s back-off base: attempts stop at the deadline."""
    scripted.script = [lambda: JSONResponse({"detail": "GPU busy"}, status_code=503)]
    client = make_client(
        scripted.url, segformer_max_retries=10, segformer_backoff_base_s=1, segformer_deadline_s=2.5
    )
    started = time.perf_counter()
    with pytest.raises(ModelServiceUnavailable, match="kept answering HTTP 503") as caught:
        await client.infer(PNG, "a.png", "image/png")
    elapsed = time.perf_counter() - started
    await client.aclose()
    assert elapsed < 2.5
    assert scripted.calls == 2  # at 0 s and 1 s; the next would start at 3 s, past 2.5 s
    assert caught.value.to_body()["waited_seconds"] == pytest.approx(elapsed, abs=0.2)


async def test_a_slow_answer_is_cut_at_the_deadline(scripted: ScriptedService) -> None:
    """Each attempt may take SEGFORMER_TIMEOUT_S, but the whole inference only the deadline."""
    scripted.script = [hang(3)]
    client = make_client(scripted.url, segformer_timeout_s=5, segformer_deadline_s=1.5)
    with pytest.raises(ModelServiceUnavailable, match=r"within 2 s \(SEGFORMER_DEADLINE_S = 1.5"):
        await client.infer(PNG, "a.png", "image/png")
    await client.aclose()
    assert scripted.calls == 1


async def test_health_probe_needs_the_contracts_answer(scripted: ScriptedService) -> None:
    """Scripted: a server that answers 404 (or 200 with something else) is not a model service."""
    client = make_client(scripted.url)
    try:
        assert await client.health() == (True, "health check passed (engine scripted)")
        scripted.health = lambda: JSONResponse({"detail": "Not Found"}, status_code=404)
        ok_, detail = await client.health()
        assert not ok_
        assert "HTTP 404" in (detail or "")
        scripted.health = lambda: Response("<html>welcome</html>", media_type="text/html")
        ok_, detail = await client.health()
        assert not ok_
        assert '{"status": "ok"' in (detail or "")
    finally:
        await client.aclose()


async def test_last_inference_is_recorded(scripted: ScriptedService) -> None:
    scripted.script = [ok(GOOD), lambda: JSONResponse({"detail": "not an image"}, status_code=400)]
    client = make_client(scripted.url)
    try:
        assert client.last_inference is None
        await client.infer(PNG, "a.png", "image/png")
        assert client.last_inference is not None
        assert client.last_inference.ok
        with pytest.raises(ModelServiceBadAnswer):
            await client.infer(PNG, "a.png", "image/png")
        # The service refused a file: it is working, the file is the problem.
        assert client.last_inference.ok
    finally:
        await client.aclose()


async def test_a_health_answer_that_is_a_gzip_bomb_is_read_only_in_part(
    scripted: ScriptedService,
) -> None:
    """Scripted: a `/health` answering 64 MB of gzip-compressed spaces (64 KB sent). The
    probe reads at most 64 KiB of it and reports the service unhealthy."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join([*(compressor.compress(b" " * 2**20) for _ in range(64)), compressor.flush()])
    scripted.health = lambda: Response(
        bomb, media_type="application/json", headers={"content-encoding": "gzip"}
    )
    client = make_client(scripted.url)
    tracemalloc.start()
    try:
        healthy, detail = await client.health()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await client.aclose()
    assert not healthy
    assert '{"status": "ok"' in (detail or "")
    assert peak < 8 * 2**20


async def test_result_images_fetched_by_url_count_against_the_answer_limit() -> None:
    """Scripted: the answer is small, but the image it names by URL is larger than what
    is left of MODEL_SERVICE_MAX_ANSWER_MB (here 0.05 MB): refused, the fetch cut."""
    big = PILImage.frombytes("L", (300, 300), bytes(range(256)) * 352)
    buffer = io.BytesIO()
    big.save(buffer, "PNG", compress_level=0)
    assert len(buffer.getvalue()) > 0.05 * 2**20
    with ScriptedService(file_image=buffer.getvalue()) as service:
        body = {**ANALYSIS, "images": {"combined": B64, "mask": "/files/m.png", "overlay": B64}}
        service.script = [ok(body)]
        client = make_client(service.url, model_service_max_answer_mb=0.05)
        try:
            with pytest.raises(ModelServiceBadAnswer, match="MODEL_SERVICE_MAX_ANSWER_MB"):
                await client.infer(PNG, "a.png", "image/png")
        finally:
            await client.aclose()
        assert service.file_calls == 1


async def test_a_large_inline_image_is_decoded_whole(scripted: ScriptedService) -> None:
    """Scripted: base64 images over 1 MB are decoded in a worker thread; the PNG arrives
    byte for byte (1000 x 1000 pixels of noise, about 1.3 MB of base64)."""
    noise = PILImage.frombytes("L", (1000, 1000), random.Random(7).randbytes(1000 * 1000))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    big = buffer.getvalue()
    data = base64.b64encode(big).decode()
    assert len(data) > 2**20
    scripted.script = [
        ok({"result_json": sample_analysis(1000, 1000), "images": dict.fromkeys(_KINDS, data)})
    ]
    client = make_client(scripted.url)
    try:
        result = await client.infer(big, "big.png", "image/png")
    finally:
        await client.aclose()
    assert result.images == dict.fromkeys(_KINDS, big)


_KINDS = ("combined", "mask", "overlay")


def _rotated_jpeg(size: tuple[int, int], orientation: int | None) -> bytes:
    exif = PILImage.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    PILImage.new("L", size, 200).save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("orientation", "accepted"), [(None, False), (1, False), (6, True), (8, True)]
)
async def test_an_analysis_of_the_exif_rotated_image_fits_only_a_rotated_input(
    scripted: ScriptedService, orientation: int | None, accepted: bool
) -> None:
    """A 16 x 8 JPEG whose EXIF orientation turns it (6, 8) may be analysed as 8 x 16 (a
    service that applies `exif_transpose`); without such an orientation that is a lie."""
    upright = make_image("PNG", (8, 16))
    images = {"combined": b64_of(make_image("PNG", (16, 16))), "mask": b64_of(upright)}
    images["overlay"] = images["mask"]
    scripted.script = [ok({"result_json": sample_analysis(8, 16), "images": images})]
    client = make_client(scripted.url)
    try:
        if accepted:
            result = await client.infer(_rotated_jpeg((16, 8), orientation), "r.jpg", "image/jpeg")
            assert result.analysis.image_shape.width == 8
        else:
            with pytest.raises(ModelServiceBadAnswer, match="image sent is 16 x 8"):
                await client.infer(_rotated_jpeg((16, 8), orientation), "r.jpg", "image/jpeg")
    finally:
        await client.aclose()


def b64_of(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("configured", "named"),
    [
        ({"segformer_service_url": "{url}"}, "check SEGFORMER_SERVICE_URL and"),
        ({"segformer_service_urls": ["{url}"]}, "check SEGFORMER_SERVICE_URLS and"),
    ],
)
async def test_an_unreachable_service_names_the_setting_in_use(
    configured: dict[str, Any], named: str
) -> None:
    """The health detail tells the operator which setting to correct: the list
    (SEGFORMER_SERVICE_URLS) when the URLs come from it, not the single URL's setting."""
    url = f"http://127.0.0.1:{free_loopback_port()}/"  # nothing listens there
    values = {k: [url] if isinstance(v, list) else url for k, v in configured.items()}
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    client = ModelServiceClient(settings, url)
    try:
        healthy, detail = await client.health()
    finally:
        await client.aclose()
    assert not healthy
    assert named in (detail or "")
