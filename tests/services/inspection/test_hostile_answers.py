"""Hostile model-service answers, end to end through the agent (issue 17, point 7): a
compressed bomb, a huge body, a body that trickles for ever, JSON nested or repeated
without end, regions outside the image or naming a class the answer lacks, an analysis
that lies about the image's size, a result PNG that declares 49 Mpx.

The reference service only sends good answers, so the agent talks to the scripted model
service of test_faults.py (real HTTP on a loopback port) serving each hostile answer: what
a real one cannot be made to do on demand. The agent, its database and its files are
real. Every such answer must end as a 502 (503 when it takes too long) with the input
kept and the ledger row failed, nothing stored as a success, and the agent's memory
bounded by MODEL_SERVICE_MAX_ANSWER_MB, not by what the service sends.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from starlette.responses import Response, StreamingResponse

from tests.conftest import agent_settings
from tests.services.inspection.scripted import (
    GOOD,
    HEIGHT,
    WIDTH,
    Handler,
    ScriptedModelService,
    assert_nothing_stored,
    b64,
    region,
    set_value,
    upload_board,
    with_change,
)
from tests.support import AgentServer, serve_agent

LIMIT_MB = 4
"""The test agent's MODEL_SERVICE_MAX_ANSWER_MB."""
MEMORY_BOUND_BYTES = 40 * 2**20
"""What one hostile answer may cost the agent (Python allocations, tracemalloc peak): a
few times the limit, far below what the answers below would cost if read whole."""
BOMB_DECODED_BYTES = 512 * 2**20


@pytest.fixture(scope="module")
def bounded_agent(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, service: ScriptedModelService
) -> Iterator[AgentServer]:
    settings = agent_settings(
        tmp_path_factory.mktemp("data"), database_url, service.url
    ).model_copy(
        update={
            "segformer_timeout_s": 3,
            "segformer_max_retries": 1,
            "segformer_deadline_s": 4,
            "model_service_max_answer_mb": LIMIT_MB,
        }
    )
    with serve_agent(settings) as server:
        yield server


def _compressed(encoding: str, size: int) -> bytes:
    """`size` bytes of JSON whitespace, gzip- or deflate-compressed (about 1000:1)."""
    compressor = (
        zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        if encoding == "gzip"
        else zlib.compressobj(9)
    )
    block = b" " * 2**20
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join([*parts, compressor.flush()])


def _raw(body: bytes, **headers: str) -> Handler:
    async def handler() -> Response:
        return Response(body, media_type="application/json", headers=headers)

    return handler


def _streamed(chunk: bytes, count: int, delay_s: float = 0.0) -> Handler:
    """A body of `count` x `chunk` sent chunked (no Content-Length), `delay_s` apart."""

    async def handler() -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(count):
                if delay_s:
                    await asyncio.sleep(delay_s)
                yield chunk

        return StreamingResponse(body(), media_type="application/json")

    return handler


def _upload_measured(agent: AgentServer) -> tuple[httpx2.Response, int]:
    """The upload's answer and the peak of Python allocations while it ran, bytes (the
    agent runs in this process; the hostile bodies are built before measuring)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        response = upload_board(agent)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return response, peak


def _assert_refused(agent: AgentServer, response: httpx2.Response, status: int = 502) -> str:
    """The upload got `status`, its input is kept and nothing is stored; its last_error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == (
        "model_service_bad_answer" if status == 502 else "model_service_unavailable"
    )
    assert body["retry_url"].endswith("/retry")
    last_error = assert_nothing_stored(agent, body["img_unique_id"])
    uploads = agent.settings.resolved_data_dir / "uploads"
    assert list(uploads.rglob(f"*{body['img_unique_id']}*")), "the input must be kept"
    return last_error


def _bomb(encoding: str) -> Handler:
    """512 MB of spaces compressed with `encoding` (under 2 MB sent); `gzip, gzip` is a
    gzip bomb inside a gzip bomb (a few KB sent)."""
    if encoding == "gzip, gzip":
        body = gzip.compress(_compressed("gzip", BOMB_DECODED_BYTES), 9)
        assert len(body) < 64 * 1024
    else:
        body = _compressed(encoding, BOMB_DECODED_BYTES)
        assert len(body) < 2 * 2**20
    return _raw(body, **{"content-encoding": encoding})


