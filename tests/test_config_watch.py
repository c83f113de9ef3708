"""WATCH_* settings as an administrator writes them in `.env` or the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_watch_dirs_are_empty_by_default_and_split_on_semicolons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCH_DIRS", raising=False)
    assert Settings(_env_file=None).watch_dirs == []  # type: ignore[call-arg]
    assert settings_from(monkeypatch, WATCH_DIRS="").watch_dirs == []
    parsed = settings_from(monkeypatch, WATCH_DIRS=" /mnt/aoi/line1 ; /mnt/aoi/line2;").watch_dirs
    assert parsed == [Path("/mnt/aoi/line1"), Path("/mnt/aoi/line2")]
    # The OS path separator works too (':' here, ';' on Windows).
    joined = os.pathsep.join(["/srv/a", "/srv/b"])
    assert settings_from(monkeypatch, WATCH_DIRS=joined).watch_dirs == [
        Path("/srv/a"),
        Path("/srv/b"),
    ]


def test_watch_timings_must_be_sensible(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = settings_from(
        monkeypatch, WATCH_POLLING="true", WATCH_SETTLE_S="0.5", WATCH_BATCH_WINDOW_S="0"
    )
    assert (parsed.watch_polling, parsed.watch_settle_s, parsed.watch_batch_window_s) == (
        True,
        0.5,
        0.0,
    )
    with pytest.raises(ValidationError):
        settings_from(monkeypatch, WATCH_SETTLE_S="0")
