"""Service settings: defaults, environment variables and validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from segformer_service.config import ServiceSettings


def test_defaults_are_the_deeppcb_classes() -> None:
    settings = ServiceSettings()
    assert settings.engine == "classical"
    assert settings.class_id_by_name() == {
        "open": 1,
        "short": 2,
        "mousebite": 3,
        "spur": 4,
        "spurious_copper": 5,
        "pin_hole": 6,
    }
    assert settings.color_of("open") == "#e6194b"
    assert settings.color_of("short") == "#f58231"
    assert settings.color_of("mousebite") == "#ffe119"
    assert settings.color_of("spur") == "#3cb44b"
    assert settings.color_of("spurious_copper") == "#4363d8"
    assert settings.color_of("pin_hole") == "#911eb4"
    assert settings.color_of("scratch") == "#a9a9a9"
    assert settings.max_upload_size_bytes == 50 * 1024 * 1024


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFERENCE_SERVICE_MAX_UPLOAD_SIZE_MB", "2")
    monkeypatch.setenv("REFERENCE_SERVICE_CLASS_NAMES", '["scratch", "dent"]')
    monkeypatch.setenv("REFERENCE_SERVICE_CLASS_IDS", "[7, 8]")
    settings = ServiceSettings()
    assert settings.max_upload_size_bytes == 2 * 1024 * 1024
    assert settings.class_name_by_id() == {7: "scratch", 8: "dent"}


@pytest.mark.parametrize(
    ("names", "ids", "message"),
    [
        (["a", "b"], [1], "same length"),
        (["a", "a"], [1, 2], "names must be unique"),
        (["a", "b"], [1, 1], "ids must be unique"),
        (["a"], [0], "positive"),
    ],
)
def test_inconsistent_classes_are_rejected(names: list[str], ids: list[int], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceSettings(class_names=names, class_ids=ids)