OVERSIZED: dict[str, Callable[[], Handler]] = {
    "gzip-bomb": lambda: _bomb("gzip"),
    "deflate-bomb": lambda: _bomb("deflate"),
    "gzip-bomb-in-a-gzip-bomb": lambda: _bomb("gzip, gzip"),
    # No Content-Length: the agent counts what arrives (64 MB are sent).
    "64-mb-chunked": lambda: _streamed(b" " * 2**20, 64),
}


@pytest.mark.parametrize("make", list(OVERSIZED.values()), ids=list(OVERSIZED))
def test_an_oversized_answer_is_refused_after_reading_at_most_the_limit(
    bounded_agent: AgentServer, service: ScriptedModelService, make: Callable[[], Handler]
) -> None:
    service.handler = make()
    response, peak = _upload_measured(bounded_agent)
    last_error = _assert_refused(bounded_agent, response)
    assert "MODEL_SERVICE_MAX_ANSWER_MB" in response.json()["detail"]
    assert "larger than" in last_error
    assert peak < MEMORY_BOUND_BYTES, f"{peak / 2**20:.0f} MB"


def test_a_body_that_is_not_what_its_content_encoding_says_is_a_bad_answer(
    bounded_agent: AgentServer, service: ScriptedModelService
) -> None:
    service.handler = _raw(b"\x1f\x8b\x08\x00 not gzip at all", **{"content-encoding": "gzip"})
    response = upload_board(bounded_agent)
    _assert_refused(bounded_agent, response)
    assert "does not decode as its Content-Encoding (gzip)" in response.json()["detail"]


def test_a_huge_body_declared_by_its_length_is_refused_unread(
    bounded_agent: AgentServer, service: ScriptedModelService
) -> None:
    service.handler = _raw(b" " * (3 * LIMIT_MB * 2**20))
    response, peak = _upload_measured(bounded_agent)
    _assert_refused(bounded_agent, response)
    assert "declared length" in response.json()["detail"]
    assert peak < MEMORY_BOUND_BYTES + 3 * LIMIT_MB * 2**20  # the server's own body counts


def test_a_body_that_trickles_for_ever_ends_at_the_deadline(
    bounded_agent: AgentServer, service: ScriptedModelService
) -> None:
    """Each byte comes before the read timeout, so only SEGFORMER_DEADLINE_S ends it."""
    service.handler = _streamed(b" ", 10_000, delay_s=0.2)
    response = upload_board(bounded_agent)
    last_error = _assert_refused(bounded_agent, response, status=503)
    assert "SEGFORMER_DEADLINE_S" in last_error


def _nested(depth: int) -> bytes:
    """A good answer whose `provenance` nests `depth` arrays (written here: the standard
    library's encoder recurses too)."""
    body = json.dumps(with_change(lambda b: set_value(b["result_json"], "provenance", "DEEP")))
    return body.replace('"DEEP"', "[" * depth + "0" + "]" * depth).encode()


