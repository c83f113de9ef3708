"""GET /api/download/image, /json, /batch and thumbnails."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from PIL import Image as PILImage

from app.config import Settings
from app.services.history import export
from app.services.model_service.reference import ReferenceService
from app.services.storage import LocalStorage
from tests.conftest import agent_settings
from tests.support import AgentServer, S3Emulator, serve_agent, wait_until


@pytest.fixture(scope="module")
def inspected(agent: object, deeppcb: list[Path]) -> dict[str, object]:
    """One DeepPCB image inspected through the agent, and the file it came from."""
    path = deeppcb[30]
    with httpx2.Client(base_url=agent.url, timeout=60) as c:  # type: ignore[attr-defined]
        response = c.post("/api/upload", files={"image": (path.name, path.read_bytes())})
    assert response.status_code == 200, response.text
    return {"answer": response.json(), "path": path}


@pytest.mark.parametrize(
    ("kind", "media_type", "size"),
    [
        ("input", "image/jpeg", (640, 640)),
        ("combined", "image/png", (1280, 640)),
        ("mask", "image/png", (640, 640)),
        ("overlay", "image/png", (640, 640)),
    ],
)
def test_images_download_with_type_name_and_content(
    client: httpx2.Client,
    inspected: dict[str, object],
    kind: str,
    media_type: str,
    size: tuple[int, int],
) -> None:
    img_id = inspected["answer"]["img_unique_id"]  # type: ignore[index]
    response = client.get(f"/api/download/image/{img_id}/{kind}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    # Named `{original name without extension}_{img_unique_id}`, then the kind.
    stem = f"{inspected['path'].stem}_{img_id}"  # type: ignore[attr-defined]
    name = f"{stem}.jpg" if kind == "input" else f"{stem}_{kind}.png"
    assert f'attachment; filename="{name}"' == response.headers["content-disposition"]
    assert PILImage.open(io.BytesIO(response.content)).size == size
    if kind == "input":
        assert response.content == inspected["path"].read_bytes()  # type: ignore[attr-defined]


def test_json_download_is_the_analysis_as_sent(
    client: httpx2.Client, inspected: dict[str, object]
) -> None:
    answer = inspected["answer"]
    response = client.get(f"/api/download/json/{answer['img_unique_id']}")  # type: ignore[index]
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    stem = f"{inspected['path'].stem}_{answer['img_unique_id']}"  # type: ignore[attr-defined,index]
    assert f'filename="{stem}_analysis.json"' in response.headers["content-disposition"]
    assert json.loads(response.content) == answer["result"]  # type: ignore[index]


def test_thumbnail_is_a_small_jpeg(client: httpx2.Client, inspected: dict[str, object]) -> None:
    img_id = inspected["answer"]["img_unique_id"]  # type: ignore[index]
    response = client.get(f"/api/images/{img_id}/thumbnail", params={"size": 128})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    thumb = PILImage.open(io.BytesIO(response.content))
    assert max(thumb.size) == 128


def test_unknown_kind_or_id_is_a_clear_error(client: httpx2.Client) -> None:
    assert client.get("/api/download/image/20990101_000000_NOPE00/input").status_code == 404
    assert client.get("/api/download/json/20990101_000000_NOPE00").json()["error"] == (
        "image_not_found"
    )
    response = client.get("/api/download/image/20990101_000000_NOPE00/heatmap")
    assert response.status_code == 422
    assert "kind" in response.json()["detail"]
    assert client.get("/api/download/batch/B_20990101_000000_NOPE00").status_code == 404


def test_batch_zip_streams_every_file_and_a_summary(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    files = [("images", (p.name, p.read_bytes())) for p in deeppcb[31:34]]
    files.append(("images", ("bad.jpg", b"\xff\xd8\xff broken")))
    batch = client.post("/api/upload/batch", files=files).json()
    wait_until(lambda: client.get(f"/api/batches/{batch['batch_id']}").json()["done"])

    with client.stream("GET", f"/api/download/batch/{batch['batch_id']}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/zip"
        assert "content-length" not in response.headers  # streamed, not assembled first
        assert f'filename="{batch["batch_id"]}.zip"' in response.headers["content-disposition"]
        data = b"".join(response.iter_bytes())
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.testzip() is None
    names = set(archive.namelist())
    for accepted in batch["accepted"]:
        # Folders are named `{original name without extension}_{img_unique_id}`.
        img_id = f"{Path(accepted['filename']).stem}_{accepted['img_unique_id']}"
        assert {
            f"{img_id}/input.jpg",
            f"{img_id}/combined.png",
            f"{img_id}/mask.png",
            f"{img_id}/overlay.png",
            f"{img_id}/analysis.json",
        } <= names
    rows = list(csv.DictReader(io.StringIO(archive.read("summary.csv").decode())))
    assert [r["original_filename"] for r in rows] == [p.name for p in deeppcb[31:34]]
    assert all(r["status"] == "succeeded" for r in rows)
    pairs = zip(deeppcb[31:34], batch["accepted"], strict=True)
    assert [r["folder"] for r in rows] == [f"{p.stem}_{a['img_unique_id']}" for p, a in pairs]


def test_a_tiff_input_is_shown_through_a_png_rendition(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    """Browsers cannot show TIFF: `?format=png` converts it once and keeps the PNG."""
    buffer = io.BytesIO()
    with PILImage.open(deeppcb[35]) as source:
        source.save(buffer, "TIFF")
        size = source.size
    name = "board 7.tif"
    answer = client.post("/api/upload", files={"image": (name, buffer.getvalue())}).json()
    img_id = answer["img_unique_id"]
    original = client.get(f"/api/download/image/{img_id}/input")
    assert original.headers["content-type"] == "image/tiff"
    assert original.content == buffer.getvalue()
    for _ in range(2):  # made once, then answered from the kept file
        png = client.get(f"/api/download/image/{img_id}/input", params={"format": "png"})
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert f'filename="board_7_{img_id}.png"' in png.headers["content-disposition"]
        shown = PILImage.open(io.BytesIO(png.content))
        assert shown.format == "PNG"
        assert shown.size == size
    # A JPEG input is already shown by browsers: answered as it is.
    jpeg_id = client.post(
        "/api/upload", files={"image": (deeppcb[36].name, deeppcb[36].read_bytes())}
    ).json()["img_unique_id"]
    same = client.get(f"/api/download/image/{jpeg_id}/input", params={"format": "png"})
    assert same.headers["content-type"] == "image/jpeg"
    # Deleting the inspection removes the rendition with it (re-asking is a 404).
    assert client.delete(f"/api/images/{img_id}").status_code == 204
    gone = client.get(f"/api/download/image/{img_id}/input", params={"format": "png"})
    assert gone.status_code == 404


async def test_a_rendition_reads_its_source_only_while_holding_a_decode_token(
    tmp_path: Path,
) -> None:
    """Thumbnails and PNG renditions read the whole original into memory: a gallery of big
    images must read at most MAX_CONCURRENT_DECODES of them at once, so the read waits for
    a token of the decode limiter like the decode. (Service-level: an HTTP test cannot
    show the order of a read and a token; `get` is wrapped only to record the read.)"""
    store = LocalStorage(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    key = "uploads/20261202/board.bmp"
    buffer = io.BytesIO()
    PILImage.new("RGB", (40, 20), "red").save(buffer, "BMP")
    await store.put(key, buffer.getvalue())
    reads: list[str] = []
    real_get = store.get

    async def recording_get(wanted: str) -> bytes:
        reads.append(wanted)
        return await real_get(wanted)

    store.get = recording_get  # type: ignore[method-assign]
    limiter = anyio.CapacityLimiter(1)
    holder = object()
    await limiter.acquire_on_behalf_of(holder)
    made: list[bytes] = []

    async def render() -> None:
        made.append(await export._render(store, key, "the input", limiter, export._make_png))

    async with anyio.create_task_group() as group:
        group.start_soon(render)
        await anyio.wait_all_tasks_blocked()
        assert reads == []  # waiting for the token, nothing read yet
        limiter.release_on_behalf_of(holder)
    assert reads == [key]
    with PILImage.open(io.BytesIO(made[0])) as png:
        assert (png.format, png.size) == ("PNG", (40, 20))
    assert limiter.borrowed_tokens == 0


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_a_16_bit_grey_tiff_has_an_8_bit_png_rendition(mode: str) -> None:
    """Uploads take any TIFF Pillow reads, including big-endian 16-bit grey (`MM` TIFFs):
    its PNG rendition (`?format=png`) scales it to 8 bits instead of failing with a 500."""
    source = PILImage.new(mode, (3, 1))
    source.putdata([0, 256 * 100, 65535])
    buffer = io.BytesIO()
    source.save(buffer, "TIFF")
    with PILImage.open(io.BytesIO(export._make_png(buffer.getvalue()))) as png:
        assert png.mode == "L"
        assert [png.getpixel((x, 0)) for x in range(3)] == [0, 100, 255]


@pytest.fixture
def own_agent(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentServer]:
    """An agent of this test alone (its storage folder is taken away), on the module's
    database."""
    settings = agent_settings(tmp_path / "data", database_url, reference_service.url)
    with serve_agent(settings) as server:
        yield server


def _inspected_batch(agent: AgentServer, images: list[Path]) -> str:
    with httpx2.Client(base_url=agent.url, timeout=120) as client:
        files = [("images", (p.name, p.read_bytes())) for p in images]
        answer = client.post("/api/upload/batch?wait=true", files=files)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["batch_id"])


def test_a_batch_zip_of_a_store_that_is_gone_is_a_503_before_any_byte(
    own_agent: AgentServer, deeppcb: list[Path]
) -> None:
    """The storage folder goes away (a share unmounted): the ZIP is refused with a JSON
    503 rather than started; once the folder is back, the same link works."""
    batch_id = _inspected_batch(own_agent, deeppcb[40:42])
    data_dir = own_agent.settings.resolved_data_dir
    away = data_dir.with_name("data-away")
    with httpx2.Client(base_url=own_agent.url, timeout=60) as client:
        data_dir.rename(away)
        try:
            refused = client.get(f"/api/download/batch/{batch_id}")
        finally:
            away.rename(data_dir)
        served = client.get(f"/api/download/batch/{batch_id}")
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == "storage_unavailable"
    assert "missing" in refused.json()["detail"]
    assert served.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(served.content)).testzip() is None


@pytest.mark.skipif(sys.platform == "win32", reason="renames a folder holding an open file")
def test_a_store_gone_while_a_batch_zip_streams_breaks_the_transfer(
    own_agent: AgentServer, deeppcb: list[Path]
) -> None:
    """The storage folder goes away after the ZIP has begun: the client must not see a
    clean end of a 200 (a truncated ZIP that looks whole), but an incomplete transfer.
    The first member is made 16 MB so that the folder goes while it streams."""
    batch_id = _inspected_batch(own_agent, deeppcb[42:44])
    data_dir = own_agent.settings.resolved_data_dir
    for stored_input in (data_dir / "uploads").rglob("*.jpg"):
        stored_input.write_bytes(os.urandom(16 * 1024 * 1024))
    away = data_dir.with_name("data-away")
    received = b""
    with (
        httpx2.Client(base_url=own_agent.url, timeout=60) as client,
        client.stream("GET", f"/api/download/batch/{batch_id}") as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        received += next(chunks)
        data_dir.rename(away)
        try:
            with pytest.raises(httpx2.RemoteProtocolError, match="incomplete"):
                received += b"".join(chunks)
        finally:
            away.rename(data_dir)
    assert len(received) < 16 * 1024 * 1024 + 1024 * 1024
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(received))


def test_a_batch_zip_from_an_object_store_that_is_down_is_a_503(
    tmp_path: Path,
    database_url: str,
    reference_service: ReferenceService,
    deeppcb: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto's S3 server (an emulator of the S3 API, not AWS) of this test alone, stopped
    after the batch is stored: the ZIP is refused with a JSON 503 before any byte."""
    emulator = S3Emulator(tmp_path / "moto.log").start()
    try:
        for name, value in emulator.env.items():
            monkeypatch.setenv(name, value)
        settings = agent_settings(
            tmp_path / "data",
            database_url,
            reference_service.url,
            storage_url=f"s3://{emulator.new_bucket()}/line-9",
            s3_endpoint_url=emulator.url,
            s3_timeout_s=3,
        )
        with serve_agent(settings) as agent:
            batch_id = _inspected_batch(agent, deeppcb[44:45])
            emulator.stop()
            with httpx2.Client(base_url=agent.url, timeout=60) as client:
                refused = client.get(f"/api/download/batch/{batch_id}")
    finally:
        emulator.stop()
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == "storage_unavailable"
    assert "object store" in refused.json()["detail"]
