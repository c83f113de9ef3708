"""Every storage test runs against both backends: a folder, and an S3 object store served
by moto's S3 server (an emulator of the S3 API, not AWS) on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.config import Settings
from app.services.storage import Storage, open_storage
from tests.support import S3Emulator


def storage_settings(tmp_path: Path, **extra: object) -> Settings:
    """Settings of a store under `tmp_path` (DATA_DIR `tmp_path/data`)."""
    return Settings(_env_file=None, data_dir=tmp_path / "data", **extra)  # type: ignore[call-arg, arg-type]


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, s3_emulator: S3Emulator
) -> AsyncIterator[Storage]:
    """A fresh, empty store of each backend (a new bucket for S3)."""
    if request.param == "local":
        settings = storage_settings(tmp_path)
    else:
        settings = storage_settings(
            tmp_path,
            storage_url=f"s3://{s3_emulator.new_bucket()}/plant-7",
            s3_endpoint_url=s3_emulator.url,
        )
    store = open_storage(settings)
    store.ensure_directories()
    yield store
    await store.aclose()
