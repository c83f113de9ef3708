"""The settings as a newcomer meets them: `.env.example` copied to `.env`."""

from __future__ import annotations

import pytest

from app.config import PRODUCTION_MODEL_SERVICE_URL, Settings
from tests.support import REPO_ROOT


def test_env_example_copied_to_env_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README says to copy `.env.example` to `.env`: until edited, that copy must keep
    the defaults (embedded database, reference model service), not switch to the
    production model service, which is unreachable from most machines."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    example = REPO_ROOT / ".env.example"
    copied = Settings(_env_file=example)  # type: ignore[call-arg]
    assert copied == Settings(_env_file=None)  # type: ignore[call-arg]
    assert copied.segformer_service_url is None
    assert copied.database_url is None
    assert f"# SEGFORMER_SERVICE_URL={PRODUCTION_MODEL_SERVICE_URL}\n" in example.read_text()


@pytest.mark.parametrize("url", ["s3://", "gs://bucket/x", "http://minio:9000/bucket"])
def test_storage_url_is_a_folder_or_an_s3_url(url: str) -> None:
    with pytest.raises(ValueError, match="STORAGE_URL must be a folder or s3://bucket/prefix"):
        Settings(_env_file=None, storage_url=url)  # type: ignore[call-arg]
    assert Settings(_env_file=None, storage_url="s3://b/p").uses_object_store  # type: ignore[call-arg]
    assert not Settings(_env_file=None, storage_url="/srv/aoi").uses_object_store  # type: ignore[call-arg]


@pytest.mark.parametrize("rate", ["600 a minute", "fast", "10/fortnight"])
def test_key_rate_limit_must_be_a_rate(rate: str) -> None:
    with pytest.raises(ValueError, match=r"KEY_RATE_LIMIT .* is not a rate such as 600/minute"):
        Settings(_env_file=None, key_rate_limit=rate)  # type: ignore[call-arg]
    assert Settings(_env_file=None, key_rate_limit="20/second").key_rate_limit == "20/second"  # type: ignore[call-arg]
    assert Settings(_env_file=None, key_rate_limit=" ").key_rate_limit is None  # type: ignore[call-arg]
