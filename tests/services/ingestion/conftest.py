"""What the hot-folder tests share: a live agent watching a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.services.model_service.reference import ReferenceService
from tests.conftest import agent_settings
from tests.support import AgentServer, serve_agent


@contextmanager
def watching_agent(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str,
    reference_service: ReferenceService,
    **overrides: Any,
) -> Iterator[tuple[AgentServer, Path]]:
    """A live agent watching a new temporary folder, with a short settle time (0.6 s) and
    the settings in `overrides` (e.g. `watch_batch_window_s`, `watch_name_pattern`)."""
    folder = tmp_path_factory.mktemp("hot")
    settings = agent_settings(
        tmp_path_factory.mktemp("data"),
        database_url,
        reference_service.url,
        watch_dirs=[folder],
        **{"watch_settle_s": 0.6, **overrides},
    )
    with serve_agent(settings) as agent:
        yield agent, folder
