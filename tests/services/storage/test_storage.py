"""The storage interface, against both backends (`storage` fixture: a folder, and moto's
S3 server — an emulator of the S3 API — on loopback)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from app.services.storage import LocalStorage, Storage, open_storage
from app.services.storage import base as storage_base
from app.services.storage import local as local_backend
from app.services.storage.migrate import copy_store
from tests.services.storage.conftest import storage_settings
from tests.support import S3Emulator, local_files, make_image

ACCEPTED = datetime(2026, 12, 2, 9, 30, 5, tzinfo=UTC)
IMG_ID = "20261202_093005_000001_abcdef"


def _results() -> dict[str, bytes]:
    return {
        kind: make_image("PNG", (8 + i, 8))
        for i, kind in enumerate(("combined", "mask", "overlay"))
    }


async def _keys(storage: Storage, prefix: str) -> list[str]:
    return sorted([obj.key async for obj in storage.list_objects(prefix)])


async def test_an_object_written_reads_back_whole_and_streams_in_chunks(storage: Storage) -> None:
    data = bytes(range(256)) * 1000  # 256 kB: several chunks
    await storage.put("results/20261202/x/combined.png", data, "image/png")

    assert await storage.get("results/20261202/x/combined.png") == data
    assert await storage.exists("results/20261202/x/combined.png")
    stream = await storage.open_stream("results/20261202/x/combined.png")
    chunks = [chunk async for chunk in stream.chunks]
    assert stream.size == len(data)
    assert b"".join(chunks) == data
    assert len(chunks) > 1


async def test_a_missing_object_is_file_not_found(storage: Storage) -> None:
    assert not await storage.exists("uploads/20261202/none.png")
    with pytest.raises(FileNotFoundError):
        await storage.get("uploads/20261202/none.png")
    with pytest.raises(FileNotFoundError):
        await storage.open_stream("uploads/20261202/none.png")


async def test_a_kept_input_is_in_the_store_and_the_scratch_file_is_gone(
    storage: Storage,
) -> None:
    scratch = storage.new_incoming_path()
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.write_bytes(make_image("PNG"))
    key = storage.input_key(IMG_ID, ACCEPTED, "../../etc/board 7.png", ".png")

    await storage.keep_input(scratch, key, "image/png")

    assert key == f"uploads/20261202/20261202_093005_{IMG_ID}_board_7.png"
    assert await storage.get(key) == make_image("PNG")
    assert not scratch.exists()
    assert local_files(storage.scratch_dir) == []


async def test_results_are_written_together_under_the_inspection_prefix(storage: Storage) -> None:
    keys = await storage.write_results(IMG_ID, ACCEPTED, _results(), {"classes": {}})

    prefix = f"results/20261202/{IMG_ID}/"
    assert keys == {
        "combined": prefix + "combined.png",
        "mask": prefix + "mask.png",
        "overlay": prefix + "overlay.png",
        "analysis": prefix + "analysis.json",
    }
    assert await _keys(storage, prefix) == sorted(keys.values())
    assert await storage.get(keys["analysis"]) == b'{\n  "classes": {}\n}'


async def test_a_failed_result_write_leaves_nothing_behind(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One write fails (a wrapper raising for the overlay: a failure the real stores cannot
    be made to show on demand); the objects already written are removed. The folder
    backend writes its files in one thread hop through `atomic_write`, the object store
    through `put`: the wrapper goes around both."""
    real_put = storage.put
    real_atomic_write = local_backend.atomic_write

    async def failing_put(
        key: str, data: bytes, media_type: str | None = None, download_name: str | None = None
    ) -> None:
        if key.endswith("overlay.png"):
            raise OSError(28, "No space left on device")
        await real_put(key, data, media_type, download_name)

    def failing_atomic_write(path: Path, data: bytes) -> None:
        if path.name == "overlay.png":
            raise OSError(28, "No space left on device")
        real_atomic_write(path, data)

    storage.put = failing_put  # type: ignore[method-assign]
    monkeypatch.setattr(local_backend, "atomic_write", failing_atomic_write)
    with pytest.raises(OSError, match="No space"):
        await storage.write_results(IMG_ID, ACCEPTED, _results(), {"classes": {}})

    assert await _keys(storage, "results/") == []


