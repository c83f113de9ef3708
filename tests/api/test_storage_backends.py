"""Uploads, downloads, thumbnails, batch ZIPs and deletion through the agent, with each
storage backend: a folder, and an S3 object store served by moto's S3 server (an
emulator of the S3 API, not AWS) on a loopback port."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from PIL import Image as PILImage

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, S3Emulator, local_files, make_image, serve_agent, wait_until


@dataclass
class Deployment:
    """A running agent, its data folder and (for S3) its bucket and prefix."""

    agent: AgentServer
    data_dir: Path
    bucket: str | None
    prefix: str = "line-3"


@pytest.fixture(scope="module", params=["local", "s3", "s3-presigned"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
    s3_emulator: S3Emulator,
) -> Iterator[Deployment]:
    """The agent with a folder store, an S3 store, or an S3 store with presigned links."""
    data_dir = tmp_path_factory.mktemp("data")
    extra: dict[str, object] = {}
    bucket = None
    if request.param != "local":
        bucket = s3_emulator.new_bucket()
        extra = {
            "storage_url": f"s3://{bucket}/line-3",
            "s3_endpoint_url": s3_emulator.url,
            "s3_presigned_downloads": request.param == "s3-presigned",
        }
    settings = agent_settings(data_dir, database_url, reference_service.url, **extra)
    with serve_agent(settings) as agent:
        yield Deployment(agent, data_dir, bucket)


def _stored_keys(deployment: Deployment, s3: S3Emulator, img_id: str) -> list[str]:
    """Keys of an inspection's input and results, wherever the store keeps them."""
    if deployment.bucket is None:
        return [
            p.relative_to(deployment.data_dir).as_posix()
            for p in local_files(deployment.data_dir)
            if img_id in p.as_posix()
        ]
    prefix = deployment.prefix + "/"
    return [k.removeprefix(prefix) for k in s3.keys(deployment.bucket, prefix) if img_id in k]


def _get(client: httpx2.Client, url: str) -> httpx2.Response:
    """GET, following a presigned redirect to the store as a browser would."""
    response = client.get(url)
    if response.status_code == 307:
        assert "/api/" not in response.headers["location"]
        return httpx2.get(response.headers["location"], timeout=30)
    return response


def test_an_upload_is_kept_in_the_store_and_downloads_from_it(
    deployment: Deployment, s3_emulator: S3Emulator
) -> None:
    image = make_image("PNG", (96, 64))
    with httpx2.Client(base_url=deployment.agent.url, timeout=60) as client:
        answer = client.post("/api/upload", files={"image": ("board.png", image)})
        assert answer.status_code == 200, answer.text
        img_id = answer.json()["img_unique_id"]

        keys = _stored_keys(deployment, s3_emulator, img_id)
        day = img_id[:8]
        assert sorted(k.split("/", 2)[0] + "/" + k.rsplit("/", 1)[-1] for k in keys) == sorted(
            [
                f"results/{name}"
                for name in ("analysis.json", "combined.png", "mask.png", "overlay.png")
            ]
            + [f"uploads/{day}_{img_id[9:15]}_{img_id}_board.png"]
        )

        downloaded = _get(client, f"/api/download/image/{img_id}/input")
        assert downloaded.status_code == 200
        assert downloaded.content == image
        mask = _get(client, f"/api/download/image/{img_id}/mask")
        assert PILImage.open(io.BytesIO(mask.content)).size == (96, 64)
        analysis = _get(client, f"/api/download/json/{img_id}")
        assert json.loads(analysis.content) == answer.json()["result"]
        # The same file names whoever sends the file: the agent, or the store itself
        # through a presigned URL (from the object's stored Content-Disposition).
        for response, name in (
            (downloaded, f"board_{img_id}.png"),
            (mask, f"board_{img_id}_mask.png"),
            (analysis, f"board_{img_id}_analysis.json"),
        ):
            assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        # Shown in the page (inline): always from the agent, never a redirect.
        inline = client.get(f"/api/download/image/{img_id}/overlay", params={"inline": "true"})
        assert inline.status_code == 200
        assert inline.headers["content-disposition"].startswith("inline")
        thumb = client.get(f"/api/images/{img_id}/thumbnail", params={"size": 48})
        assert thumb.status_code == 200
        assert max(PILImage.open(io.BytesIO(thumb.content)).size) == 48

    stored = _stored_keys(deployment, s3_emulator, img_id)
    assert f"thumbnails/{img_id}/overlay_48.jpg" in stored
    if deployment.bucket is not None:
        # Nothing of the inspection on local disk; the scratch folder is empty.
        assert [p for p in local_files(deployment.data_dir) if p.name != "secret_key"] == []


def test_health_names_the_store_and_finds_it_answering(deployment: Deployment) -> None:
    with httpx2.Client(base_url=deployment.agent.url, timeout=60) as client:
        health = client.get("/api/health").json()
    backend = "local" if deployment.bucket is None else "s3"
    assert health["storage"]["backend"] == backend
    assert health["storage"]["ok"] is True, health
    assert health["status"] == "ok", health


def test_presigned_downloads_redirect_only_when_enabled(deployment: Deployment) -> None:
    with httpx2.Client(base_url=deployment.agent.url, timeout=60) as client:
        img_id = client.post("/api/upload", files={"image": ("a.png", make_image())}).json()[
            "img_unique_id"
        ]
        response = client.get(f"/api/download/image/{img_id}/combined")
    if deployment.bucket is not None and deployment.agent.settings.s3_presigned_downloads:
        assert response.status_code == 307
        assert "X-Amz-Signature=" in response.headers["location"]
    else:
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"


def test_a_batch_zip_streams_every_file_from_the_store(deployment: Deployment) -> None:
    images = [make_image("PNG", (40 + i, 30)) for i in range(3)]
    with httpx2.Client(base_url=deployment.agent.url, timeout=60) as client:
        accepted = client.post(
            "/api/upload/batch",
            files=[("images", (f"b{i}.png", data)) for i, data in enumerate(images)],
        )
        assert accepted.status_code == 202, accepted.text
        batch_id = accepted.json()["batch_id"]
        wait_until(lambda: client.get(f"/api/batches/{batch_id}").json()["done"], 60)
        response = client.get(f"/api/download/batch/{batch_id}")

    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert len([n for n in names if n.endswith("/input.png")]) == 3
    assert len([n for n in names if n.endswith("/analysis.json")]) == 3
    assert len([n for n in names if n.endswith("/overlay.png")]) == 3
    inputs = sorted(archive.read(n) for n in names if n.endswith("/input.png"))
    assert inputs == sorted(images)


def test_deleting_an_inspection_deletes_its_objects(
    deployment: Deployment, s3_emulator: S3Emulator
) -> None:
    with httpx2.Client(base_url=deployment.agent.url, timeout=60) as client:
        img_id = client.post("/api/upload", files={"image": ("d.png", make_image())}).json()[
            "img_unique_id"
        ]
        assert client.get(f"/api/images/{img_id}/thumbnail").status_code == 200
        assert len(_stored_keys(deployment, s3_emulator, img_id)) == 6
        assert client.delete(f"/api/images/{img_id}").status_code == 204

    assert _stored_keys(deployment, s3_emulator, img_id) == []
