"""POST /api/upload, /api/upload/batch, /api/images/{id}/retry and GET /api/batches/{id}."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import httpx2
import pytest
from PIL import Image as PILImage

from tests.conftest import agent_settings
from tests.support import (
    AgentServer,
    create_database,
    db_execute,
    db_rows,
    drop_database,
    make_image,
    serve_agent,
    wait_until,
)


def stored_files(data_dir: Path) -> list[Path]:
    """Every kept file under uploads/ and results/ (temporary folders excluded)."""
    return sorted(
        p
        for sub in ("uploads", "results")
        for p in (data_dir / sub).rglob("*")
        if p.is_file() and ".incoming" not in p.parts
    )


def test_upload_deeppcb_image_stores_rows_and_files_that_agree(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    image = deeppcb[0]
    response = client.post("/api/upload", files={"image": (image.name, image.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    img_id = body["img_unique_id"]
    assert body["success"] is True
    assert len(img_id) == 22
    assert img_id[8] == "_"
    assert img_id[15] == "_"
    assert body["total_defects"] == sum(body["defect_classes"].values())
    assert body["images"]["overlay"].endswith(f"/download/image/{img_id}/overlay")
    assert body["result"]["image_shape"] == {"height": 640, "width": 640}

    db = agent.settings.database_url
    assert db is not None
    (height, width, input_path, combined) = db_rows(
        db,
        "SELECT image_height, image_width, input_image_path, result_image_1_path"
        " FROM images WHERE img_unique_id = %s",
        img_id,
    )[0]
    assert (height, width) == (640, 640)
    assert not Path(input_path).is_absolute()
    assert input_path.startswith("uploads/")
    assert input_path.endswith(f"_{img_id}_{image.stem}.jpg")
    assert (agent.settings.resolved_data_dir / input_path).read_bytes() == image.read_bytes()
    assert (agent.settings.resolved_data_dir / combined).read_bytes().startswith(b"\x89PNG")

    classes = db_rows(
        db,
        "SELECT c.class_name, c.total_regions, c.total_area_pixels, count(r.*),"
        " coalesce(sum(r.area_pixels), 0) FROM classes c LEFT JOIN regions r"
        " ON r.class_unique_id = c.class_unique_id WHERE c.img_unique_id = %s"
        " GROUP BY c.class_unique_id",
        img_id,
    )
    assert {name: total for name, total, *_ in classes} == body["defect_classes"]
    for _, total_regions, total_area, region_rows, area_sum in classes:
        assert total_regions == region_rows
        assert total_area == area_sum
    ledger = db_rows(
        db, "SELECT status, attempts, batch_id FROM inspections WHERE img_unique_id = %s", img_id
    )
    assert ledger == [("succeeded", 1, None)]


def test_upload_can_include_result_images_as_base64(
    client: httpx2.Client, deeppcb: list[Path]
) -> None:
    image = deeppcb[1]
    response = client.post(
        "/api/upload",
        params={"include_images": "base64"},
        files={"image": (image.name, image.read_bytes(), "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    encoded = response.json()["images_base64"]
    combined = PILImage.open(io.BytesIO(base64.b64decode(encoded["combined"])))
    assert combined.format == "PNG"
    assert combined.size == (1280, 640)


@pytest.mark.parametrize(
    ("name", "content", "status", "error", "phrase"),
    [
        ("notes.png", b"hello, this is text\n" * 10, 415, "unsupported_media_type", "not a JPEG"),
        ("empty.jpg", b"", 400, "invalid_image", "empty"),
        ("half.jpg", None, 400, "invalid_image", "truncated"),
        ("huge.png", None, 413, "file_too_large", "decompression bomb"),
    ],
)
def test_bad_images_get_a_clear_4xx_and_nothing_is_stored(
    client: httpx2.Client,
    agent: AgentServer,
    deeppcb: list[Path],
    name: str,
    content: bytes | None,
    status: int,
    error: str,
    phrase: str,
) -> None:
    if name == "half.jpg":
        whole = deeppcb[2].read_bytes()
        content = whole[: len(whole) // 2]
    elif name == "huge.png":
        buffer = io.BytesIO()
        PILImage.new("1", (20_000, 10_000)).save(buffer, "PNG")
        content = buffer.getvalue()
    assert content is not None
    before = stored_files(agent.settings.resolved_data_dir)
    rows_before = db_rows(agent.settings.database_url or "", "SELECT count(*) FROM inspections")
    response = client.post("/api/upload", files={"image": (name, content)})
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert phrase in response.json()["detail"]
    assert stored_files(agent.settings.resolved_data_dir) == before
    assert list((agent.settings.resolved_upload_dir / ".incoming").iterdir()) == []
    assert db_rows(agent.settings.database_url or "", "SELECT count(*) FROM inspections") == (
        rows_before
    )


def test_a_60_mb_upload_is_refused_while_streaming(
    client: httpx2.Client, agent: AgentServer
) -> None:
    chunk = os.urandom(1024 * 1024)
    sent = 0

    def body() -> object:
        nonlocal sent
        yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
        yield b"\xff\xd8\xff"
        for _ in range(60):
            sent += len(chunk)
            yield chunk
        yield b"\r\n--b--\r\n"

    # No Content-Length: the limit must be enforced while the bytes stream in.
    try:
        response = client.post(
            "/api/upload",
            content=body(),  # type: ignore[arg-type]
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
    except httpx2.WriteError:
        pytest.skip("server closed the connection before the answer could be read")
    assert response.status_code == 413
    assert "50 MiB" in response.json()["detail"]
    assert list((agent.settings.resolved_upload_dir / ".incoming").iterdir()) == []


def test_a_declared_60_mb_body_is_refused_before_reading(
    client: httpx2.Client, agent: AgentServer
) -> None:
    before = stored_files(agent.settings.resolved_data_dir)
    rows_before = db_rows(agent.settings.database_url or "", "SELECT count(*) FROM inspections")
    response = client.post(
        "/api/upload",
        files={"image": ("big.jpg", b"\xff\xd8\xff" + bytes(60 * 1024 * 1024))},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "file_too_large"
    assert stored_files(agent.settings.resolved_data_dir) == before
    assert list((agent.settings.resolved_upload_dir / ".incoming").iterdir()) == []
    assert db_rows(agent.settings.database_url or "", "SELECT count(*) FROM inspections") == (
        rows_before
    )


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"files": {"picture": ("a.png", make_image())}}, "no file in the form field 'image'"),
        ({"data": {"image": "not a file"}}, "multipart/form-data"),
        ({"content": b"raw bytes", "headers": {"Content-Type": "image/png"}}, "multipart"),
    ],
)
def test_malformed_upload_requests_are_400(
    client: httpx2.Client, kwargs: dict[str, object], phrase: str
) -> None:
    response = client.post("/api/upload", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 400
    assert phrase in response.json()["detail"]


def test_every_accepted_format_is_inspected(client: httpx2.Client, agent: AgentServer) -> None:
    for fmt, name, media_type in (
        ("PNG", "a.png", "image/png"),
        ("TIFF", "a.tif", "image/tiff"),
        ("BMP", "a.bmp", "image/bmp"),
        ("JPEG", "a.jpg", "image/jpeg"),
    ):
        content = make_image(fmt)
        response = client.post("/api/upload", files={"image": (name, content)})
        assert response.status_code == 200, (fmt, response.text)
        img_id = response.json()["img_unique_id"]
        assert response.json()["result"]["image_shape"] == {"height": 48, "width": 64}
        assert db_rows(
            agent.settings.database_url or "",
            "SELECT media_type, status FROM inspections WHERE img_unique_id = %s",
            img_id,
        ) == [(media_type, "succeeded")]
        kept = client.get(f"/api/download/image/{img_id}/input")
        assert kept.headers["content-type"] == media_type
        assert kept.content == content


def test_file_names_are_sanitised_before_they_touch_the_disk(
    client: httpx2.Client, agent: AgentServer
) -> None:
    response = client.post(
        "/api/upload", files={"image": ("../../etc/CON .. evil name?.png", make_image())}
    )
    assert response.status_code == 200, response.text
    detail = client.get(f"/api/images/{response.json()['img_unique_id']}").json()
    stored = detail["input_image_path"]
    assert ".." not in stored
    assert "?" not in stored
    assert " " not in stored
    assert (agent.settings.resolved_data_dir / stored).is_file()


def test_batch_is_stored_queued_and_processed(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in deeppcb[3:8]]
    files.append(("images", ("readme.png", b"plain text", "image/png")))
    response = client.post("/api/upload/batch", files=files)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["total"] == 5
    assert [r["filename"] for r in accepted["rejected"]] == ["readme.png"]
    assert accepted["rejected"][0]["error"] == "unsupported_media_type"

    status = wait_until(
        lambda: (s := client.get(f"/api/batches/{accepted['batch_id']}").json())["done"] and s
    )
    assert status["succeeded"] == 5
    assert status["failed"] == 0
    assert status["rejected_files"] == 1
    assert [i["filename"] for i in status["items"]] == [p.name for p in deeppcb[3:8]]
    assert all(i["total_defects"] is not None for i in status["items"])
    db = agent.settings.database_url or ""
    assert db_rows(
        db,
        "SELECT count(*) FROM images i JOIN inspections l USING (img_unique_id)"
        " WHERE l.batch_id = %s",
        accepted["batch_id"],
    ) == [(5,)]
    listed = client.get("/api/images", params={"batch_id": accepted["batch_id"]}).json()
    assert listed["total"] == 5


def test_batch_with_wait_answers_with_every_result(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    """PRD FR4.2: one result per accepted image, in upload order, shaped like the
    single-upload answer; the rejected file is only in `rejected`."""
    boards = deeppcb[8:11]
    files = [("images", (p.name, p.read_bytes())) for p in boards[:2]]
    files.insert(1, ("images", ("notes.png", b"hello")))
    files.append(("images", (boards[2].name, boards[2].read_bytes())))
    response = client.post("/upload/batch", params={"wait": "true"}, files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    status = body["status"]
    assert status["done"]
    assert status["succeeded"] == 3
    assert all(item["overlay_url"] for item in status["items"])
    assert [r["filename"] for r in body["rejected"]] == ["notes.png"]
    results = body["results"]
    assert [r["filename"] for r in results] == [p.name for p in boards]
    assert [r["img_unique_id"] for r in results] == [a["img_unique_id"] for a in body["accepted"]]
    single = client.post(
        "/upload", files={"image": (boards[0].name, boards[0].read_bytes())}
    ).json()
    for result in results:
        assert result["success"] is True
        assert set(result) == set(single) | {"filename"}
        img_id = result["img_unique_id"]
        stored = db_rows(
            agent.settings.database_url or "",
            "SELECT processing_time_seconds FROM images WHERE img_unique_id = %s",
            img_id,
        )
        assert result["processing_time_seconds"] == stored[0][0]
        assert result["agent_total_seconds"] >= result["processing_time_seconds"]
        assert result["total_defects"] == sum(result["defect_classes"].values())
        assert client.get(result["json_url"]).json() == result["result"]
    assert results[0]["defect_classes"] == single["defect_classes"]
    by_id = {i["img_unique_id"]: i for i in status["items"]}
    for result in results:
        item = by_id[result["img_unique_id"]]
        assert item["processing_time_seconds"] == result["processing_time_seconds"]
        assert item["agent_total_seconds"] == result["agent_total_seconds"]


def test_batch_of_only_bad_files_is_400_with_reasons(
    client: httpx2.Client, agent: AgentServer
) -> None:
    before = stored_files(agent.settings.resolved_data_dir)
    batches_before = db_rows(agent.settings.database_url or "", "SELECT count(*) FROM batches")
    response = client.post(
        "/api/upload/batch", files=[("images", ("a.png", b"")), ("images", ("b.png", b"xx"))]
    )
    assert response.status_code == 400
    assert stored_files(agent.settings.resolved_data_dir) == before
    assert db_rows(agent.settings.database_url or "", "SELECT count(*) FROM batches") == (
        batches_before
    )
    assert [r["error"] for r in response.json()["rejected"]] == [
        "invalid_image",
        "unsupported_media_type",
    ]


def test_unknown_batch_is_404(client: httpx2.Client) -> None:
    response = client.get("/api/batches/B_20990101_000000_AAAAAA")
    assert response.status_code == 404
    assert response.json()["error"] == "batch_not_found"


def test_model_service_down_gives_503_keeps_input_and_retry_succeeds(
    tmp_path: Path, database_url: str, reference_service: object, deeppcb: list[Path]
) -> None:
    """The model service is made unreachable by pointing the agent at a closed port."""
    from app.services.model_service.reference import free_loopback_port

    dead = agent_settings(tmp_path, database_url, f"http://127.0.0.1:{free_loopback_port()}/")
    image = deeppcb[10]
    with serve_agent(dead) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        response = c.post("/api/upload", files={"image": (image.name, image.read_bytes())})
        assert response.status_code == 503
        body = response.json()
        assert body["error"] == "model_service_unavailable"
        assert dead.segformer_service_url in body["detail"]
        img_id = body["img_unique_id"]
        assert db_rows(
            database_url, "SELECT count(*) FROM images WHERE img_unique_id = %s", img_id
        ) == [(0,)]
        status, attempts, error = db_rows(
            database_url,
            "SELECT status, attempts, last_error FROM inspections WHERE img_unique_id = %s",
            img_id,
        )[0]
        assert (status, attempts) == ("failed", 1)
        assert "unreachable" in error
        assert list((tmp_path / "results").rglob("*.png")) == []
        assert len(list((tmp_path / "uploads").rglob(f"*{img_id}*"))) == 1
        assert c.get(f"/api/download/image/{img_id}/overlay").status_code == 409
        health = c.get("/api/health").json()
        assert health["status"] == "degraded"
        assert not health["model_service"]["ok"]

    live = dead.model_copy(update={"segformer_service_url": reference_service.url})  # type: ignore[attr-defined]
    with serve_agent(live) as server, httpx2.Client(base_url=server.url, timeout=60) as c:
        retried = c.post(f"/api/images/{img_id}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["img_unique_id"] == img_id
        assert db_rows(
            database_url,
            "SELECT status, attempts FROM inspections WHERE img_unique_id = %s",
            img_id,
        ) == [("succeeded", 2)]
        again = c.post(f"/api/images/{img_id}/retry")
        assert again.status_code == 409
        assert again.json()["error"] == "not_retryable"


def test_a_result_stored_meanwhile_by_another_worker_is_returned_not_stored_twice(
    client: httpx2.Client, agent: AgentServer, deeppcb: list[Path]
) -> None:
    """Another worker stored this inspection while this one ran it: the ledger row is
    updated first (migration 20261202_0013 needs its model version there before the
    result's rows), the images insert then fails on the primary key, the whole transaction
    rolls back and the stored result is answered. Simulated by marking a stored
    inspection failed and retrying it: the `images` row is there already."""
    url = str(agent.settings.database_url)
    image = deeppcb[15]
    stored = client.post("/api/upload", files={"image": (image.name, image.read_bytes())})
    assert stored.status_code == 200, stored.text
    img_id = stored.json()["img_unique_id"]
    db_execute(url, "UPDATE inspections SET status = 'failed' WHERE img_unique_id = %s", img_id)
    again = client.post(f"/api/images/{img_id}/retry")
    assert again.status_code == 200, again.text
    assert again.json()["total_defects"] == stored.json()["total_defects"]
    assert db_rows(url, "SELECT count(*) FROM images WHERE img_unique_id = %s", img_id) == [(1,)]
    # Nothing counted twice: the rollups still sum to the tables.
    counted = db_rows(
        url,
        "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM regions),"
        " (SELECT sum(images)::bigint FROM rollup_images_daily),"
        " (SELECT sum(regions)::bigint FROM rollup_heatmap_daily_all)",
    )[0]
    assert counted[2:] == counted[:2]


def test_batch_wait_reports_each_failure_as_a_single_upload_would(
    tmp_path: Path, postgres_server_url: str, migrated_template: str, deeppcb: list[Path]
) -> None:
    """The model service is made unreachable by pointing the agent at a closed port. The
    agent has a database of its own, so no other test agent's worker takes its jobs."""
    from app.services.model_service.reference import free_loopback_port

    url = create_database(postgres_server_url, template=migrated_template)
    dead = agent_settings(tmp_path, url, f"http://127.0.0.1:{free_loopback_port()}/")
    boards = deeppcb[12:14]
    try:
        with serve_agent(dead) as server, httpx2.Client(base_url=server.url, timeout=120) as c:
            single = c.post("/upload", files={"image": (boards[0].name, boards[0].read_bytes())})
            assert single.status_code == 503
            waited = c.post(
                "/upload/batch",
                params={"wait": "true"},
                files=[("images", (p.name, p.read_bytes())) for p in boards],
            )
    finally:
        drop_database(url)
    assert waited.status_code == 200, waited.text
    results = waited.json()["results"]
    assert [r["filename"] for r in results] == [p.name for p in boards]
    for result in results:
        assert result["success"] is False
        # failed now, or (when batches wait out a model-service outage) still pending
        assert result["error"] in {single.json()["error"], "not_finished"}, result
        if result["error"] != "not_finished":
            assert result["status"] == "failed"
            assert result["detail"] == single.json()["detail"]
            assert result["retry_url"].endswith(f"/images/{result['img_unique_id']}/retry")