async def test_removing_an_inspection_removes_input_results_and_thumbnails(
    storage: Storage,
) -> None:
    other = "20261202_093005_000002_fedcba"
    input_key = storage.input_key(IMG_ID, ACCEPTED, "a.png", ".png")
    await storage.put(input_key, b"input")
    await storage.write_results(IMG_ID, ACCEPTED, _results(), {})
    await storage.write_results(other, ACCEPTED, _results(), {})
    await storage.put(storage.thumbnail_key(IMG_ID, "overlay", 256), b"jpeg")

    await storage.remove_inspection_files(input_key, IMG_ID, ACCEPTED)

    assert not await storage.exists(input_key)
    assert await _keys(storage, f"results/20261202/{IMG_ID}/") == []
    assert await _keys(storage, "thumbnails/") == []
    assert len(await _keys(storage, f"results/20261202/{other}/")) == 4


async def test_old_inputs_and_result_folders_are_listed_for_the_orphan_sweep(
    storage: Storage,
) -> None:
    input_key = storage.input_key(IMG_ID, ACCEPTED, "a.png", ".png")
    await storage.put(input_key, b"input")
    await storage.write_results(IMG_ID, ACCEPTED, _results(), {})

    later = time.time() + 60
    assert await storage.old_inputs_by_day(later) == {"uploads/20261202/": [input_key]}
    assert await storage.old_result_folders(later) == {IMG_ID: f"results/20261202/{IMG_ID}/"}
    earlier = time.time() - 3600
    assert await storage.old_inputs_by_day(earlier) == {}
    assert await storage.old_result_folders(earlier) == {}


async def test_keys_never_leave_the_store(storage: Storage) -> None:
    for bad in ("", "../secret_key", "uploads/../../x", "/etc/passwd", "uploads\\..\\x"):
        with pytest.raises(ValueError, match="stored path"):
            storage.key_of(bad)
    with pytest.raises(ValueError, match="stored path"):
        await storage.get("../secret_key")


def test_paths_of_older_rows_map_to_the_same_keys(tmp_path: Path) -> None:
    """Rows written before object storage: absolute paths (UPLOAD_DIR outside DATA_DIR),
    and DATA_DIR-relative ones (RESULT_DIR inside DATA_DIR under another name)."""
    settings = storage_settings(
        tmp_path, upload_dir=tmp_path / "elsewhere", result_dir=tmp_path / "data" / "out"
    )
    store = open_storage(settings)
    assert store.key_of(str(tmp_path / "elsewhere" / "20261202" / "a.png")) == (
        "uploads/20261202/a.png"
    )
    assert store.key_of("out/20261202/x/mask.png") == "results/20261202/x/mask.png"
    assert store.key_of("uploads/20261202/a.png") == "uploads/20261202/a.png"
    assert "out/20261202/" in store.stored_forms("results/20261202/")
    assert (tmp_path / "elsewhere" / "20261202").as_posix() + "/" in store.stored_forms(
        "uploads/20261202/"
    )
    with pytest.raises(ValueError, match="outside"):
        store.key_of(str(tmp_path / "other" / "a.png"))


