"""A full disk, a disk below MIN_FREE_DISK_MB, and an upload body that stalls.

The full disk is real: a 24 MB tmpfs mounted for the test (needs Linux and root; the
test is skipped, saying so, where the machine does not allow it). Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import numpy as np
import pytest
from PIL import Image as PILImage

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, db_rows, make_image, serve_agent

TABLES = ("images", "classes", "regions", "inspections", "batches")


def noise_png(side: int) -> bytes:
    """A PNG of random RGB pixels: it does not compress, so its size is about 3 x side²."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MB file system (tmpfs) to fill up."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("a real full disk needs Linux and root to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill `disk` with one file until `leave_bytes` are free; returns the file."""
    filler = disk / "filler.bin"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as fh:
        fh.truncate(0)
        remaining = max(0, free - leave_bytes)
        chunk = b"\xff" * (1024 * 1024)
        while remaining > 0:
            fh.write(chunk[: min(len(chunk), remaining)])
            remaining -= min(len(chunk), remaining)
    return filler


def counts(agent: AgentServer) -> dict[str, int]:
    db = agent.settings.database_url or ""
    return {t: db_rows(db, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def stored_files(agent: AgentServer) -> set[str]:
    data = agent.settings.resolved_data_dir
    return {
        p.relative_to(data).as_posix()
        for p in data.rglob("*")
        if p.is_file() and p.name != "filler.bin"
    }


def test_a_full_disk_is_507_and_leaves_nothing_half_written(
    small_disk: Path, database_url: str, reference_service: ReferenceService
) -> None:
    settings = agent_settings(small_disk, database_url, reference_service.url, min_free_disk_mb=0)
    with serve_agent(settings) as agent, httpx2.Client(base_url=agent.url, timeout=60) as client:
        before_rows, before_files = counts(agent), stored_files(agent)

        # 1. No room for the upload itself: 507 while it streams in, no .part left.
        filler = fill(small_disk, leave_bytes=256 * 1024)
        response = client.post("/api/upload", files={"image": ("big.png", noise_png(700))})
        assert response.status_code == 507, response.text
        body = response.json()
        assert body["error"] == "insufficient_storage"
        assert "disk" in body["detail"]
        assert body["request_id"] == response.headers["x-request-id"]
        assert counts(agent) == before_rows
        assert stored_files(agent) == before_files
        filler.unlink()

        # 2. Room for the input but not for the results: 507, no result folder, the
        #    input kept and ledgered as failed with a sentence; retry works once freed.
        image = noise_png(300)
        filler = fill(small_disk, leave_bytes=len(image) + 200 * 1024)
        response = client.post("/api/upload", files={"image": ("board.png", image)})
        assert response.status_code == 507, response.text
        body = response.json()
        img_id = body["img_unique_id"]
        assert body["retry_url"].endswith(f"/{img_id}/retry")
        assert not list(agent.settings.resolved_result_dir.rglob(f"*{img_id}*"))
        assert not [p for p in small_disk.rglob("*") if p.suffix in (".tmp", ".part")]
        db = agent.settings.database_url or ""
        [(status, last_error)] = db_rows(
            db, "SELECT status, last_error FROM inspections WHERE img_unique_id = %s", img_id
        )
        assert status == "failed"
        assert "disk" in last_error
        assert db_rows(db, "SELECT count(*) FROM images WHERE img_unique_id = %s", img_id) == [(0,)]
        filler.unlink()
        retried = client.post(f"/api/images/{img_id}/retry")
        assert retried.status_code == 200, retried.text
        assert client.get(f"/api/download/image/{img_id}/mask").status_code == 200


def test_below_min_free_disk_uploads_are_refused_and_health_says_so(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> None:
    settings = agent_settings(
        tmp_path, database_url, reference_service.url, min_free_disk_mb=10**12
    )
    with serve_agent(settings) as agent, httpx2.Client(base_url=agent.url, timeout=60) as client:
        before_rows, before_files = counts(agent), stored_files(agent)
        for path, files in (
            ("/api/upload", {"image": ("a.png", make_image())}),
            ("/api/upload/batch", {"images": ("a.png", make_image())}),
        ):
            response = client.post(path, files=files)
            assert response.status_code == 507, response.text
            assert "MIN_FREE_DISK_MB" in response.json()["detail"]
        assert counts(agent) == before_rows
        assert stored_files(agent) == before_files
        health = client.get("/api/health").json()
    assert health["disk"]["accepting_uploads"] is False
    assert "MIN_FREE_DISK_MB" in health["disk"]["detail"]
    assert health["status"] == "degraded"


def test_a_stalled_upload_body_is_408_and_its_part_file_removed(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> None:
    settings = agent_settings(
        tmp_path, database_url, reference_service.url, upload_idle_timeout_s=1.0
    )
    with serve_agent(settings) as agent:
        before_rows = counts(agent)
        incoming = agent.settings.resolved_upload_dir / ".incoming"
        head = (
            b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            + make_image("PNG", (400, 400))[:2000]
        )
        host, port = agent.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(
                b"POST /api/upload HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
                b"Content-Length: 100000\r\n\r\n" + head
            )
            # The part file exists while the body is (not) arriving.
            deadline = time.monotonic() + 5
            while not list(incoming.glob("*.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
            started = time.monotonic()
            answer = b""
            with contextlib.suppress(TimeoutError):
                while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                    data = sock.recv(65536)
                    if not data:
                        break
                    answer += data
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"error":"request_timeout"' in answer
        assert b"UPLOAD_IDLE_TIMEOUT_S" in answer
        assert waited < 10
        assert not list(incoming.glob("*.part"))
        assert counts(agent) == before_rows
