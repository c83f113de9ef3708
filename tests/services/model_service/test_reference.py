"""The reference-service launcher passes REFERENCE_SERVICE_* settings to the child it starts."""

from __future__ import annotations

from pathlib import Path

import httpx2
import numpy as np
import pytest
from PIL import Image

from app.services.model_service.reference import reference_service_env, start_reference_service


def test_env_file_settings_reach_the_child_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "REFERENCE_SERVICE_ENGINE=template\n"
        "REFERENCE_SERVICE_TEMPLATE_TOLERANCE_PX=3\n"
        "DATA_DIR=elsewhere\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("REFERENCE_SERVICE_TEMPLATE_TOLERANCE_PX", "1")
    monkeypatch.delenv("REFERENCE_SERVICE_ENGINE", raising=False)
    env = reference_service_env(env_file)
    assert env["REFERENCE_SERVICE_ENGINE"] == "template"
    assert env["REFERENCE_SERVICE_TEMPLATE_TOLERANCE_PX"] == "1"
    assert env.get("DATA_DIR") != "elsewhere"  # only the service's own variables
    assert reference_service_env(tmp_path / "missing.env")["PATH"]


def test_started_service_uses_the_template_engine_from_dot_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    board = np.full((64, 64), 255, dtype=np.uint8)
    board[20:30, :] = 0
    Image.fromarray(board).save(templates / "golden.png")
    (tmp_path / ".env").write_text(
        f"REFERENCE_SERVICE_ENGINE=template\nREFERENCE_SERVICE_TEMPLATES_DIR={templates}\n",
        encoding="utf-8",
    )
    for key in ("REFERENCE_SERVICE_ENGINE", "REFERENCE_SERVICE_TEMPLATES_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    service = start_reference_service(tmp_path / "service.log")
    try:
        assert httpx2.get(service.url + "health", timeout=10.0).json()["engine"] == "template"
    finally:
        service.stop()