def _declaring_png(width: int, height: int) -> bytes:
    """A PNG that only declares `width` x `height` (signature, IHDR, IEND; no pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _region_change(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        for key, value in fields.items():
            if isinstance(value, dict):
                region(body)[key].update(value)
            else:
                region(body)[key] = value

    return change


HOSTILE: list[tuple[str, Any, str]] = [
    ("nested-100000-deep", b'{"result_json": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deep"),
    ("nested-1000-deep", _nested(1000), "levels deep"),
    ("nested-40-deep", _nested(40), "levels deep"),
    ("integer-of-5000-digits", b'{"result_json": {"x": ' + b"7" * 5000 + b"}}", "not JSON"),
    ("a-million-empty-arrays", b'{"x": [' + b"[]," * 1_100_000 + b"[]]}", "JSON values"),
    (
        "image-shape-49-mpx",
        with_change(
            lambda b: (
                set_value(b["result_json"], "image_shape", {"width": 7000, "height": 7000}),
                set_value(b["images"], "mask", b64(_declaring_png(7000, 7000))),
                set_value(b["images"], "overlay", b64(_declaring_png(7000, 7000))),
                set_value(b["images"], "combined", b64(_declaring_png(14000, 7000))),
            )
        ),
        "image_shape is 7000 x 7000 pixels, but the image sent is 64 x 48",
    ),
    (
        "mask-png-declares-49-mpx",
        with_change(lambda b: set_value(b["images"], "mask", b64(_declaring_png(7000, 7000)))),
        "'mask' image is 7000 x 7000 pixels",
    ),
    (
        "combined-png-declares-2-gpx",
        with_change(
            lambda b: set_value(b["images"], "combined", b64(_declaring_png(65535, 32768)))
        ),
        "'combined' image",
    ),
    (
        "box-past-the-right-edge",
        with_change(_region_change(bounding_box={"x": WIDTH - 3, "width": 7})),
        "lies outside the 64 x 48 image",
    ),
    (
        "box-above-the-image",
        with_change(_region_change(bounding_box={"y": -2})),
        "lies outside the 64 x 48 image",
    ),
    (
        "centroid-outside-the-image",
        with_change(_region_change(centroid={"x": 5000.0, "y": 2.0})),
        "centroid (5000, 2) lies outside its bounding box",
    ),
    (
        "area-larger-than-its-box",
        with_change(
            lambda b: (
                _region_change(area_pixels=36)(b),
                set_value(b["result_json"]["classes"]["pin_hole"], "total_area_pixels", 36),
            )
        ),
        "area_pixels 36 is not between 1 and its bounding box's 35",
    ),
    (
        "empty-box",
        with_change(_region_change(bounding_box={"width": 0})),
        "bounding_box is 0 x 5 pixels",
    ),
    (
        "region-of-an-unknown-class",
        with_change(_region_change(class_name="ghost")),
        "class_name 'ghost' is not the class it is listed under (not one of the answer's",
    ),
    (
        "region-class-id-of-no-class",
        with_change(_region_change(class_id=99)),
        "class_id 99 is not its class's 6",
    ),
]


@pytest.mark.parametrize(
    ("body", "names"), [(b, n) for _, b, n in HOSTILE], ids=[i for i, _, _ in HOSTILE]
)
def test_a_hostile_answer_is_502_with_the_input_kept_and_nothing_stored(
    bounded_agent: AgentServer, service: ScriptedModelService, body: Any, names: str
) -> None:
    service.handler = service.answer(body)
    response, peak = _upload_measured(bounded_agent)
    _assert_refused(bounded_agent, response)
    assert names in response.json()["detail"]
    assert peak < MEMORY_BOUND_BYTES, f"{peak / 2**20:.0f} MB"


def test_a_gzip_encoded_good_answer_is_stored(
    bounded_agent: AgentServer, service: ScriptedModelService
) -> None:
    """Compression itself is fine: a good answer sent gzip-encoded is read and stored."""
    service.handler = _raw(gzip.compress(json.dumps(GOOD).encode()), **{"content-encoding": "gzip"})
    response = upload_board(bounded_agent)
    assert response.status_code == 200, response.text
    assert response.json()["total_defects"] == 1


def test_a_region_touching_the_edges_is_stored(
    bounded_agent: AgentServer, service: ScriptedModelService
) -> None:
    """The checks allow what a real service sends: a box flush with the right and bottom
    edges, its centroid on its last pixel's centre."""
    body = with_change(
        _region_change(
            bounding_box={"x": WIDTH - 7, "y": HEIGHT - 5, "width": 7, "height": 5},
            centroid={"x": WIDTH - 1.0, "y": HEIGHT - 1.0},
        )
    )
    service.handler = service.answer(body)
    response = upload_board(bounded_agent)
    assert response.status_code == 200, response.text
