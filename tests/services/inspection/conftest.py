"""Fixtures of the inspection tests: the agent as a real child process (`python run.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.services.model_service.reference import ReferenceService
from tests.services.inspection.scripted import ScriptedModelService
from tests.support import AgentProcess


@pytest.fixture
def agent_process(
    tmp_path: Path, database_url: str, reference_service: ReferenceService
) -> Iterator[AgentProcess]:
    process = AgentProcess.in_folder(
        tmp_path,
        database_url,
        reference_service.url,
        STALLED_JOB_AFTER_S="3",
        SEGFORMER_MAX_CONCURRENCY="2",
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def service() -> Iterator[ScriptedModelService]:
    """The scripted model service of the fault tests, one per test module."""
    with ScriptedModelService() as scripted:
        yield scripted