async def test_presigned_downloads_come_straight_from_the_store(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    settings = storage_settings(
        tmp_path,
        storage_url=f"s3://{s3_emulator.new_bucket()}",
        s3_endpoint_url=s3_emulator.url,
        s3_presigned_downloads=True,
    )
    store = open_storage(settings)
    await store.put("results/20261202/x/mask.png", make_image("PNG"), "image/png")

    url = await store.presigned_url("results/20261202/x/mask.png")

    assert url is not None
    assert url.startswith(s3_emulator.url)
    answer = httpx2.get(url, timeout=10)
    assert answer.status_code == 200
    assert answer.content == make_image("PNG")
    assert answer.headers["content-type"] == "image/png"
    assert await LocalStorage(settings).presigned_url("results/20261202/x/mask.png") is None


async def test_a_presigned_download_saves_under_the_agents_download_name(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    """The object store keeps the download name given at write time as the object's
    `Content-Disposition`, and answers a GET of a presigned URL with it (a presigned URL
    cannot ask for one). Names outside ASCII take the RFC 5987 form."""
    settings = storage_settings(
        tmp_path,
        storage_url=f"s3://{s3_emulator.new_bucket()}/plant-7",
        s3_endpoint_url=s3_emulator.url,
        s3_presigned_downloads=True,
    )
    store = open_storage(settings)
    stem = f"board_7_{IMG_ID}"
    scratch = store.new_incoming_path()
    scratch.parent.mkdir(parents=True, exist_ok=True)
    scratch.write_bytes(make_image("PNG"))
    input_key = store.input_key(IMG_ID, ACCEPTED, "board 7.png", ".png")
    await store.keep_input(scratch, input_key, "image/png", f"{stem}.png")
    keys = await store.write_results(IMG_ID, ACCEPTED, _results(), {}, download_stem=stem)
    await store.put("thumbnails/x/input.png", b"png", "image/png", download_name="Prüfling.png")
    await store.put("thumbnails/x/plain.png", b"png", "image/png")

    async def disposition(key: str) -> str | None:
        url = await store.presigned_url(key)
        assert url is not None
        answer = httpx2.get(url, timeout=10)
        assert answer.status_code == 200
        return answer.headers.get("content-disposition")

    assert await disposition(input_key) == f'attachment; filename="{stem}.png"'
    assert await disposition(keys["mask"]) == f'attachment; filename="{stem}_mask.png"'
    assert await disposition(keys["analysis"]) == (f'attachment; filename="{stem}_analysis.json"')
    assert await disposition("thumbnails/x/input.png") == (
        "attachment; filename=\"Pr?fling.png\"; filename*=UTF-8''Pr%C3%BCfling.png"
    )
    # Written without a name (as before this version): the store sends none.
    assert await disposition("thumbnails/x/plain.png") is None
    await store.aclose()


async def test_migrate_copies_a_folder_store_key_for_key_and_can_run_again(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    settings = storage_settings(tmp_path)
    local = open_storage(settings)
    local.ensure_directories()
    input_key = local.input_key(IMG_ID, ACCEPTED, "a.png", ".png")
    await local.put(input_key, b"input")
    await local.write_results(IMG_ID, ACCEPTED, _results(), {"classes": {}})
    (local.scratch_dir / "half.part").write_bytes(b"in flight")  # scratch: not copied
    bucket = s3_emulator.new_bucket()
    target = open_storage(
        settings.model_copy(update={"s3_endpoint_url": s3_emulator.url}), f"s3://{bucket}/p"
    )

    first = await copy_store(local, target, concurrency=3)
    again = await copy_store(local, target)

    expected = [
        input_key,
        *sorted((await local.write_results(IMG_ID, ACCEPTED, _results(), {})).values()),
    ]
    assert s3_emulator.keys(bucket) == sorted(f"p/{key}" for key in expected)
    assert s3_emulator.read(bucket, f"p/{input_key}") == b"input"
    assert (first.copied, first.skipped) == (5, 0)
    assert (again.copied, again.skipped) == (0, 5)


async def test_thumbnails_cached_flat_by_older_versions_go_with_their_inspection(
    tmp_path: Path,
) -> None:
    store = open_storage(storage_settings(tmp_path))
    flat = tmp_path / "data" / "thumbnails" / f"{IMG_ID}_overlay_256.jpg"
    flat.parent.mkdir(parents=True)
    flat.write_bytes(b"jpeg")
    kept = flat.with_name("20261202_093005_000002_fedcba_overlay_256.jpg")
    kept.write_bytes(b"jpeg")

    await store.remove_inspection_files(None, IMG_ID, None)

    assert not flat.exists()
    assert kept.exists()


async def test_an_unreachable_object_store_is_storage_unavailable(tmp_path: Path) -> None:
    """Nothing listens on the endpoint's port: a refused connection, as when the store is
    down."""
    from app.errors import StorageUnavailable
    from app.services.model_service.reference import free_loopback_port

    settings = storage_settings(
        tmp_path,
        storage_url="s3://bucket/aoi",
        s3_endpoint_url=f"http://127.0.0.1:{free_loopback_port()}",
        s3_timeout_s=2,
    )
    store = open_storage(settings)
    with pytest.raises(StorageUnavailable, match="object store s3://bucket/aoi failed") as caught:
        await store.put("uploads/20261202/a.png", b"x")
    assert caught.value.status_code == 503
    with pytest.raises(StorageUnavailable):
        await store.get("uploads/20261202/a.png")
    # /health's check says so in a sentence instead of raising: an outage to wait out.
    found = await store.check()
    assert found.state == "unavailable"
    assert found.detail is not None
    assert "object store s3://bucket/aoi failed" in found.detail


async def test_a_missing_bucket_is_named_as_such_not_a_missing_file(
    tmp_path: Path, s3_emulator: S3Emulator
) -> None:
    """Every call on a bucket that does not exist says so (StorageMisconfigured, 503),
    never FileNotFoundError (which the API would answer as a missing file or a 500)."""
    from app.errors import StorageMisconfigured

    settings = storage_settings(
        tmp_path,
        storage_url="s3://aoi-no-such-bucket/plant-7",
        s3_endpoint_url=s3_emulator.url,
    )
    store = open_storage(settings)
    incoming = tmp_path / "in.part"
    incoming.write_bytes(b"png")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "verify": lambda: store.verify(write=True),
        "keep_input": lambda: store.keep_input(incoming, "uploads/20261202/a.png", "image/png"),
        "put": lambda: store.put("results/20261202/x/mask.png", b"x"),
        "get": lambda: store.get("uploads/20261202/a.png"),
        "delete": lambda: store.delete(["uploads/20261202/a.png"]),
    }
    for name, call in calls.items():
        with pytest.raises(StorageMisconfigured) as caught:
            await call()
        assert caught.value.status_code == 503, name
        assert caught.value.error == "storage_misconfigured", name
        assert (
            "the bucket 'aoi-no-such-bucket' of s3://aoi-no-such-bucket/plant-7 does not exist"
            in (caught.value.detail)
        ), name
        assert s3_emulator.url in caught.value.detail, name
    # The upload's scratch file stays for the caller to discard; nothing was kept.
    assert incoming.exists()
    found = await store.check()
    assert found.state == "misconfigured"
    assert found.detail is not None
    assert "aoi-no-such-bucket" in found.detail
    await store.aclose()


async def test_verify_writes_and_removes_its_probe_and_check_is_cached(
    tmp_path: Path, s3_emulator: S3Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_emulator.new_bucket()
    store = open_storage(
        storage_settings(
            tmp_path, storage_url=f"s3://{bucket}/plant-7", s3_endpoint_url=s3_emulator.url
        )
    )
    await store.verify(write=True)
    assert s3_emulator.keys(bucket) == []
    assert (await store.check()).state == "ok"
    # Deleted behind the agent's back: /health's cached answer holds for a few seconds,
    # then says what is wrong.
    s3_emulator.delete_bucket(bucket)
    assert (await store.check()).state == "ok"
    monkeypatch.setattr(storage_base, "STORE_CHECK_CACHE_S", 0.0)  # its seconds have passed
    assert (await store.check()).state == "misconfigured"
    await store.aclose()
